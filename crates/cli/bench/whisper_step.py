"""PyTorch eager side of `suite bench whisper-step`: transformers' WhisperForConditionalGeneration loaded from the
hub-layout export of suite's whisper-base (same weights on both sides), first the transcription speed (greedy
`generate` in English on each LibriVox file, feature extraction included: seconds of compute per second of
audio), then full fine-tuning steps on the batch suite wrote (log-mels, decoder input, labels with -100): train
mode, the model's own cross-entropy (`labels=`), backward, AdamW (fused, transformers Trainer's default) and
zero_grad. Prints one JSON line."""
import argparse
import json
import time
import wave

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration
from transformers.utils import logging

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--batch-file", required=True)
p.add_argument("--wavs", required=True, help="comma-separated 16 kHz mono 16-bit WAV files")
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--iters", type=int, default=3)
p.add_argument("--profile", help="also write a Chrome trace of --profile-steps more steps here")
p.add_argument("--profile-steps", type=int, default=3)
p.add_argument("--lr", type=float, default=1e-5)
p.add_argument("--weight-decay", type=float, default=0.0)
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


def sync():
    if cuda:
        torch.cuda.synchronize()


base_rss = status_mib("VmRSS")
model = WhisperForConditionalGeneration.from_pretrained(a.model).to(dev).eval()
fe = WhisperFeatureExtractor.from_pretrained(a.model)

# Transcription speed, greedy, before any training step changes the weights.
audio_s, compute_s = 0.0, 0.0
for path in a.wavs.split(","):
    w = wave.open(path)
    assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2, path
    x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    audio_s += len(x) / 16000
    sync()
    t0 = time.perf_counter()
    feats = fe(x, sampling_rate=16000, return_tensors="pt").input_features.to(dev)
    with torch.no_grad():
        ids = model.generate(feats, language="en", task="transcribe", num_beams=1, do_sample=False)
    sync()
    compute_s += time.perf_counter() - t0
rtf = compute_s / audio_s
# The training peak: RSS before the model was loaded, the high-water mark reset after transcription.
start_rss_watch()

t = load_file(a.batch_file)
mel, tokens, labels = (t[k].to(dev) for k in ("mel", "tokens", "labels"))
batch = mel.shape[0]
model.train()
params = list(model.parameters())
# The same groups as suite's `param_groups`: biases and norm weights (rank <= 1) get no weight decay.
opt = torch.optim.AdamW(
    [
        {"params": [p for p in params if p.dim() > 1], "weight_decay": a.weight_decay},
        {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0},
    ],
    lr=a.lr,
    fused=True,
)

phases = [0.0, 0.0, 0.0]
steps = []


def step():
    t0 = time.perf_counter()
    loss = model(input_features=mel, decoder_input_ids=tokens, labels=labels).loss
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
sync()
phases, steps = [0.0, 0.0, 0.0], []
start = time.perf_counter()
for _ in range(a.iters):
    loss = step()
sync()
elapsed = time.perf_counter() - start
peak_rss_mib = status_mib("VmHWM") - base_rss
if a.profile:
    profile_steps(step, a.profile, a.profile_steps, cuda)
print(json.dumps({
    "seconds": elapsed,
    "images_per_sec": batch * a.iters / elapsed,
    "median_step_s": sorted(steps)[len(steps) // 2],
    "phase_ms": None if cuda else {k: 1000 * v / a.iters for k, v in zip(["forward", "backward", "optimizer"], phases)},
    "loss": loss,
    "peak_rss_mib": peak_rss_mib,
    "rtf": rtf,
    "audio_s": audio_s,
    "threads": torch.get_num_threads(),
    "interop_threads": torch.get_num_interop_threads(),
    "optimizer_impl": "fused",
    "attention": model.config._attn_implementation,
    "torch": torch.__version__,
}))
