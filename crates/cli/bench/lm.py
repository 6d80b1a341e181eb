"""PyTorch eager side of `suite bench sft-step` and `suite bench generate` (transformers + peft).

    lm.py make OUT          writes the benchmark's random Llama (config.json + model.safetensors) to OUT
    lm.py sft-step MODEL    LoRA SFT steps: peft LoRA (r 16, alpha 32, q/k/v/o/gate/up/down), batch of random
                            tokens, causal-LM loss over every token, backward, AdamW, zero_grad
    lm.py generate MODEL    greedy `generate` of --new-tokens tokens from a random prompt, KV cache on

Prints one JSON line: seconds, per-step/per-token numbers and the peak resident memory added by the job.
"""
import argparse
import json
import resource
import time

import torch

p = argparse.ArgumentParser()
p.add_argument("mode", choices=["make", "sft-step", "generate"])
p.add_argument("path")
p.add_argument("--batch", type=int, default=4)
p.add_argument("--seq", type=int, default=256)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--iters", type=int, default=5)
p.add_argument("--lr", type=float, default=2e-4)
p.add_argument("--prompt", type=int, default=32)
p.add_argument("--new-tokens", type=int, default=64)
p.add_argument("--threads", type=int, default=0)
p.add_argument("--interop-threads", type=int, default=0)
p.add_argument("--device", default="cpu")
a = p.parse_args()

if a.threads:
    torch.set_num_threads(a.threads)
if a.interop_threads:
    torch.set_num_interop_threads(a.interop_threads)
torch.manual_seed(0)
import transformers  # noqa: E402
from transformers.utils import logging  # noqa: E402

logging.set_verbosity_error()
dev = torch.device(a.device)
cuda = dev.type == "cuda"


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if a.mode == "make":
    # A SmolLM2-135M-like shape at a third of the depth: wide enough that matrix products dominate.
    config = transformers.LlamaConfig(
        vocab_size=8192, hidden_size=576, intermediate_size=1536, num_hidden_layers=10, num_attention_heads=9,
        num_key_value_heads=3, max_position_embeddings=1024, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=None,
    )
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(a.path, safe_serialization=True)
    print(json.dumps({"parameters": sum(p.numel() for p in model.parameters())}))
    raise SystemExit(0)

base = rss_mib()
model = transformers.AutoModelForCausalLM.from_pretrained(a.path, torch_dtype=torch.float32).to(dev)
g = torch.Generator().manual_seed(0)
vocab = model.config.vocab_size

if a.mode == "sft-step":
    import peft

    cfg = peft.LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = peft.get_peft_model(model, cfg).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=a.lr, weight_decay=0.0, fused=True if cuda else None)
    ids = torch.randint(0, vocab, (a.batch, a.seq), generator=g).to(dev)
    steps = []

    def step():
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        value = loss.item()
        steps.append(time.perf_counter() - t0)
        return value

    for _ in range(a.warmup):
        step()
    steps = []
    start = time.perf_counter()
    for _ in range(a.iters):
        loss = step()
    seconds = time.perf_counter() - start
    steps.sort()
    print(json.dumps({
        "seconds": seconds, "images_per_sec": a.batch * a.iters / seconds,
        "median_step_s": steps[len(steps) // 2], "loss": loss,
        "trainable": sum(p.numel() for p in trainable), "peak_rss_mib": peak_mib() - base,
        "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
    }))
else:
    model.eval()
    prompt = torch.randint(0, vocab, (1, a.prompt), generator=g).to(dev)
    times = []
    out = None
    with torch.inference_mode():
        for i in range(a.warmup + a.iters):
            t0 = time.perf_counter()
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=a.new_tokens,
                                 min_new_tokens=a.new_tokens, do_sample=False, pad_token_id=0)
            if i >= a.warmup:
                times.append(time.perf_counter() - t0)
    seconds = sum(times)
    times.sort()
    print(json.dumps({
        "seconds": seconds, "images_per_sec": a.new_tokens * a.iters / seconds,
        "median_step_s": times[len(times) // 2],
        "prompt": prompt[0].tolist(), "tokens": out[0, a.prompt:].tolist(), "peak_rss_mib": peak_mib() - base,
        "torch": torch.__version__, "transformers": transformers.__version__,
    }))
