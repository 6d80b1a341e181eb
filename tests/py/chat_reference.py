"""What transformers answers for chat and completion requests, as the reference of the chat-serving tests: the
prompt rendered by the tokenizer's own `apply_chat_template`, then greedy `generate` until the end-of-turn token
(the model's eos) or `max_tokens`, decoded without special tokens.

    python chat_reference.py MODEL_DIR JSON

JSON is a list of cases, each {"messages": [...]} or {"prompt": "..."}, with "max_tokens" and optional "stop"
(strings cut the text where the earliest one starts, as OpenAI's API does). Prints a JSON list with, per case,
"prompt" (the text the model continued), "text", "prompt_tokens", "completion_tokens" (up to and including the
eos token) and "finish_reason" ("stop" or "length").
"""
import json
import sys

import torch
import transformers


def main():
    model_dir, cases = sys.argv[1], json.loads(sys.argv[2])
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    gen = transformers.GenerationConfig.from_pretrained(model_dir)
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    out = []
    for case in cases:
        if "messages" in case:
            prompt = tok.apply_chat_template(case["messages"], add_generation_prompt=True, tokenize=False)
            # The template already holds every special token: tokenized as apply_chat_template(tokenize=True) does.
            ids = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
        else:
            prompt = case["prompt"]
            ids = tok(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            seq = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=case["max_tokens"], eos_token_id=eos,
                                 pad_token_id=gen.pad_token_id)
        new = seq[0, ids.shape[1]:].tolist()
        hit_eos = bool(new) and new[-1] in eos
        text = tok.decode(new, skip_special_tokens=True)
        finish = "stop" if hit_eos else "length"
        cuts = [text.find(s) for s in case.get("stop", []) if s and s in text]
        if cuts:
            text, finish = text[:min(cuts)], "stop"
        out.append({"prompt": prompt, "text": text, "prompt_tokens": ids.shape[1], "completion_tokens": len(new),
                    "finish_reason": finish, "token_ids": new})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
