"""PyTorch eager side of `suite bench minilm-step`: fine-tuning steps of all-MiniLM-L6-v2 with a new 2-label
sequence-classification head (transformers' BertForSequenceClassification, its default attention) on one fixed
random batch of token ids, train mode (dropout on), cross-entropy, backward, AdamW and zero_grad. Prints one JSON
line."""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from transformers import BertForSequenceClassification
from transformers.utils import logging

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--seq", type=int, default=128)
p.add_argument("--labels", type=int, default=2)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--iters", type=int, default=10)
p.add_argument("--profile", help="also write a Chrome trace of --profile-steps more steps here")
p.add_argument("--profile-steps", type=int, default=3)
p.add_argument("--lr", type=float, default=5e-5)
p.add_argument("--weight-decay", type=float, default=0.01)
p.add_argument("--fused", type=int, default=0)
p.add_argument("--threads", type=int, required=True)
p.add_argument("--interop-threads", type=int, required=True)
p.add_argument("--device", default="cpu")
a = p.parse_args()

torch.set_num_threads(a.threads)
torch.set_num_interop_threads(a.interop_threads)
torch.manual_seed(0)
logging.set_verbosity_error()
dev = torch.device(a.device)
cuda = dev.type == "cuda"


base_rss = start_rss_watch()
model = BertForSequenceClassification.from_pretrained(a.model, num_labels=a.labels).to(dev).train()
params = list(model.parameters())
# The same groups as suite's `param_groups`: biases and norm weights (rank <= 1) get no weight decay.
opt = torch.optim.AdamW(
    [
        {"params": [p for p in params if p.dim() > 1], "weight_decay": a.weight_decay},
        {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0},
    ],
    lr=a.lr,
    fused=bool(a.fused) or None,
)
g = torch.Generator().manual_seed(0)
ids = torch.randint(1000, model.config.vocab_size, (a.batch, a.seq), generator=g).to(dev)
mask = torch.ones(a.batch, a.seq, dtype=torch.long, device=dev)
types = torch.zeros(a.batch, a.seq, dtype=torch.long, device=dev)
y = torch.randint(0, a.labels, (a.batch,), generator=g).to(dev)

phases = [0.0, 0.0, 0.0]
steps = []


def step():
    t0 = time.perf_counter()
    logits = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    loss = F.cross_entropy(logits, y)
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    opt.step()
    opt.zero_grad()
    t3 = time.perf_counter()
    value = loss.item()
    for i, d in enumerate((t1 - t0, t2 - t1, t3 - t2)):
        phases[i] += d
    steps.append(time.perf_counter() - t0)
    return value


for _ in range(a.warmup):
    step()
if cuda:
    torch.cuda.synchronize()
phases, steps = [0.0, 0.0, 0.0], []
start = time.perf_counter()
for _ in range(a.iters):
    loss = step()
if cuda:
    torch.cuda.synchronize()
elapsed = time.perf_counter() - start
peak_rss_mib = status_mib("VmHWM") - base_rss
if a.profile:
    profile_steps(step, a.profile, a.profile_steps, cuda)
print(json.dumps({
    "seconds": elapsed,
    "images_per_sec": a.batch * a.iters / elapsed,
    "median_step_s": sorted(steps)[len(steps) // 2],
    "phase_ms": None if cuda else {k: 1000 * v / a.iters for k, v in zip(["forward", "backward", "optimizer"], phases)},
    "loss": loss,
    "peak_rss_mib": peak_rss_mib,
    "threads": torch.get_num_threads(),
    "interop_threads": torch.get_num_interop_threads(),
    "optimizer_impl": "fused" if a.fused else ("foreach" if cuda else "single-tensor"),
    "attention": model.config._attn_implementation,
    "torch": torch.__version__,
}))
