"""The Python peers of `suite bench serve`, run with suite's reference Python.

`serve`: the common Python way to put a model behind HTTP — a FastAPI app on uvicorn (one worker) that speaks the
same `/v1/models/{id}/predict` JSON as `suite serve`, around
- a text model exported by `suite export` (a transformers folder): transformers' `pipeline("text-classification")`;
- a vision model exported by `suite export` (timm layout: `model.safetensors` + `config.json`): the PyTorch model
  (torchvision's ResNet or `efficientnet_lite_pytorch`'s EfficientNet-Lite, which load those weights by name) with
  the export's own preprocessing (PIL decode, resize, centre crop, normalise, as torchvision's transforms).
Inference runs in FastAPI's thread pool, as a plain `def` endpoint would. It binds a free port and prints
`listening on http://HOST:PORT` on stderr once it accepts connections, as `suite serve` does.

`whisper`: the real-time factor of faster-whisper on a CTranslate2 Whisper folder under concurrent load: REQUESTS
transcriptions of the given audio files, CONCURRENCY at a time from Python threads (`num_workers` = CONCURRENCY),
each consumed to its last segment; repeated REPS times after one warm-up call. Prints one JSON line.
"""
import argparse
import base64
import binascii
import io
import json
import os
import socket
import sys
import time

p = argparse.ArgumentParser()
sub = p.add_subparsers(dest="cmd", required=True)
s = sub.add_parser("serve")
s.add_argument("--kind", choices=["text", "vision"], required=True)
s.add_argument("--model", required=True, help="the exported model folder")
s.add_argument("--id", required=True, help="the model id of the routes")
s.add_argument("--host", default="127.0.0.1")
s.add_argument("--port", type=int, default=0)
s.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
s.add_argument("--max-len", type=int, default=512, help="text: truncate to this many tokens, as the run was trained")
w = sub.add_parser("whisper")
w.add_argument("--model", required=True, help="CTranslate2 Whisper folder")
w.add_argument("--audio", required=True, nargs="+")
w.add_argument("--requests", type=int, required=True)
w.add_argument("--concurrency", type=int, default=8)
w.add_argument("--reps", type=int, default=3)
w.add_argument("--threads", type=int, default=0, help="CTranslate2 intra-op threads per worker (0: its default)")
w.add_argument("--language", default="en")
w.add_argument("--beam", type=int, default=1)
a = p.parse_args()


def whisper():
    import concurrent.futures as cf
    import faster_whisper
    import soundfile
    from faster_whisper import WhisperModel

    model = WhisperModel(a.model, device="cpu", compute_type="float32", cpu_threads=a.threads,
                         num_workers=a.concurrency)
    durations = [soundfile.info(f).duration for f in a.audio]
    order = [i % len(a.audio) for i in range(a.requests)]
    audio_s = sum(durations[i] for i in order)

    def one(i):
        segments, _ = model.transcribe(a.audio[i], language=a.language, beam_size=a.beam)
        return "".join(seg.text for seg in segments).strip()

    texts = [one(i) for i in range(len(a.audio))]  # warm-up, and the answers to show
    walls = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(a.concurrency) as pool:
            list(pool.map(one, order))
        walls.append(time.perf_counter() - t0)
    print(json.dumps({"walls": walls, "audio_s": audio_s, "requests": a.requests, "texts": texts,
                      "cpu_threads": a.threads, "num_workers": a.concurrency,
                      "version": faster_whisper.__version__}))


def error(status, message, kind="invalid_request_error", param=None):
    from fastapi.responses import JSONResponse
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}}, status)


def text_model():
    import torch
    from transformers import pipeline

    clf = pipeline("text-classification", model=a.model, tokenizer=a.model, device=-1, top_k=None)
    labels = [clf.model.config.id2label[i] for i in range(clf.model.config.num_labels)]

    def infer(inputs, top_k):
        single = not isinstance(inputs, list)
        items = [inputs] if single else inputs
        with torch.inference_mode():
            out = clf(items, top_k=None, truncation=True, max_length=a.max_len)
        preds = []
        for scores in out:
            scores = sorted(scores, key=lambda d: -d["score"])[:top_k]
            preds.append({"top": [{"label": d["label"], "prob": d["score"]} for d in scores]})
        return preds

    def parse(body):
        if not isinstance(body, dict) or "inputs" not in body:
            raise ValueError("expected a JSON object with `inputs`")
        x = body["inputs"]
        ok = lambda v: isinstance(v, str) or (isinstance(v, dict) and isinstance(v.get("text"), str))
        if not (ok(x) or (isinstance(x, list) and x and all(ok(v) for v in x))):
            raise ValueError("`inputs`: expected a string, a list of strings or {text, text_pair} objects")
        top_k = body.get("top_k", len(labels))
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError("`top_k`: expected a positive integer")
        return x, top_k

    return "text", "classify", labels, parse, infer


def vision_model():
    import torch
    from PIL import Image
    from safetensors.torch import load_file
    from torchvision import transforms as T

    with open(os.path.join(a.model, "config.json")) as f:
        cfg = json.load(f)
    labels = cfg["label_names"]
    arch = cfg.get("suite", {}).get("model") or cfg["architecture"]
    if arch.startswith("efficientnet_lite"):
        from efficientnet_lite_pytorch import EfficientNet
        model = EfficientNet.from_name(arch.split(".")[0].replace("_", "-"), num_classes=len(labels))
    else:
        import torchvision
        model = getattr(torchvision.models, arch.split(".")[0])(num_classes=len(labels))
    model.load_state_dict(load_file(os.path.join(a.model, "model.safetensors")), strict=True)
    model.eval()
    pc = cfg["pretrained_cfg"]
    size = pc["input_size"][2]
    interp = T.InterpolationMode.BICUBIC if pc["interpolation"] == "bicubic" else T.InterpolationMode.BILINEAR
    pre = T.Compose([T.Resize(int(size / pc["crop_pct"]), interpolation=interp), T.CenterCrop(size), T.ToTensor(),
                     T.Normalize(pc["mean"], pc["std"])])

    def infer(data, top_k):
        image = Image.open(io.BytesIO(data)).convert("RGB")
        x = pre(image).unsqueeze(0)
        with torch.inference_mode():
            probs = model(x).softmax(-1)[0]
        p, i = probs.topk(min(top_k, len(labels)))
        return {"top": [{"label": labels[j], "prob": v} for v, j in zip(p.tolist(), i.tolist())]}

    return "vision", "image-classification", labels, None, infer


def serve():
    import torch
    import uvicorn
    from fastapi import FastAPI, Request
    from starlette.concurrency import run_in_threadpool

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    domain, task, labels, parse, infer = text_model() if a.kind == "text" else vision_model()
    app = FastAPI()
    created = int(time.time())

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.get("/ready")
    def ready():
        return {"status": "ready"}

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": a.id, "object": "model", "created": created, "owned_by": "fastapi",
                                            "domain": domain, "task": task, "labels": labels}]}

    @app.post("/v1/models/{model_id}/predict")
    async def predict(model_id: str, request: Request):
        if model_id != a.id:
            return error(404, f"unknown model {model_id!r}", param="model")
        if domain == "text":
            try:
                inputs, top_k = parse(await request.json())
            except ValueError as e:
                return error(400, str(e), param="inputs")
            return {"model": a.id, "predictions": await run_in_threadpool(infer, inputs, top_k)}
        top_k = int(request.query_params.get("top_k", 5))
        if request.headers.get("content-type", "").startswith("application/json"):
            body = await request.json()
            try:
                data = base64.b64decode(body["image"], validate=True)
            except (KeyError, TypeError, binascii.Error):
                return error(400, "`image`: expected base64", param="image")
            top_k = body.get("top_k", top_k)
        else:
            data = await request.body()
        try:
            out = await run_in_threadpool(infer, data, top_k)
        except Exception as e:  # PIL's UnidentifiedImageError and friends
            return error(400, f"the image cannot be decoded: {e}", param="file")
        return {"model": a.id, **out}

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((a.host, a.port))
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, workers=1, log_level="warning", access_log=False)
    server = uvicorn.Server(config)

    # Announce the port once the server accepts connections.
    orig_startup = server.startup

    async def startup(sockets=None):
        await orig_startup(sockets=sockets)
        print(f"listening on http://{host}:{port}", file=sys.stderr, flush=True)

    server.startup = startup
    server.run(sockets=[sock])


if a.cmd == "whisper":
    whisper()
else:
    serve()
