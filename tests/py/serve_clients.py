"""Real clients of `suite serve` for tests/serve_cli.rs: OpenAI's own Python client for the audio API, httpx for
the rest. Each subcommand prints one JSON document on stdout; the Rust test compares it with `suite predict` /
`suite transcribe` and with the documented statuses.

usage: serve_clients.py BASE_URL COMMAND JSON_ARGS
"""

import base64
import json
import sys
import threading
import time

import httpx
import openai


def openai_client(base, key="unused"):
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=600)


def audio(base, args):
    """Every response format of transcriptions, and translations, through OpenAI's client."""
    client = openai_client(base)
    out = []
    for wav in args["wavs"]:
        row = {"wav": wav}
        for fmt in ["json", "text", "srt", "vtt", "verbose_json"]:
            with open(wav, "rb") as f:
                kwargs = {"model": "whisper-1", "file": f, "response_format": fmt, "language": "en"}
                if fmt == "verbose_json":
                    kwargs["timestamp_granularities"] = ["segment"]
                r = client.audio.transcriptions.create(**kwargs)
            if fmt == "json":
                row[fmt] = r.text
            elif fmt == "verbose_json":
                row[fmt] = r.model_dump()
            else:
                row[fmt] = r if isinstance(r, str) else str(r)
        with open(wav, "rb") as f:
            row["translation"] = client.audio.translations.create(model="whisper-1", file=f).text
        out.append(row)
    return out


def predict(base, args):
    """Vision as a raw body, a multipart file and JSON base64; text as one list."""
    out = {"vision": [], "text": None}
    with httpx.Client(base_url=base, timeout=600) as c:
        for path in args["images"]:
            data = open(path, "rb").read()
            url = f"/v1/models/{args['vision']}/predict"
            raw = c.post(url, params={"top_k": 5}, content=data, headers={"Content-Type": "image/png"}).json()
            form = c.post(url, params={"top_k": 5}, files={"file": ("x.png", data, "image/png")}).json()
            b64 = c.post(url, json={"image": base64.b64encode(data).decode(), "top_k": 5}).json()
            out["vision"].append({"raw": raw, "multipart": form, "base64": b64})
        r = c.post(f"/v1/models/{args['text']}/predict", json={"inputs": args["texts"], "top_k": 5})
        out["text"] = r.json()
    return out


def one(c, req):
    """Sends one request of the concurrency mix; returns what identifies its answer."""
    kind = req["kind"]
    if kind == "vision":
        r = c.post(f"/v1/models/{req['model']}/predict", content=open(req["path"], "rb").read(),
                   headers={"Content-Type": "image/png"})
        return r.status_code, r.json()
    if kind == "text":
        r = c.post(f"/v1/models/{req['model']}/predict", json={"inputs": req["text"]})
        return r.status_code, r.json()
    with open(req["path"], "rb") as f:
        r = c.post("/v1/audio/transcriptions", data={"model": req["model"], "language": "en"},
                   files={"file": ("a.wav", f, "audio/wav")})
    return r.status_code, r.json()


def concurrent(base, args):
    """Each request once alone, then all of them at once from as many threads (released together)."""
    reqs = args["requests"]
    with httpx.Client(base_url=base, timeout=600) as c:
        alone = [one(c, r) for r in args["distinct"]]
    results = [None] * len(reqs)
    barrier = threading.Barrier(len(reqs))

    def client(i):
        with httpx.Client(base_url=base, timeout=900) as c:
            barrier.wait()
            try:
                results[i] = one(c, reqs[i])
            except Exception as e:  # noqa: BLE001 - reported to the Rust side
                results[i] = (0, {"client_error": repr(e)})

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(reqs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    metrics = httpx.get(f"{base}/metrics", timeout=60).text
    return {"alone": alone, "together": results, "metrics": metrics}


def bad(base, args):
    """Bad requests of many kinds, each followed by a good one; statuses, bodies and whether the good one passed."""
    vision, text, wav, png = args["vision"], args["text"], args["wav"], args["image"]
    png_bytes = open(png, "rb").read()
    wav_bytes = open(wav, "rb").read()
    big = b"\0" * (int(args["max_body_mb"] * 1024 * 1024) + 1024)
    boundary = "XyZsuiteBoundary"
    cut_multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
                     f"Content-Type: audio/wav\r\n\r\n").encode() + wav_bytes[:1000]
    sr0 = bytearray(wav_bytes[:44 + 32000])
    sr0[24:28] = (0).to_bytes(4, "little")  # a header that says sample rate 0
    vurl = f"/v1/models/{vision}/predict"
    turl = f"/v1/models/{text}/predict"
    cases = [
        ("empty body (vision)", "POST", vurl, {"content": b"", "headers": {"Content-Type": "image/png"}}),
        ("text file as image", "POST", vurl, {"content": b"hello, I am not a picture\n",
                                              "headers": {"Content-Type": "image/png"}}),
        ("truncated PNG", "POST", vurl, {"content": png_bytes[: len(png_bytes) // 3],
                                         "headers": {"Content-Type": "image/png"}}),
        ("bad base64", "POST", vurl, {"json": {"image": "%%%not base64%%%"}}),
        ("wrong content type (vision)", "POST", vurl, {"content": b"abc", "headers": {"Content-Type": "text/csv"}}),
        ("unknown model", "POST", "/v1/models/no-such-model/predict", {"json": {"inputs": "hi"}}),
        ("unknown route", "GET", "/v2/everything", {}),
        ("wrong method", "GET", vurl, {}),
        ("body over the limit", "POST", vurl, {"content": big, "headers": {"Content-Type": "image/png"}}),
        ("text: not JSON", "POST", turl, {"content": b"{inputs: nope", "headers": {"Content-Type": "application/json"}}),
        ("text: wrong JSON type", "POST", turl, {"json": {"inputs": 42}}),
        ("text: missing inputs", "POST", turl, {"json": {"input": "hi"}}),
        ("text: top_k not a number", "POST", turl, {"json": {"inputs": "hi", "top_k": "three"}}),
        ("text: form instead of JSON", "POST", turl, {"data": {"inputs": "hi"}}),
        ("text: empty list", "POST", turl, {"json": {"inputs": []}}),
        ("audio: 0-byte file", "POST", "/v1/audio/transcriptions",
         {"data": {"model": "whisper-1"}, "files": {"file": ("a.wav", b"", "audio/wav")}}),
        ("audio: text file", "POST", "/v1/audio/transcriptions",
         {"data": {"model": "whisper-1"}, "files": {"file": ("a.wav", b"RIFF? no, just text\n" * 20, "audio/wav")}}),
        ("audio: sample rate 0", "POST", "/v1/audio/transcriptions",
         {"data": {"model": "whisper-1"}, "files": {"file": ("a.wav", bytes(sr0), "audio/wav")}}),
        ("audio: unknown response_format", "POST", "/v1/audio/transcriptions",
         {"data": {"model": "whisper-1", "response_format": "xml"}, "files": {"file": ("a.wav", wav_bytes, "audio/wav")}}),
        ("audio: unknown language", "POST", "/v1/audio/transcriptions",
         {"data": {"model": "whisper-1", "language": "xx"}, "files": {"file": ("a.wav", wav_bytes, "audio/wav")}}),
        ("audio: temperature out of range", "POST", "/v1/audio/transcriptions",
         {"data": {"model": "whisper-1", "temperature": "7"}, "files": {"file": ("a.wav", wav_bytes, "audio/wav")}}),
        ("audio: no file field", "POST", "/v1/audio/transcriptions", {"data": {"model": "whisper-1"},
                                                                       "files": {"other": ("a.txt", b"x", "text/plain")}}),
        ("audio: cut multipart", "POST", "/v1/audio/transcriptions",
         {"content": cut_multipart, "headers": {"Content-Type": f"multipart/form-data; boundary={boundary}"}}),
        ("audio: JSON instead of a form", "POST", "/v1/audio/transcriptions", {"json": {"file": "a.wav"}}),
        ("audio: unknown model", "POST", "/v1/audio/transcriptions",
         {"data": {"model": "whisper-huge-9"}, "files": {"file": ("a.wav", wav_bytes, "audio/wav")}}),
        ("audio to a vision model", "POST", "/v1/audio/transcriptions",
         {"data": {"model": vision}, "files": {"file": ("a.wav", wav_bytes, "audio/wav")}}),
    ]
    out = []
    with httpx.Client(base_url=base, timeout=600) as c:
        for name, method, url, kw in cases:
            r = c.request(method, url, **kw)
            try:
                body = r.json()
            except ValueError:
                body = {"not_json": r.text[:200]}
            good = c.post(turl, json={"inputs": "the football match"})
            out.append({"case": name, "status": r.status_code, "body": body,
                        "content_type": r.headers.get("content-type", ""), "next_ok": good.status_code == 200})
    return out


def auth(base, args):
    """The same request without a key, with a wrong one and with the right one; /health without."""
    key = args["key"]
    out = {}
    with httpx.Client(base_url=base, timeout=120) as c:
        out["health"] = c.get("/health").status_code
        out["none"] = [c.get("/v1/models").status_code, c.get("/v1/models").json()]
        out["wrong"] = c.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code
        out["right"] = c.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code
        out["metrics_none"] = c.get("/metrics").status_code
    # OpenAI's client sends the key the same way.
    with open(args["wav"], "rb") as f:
        out["openai"] = openai_client(base, key).audio.transcriptions.create(model="whisper-1", file=f).text
    try:
        with open(args["wav"], "rb") as f:
            openai_client(base, "wrong").audio.transcriptions.create(model="whisper-1", file=f)
        out["openai_wrong"] = "accepted"
    except openai.AuthenticationError as e:
        out["openai_wrong"] = e.status_code
    return out


def flood(base, args):
    """Many transcriptions at once against a queue of one: some must be refused at once with 503 + Retry-After."""
    n = args["n"]
    wav = open(args["wav"], "rb").read()
    results = [None] * n
    barrier = threading.Barrier(n)

    def client(i):
        with httpx.Client(base_url=base, timeout=600, headers={"Authorization": f"Bearer {args['key']}"}) as c:
            barrier.wait()
            t0 = time.monotonic()
            r = c.post("/v1/audio/transcriptions", data={"model": "whisper-1"}, files={"file": ("a.wav", wav)})
            results[i] = {"status": r.status_code, "retry_after": r.headers.get("retry-after"),
                          "seconds": time.monotonic() - t0, "body": r.json()}

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def inflight(base, args):
    """One transcription; prints `sent` on stderr once the request is on its way, then its answer."""
    with open(args["wav"], "rb") as f:
        body = f.read()
    with httpx.Client(base_url=base, timeout=600, headers={"Authorization": f"Bearer {args['key']}"}) as c:
        req = c.build_request("POST", "/v1/audio/transcriptions", data={"model": "whisper-1"},
                              files={"file": ("a.wav", body)})
        print("sent", file=sys.stderr, flush=True)
        r = c.send(req)
        return {"status": r.status_code, "body": r.json()}


if __name__ == "__main__":
    base, command, raw = sys.argv[1], sys.argv[2], sys.argv[3]
    result = globals()[command](base, json.loads(raw))
    print(json.dumps(result))
