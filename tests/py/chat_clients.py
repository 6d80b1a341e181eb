"""Real clients of `suite serve`'s chat and completion routes for tests/serve_chat_cli.rs: OpenAI's own Python
client (streaming and not), and httpx for requests OpenAI's client would refuse to send. Each subcommand prints
one JSON document on stdout; the Rust test compares it with transformers' greedy answers.

usage: chat_clients.py BASE_URL COMMAND JSON_ARGS
"""

import json
import sys
import threading

import httpx
import openai


def client(base):
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=600)


def answers(base, args):
    """Greedy chat (whole and streamed, with usage) and completions (whole and streamed) through OpenAI's client."""
    c = client(base)
    model, messages, prompt = args["model"], args["messages"], args["prompt"]
    out = {}
    r = c.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=args["chat_max_tokens"])
    out["chat"] = {"text": r.choices[0].message.content, "role": r.choices[0].message.role,
                   "finish_reason": r.choices[0].finish_reason, "usage": r.usage.model_dump(exclude_none=True), "id": r.id,
                   "object": r.object}
    text, roles, finish, usage, chunks = "", [], None, None, 0
    stream = c.chat.completions.create(model=model, messages=messages, temperature=0,
                                       max_completion_tokens=args["chat_max_tokens"], stream=True,
                                       stream_options={"include_usage": True})
    for chunk in stream:
        chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage.model_dump(exclude_none=True)
        for choice in chunk.choices:
            if choice.delta.role:
                roles.append(choice.delta.role)
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    out["chat_stream"] = {"text": text, "roles": roles, "finish_reason": finish, "usage": usage, "chunks": chunks}
    r = c.completions.create(model=model, prompt=prompt, temperature=0, max_tokens=args["completion_max_tokens"])
    out["completion"] = {"text": r.choices[0].text, "finish_reason": r.choices[0].finish_reason,
                         "usage": r.usage.model_dump(exclude_none=True), "object": r.object}
    text, finish = "", None
    for chunk in c.completions.create(model=model, prompt=prompt, temperature=0,
                                      max_tokens=args["completion_max_tokens"], stream=True):
        for choice in chunk.choices:
            text += choice.text
            finish = choice.finish_reason or finish
    out["completion_stream"] = {"text": text, "finish_reason": finish}
    # The model list names it a text-generation model.
    out["models"] = httpx.get(f"{base}/v1/models", timeout=60).json()
    return out


def inflight(base, args):
    """A stream that is held open (its first chunk read, the rest not yet) while a bad request and a good one are
    answered; then the stream is read to its end."""
    c = client(base)
    model, messages = args["model"], args["messages"]
    first, resume = threading.Event(), threading.Event()
    result = {}

    def streamer():
        try:
            text = ""
            stream = c.chat.completions.create(model=model, messages=messages, temperature=0,
                                               max_tokens=args["chat_max_tokens"], stream=True)
            for i, chunk in enumerate(stream):
                if i == 0:
                    first.set()
                    resume.wait(120)
                for choice in chunk.choices:
                    text += choice.delta.content or ""
            result["stream_text"] = text
        except Exception as e:  # noqa: BLE001 - reported to the Rust side
            result["stream_error"] = repr(e)
        finally:
            first.set()

    t = threading.Thread(target=streamer)
    t.start()
    first.wait(300)
    bad = []
    with httpx.Client(base_url=base, timeout=120) as h:
        for name, body in [
            ("n=2", {"model": model, "messages": messages, "n": 2}),
            ("no role", {"model": model, "messages": [{"content": "hi"}]}),
            ("unknown model", {"model": "no-such-model", "messages": messages}),
        ]:
            r = h.post("/v1/chat/completions", json=body)
            bad.append({"case": name, "status": r.status_code, "content_type": r.headers.get("content-type", ""),
                        "body": r.json()})
    try:
        c.chat.completions.create(model=model, messages=messages, presence_penalty=0.5)
        result["openai_bad"] = "accepted"
    except openai.BadRequestError as e:
        result["openai_bad"] = {"status": e.status_code, "param": e.body.get("param") if e.body else None}
    r = c.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=args["chat_max_tokens"])
    result["good_text"] = r.choices[0].message.content
    resume.set()
    t.join(300)
    result["bad"] = bad
    return result


if __name__ == "__main__":
    base, command, raw = sys.argv[1], sys.argv[2], sys.argv[3]
    print(json.dumps(globals()[command](base, json.loads(raw))))
