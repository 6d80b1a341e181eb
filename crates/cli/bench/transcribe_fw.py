"""faster-whisper side of `suite bench transcribe`: loads the CTranslate2 folder with `--compute-type` (float32 or
int8) and transcribes every `--audio` file in turn as `suite transcribe` does (language given or detected, beam
`--beam`, no VAD, temperature fallback as faster-whisper's default). Prints one JSON line: load and compute seconds
and the texts. The parent measures the whole process and its peak memory."""
import argparse
import json
import time

t0 = time.perf_counter()
from faster_whisper import WhisperModel  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--audio", nargs="+", required=True)
p.add_argument("--beam", type=int, default=1)
p.add_argument("--compute-type", default="float32")
p.add_argument("--threads", type=int, required=True)
a = p.parse_args()

model = WhisperModel(a.model, device="cpu", compute_type=a.compute_type, cpu_threads=a.threads, num_workers=1)
t1 = time.perf_counter()
texts = []
for f in a.audio:
    segments, info = model.transcribe(f, beam_size=a.beam, condition_on_previous_text=True)
    texts.append(" ".join(s.text.strip() for s in segments))
t2 = time.perf_counter()
print(json.dumps({"load_s": t1 - t0, "compute_s": t2 - t1, "texts": texts}))
