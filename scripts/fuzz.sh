#!/usr/bin/env bash
# Fuzzes suite's parsers on stable Rust: `scripts/fuzz.sh [TARGET|all] [MINUTES]` (default: all targets, 10
# minutes each). Builds fuzz/ (its own workspace and target folder, target/fuzz) in release, then runs each target
# for MINUTES at the lowest CPU priority and prints, per target, its executions, seconds and findings. Findings
# (inputs that panic, hang over 5 s or allocate without bound) are written to fuzz/findings/TARGET/ and printed;
# replay one with `target/fuzz/release/suite-fuzz repro TARGET FILE`. Exits 1 when anything was found.
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-all}"
minutes="${2:-10}"
export CARGO_TARGET_DIR="$PWD/target/fuzz"
(cd fuzz && cargo build --release --quiet)
bin="$CARGO_TARGET_DIR/release/suite-fuzz"
if [ "$which" = all ]; then
    targets=$("$bin" list)
else
    targets="$which"
fi
seconds=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 }')
summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
for t in $targets; do
    echo "== $t: $minutes min" >&2
    nice -n 19 "$bin" run "$t" "$seconds" | tee -a "$summary"
done
echo
echo "summary ($minutes min per target):"
grep -E '^[a-z_0-9]+ +executions' "$summary" || true
found=$(grep -E '^[a-z_0-9]+ +executions' "$summary" | awk '{ s += $NF } END { print s + 0 }')
echo "findings: $found (fuzz/findings/)"
[ "$found" -eq 0 ]
