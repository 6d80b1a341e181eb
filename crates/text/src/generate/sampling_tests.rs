//! The logits processors against transformers' on the same random scores, and seeded sampling: reproducible,
//! independent of the batch, and distributed as the processed scores say.

use super::*;
use serde_json::Value as Json;
use suite_core::python::run_python;

/// Random scores and seen tokens, and what transformers' processors make of them.
const REFERENCE: &str = r#"
import json, torch
from transformers.generation.logits_process import (RepetitionPenaltyLogitsProcessor as R,
    TemperatureLogitsWarper as T, TopKLogitsWarper as K, TopPLogitsWarper as P)
g = torch.Generator().manual_seed(0)
B, V = 4, 64
scores = torch.randn(B, V, generator=g) * 3
ids = torch.randint(0, V, (B, 16), generator=g)
s = lambda: scores.clone()
cases = {
    "rep 1.3": R(1.3)(ids, s()), "rep 0.7": R(0.7)(ids, s()),
    "temp 0.7": T(0.7)(ids, s()), "temp 1.5": T(1.5)(ids, s()),
    "topk 1": K(1)(ids, s()), "topk 5": K(5)(ids, s()), "topk 64": K(64)(ids, s()), "topk 100": K(100)(ids, s()),
    "topp 0.9": P(0.9)(ids, s()), "topp 0.5": P(0.5)(ids, s()), "topp 0.01": P(0.01)(ids, s()),
    "chain": P(0.9)(ids, K(10)(ids, T(0.8)(ids, R(1.2)(ids, s())))),
}
enc = lambda t: [[None if x == float("-inf") else x for x in row] for row in t.tolist()]
print(json.dumps({"scores": scores.tolist(), "ids": ids.tolist(), "cases": {k: enc(v) for k, v in cases.items()}}))
"#;

fn rows_to_tensor(rows: &Json) -> Tensor {
    let rows = rows.as_array().unwrap();
    let flat: Vec<f32> = rows
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().map_or(f32::NEG_INFINITY, |v| v as f32)))
        .collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, -1])
}

fn assert_close(ours: &Tensor, theirs: &Tensor, label: &str) {
    assert_eq!(ours.size(), theirs.size(), "{label}");
    let a = Vec::<f32>::try_from(ours.view([-1])).unwrap();
    let b = Vec::<f32>::try_from(theirs.view([-1])).unwrap();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let same = (x.is_infinite() && y.is_infinite() && x.signum() == y.signum()) || (x - y).abs() <= 1e-6;
        assert!(same, "{label}: element {i}: ours {x}, transformers {y}");
    }
    // The distributions, too (what sampling draws from).
    let pa = ours.softmax(-1, Kind::Float);
    let pb = theirs.softmax(-1, Kind::Float);
    let diff = (pa - pb).abs().max().double_value(&[]);
    assert!(diff <= 1e-6, "{label}: probabilities differ by {diff}");
}

#[test]
fn processors_equal_transformers() {
    let out = run_python(REFERENCE, &[]).expect("reference Python with transformers");
    let v: Json = serde_json::from_str(out.trim()).unwrap();
    let scores = rows_to_tensor(&v["scores"]);
    let seen: Vec<Vec<i64>> = v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect())
        .collect();
    let ours = |name: &str| -> Tensor {
        match name {
            "rep 1.3" => repetition_penalty(&scores, &seen, 1.3),
            "rep 0.7" => repetition_penalty(&scores, &seen, 0.7),
            "temp 0.7" => temperature(&scores, 0.7),
            "temp 1.5" => temperature(&scores, 1.5),
            "topk 1" => top_k(&scores, 1),
            "topk 5" => top_k(&scores, 5),
            "topk 64" => top_k(&scores, 64),
            "topk 100" => top_k(&scores, 100),
            "topp 0.9" => top_p(&scores, 0.9),
            "topp 0.5" => top_p(&scores, 0.5),
            "topp 0.01" => top_p(&scores, 0.01),
            "chain" => process_logits(
                &scores,
                &seen,
                &SamplingParams { temperature: 0.8, top_k: 10, top_p: 0.9, repetition_penalty: 1.2 },
            ),
            other => panic!("unknown case {other}"),
        }
    };
    let cases = v["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 12);
    for (name, expected) in cases {
        let theirs = rows_to_tensor(expected);
        assert_close(&ours(name), &theirs, name);
    }
    // Sanity: the cases do filter (top-p 0.5 keeps a few tokens per row, top-k 1 exactly one).
    let kept = |t: &Tensor| Vec::<f32>::try_from(t.view([-1])).unwrap().iter().filter(|x| x.is_finite()).count();
    assert_eq!(kept(&ours("topk 1")), 4);
    assert!(kept(&ours("topp 0.5")) < 4 * 16);
}

#[test]
fn greedy_takes_the_most_likely_token_after_the_penalty() {
    let scores = Tensor::from_slice(&[1.0f32, 0.9, -2.0]);
    let mut greedy = SequenceSampler::new(SamplingParams::greedy(), 0).unwrap();
    assert_eq!(greedy.next_token(&scores, &[]), 0);
    let mut penalised =
        SequenceSampler::new(SamplingParams { repetition_penalty: 1.2, ..SamplingParams::greedy() }, 0).unwrap();
    // 1.0 / 1.2 < 0.9: the seen token loses its place.
    assert_eq!(penalised.next_token(&scores, &[0, 0]), 1);
    // Greedy ignores the warpers, as `generate` does without `do_sample`.
    let mut with_warpers =
        SequenceSampler::new(SamplingParams { top_k: 1, top_p: 0.1, ..SamplingParams::greedy() }, 0).unwrap();
    assert_eq!(with_warpers.next_token(&scores.unsqueeze(0), &[]), 0);
}

#[test]
fn bad_parameters_are_refused() {
    for (p, what) in [
        (SamplingParams { temperature: -0.5, ..Default::default() }, "temperature"),
        (SamplingParams { temperature: f64::NAN, ..Default::default() }, "temperature"),
        (SamplingParams { top_p: 0.0, ..Default::default() }, "top_p"),
        (SamplingParams { top_p: 1.5, ..Default::default() }, "top_p"),
        (SamplingParams { repetition_penalty: 0.0, ..Default::default() }, "repetition_penalty"),
    ] {
        let err = SequenceSampler::new(p, 0).unwrap_err().to_string();
        assert!(err.starts_with(what), "{err}");
    }
}

#[test]
fn seeded_sampling_is_reproducible_and_independent_of_the_batch() {
    tch::manual_seed(11);
    let steps: Vec<Tensor> = (0..30).map(|_| Tensor::randn([3, 50], (Kind::Float, Device::Cpu)) * 2.0).collect();
    let params = SamplingParams { temperature: 0.9, top_k: 20, top_p: 0.95, repetition_penalty: 1.1 };
    let run_batch = |seeds: &[u64]| -> Vec<Vec<i64>> {
        let mut samplers: Vec<_> = seeds.iter().map(|&s| SequenceSampler::new(params, s).unwrap()).collect();
        let mut seen = vec![vec![1i64, 2, 3]; seeds.len()];
        for step in &steps {
            let rows = step.narrow(0, 0, seeds.len() as i64);
            let next = sample_batch(&mut samplers, &rows, &seen);
            for (s, t) in seen.iter_mut().zip(next) {
                s.push(t);
            }
        }
        seen
    };
    let batch = run_batch(&[5, 6, 7]);
    assert_eq!(batch, run_batch(&[5, 6, 7]), "same seeds, same tokens");
    // The first sequence alone (its rows are the same scores) gives the same tokens as in the batch of three.
    assert_eq!(run_batch(&[5])[0], batch[0]);
    assert_ne!(batch[1], batch[2], "different seeds draw differently");
}

#[test]
fn draws_follow_the_processed_distribution() {
    let scores = Tensor::from_slice(&[2.0f32, 1.0, 0.5, 0.0, -1.0, -3.0]).unsqueeze(0);
    let seen = [vec![0i64, 0, 4]];
    let params = SamplingParams { temperature: 0.9, top_k: 5, top_p: 0.95, repetition_penalty: 1.3 };
    let expected =
        Vec::<f64>::try_from(process_logits(&scores, &seen, &params).softmax(-1, Kind::Double).view([-1])).unwrap();
    let mut sampler = SequenceSampler::new(params, 2024).unwrap();
    let n = 100_000;
    let mut counts = [0usize; 6];
    for _ in 0..n {
        counts[sampler.next_token(&scores, &seen[0]) as usize] += 1;
    }
    for (token, (&c, &p)) in counts.iter().zip(&expected).enumerate() {
        let freq = c as f64 / n as f64;
        // 0.006 is over 4 standard deviations of a frequency from 100 000 draws (at most 0.0016).
        assert!((freq - p).abs() < 0.006, "token {token}: frequency {freq}, probability {p}");
        if p == 0.0 {
            assert_eq!(c, 0, "token {token} was filtered out but drawn");
        }
    }
    assert!(expected.iter().filter(|&&p| p == 0.0).count() >= 1, "the warpers removed something");
}

#[test]
fn inverse_cdf_draw_edges() {
    assert_eq!(draw(&[0.0, 1.0, 0.0], 0.0), Some(1));
    assert_eq!(draw(&[0.25, 0.25, 0.5], 0.49), Some(1));
    assert_eq!(draw(&[0.25, 0.25, 0.5], 0.999_999_999), Some(2));
    assert_eq!(draw(&[0.5, 0.5, 0.0], 1.0), Some(1));
    assert_eq!(draw(&[0.0, 0.0], 0.3), None);
    assert_eq!(draw(&[f64::NAN, 1.0], 0.3), None);
}
