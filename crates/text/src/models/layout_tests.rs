//! [`BatchLayout`] parity for every decoder-only architecture (Llama, Qwen2, GPT-2) on the tiny random models of
//! `tests/py/tiny_lm.py`:
//!
//! 1. a left-padded batch of prompts of different lengths, with `attention_mask` and `position_ids =
//!    cumsum(mask) - 1` (pads at 1), gives transformers' logits at the real positions, and each prompt's own;
//! 2. decoding through the cache after that prompt (the mask grows by a column per step, positions continue per
//!    row) gives transformers' step logits, and those of each row run alone without padding;
//! 3. a packed row of three examples (segment ids, positions restarting at 0) gives each example's own logits
//!    (and transformers'), the same loss, and the sum of the examples' gradients.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use suite_core::python::run_python;
use tch::{Device, Kind, Tensor};

use super::fixture_tests::{max_abs_diff, read_named, write_tiny_lm, TOL};
use super::*;

/// The architectures, each a `tiny_lm.py --arch` (GQA for Llama and Qwen2, tied embeddings for Qwen2 and GPT-2).
const CASES: &[&str] = &["llama", "qwen2", "gpt2"];

/// Prompt lengths of the left-padded batch, and the lengths of the packed examples.
const PROMPTS: [i64; 3] = [7, 4, 10];
const PACKED: [i64; 3] = [4, 3, 5];
/// Decoding steps after the padded prompt.
const STEPS: i64 = 3;

/// For every folder in `argv[1:]`, `layout.safetensors`: the left-padded `ids` / `mask` / `pos` of the prompts
/// (lengths 7, 4, 10; pad id 0) and transformers' `logits` for them, the `steps` ids fed one at a time through its
/// cache and each step's logits `step{s}`, and the `packed` ids with the logits `alone{k}` of each of the three
/// examples run by itself.
const REFERENCE: &str = r#"
import os, sys, torch
from transformers import AutoModelForCausalLM
from safetensors.torch import save_file
lens, packed_lens, steps, pad = [7, 4, 10], [4, 3, 5], 3, 0
for d in sys.argv[1:]:
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(2)
    v, b, T = model.config.vocab_size, len(lens), max(lens)
    mask = torch.stack([torch.cat([torch.zeros(T - n), torch.ones(n)]) for n in lens]).long()
    ids = torch.randint(3, v, (b, T), generator=g).masked_fill(mask == 0, pad)
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    new = torch.randint(3, v, (b, steps), generator=g)
    t = {"ids": ids, "mask": mask, "pos": pos, "steps": new}
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        t["logits"] = out.logits
        cache, m, p = out.past_key_values, mask, pos[:, -1:]
        for s in range(steps):
            m, p = torch.cat([m, torch.ones(b, 1, dtype=m.dtype)], 1), p + 1
            out = model(input_ids=new[:, s:s + 1], attention_mask=m, position_ids=p, past_key_values=cache,
                        use_cache=True)
            cache = out.past_key_values
            t[f"step{s}"] = out.logits
        packed = torch.randint(3, v, (sum(packed_lens),), generator=g)
        t["packed"] = packed
        for k, piece in enumerate(packed.split(packed_lens)):
            t[f"alone{k}"] = model(input_ids=piece[None]).logits
    save_file({k: x.contiguous() for k, x in t.items()}, os.path.join(d, "layout.safetensors"))
"#;

fn root() -> &'static Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let dirs: Vec<String> = CASES.iter().map(|c| dir.path().join(c).to_str().unwrap().to_string()).collect();
        for (case, d) in CASES.iter().zip(&dirs) {
            write_tiny_lm(Path::new(d), &["--arch", case, "--random-all"]);
        }
        run_python(REFERENCE, &dirs.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
        dir
    })
    .path()
}

struct Case {
    vs: tch::nn::VarStore,
    model: Box<dyn CausalLm>,
    refs: HashMap<String, Tensor>,
}

fn case(name: &str) -> Case {
    let dir = root().join(name);
    let (vs, model, report) = load_causal_lm(&dir, Device::Cpu).unwrap();
    assert!(report.missing.is_empty() && report.unexpected.is_empty(), "{report:?}");
    Case { vs, model, refs: read_named(&dir.join("layout.safetensors")) }
}

fn no_grad_forward(model: &dyn CausalLm, ids: &Tensor, layout: &BatchLayout, cache: Option<&mut KvCache>) -> Tensor {
    tch::no_grad(|| model.forward_layout(ids, layout, cache, false))
}

#[test]
fn layout_left_padded_prompts_match_transformers_and_each_prompt_alone() {
    for name in CASES {
        let Case { model, refs, .. } = case(name);
        let (ids, mask, pos) = (&refs["ids"], &refs["mask"], &refs["pos"]);
        let layout = layout_of(mask, pos);
        let got = no_grad_forward(model.as_ref(), ids, &layout, None);
        let t = ids.size()[1];
        let (mut d_ref, mut d_alone) = (0.0f64, 0.0f64);
        for (row, &n) in PROMPTS.iter().enumerate() {
            let real = |x: &Tensor| x.get(row as i64).narrow(0, t - n, n);
            d_ref = d_ref.max(max_abs_diff(&real(&got), &real(&refs["logits"])));
            let alone =
                tch::no_grad(|| model.forward(&ids.get(row as i64).narrow(0, t - n, n).unsqueeze(0), None, false));
            d_alone = d_alone.max(max_abs_diff(&real(&got), &alone.get(0)));
        }
        println!("{name}: left-padded prompts {PROMPTS:?}: real positions max |Δ| vs transformers {d_ref:.3e}, vs each alone {d_alone:.3e}");
        assert!(d_ref <= TOL && d_alone <= TOL, "{name}: padded batch differs ({d_ref:e}, {d_alone:e})");
    }
}

#[test]
fn layout_decoding_after_left_padding_matches_transformers_and_each_row_alone() {
    for name in CASES {
        let Case { model, refs, .. } = case(name);
        let (ids, steps) = (&refs["ids"], &refs["steps"]);
        let mut mask = refs["mask"].shallow_clone();
        let mut pos = refs["pos"].shallow_clone();
        let mut cache = model.new_cache();
        let layout = layout_of(&mask, &pos);
        let _ = no_grad_forward(model.as_ref(), ids, &layout, Some(&mut cache));
        let b = ids.size()[0];
        let t = ids.size()[1];
        let (mut d_ref, mut d_alone) = (0.0f64, 0.0f64);
        for s in 0..STEPS {
            mask = Tensor::cat(&[&mask, &Tensor::ones([b, 1], (mask.kind(), Device::Cpu))], 1);
            pos = pos.narrow(1, pos.size()[1] - 1, 1) + 1;
            let layout = layout_of(&mask, &pos);
            let got = no_grad_forward(model.as_ref(), &steps.narrow(1, s, 1), &layout, Some(&mut cache));
            assert_eq!(cache.len(), t + s + 1);
            d_ref = d_ref.max(max_abs_diff(&got, &refs[&format!("step{s}")]));
            for (row, &n) in PROMPTS.iter().enumerate() {
                let r = row as i64;
                let seq = Tensor::cat(&[ids.get(r).narrow(0, t - n, n), steps.get(r).narrow(0, 0, s + 1)], 0);
                let alone = tch::no_grad(|| model.forward(&seq.unsqueeze(0), None, false));
                d_alone = d_alone.max(max_abs_diff(&got.get(r).get(0), &alone.get(0).get(-1)));
            }
        }
        println!("{name}: {STEPS} cached steps after left padding: max |Δ| vs transformers {d_ref:.3e}, vs each row alone {d_alone:.3e}");
        assert!(d_ref <= TOL && d_alone <= TOL, "{name}: decoding after padding differs ({d_ref:e}, {d_alone:e})");

        // The same steps as one chunk after the padded prompt (chunked prefill): a bottom-right causal mask over
        // the cached keys with the padded ones masked.
        let mut cache = model.new_cache();
        let _ = no_grad_forward(model.as_ref(), ids, &layout_of(&refs["mask"], &refs["pos"]), Some(&mut cache));
        let chunk_mask = Tensor::cat(&[&refs["mask"], &Tensor::ones([b, STEPS], (mask.kind(), Device::Cpu))], 1);
        let chunk_pos =
            refs["pos"].narrow(1, t - 1, 1) + Tensor::arange_start(1, STEPS + 1, (Kind::Int64, Device::Cpu));
        let got = no_grad_forward(model.as_ref(), steps, &layout_of(&chunk_mask, &chunk_pos), Some(&mut cache));
        let want = Tensor::cat(&(0..STEPS).map(|s| refs[&format!("step{s}")].shallow_clone()).collect::<Vec<_>>(), 1);
        let d = max_abs_diff(&got, &want);
        println!("{name}: the {STEPS} steps as one chunk after left padding: max |Δ| vs transformers' steps {d:.3e}");
        assert!(d <= TOL, "{name}: chunk after padding differs ({d:e})");
    }
}

fn layout_of(mask: &Tensor, positions: &Tensor) -> BatchLayout {
    BatchLayout {
        attention_mask: Some(mask.shallow_clone()),
        position_ids: Some(positions.shallow_clone()),
        segment_ids: None,
    }
}

/// Summed next-token cross-entropy of `logits` `[1, len, vocab]` over `ids` `[len]`, counting position t only
/// when t + 1 belongs to the same example (`segments` `[len]`), as a packed SFT row's labels do.
fn packed_loss(logits: &Tensor, ids: &Tensor, segments: &Tensor) -> Tensor {
    let len = ids.size()[0];
    let v = logits.size()[2];
    let same = segments.narrow(0, 0, len - 1).eq_tensor(&segments.narrow(0, 1, len - 1));
    let labels = ids.narrow(0, 1, len - 1).masked_fill(&same.logical_not(), -100);
    logits.get(0).narrow(0, 0, len - 1).reshape([-1, v]).cross_entropy_loss::<Tensor>(
        &labels,
        None,
        tch::Reduction::Sum,
        -100,
        0.0,
    )
}

/// Gradients of every trainable variable, by name, then cleared.
fn take_grads(vs: &tch::nn::VarStore) -> HashMap<String, Tensor> {
    vs.variables()
        .into_iter()
        .filter(|(_, v)| v.requires_grad())
        .map(|(n, v)| {
            let mut g = v.grad();
            let copy = g.copy();
            let _ = g.zero_();
            (n, copy)
        })
        .collect()
}

#[test]
fn layout_packed_examples_equal_each_example_alone() {
    for name in CASES {
        let Case { vs, model, refs } = case(name);
        let packed = &refs["packed"];
        let segments = Tensor::cat(
            &PACKED
                .iter()
                .enumerate()
                .map(|(k, &n)| Tensor::full([n], k as i64, (Kind::Int64, Device::Cpu)))
                .collect::<Vec<_>>(),
            0,
        );
        let positions =
            Tensor::cat(&PACKED.iter().map(|&n| Tensor::arange(n, (Kind::Int64, Device::Cpu))).collect::<Vec<_>>(), 0);
        let layout = BatchLayout {
            attention_mask: None,
            position_ids: Some(positions.unsqueeze(0)),
            segment_ids: Some(segments.unsqueeze(0)),
        };
        // Training path without dropout (GPT-2's fixture keeps its dropout probabilities).
        let logits = model.forward_layout(&packed.unsqueeze(0), &layout, None, false);
        let loss = packed_loss(&logits, packed, &segments);
        loss.backward();
        let packed_grads = take_grads(&vs);

        let (mut d_alone, mut d_ref) = (0.0f64, 0.0f64);
        let mut total = Tensor::zeros([], (Kind::Float, Device::Cpu));
        let mut start = 0;
        for (k, &n) in PACKED.iter().enumerate() {
            let piece = packed.narrow(0, start, n);
            let alone = model.forward(&piece.unsqueeze(0), None, false);
            let mine = logits.narrow(1, start, n);
            d_alone = d_alone.max(max_abs_diff(&mine, &alone));
            d_ref = d_ref.max(max_abs_diff(&mine, &refs[&format!("alone{k}")]));
            let l = packed_loss(&alone, &piece, &Tensor::zeros([n], (Kind::Int64, Device::Cpu)));
            l.backward();
            total += l.detach();
            start += n;
        }
        let summed_grads = take_grads(&vs);
        let d_loss = max_abs_diff(&loss, &total);
        let (mut d_grad, mut largest) = (0.0f64, 0.0f64);
        for (n, g) in &packed_grads {
            d_grad = d_grad.max(max_abs_diff(g, &summed_grads[n]));
            largest = largest.max(g.abs().max().double_value(&[]));
        }
        assert!(largest > 1e-3, "{name}: gradients all near zero ({largest:e}): nothing was tested");
        println!(
            "{name}: packed row {PACKED:?}: logits max |Δ| vs each alone {d_alone:.3e}, vs transformers alone \
             {d_ref:.3e}; summed loss |Δ| {d_loss:.3e} (loss {:.3}); {} gradients max |Δ| vs the sum of the \
             examples' {d_grad:.3e} (largest {largest:.2})",
            loss.double_value(&[]),
            packed_grads.len()
        );
        assert!(d_alone <= TOL && d_ref <= TOL && d_loss <= TOL && d_grad <= TOL, "{name}: packed row differs");
    }
}
