"""PyTorch eager side of `suite bench resnet50-step`: full fine-tuning steps of a ResNet-50 (random init, new
10-class head) on one fixed random batch, with cross-entropy, backward, AdamW (torch's default implementation
choice) and zero_grad. Prints one JSON line."""
import argparse
import json
import time

import torch
import torch.nn.functional as F
import torchvision

p = argparse.ArgumentParser()
p.add_argument("--batch", type=int, default=8)
p.add_argument("--size", type=int, default=224)
p.add_argument("--classes", type=int, default=10)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--iters", type=int, default=10)
p.add_argument("--profile", help="also write a Chrome trace of --profile-steps more steps here")
p.add_argument("--profile-steps", type=int, default=3)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--weight-decay", type=float, default=0.01)
p.add_argument("--threads", type=int, required=True)
p.add_argument("--interop-threads", type=int, required=True)
p.add_argument("--device", default="cpu")
a = p.parse_args()

torch.set_num_threads(a.threads)
torch.set_num_interop_threads(a.interop_threads)
torch.manual_seed(0)
dev = torch.device(a.device)
cuda = dev.type == "cuda"


base_rss = start_rss_watch()

model = torchvision.models.resnet50(num_classes=a.classes).to(dev).train()
# The same groups as suite's `param_groups`: biases and norm weights (rank <= 1) get no weight decay.
params = list(model.parameters())
opt = torch.optim.AdamW(
    [
        {"params": [p for p in params if p.dim() > 1], "weight_decay": a.weight_decay},
        {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0},
    ],
    lr=a.lr,
)
x = torch.randn(a.batch, 3, a.size, a.size, device=dev)
y = torch.randint(0, a.classes, (a.batch,), device=dev)

phases = [0.0, 0.0, 0.0]  # forward + loss, backward, optimizer step + zero_grad (CPU only: no syncs on CUDA)
steps = []  # wall time of each step


def step():
    t0 = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    opt.step()
    opt.zero_grad()
    t3 = time.perf_counter()
    value = loss.item()  # the training loop reads the loss every step, as suite's trainer does
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
    # What AdamW(foreach=None) picks: the multi-tensor path for CUDA tensors, the per-tensor loop on CPU.
    "optimizer_impl": "foreach" if cuda else "single-tensor",
    "torch": torch.__version__,
}))
