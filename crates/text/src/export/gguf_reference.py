"""Oracle for the GGUF export tests: reads suite's .gguf with the `gguf` package (llama.cpp's gguf-py) and checks
every metadata key, type and value, every tensor's name, shape and type, and the data, against what llama.cpp's
convert_hf_to_gguf.py writes for the same model.

    python gguf_reference.py FILE.gguf SOURCE NAME f16|q8_0 [PEFT_DIR]

SOURCE is the hub folder of the (base) model; with PEFT_DIR the reference weights are peft's
`PeftModel.from_pretrained(base, PEFT_DIR).merge_and_unload()`. NAME is the expected `general.name`.
Prints one JSON line of measured numbers; exits non-zero naming the first difference.
"""
import json
import sys
import warnings

import numpy as np
import torch
import gguf
from gguf import GGMLQuantizationType as Q, GGUFValueType as V
from transformers import AutoModelForCausalLM

warnings.filterwarnings("ignore")
path, source, name, qtype = sys.argv[1:5]
peft_dir = sys.argv[5] if len(sys.argv) > 5 else None

cfg = json.load(open(f"{source}/config.json"))
arch = cfg["model_type"]
model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
if peft_dir:
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, peft_dir).merge_and_unload()
state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
if cfg.get("tie_word_embeddings"):
    state.pop("lm_head.weight", None)

heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
rope = cfg.get("rope_parameters") or {}
theta = cfg.get("rope_theta") or rope.get("rope_theta", 10000.0)


def permute(weights, n_head, n_head_kv):
    # convert_hf_to_gguf.py, LlamaModel.permute
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


# llama.cpp's tensor names (gguf-py's TensorNameMap for these architectures).
names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
         "lm_head.weight": "output.weight"}
per_layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
expected = {}
for k, v in state.items():
    if k in names:
        expected[names[k]] = v
        continue
    parts = k.split(".")
    i, rest, kind = parts[2], ".".join(parts[3:-1]), parts[-1]
    if arch == "llama" and rest == "self_attn.q_proj":
        v = permute(v, heads, heads)
    if arch == "llama" and rest == "self_attn.k_proj":
        v = permute(v, heads, kv)
    expected[f"blk.{i}.{per_layer[rest]}.{kind}"] = v

# Rope scaling as the converter writes it: keys for linear scaling, a `rope_freqs` tensor for Llama 3.1's.
rope_type = rope.get("rope_type") or (cfg.get("rope_scaling") or {}).get("rope_type", "default")
rope_keys = {}
if rope_type == "linear":
    rope_keys = {f"{arch}.rope.scaling.type": (V.STRING, "linear"),
                 f"{arch}.rope.scaling.factor": (V.FLOAT32, np.float32(rope["factor"]))}
if rope_type == "llama3":
    # convert_hf_to_gguf.py (conversion/llama.py, LlamaModel.generate_extra_tensors)
    import math
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    factor, low, high = rope.get("factor", 8.0), rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old = rope.get("original_max_position_embeddings", 8192)
    rope_factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            rope_factors.append(1)
        elif wavelen > old / low:
            rope_factors.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            rope_factors.append(1 / ((1 - smooth) / factor + smooth))
    expected["rope_freqs.weight"] = torch.tensor(rope_factors, dtype=torch.float32).numpy()

# Tokenizer metadata as convert_hf_to_gguf.py's get_vocab_base + SpecialVocab derive it.
tok = json.load(open(f"{source}/tokenizer.json"))
tc = json.load(open(f"{source}/tokenizer_config.json"))
vocab_size = cfg["vocab_size"]
rev = {i: (t, 1) for t, i in tok["model"]["vocab"].items()}
for a in tok["added_tokens"]:
    rev[a["id"]] = (a["content"], 3 if a["special"] else 4)
tokens = [rev.get(i, (f"[PAD{i}]", 5))[0] for i in range(vocab_size)]
types = [rev.get(i, (None, 5))[1] for i in range(vocab_size)]
merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
ids = {t: i for i, (t, _) in rev.items()}

kv_expected = {
    "general.architecture": (V.STRING, arch),
    "general.type": (V.STRING, "model"),
    "general.name": (V.STRING, name),
    "general.file_type": (V.UINT32, 1 if qtype == "f16" else 7),
    "general.quantization_version": (V.UINT32, 2),
    f"{arch}.block_count": (V.UINT32, cfg["num_hidden_layers"]),
    f"{arch}.context_length": (V.UINT32, cfg["max_position_embeddings"]),
    f"{arch}.embedding_length": (V.UINT32, cfg["hidden_size"]),
    f"{arch}.feed_forward_length": (V.UINT32, cfg["intermediate_size"]),
    f"{arch}.attention.head_count": (V.UINT32, heads),
    f"{arch}.attention.head_count_kv": (V.UINT32, kv),
    f"{arch}.attention.key_length": (V.UINT32, head_dim),
    f"{arch}.attention.value_length": (V.UINT32, head_dim),
    f"{arch}.rope.dimension_count": (V.UINT32, head_dim),
    f"{arch}.rope.freq_base": (V.FLOAT32, np.float32(theta)),
    f"{arch}.attention.layer_norm_rms_epsilon": (V.FLOAT32, np.float32(cfg["rms_norm_eps"])),
    f"{arch}.vocab_size": (V.UINT32, vocab_size),
    "tokenizer.ggml.model": (V.STRING, "gpt2"),
    "tokenizer.ggml.pre": (V.STRING, "gpt-2"),
    "tokenizer.ggml.tokens": (V.ARRAY, tokens),
    "tokenizer.ggml.token_type": (V.ARRAY, types),
    "tokenizer.ggml.merges": (V.ARRAY, merges),
    "tokenizer.ggml.eos_token_id": (V.UINT32, ids[tc["eos_token"]]),
    "tokenizer.ggml.padding_token_id": (V.UINT32, ids[tc["pad_token"]]),
    "tokenizer.ggml.add_bos_token": (V.BOOL, False),
    "tokenizer.chat_template": (V.STRING, tc["chat_template"]),
    **rope_keys,
}

r = gguf.GGUFReader(path)
assert r.fields["GGUF.version"].contents() == 3, "not GGUF v3"
got_keys = {k for k in r.fields if not k.startswith("GGUF.")}
if got_keys != set(kv_expected):
    raise SystemExit(f"metadata keys differ: extra {sorted(got_keys - set(kv_expected))}, "
                     f"missing {sorted(set(kv_expected) - got_keys)}")
for key, (vtype, want) in kv_expected.items():
    f = r.fields[key]
    if f.types[0] != vtype:
        raise SystemExit(f"{key}: type {f.types[0]!r}, expected {vtype!r}")
    got = f.contents()
    if vtype == V.FLOAT32:
        ok = np.float32(got) == want
    else:
        ok = got == want
    if not ok:
        shown = got if not isinstance(got, list) else f"list of {len(got)}"
        raise SystemExit(f"{key}: {shown!r}, expected {want if not isinstance(want, list) else len(want)!r}")
for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges"):
    assert r.fields[key].types[1] == V.STRING, key
assert r.fields["tokenizer.ggml.token_type"].types[1] == V.INT32

tensors = {t.name: t for t in r.tensors}
if set(tensors) != set(expected):
    raise SystemExit(f"tensor names differ: extra {sorted(set(tensors) - set(expected))}, "
                     f"missing {sorted(set(expected) - set(tensors))}")
worst_f16 = worst_q8 = 0.0
for n, want in expected.items():
    t = tensors[n]
    if t.data_offset % 32 != 0:
        raise SystemExit(f"{n}: data at offset {t.data_offset}, not 32-byte aligned")
    if list(t.shape) != list(reversed(want.shape)):
        raise SystemExit(f"{n}: ne {list(t.shape)}, expected {list(reversed(want.shape))}")
    if want.ndim == 1:
        qt = Q.F32
    elif qtype == "f16" or want.shape[-1] % 32 != 0:
        qt = Q.F16
    else:
        qt = Q.Q8_0
    if t.tensor_type != qt:
        raise SystemExit(f"{n}: type {t.tensor_type!r}, expected {qt!r}")
    want = want.astype(np.float32)
    if qt == Q.F32:
        if not np.array_equal(np.asarray(t.data).reshape(want.shape), want):
            raise SystemExit(f"{n}: f32 data differs")
    elif qt == Q.F16:
        got = np.asarray(t.data).reshape(want.shape)
        if not np.array_equal(got.view(np.uint16), want.astype(np.float16).view(np.uint16)):
            raise SystemExit(f"{n}: f16 data is not the f16 rounding of the weights")
        worst_f16 = max(worst_f16, float(np.abs(got.astype(np.float32) - want).max()))
    else:
        ref = gguf.quants.quantize(want, Q.Q8_0)
        raw = np.asarray(t.data)
        if raw.tobytes() != ref.tobytes():
            raise SystemExit(f"{n}: Q8_0 blocks differ from gguf.quants.quantize")
        deq = gguf.quants.dequantize(raw, Q.Q8_0).reshape(want.shape)
        # Half a quantisation step d = max|x|/127, plus up to 127 steps of the scale's f16 rounding (2^-11 d).
        bound = np.abs(want).max() / 127 * (0.5 + 127 * 2.0**-11) + 1e-6
        err = float(np.abs(deq - want).max())
        if err > bound:
            raise SystemExit(f"{n}: dequantised values off by {err} (bound {bound})")
        worst_q8 = max(worst_q8, err)
print(json.dumps({"tensors": len(expected), "keys": len(kv_expected), "f16_max_err": worst_f16, "q8_max_err": worst_q8}))
