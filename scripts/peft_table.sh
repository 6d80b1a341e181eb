#!/usr/bin/env bash
# Measures every PEFT method on the offline text classification task (fortunes4, all-MiniLM-L6-v2): held-out test
# accuracy, trainable fraction, saved model size, peak memory (max RSS of the whole process) and time per epoch.
# Usage: [MAX_LEN=64] scripts/peft_table.sh OUT_DIR [EPOCHS]   (prepares OUT_DIR/data with `suite data fortunes4`)
set -euo pipefail
out=${1:?usage: peft_table.sh OUT_DIR [EPOCHS]}
epochs=${2:-6}
suite=${SUITE_BIN:-target/release/suite}
mkdir -p "$out"
[ -f "$out/data/train.csv" ] || "$suite" data fortunes4 --out "$out/data" >/dev/null
printf 'method\tlr\taccuracy\ttrainable\tsaved_MB\tpeak_MB\ts_per_epoch\n' > "$out/table.tsv"
# Learning rates as commonly used per method (full fine-tuning small, prompt methods large).
for spec in "none:1e-4" "lora:1e-3" "dora:1e-3" "ia3:3e-3" "prefix:1e-2" "ptuning2:1e-2" "houlsby:1e-3" "pfeiffer:1e-3" "bitfit:1e-3"; do
  method=${spec%%:*}; lr=${spec##*:}
  run="$out/run-$method"; rm -rf "$run"
  /usr/bin/time -v -o "$out/time-$method.txt" "$suite" finetune text --config tasks/fortunes4_minilm.toml \
    --data "$out/data/train.csv" --out "$run" --peft "$method" --lr "$lr" --epochs "$epochs" --max-len "${MAX_LEN:-64}" > "$out/log-$method.txt" 2>&1
  acc=$("$suite" eval --run "$run" --data "$out/data/test.csv" | awk '$1=="accuracy"{print $2}')
  trainable=$(grep -m1 '^trainable params' "$out/log-$method.txt" | sed 's/.*(\(.*\) %).*/\1/')
  saved=$(du -sb "$run/best" | awk '{printf "%.2f", $1/1e6}')
  peak=$(awk -F': ' '/Maximum resident set size/{printf "%.0f", $2/1024}' "$out/time-$method.txt")
  secs=$(grep -m1 '^train time' "$out/log-$method.txt" | awk '{print $3}')
  per_epoch=$(awk -v s="$secs" -v e="$epochs" 'BEGIN{printf "%.1f", s/e}')
  printf '%s\t%s\t%s\t%s %%\t%s\t%s\t%s\n' "$method" "$lr" "$acc" "$trainable" "$saved" "$peak" "$per_epoch" | tee -a "$out/table.tsv"
done
