//! End-to-end tests of `--precision int8` (libtorch's dynamic quantization of every linear layer): prediction,
//! evaluation and transcription give what fp32 gives, within int8's error, and the flag is refused where it does
//! not apply. The quantized kernels themselves are checked against PyTorch's `quantize_dynamic` in
//! `crates/core/src/quant_tests.rs`.

use serde_json::Value;

mod common;
use common::*;

fn json_lines(out: &Out) -> Vec<Value> {
    out.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect()
}

#[test]
fn text_prediction_and_evaluation_in_int8_agree_with_fp32() {
    let dir = tmp();
    let run = serve::text_run(dir.path());
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "the referee and the goal\nbread with butter and cheese\ntennis\n").unwrap();
    let predict = |precision: &str| {
        let out = suite(
            dir.path(),
            &["predict", "text", "--run", s(&run), s(&input), "--json", "--device", "cpu", "--precision", precision],
        );
        out.assert_ok();
        (json_lines(&out), out.stderr)
    };
    let (fp32, _) = predict("fp32");
    let (int8, log) = predict("int8");
    assert!(log.contains("int8: ") && log.contains("linear layers"), "{log}");
    assert!(!log.contains("deprecated"), "libtorch's deprecation notice reached the user: {log}");
    assert_eq!(fp32.len(), 3);
    for (a, b) in fp32.iter().zip(&int8) {
        assert_eq!(a["top"][0]["label"], b["top"][0]["label"], "{a} vs {b}");
        let (pa, pb) = (a["top"][0]["prob"].as_f64().unwrap(), b["top"][0]["prob"].as_f64().unwrap());
        assert!((pa - pb).abs() < 0.05, "int8 probability {pb} vs fp32 {pa}");
        assert!(pa != pb, "int8 gave exactly fp32's probability: not quantized?");
    }
    // `suite serve --precision int8`: the same int8 answers over HTTP (one request of the three texts, as
    // `predict` batched them: int8 activations are quantized per batch), and /v1/models says int8.
    let server = serve::Server::start(
        dir.path(),
        &["--run", &format!("{}=topics", s(&run)), "--device", "cpu", "--threads", "2", "--precision", "int8"],
    );
    server.wait_ready();
    assert!(server.log().contains("model topics ready (classify, int8,"), "{}", server.log());
    let (status, models) = server.request("GET", "/v1/models/topics", None);
    assert_eq!((status, &models["precision"]), (200, &Value::from("int8")), "{models}");
    let lines = ["the referee and the goal", "bread with butter and cheese", "tennis"];
    let got = server
        .clients("predict", &serde_json::json!({"vision": "none", "text": "topics", "images": [], "texts": lines}));
    let served = got["text"]["predictions"].as_array().unwrap_or_else(|| panic!("{got}"));
    assert_eq!(served.len(), int8.len());
    for (a, b) in served.iter().zip(&int8) {
        assert_eq!(a["top"][0]["label"], b["top"][0]["label"], "served {a} vs predict {b}");
        let (pa, pb) = (a["top"][0]["prob"].as_f64().unwrap(), b["top"][0]["prob"].as_f64().unwrap());
        assert!((pa - pb).abs() < 1e-5, "served int8 probability {pa} vs predict's {pb}");
    }
    drop(server);
    let eval = |precision: &str| {
        let out = suite(dir.path(), &["eval", "--run", s(&run), "--device", "cpu", "--precision", precision]);
        out.assert_ok();
        let line = out.stdout.lines().find(|l| l.trim_start().starts_with("accuracy")).unwrap().to_string();
        line.split_whitespace().last().unwrap().parse::<f64>().unwrap()
    };
    assert_eq!(eval("fp32"), eval("int8"), "accuracy on the validation texts");
}

#[test]
fn int8_transcription_gives_the_fp32_text() {
    let dir = tmp();
    let wav = librivox("sense_and_sensibility_01_austen_64kb-0880");
    let run = |precision: &str| {
        let out = suite(dir.path(), &["transcribe", s(&wav), "--device", "cpu", "--precision", precision]);
        out.assert_ok();
        out.stdout
    };
    let (fp32, int8) = (run("fp32"), run("int8"));
    assert!(fp32.contains("He was not an ill-disposed young man."), "{fp32}");
    assert_eq!(fp32, int8);
}

#[test]
fn int8_off_the_cpu_and_unknown_precisions_are_refused() {
    let dir = tmp();
    let wav = librivox("sense_and_sensibility_01_austen_64kb-0880");
    if !tch::Cuda::is_available() {
        let out = suite(dir.path(), &["transcribe", s(&wav), "--device", "cuda", "--precision", "int8"]);
        assert_eq!(out.code, Some(2), "{}", out.show());
    }
    let out = suite(dir.path(), &["transcribe", s(&wav), "--precision", "int4"]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert!(out.stderr.contains("int4"), "{}", out.show());
}
