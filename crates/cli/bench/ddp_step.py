"""PyTorch side of `suite bench ddp`, run under torchrun: DistributedDataParallel (gloo on CPU, nccl on CUDA) around
transformers' BertForSequenceClassification from all-MiniLM-L6-v2 with a new 2-label head, AdamW, fixed random
token ids (`--batch` per rank, `--seq` tokens). Rank 0 prints one JSON line with the median step time and the global
samples per second."""
import argparse
import json
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from transformers import BertForSequenceClassification
from transformers.utils import logging

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--batch", type=int, required=True)
p.add_argument("--seq", type=int, default=64)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--iters", type=int, default=10)
p.add_argument("--threads", type=int, required=True)
p.add_argument("--device", default="cpu")
a = p.parse_args()

torch.set_num_threads(a.threads)
logging.set_verbosity_error()
cuda = a.device.startswith("cuda")
dist.init_process_group("nccl" if cuda else "gloo")
rank, world = dist.get_rank(), dist.get_world_size()
dev = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
torch.manual_seed(0)
model = BertForSequenceClassification.from_pretrained(a.model, num_labels=2).to(dev).train()
ddp = torch.nn.parallel.DistributedDataParallel(model)
opt = torch.optim.AdamW(ddp.parameters(), lr=5e-5, weight_decay=0.01)
g = torch.Generator().manual_seed(rank)
ids = torch.randint(1000, model.config.vocab_size, (a.batch, a.seq), generator=g).to(dev)
mask = torch.ones_like(ids)
y = torch.randint(0, 2, (a.batch,), generator=g).to(dev)
steps = []
for i in range(a.warmup + a.iters):
    t0 = time.perf_counter()
    loss = F.cross_entropy(ddp(input_ids=ids, attention_mask=mask).logits, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(ddp.parameters(), 1.0)
    opt.step()
    opt.zero_grad()
    loss.item()
    if i >= a.warmup:
        steps.append(time.perf_counter() - t0)
if rank == 0:
    med = statistics.median(steps)
    print(json.dumps({"median_step_s": med, "samples_per_sec": a.batch * world / med, "world_size": world}))
dist.destroy_process_group()
