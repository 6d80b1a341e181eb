//! Forward + backward time of a MiniLM classification step against transformers in PyTorch eager, same threads,
//! same batch. Ignored by default (it measures, it does not check behaviour):
//! `cargo test --release -p suite-text models::speed_tests -- --ignored --nocapture`.

use std::time::Instant;

use suite_core::python::run_python;
use tch::{nn, Device, Kind, Tensor};

use super::*;

const BATCH: i64 = 16;
const LEN: i64 = 128;
const STEPS: usize = 8;

const EAGER: &str = r#"
import sys, time, torch
from transformers import AutoModelForSequenceClassification
torch.set_num_threads(int(sys.argv[2]))
m = AutoModelForSequenceClassification.from_pretrained(
    sys.argv[1], num_labels=3, attention_probs_dropout_prob=float(sys.argv[6])).train()
b, l, steps = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
g = torch.Generator().manual_seed(0)
ids = torch.randint(1000, 30000, (b, l), generator=g)
mask = torch.ones(b, l, dtype=torch.long); mask[b // 2:, l // 2:] = 0
types = torch.zeros(b, l, dtype=torch.long)
times = []
for _ in range(steps + 1):
    t = time.perf_counter()
    m(input_ids=ids, token_type_ids=types, attention_mask=mask).logits.sum().backward()
    m.zero_grad(set_to_none=True)
    times.append(time.perf_counter() - t)
times = sorted(times[1:])
print(times[len(times) // 2])
"#;

#[test]
#[ignore = "timing, run by hand"]
fn minilm_step_is_as_fast_as_eager() {
    let threads = 2;
    tch::set_num_threads(threads);
    let asset = minilm_asset_dir().expect("minilm asset");
    let eager = |attention_dropout: &str| -> f64 {
        let args =
            [asset.to_str().unwrap(), &threads.to_string(), &BATCH.to_string(), &LEN.to_string(), &STEPS.to_string()];
        let mut args: Vec<&str> = args.iter().map(|s| s.as_ref()).collect();
        args.push(attention_dropout);
        run_python(EAGER, &args).unwrap().trim().parse().unwrap()
    };
    // Our attention has no dropout on its probabilities yet (the core helper runs SDPA with p = 0), so eager is
    // timed both ways.
    let (eager_default, eager_no_attn_dropout) = (eager("0.1"), eager("0.0"));

    let config = EncoderConfig::from_file(asset.join("config.json")).unwrap();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = TextModel::new(&vs.root(), &config, Head::Classify { num_labels: 3 }).unwrap();
    model.load_pretrained(&mut vs, &[asset.join("model.safetensors")]).unwrap();
    let ids = Tensor::randint_low(1000, 30000, [BATCH, LEN], (Kind::Int64, Device::Cpu));
    let mask = Tensor::ones([BATCH, LEN], (Kind::Int64, Device::Cpu));
    let _ = mask.narrow(0, BATCH / 2, BATCH / 2).narrow(1, LEN / 2, LEN / 2).fill_(0);
    let types = Tensor::zeros([BATCH, LEN], (Kind::Int64, Device::Cpu));
    let mut times = Vec::new();
    for _ in 0..=STEPS {
        let t = Instant::now();
        model.forward(&ids, &types, &mask, true).sum(Kind::Float).backward();
        for v in vs.trainable_variables() {
            let mut g = v.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        times.push(t.elapsed().as_secs_f64());
    }
    times.remove(0);
    times.sort_by(f64::total_cmp);
    let ours = times[times.len() / 2];
    println!(
        "MiniLM classify fwd+bwd, batch {BATCH}×{LEN}, {threads} threads: suite {ours:.3} s; eager {eager_default:.3} s \
         ({:.2}×), eager without attention dropout {eager_no_attn_dropout:.3} s ({:.2}×)",
        eager_default / ours,
        eager_no_attn_dropout / ours
    );
}
