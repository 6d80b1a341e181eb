"""Writes a tiny random decoder-only LM folder in hub layout, as a test fixture (no hub access needed).

    python tiny_lm.py OUT_DIR [--arch llama|qwen2|gpt2] [--seed N] [--layers N] [--hidden N] [--no-weights]
                      [--random-all] [--set KEY=JSON ...]

The folder holds what a hub model has: config.json, model.safetensors (random weights from transformers'
own initialisation, unless --no-weights), generation_config.json, tokenizer.json (a byte-level BPE trained
here on a fixed corpus with the `tokenizers` package) and tokenizer_config.json with a ChatML chat template
(the Qwen2.5 / SmolLM2 style: `<|im_start|>role\\ncontent<|im_end|>\\n`). The end-of-turn token
`<|im_end|>` is the eos token, as in Qwen2.5-Instruct.

Parity tests add --random-all (biases and norm weights random too, so that a test sees each of them loaded
and used) and --set to change any config field (`--set scale_attn_by_inverse_layer_idx=true --set n_inner=80`).
"""
import argparse
import json
import os

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A journey of a thousand miles begins with a single step.",
    "To be or not to be, that is the question.",
    "All that glitters is not gold; all that wander are not lost.",
    "Computers are useless. They can only give you answers.",
    "Love is patient, love is kind. Food is love made edible.",
    "Politics is the art of the possible, the attainable.",
    "Hello! How are you today? I am fine, thank you. What is your name?",
    "numbers 0 1 2 3 4 5 6 7 8 9 10 42 100 2024; symbols + - * / = ( ) [ ] { } < > ' \" : , .",
    "café naïve über — “quotes” and emoji 🙂 mixed with ASCII text.",
]

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def tokenizer(out, vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    tok.save(os.path.join(out, "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "model_max_length": 128,
        "chat_template": CHATML,
        "added_tokens_decoder": {
            str(tok.token_to_id(t)): {"content": t, "special": True, "lstrip": False, "rstrip": False,
                                      "normalized": False, "single_word": False}
            for t in SPECIAL
        },
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return tok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--arch", default="llama", choices=["llama", "qwen2", "gpt2"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=384)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--no-weights", action="store_true")
    ap.add_argument("--random-all", action="store_true", help="randomise 1-D parameters (biases, norms) as well")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="override a config field")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    tok = tokenizer(a.out, a.vocab)
    vocab = tok.get_vocab_size()
    eos, pad = tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")

    import torch
    import transformers

    torch.manual_seed(a.seed)
    common = dict(vocab_size=vocab, bos_token_id=None, eos_token_id=eos, pad_token_id=pad)
    if a.arch == "gpt2":
        config = transformers.GPT2Config(n_embd=a.hidden, n_layer=a.layers, n_head=4, n_positions=a.context, **common)
    else:
        cls = transformers.LlamaConfig if a.arch == "llama" else transformers.Qwen2Config
        config = cls(hidden_size=a.hidden, intermediate_size=2 * a.hidden, num_hidden_layers=a.layers,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=a.context,
                     tie_word_embeddings=a.arch == "qwen2", **common)
    for item in a.set:
        key, _, value = item.partition("=")
        setattr(config, key, json.loads(value))
    if a.no_weights:
        config.save_pretrained(a.out)
    else:
        model = transformers.AutoModelForCausalLM.from_config(config)
        # Random weights a little larger than the init so that greedy continuations are not all one token.
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() > 1:
                    p.normal_(0, 0.2)
                elif a.random_all:
                    # Around the initial value (norm weights stay near 1).
                    p.add_(torch.randn_like(p) * 0.2)
        model.save_pretrained(a.out, safe_serialization=True)
    transformers.GenerationConfig(eos_token_id=eos, pad_token_id=pad).save_pretrained(a.out)


if __name__ == "__main__":
    main()
