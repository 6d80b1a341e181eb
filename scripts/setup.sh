#!/usr/bin/env bash
# Idempotent set-up shared by `make demo` and `make test`.
#  1. a Python venv in the cache holding the torch==2.13.0 wheel (our libtorch) and the pinned test oracles;
#  2. .cargo/config.toml pointing LIBTORCH at it, with an rpath so `suite` runs without LD_LIBRARY_PATH;
#  3. the offline assets of ../shared/ASSETS.md that the demo and tests need, hash-checked (scripts/fetch_assets.sh).
# Everything heavy lives in $SUITE_CACHE (default ~/.cache/suite), outside the clone, so a new clone reuses it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${SUITE_CACHE:-$HOME/.cache/suite}
venv=$cache/py
req=$root/scripts/requirements.txt
mkdir -p "$cache"

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating Python venv in $venv"
  python3 -m venv "$venv"
fi
stamp=$venv/.suite-requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing pinned Python packages (torch 2.13.0 is ~4.7 GB with its CUDA libraries; a few minutes)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi

torch_dir=$("$venv/bin/python" -c 'import torch, pathlib; print(pathlib.Path(torch.__file__).parent)')
torch_ver=$("$venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')
if [ "$torch_ver" != "2.13.0" ]; then
  echo "setup: error: tch 0.26 needs libtorch 2.13.0 but $venv has torch $torch_ver; remove $venv and rerun" >&2
  exit 1
fi
[ -f "$torch_dir/lib/libtorch_cpu.so" ] || { echo "setup: error: $torch_dir/lib/libtorch_cpu.so missing" >&2; exit 1; }

mkdir -p "$root/.cargo"
cfg=$root/.cargo/config.toml
new_cfg="# Written by scripts/setup.sh; do not edit (it is regenerated).
[env]
LIBTORCH = \"$torch_dir\"
SUITE_PYTHON = \"$venv/bin/python\"
SUITE_CACHE = \"$cache\"

[build]
rustflags = [\"-C\", \"link-arg=-Wl,-rpath,$torch_dir/lib\"]
"
if [ "$(cat "$cfg" 2>/dev/null)" != "$new_cfg" ]; then printf '%s' "$new_cfg" > "$cfg"; fi

"$root/scripts/fetch_assets.sh" "${@:-default}"
echo "setup: ok (libtorch $torch_ver at $torch_dir)"
