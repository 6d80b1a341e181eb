"""Drives `suite serve`'s try-it page (`GET /`) in headless Chromium over the DevTools protocol, as a person would:
enter the API key, pick an image / type a text / pick an audio file, press the model's button, wait for the answer.
Prints one JSON line with what the page shows (models listed, bars, entities, answers, transcripts, errors).

Used by tests/serve_page.rs; also handy by hand:
  python tests/py/page_driver.py --url http://127.0.0.1:8080 --vision runs/pets=cat.jpg \
      --text runs/f4='My compiler crashed' --speech whisper-base=clip.wav --screenshot page.png
"""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import websocket  # websocket-client

p = argparse.ArgumentParser()
p.add_argument("--url", required=True, help="the server, http://HOST:PORT")
p.add_argument("--chromium", default="/usr/bin/chromium")
p.add_argument("--api-key", default="", help="expect a 401 first, then type this key into the page's key box")
p.add_argument("--vision", action="append", default=[], metavar="MODEL=IMAGE")
p.add_argument("--text", action="append", default=[], metavar="MODEL=TEXT")
p.add_argument("--pair", action="append", default=[], metavar="MODEL=SECOND", help="second box: pair or question")
p.add_argument("--speech", action="append", default=[], metavar="MODEL=AUDIO")
p.add_argument("--speech-format", default="verbose_json")
p.add_argument("--speech-task", default="transcribe")
p.add_argument("--top-k", type=int, default=0, help="set the top-k boxes (0: leave the page's default)")
p.add_argument("--screenshot", help="write a PNG of the whole page here at the end")
p.add_argument("--width", type=int, default=1100)
p.add_argument("--timeout", type=float, default=600, help="seconds to wait for one answer")
a = p.parse_args()


def pairs(items):
    out = []
    for item in items:
        model, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"error: expected MODEL=VALUE, got {item!r}")
        out.append((model, value))
    return out


def wait_ready(url, timeout):
    """Waits until GET /ready answers 200 (every model loaded); with a key, 401 also means the server is up."""
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/ready", timeout=5) as r:
                if r.status == 200:
                    return
        except urllib.error.HTTPError as e:
            if e.code == 401 and a.api_key:
                req = urllib.request.Request(url + "/ready", headers={"Authorization": "Bearer " + a.api_key})
                try:
                    with urllib.request.urlopen(req, timeout=5) as r:
                        if r.status == 200:
                            return
                except urllib.error.HTTPError:
                    pass
        except OSError:
            pass
        if time.time() > deadline:
            sys.exit(f"error: {url}/ready did not answer 200 within {timeout} s")
        time.sleep(0.3)


class DevTools:
    """A minimal DevTools-protocol client on one page target (flat session over the browser's websocket)."""

    def __init__(self, ws_url):
        self.ws = websocket.create_connection(ws_url, timeout=a.timeout, suppress_origin=True)
        self.next_id = 0
        self.session = None
        self.errors = []  # uncaught exceptions and console.error calls of the page
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def send(self, method, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if self.session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv())
            method_in = reply.get("method")
            if method_in == "Runtime.exceptionThrown":
                self.errors.append(reply["params"]["exceptionDetails"].get("text", "exception"))
            elif method_in == "Runtime.consoleAPICalled" and reply["params"].get("type") == "error":
                self.errors.append(" ".join(str(x.get("value", x.get("description", ""))) for x in reply["params"]["args"]))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def eval(self, expression):
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression[:80]}…: {json.dumps(r['exceptionDetails'])[:600]}")
        return r["result"].get("value")

    def wait(self, expression, timeout, what):
        deadline = time.time() + timeout
        while True:
            v = self.eval(expression)
            if v:
                return v
            if time.time() > deadline:
                raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.2)

    def set_files(self, selector, path):
        root = self.send("DOM.getDocument", depth=0)["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        if not node:
            raise RuntimeError(f"no element {selector}")
        self.send("DOM.setFileInputFiles", files=[os.path.abspath(path)], nodeId=node)


def card(model):
    return f"document.querySelector('section.model[data-model={json.dumps(model)}]')"


def run_card(dt, model):
    """Presses the card's button and waits for its answer; returns (state, error text)."""
    c = card(model)
    dt.eval(f"{c}.querySelector('[data-role=result]').dataset.state = 'sent'; "
            f"{c}.querySelector('[data-role=run]').click()")
    state = dt.wait(f"(s => s === 'done' || s === 'error' ? s : '')"
                    f"({c}.querySelector('[data-role=result]').dataset.state)", a.timeout, f"the answer of {model}")
    return state, dt.eval(f"{c}.querySelector('[data-role=error]').textContent")


def read_bars(dt, model):
    return dt.eval(f"Array.from({card(model)}.querySelectorAll('[data-role=result] .bar')).map(b => "
                   "({label: b.dataset.label, prob: Number(b.dataset.prob), shown: b.querySelector('.pct').textContent,"
                   " name: b.querySelector('.name').textContent}))")


def set_value(dt, model, role, value):
    dt.eval(f"(e => {{ e.value = {json.dumps(value)}; e.dispatchEvent(new Event('input')); "
            f"e.dispatchEvent(new Event('change')); }})({card(model)}.querySelector('[data-role={role}]'))")


def main():
    wait_ready(a.url, a.timeout)
    profile = tempfile.mkdtemp(prefix="suite-chromium-")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
             "--remote-debugging-port=0", "about:blank"]
    browser = subprocess.Popen([a.chromium, *flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.time() + 60
        while not (os.path.exists(port_file) and len(open(port_file).read().split("\n")) >= 2):
            if browser.poll() is not None:
                sys.exit(f"error: chromium exited ({browser.returncode}): {browser.stderr.read().decode()[-2000:]}")
            if time.time() > deadline:
                sys.exit("error: chromium wrote no DevToolsActivePort within 60 s")
            time.sleep(0.1)
        port, path = open(port_file).read().split("\n")[:2]
        out = drive(DevTools(f"ws://127.0.0.1:{port.strip()}{path.strip()}"))
    finally:
        browser.terminate()
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            browser.kill()
        shutil.rmtree(profile, ignore_errors=True)
    print(json.dumps(out))


def drive(dt):
    out = {}
    dt.send("Page.enable")
    dt.send("Runtime.enable")
    dt.send("Emulation.setDeviceMetricsOverride", width=a.width, height=900, deviceScaleFactor=1, mobile=False)
    dt.send("Page.navigate", url=a.url + "/")
    dt.wait("document.readyState === 'complete' && document.body && document.body.dataset.models", 60,
            "the model list")
    if a.api_key:
        # Without the key the list is refused; the page shows the server's JSON error, then the key fixes it.
        out["without_key"] = {"models": dt.eval("document.body.dataset.models"),
                              "error": dt.eval("document.getElementById('models-error').textContent")}
        dt.eval(f"(e => {{ e.value = {json.dumps(a.api_key)}; e.dispatchEvent(new Event('change')); }})"
                "(document.getElementById('api-key'))")
        dt.wait("document.body.dataset.models !== 'error' && document.querySelectorAll('section.model').length", 60,
                "the model list after entering the key")
        out["key_stored"] = dt.eval("sessionStorage.getItem('suite-api-key')") == a.api_key
    out["models"] = dt.eval("Array.from(document.querySelectorAll('section.model')).map(s => "
                            "({id: s.dataset.model, domain: s.dataset.domain, task: s.dataset.task, labels: "
                            "Array.from(s.querySelectorAll('[data-role=labels] code')).map(c => c.textContent)}))")
    second = dict(pairs(a.pair))

    # A request the server refuses (a text file named like an image): the page shows the message of the JSON
    # error body, the same the server gives a plain HTTP client.
    for model, _ in pairs(a.vision)[:1]:
        bad = os.path.join(tempfile.mkdtemp(prefix="suite-page-"), "not-an-image.png")
        with open(bad, "w") as f:
            f.write("this is a text file, not a PNG\n")
        dt.set_files(f"section.model[data-model={json.dumps(model)}] input[data-role=file]", bad)
        state, err = run_card(dt, model)
        req = urllib.request.Request(f"{a.url}/v1/models/{urllib.parse.quote(model)}/predict?top_k=5",
                                     data=open(bad, "rb").read(), method="POST",
                                     headers={"Content-Type": "image/png"})
        if a.api_key:
            req.add_header("Authorization", "Bearer " + a.api_key)
        try:
            urllib.request.urlopen(req, timeout=60)
            direct = {"status": 200}
        except urllib.error.HTTPError as e:
            direct = {"status": e.code, "body": json.loads(e.read() or b"null")}
        out["refused"] = {"model": model, "state": state, "error": err, "direct": direct}
        shutil.rmtree(os.path.dirname(bad), ignore_errors=True)

    for model, image in pairs(a.vision):
        r = out.setdefault("vision", {})[model] = {}
        dt.set_files(f"section.model[data-model={json.dumps(model)}] input[data-role=file]", image)
        if a.top_k:
            set_value(dt, model, "top-k", str(a.top_k))
        r["preview"] = dt.wait(f"(i => i && !i.hidden && i.complete && i.naturalWidth > 0 ? [i.naturalWidth, "
                               f"i.naturalHeight] : null)({card(model)}.querySelector('[data-role=preview]'))", 30,
                               "the image preview")
        r["state"], r["error"] = run_card(dt, model)
        r["top"] = read_bars(dt, model)

    for model, text in pairs(a.text):
        r = out.setdefault("text", {})[model] = {}
        set_value(dt, model, "text", text)
        if model in second:
            task = dt.eval(f"{card(model)}.dataset.task")
            set_value(dt, model, "question" if task == "qa" else "pair", second[model])
        if a.top_k and dt.eval(f"!!{card(model)}.querySelector('[data-role=top-k]')"):
            set_value(dt, model, "top-k", str(a.top_k))
        r["state"], r["error"] = run_card(dt, model)
        r["top"] = read_bars(dt, model)
        r["entities"] = dt.eval(f"Array.from({card(model)}.querySelectorAll('[data-role=entities] tr[data-type]'))"
                                ".map(t => ({type: t.dataset.type, text: t.dataset.text}))")
        r["marked"] = dt.eval(f"Array.from({card(model)}.querySelectorAll('[data-role=result] mark'))"
                              ".map(m => ({type: m.dataset.type || null, text: m.firstChild.textContent}))")
        r["answer"] = dt.eval(f"(e => e && e.textContent)({card(model)}.querySelector('[data-role=answer]'))")

    for model, audio in pairs(a.speech):
        r = out.setdefault("speech", {})[model] = {}
        dt.set_files(f"section.model[data-model={json.dumps(model)}] input[data-role=file]", audio)
        set_value(dt, model, "format", a.speech_format)
        set_value(dt, model, "task", a.speech_task)
        r["state"], r["error"] = run_card(dt, model)
        r["text"] = dt.eval(f"(e => e && e.textContent)({card(model)}.querySelector('[data-role=transcript]'))")
        r["segments"] = dt.eval(f"Array.from({card(model)}.querySelectorAll('[data-role=segments] tr[data-start]'))"
                                ".map(t => ({start: Number(t.dataset.start), end: Number(t.dataset.end), "
                                "text: t.lastChild.textContent, shown: t.firstChild.textContent}))")

    if a.screenshot:
        dt.eval("window.scrollTo(0, 0)")
        height = dt.eval("Math.ceil(document.documentElement.scrollHeight)")
        dt.send("Emulation.setDeviceMetricsOverride", width=a.width, height=height, deviceScaleFactor=1, mobile=False)
        time.sleep(0.3)
        shot = dt.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        with open(a.screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        out["screenshot"] = a.screenshot
    out["console_errors"] = dt.errors
    return out


if __name__ == "__main__":
    main()
