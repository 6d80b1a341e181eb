"""Reference for the causal-LM export tests: loads each export with transformers (and peft) and writes its logits.

    python reference.py SPEC.json OUT.safetensors

SPEC = {"ids": [[...], ...], "jobs": [{"name": str, "kind": "hub", "dir": str}
                                      | {"name": str, "kind": "peft", "dir": str, "base": str}]}.
For a peft job the adapter file's tensors must be exactly the adapter's state dict (no missing or unexpected key,
same values), so that a wrong name cannot silently load nothing.
"""
import json
import sys
import warnings

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

warnings.filterwarnings("ignore")
spec = json.load(open(sys.argv[1]))
ids = torch.tensor(spec["ids"])
out = {}
for job in spec["jobs"]:
    if job["kind"] == "hub":
        model = AutoModelForCausalLM.from_pretrained(job["dir"], dtype=torch.float32)
    else:
        from peft import PeftModel, get_peft_model_state_dict

        base = AutoModelForCausalLM.from_pretrained(job["base"], dtype=torch.float32)
        model = PeftModel.from_pretrained(base, job["dir"])
        saved = load_file(job["dir"] + "/adapter_model.safetensors")
        loaded = get_peft_model_state_dict(model)
        if set(saved) != set(loaded):
            raise SystemExit(f"{job['name']}: file keys {sorted(set(saved) ^ set(loaded))} do not match the adapter")
        for k, v in saved.items():
            if not torch.equal(v.to(loaded[k].dtype), loaded[k].cpu()):
                raise SystemExit(f"{job['name']}: {k} was not loaded as saved")
    model.eval()
    with torch.no_grad():
        out[job["name"]] = model(input_ids=ids).logits.float().contiguous()
save_file(out, sys.argv[2])
print("ok")
