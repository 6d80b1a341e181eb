//! Serving fixtures: tiny vision and text runs, the real `suite serve` on a free port, and the Python clients of
//! `tests/py/`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::{s, suite, SUITE};

/// Class names of [`vision_run`].
pub const CLASSES: [&str; 3] = ["circle", "square", "stripes"];

/// A 40×40 PNG of class `class` ([`super::striped_image`] with 5 bits of noise).
pub fn write_image(path: &Path, class: usize, seed: usize) {
    super::striped_image(path, class, seed, 40, 5);
}

/// A ResNet-18 (random init, 64-px input, one epoch) on two images per class, in `dir/vision-run`.
pub fn vision_run(dir: &Path) -> PathBuf {
    for (split, n, seed) in [("train", 2, 0), ("val", 1, 10_000)] {
        for (c, name) in CLASSES.iter().enumerate() {
            for i in 0..n {
                write_image(&dir.join("shapes").join(split).join(name).join(format!("{i}.png")), c, seed + 100 * c + i);
            }
        }
    }
    let (data, run) = (dir.join("shapes"), dir.join("vision-run"));
    let args = [
        "finetune",
        "vision",
        "--model",
        "resnet18",
        "--init",
        "random",
        "--input-size",
        "64",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--workers",
        "1",
        "--seed",
        "0",
        "--device",
        "cpu",
        "--data",
        s(&data),
        "--out",
        s(&run),
    ];
    suite(dir, &args).assert_ok();
    run
}

/// all-MiniLM-L6-v2 with a 2-label head (sport, food) after 4 steps on short texts, in `dir/text-run`.
pub fn text_run(dir: &Path) -> PathBuf {
    text_run_with(dir, "text-run", "3e-4", &[])
}

/// [`text_run`] in `dir/NAME` at learning rate `lr`, with `extra` flags (`--peft lora` …).
pub fn text_run_with(dir: &Path, name: &str, lr: &str, extra: &[&str]) -> PathBuf {
    let sport = ["football", "goal", "match", "team", "referee", "tennis"];
    let food = ["soup", "bread", "oven", "recipe", "cheese", "butter"];
    let csv = |n: usize, offset: usize| {
        let mut out = String::from("text,label\n");
        for i in offset..offset + n {
            out.push_str(&format!("the {} and the {},sport\n", sport[i % 6], sport[(i * 5 + 1) % 6]));
            out.push_str(&format!("a {} with {},food\n", food[i % 6], food[(i * 5 + 2) % 6]));
        }
        out
    };
    let (train, val, run) = (dir.join("train.csv"), dir.join("val.csv"), dir.join(name));
    std::fs::write(&train, csv(8, 0)).unwrap();
    std::fs::write(&val, csv(2, 20)).unwrap();
    let args = [
        "finetune",
        "text",
        "--max-steps",
        "4",
        "--max-len",
        "32",
        "--batch-size",
        "4",
        "--lr",
        lr,
        "--threads",
        "1",
        "--workers",
        "1",
        "--seed",
        "0",
        "--device",
        "cpu",
        "--data",
        s(&train),
        "--val-data",
        s(&val),
        "--out",
        s(&run),
    ];
    let args: Vec<&str> = args.iter().copied().chain(extra.iter().copied()).collect();
    suite(dir, &args).assert_ok();
    run
}

/// `suite serve ARGS` on a free port; killed on drop.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts the server and waits until it is bound (not until its models are loaded: see [`Server::wait_ready`]).
    pub fn start(cwd: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(SUITE)
            .arg("serve")
            .args(["--port", "0"])
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting suite serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let lines = log.clone();
        // Reads stderr to its end, noting the bound address.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on http://") {
                    let url = line[at + "listening on ".len()..].split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(url.trim_end_matches('/').to_string());
                }
                let mut l = lines.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(600)) {
            Ok(url) => url,
            Err(_) => panic!("suite serve printed no `listening on http://…`:\n{}", log.lock().unwrap()),
        };
        Self { child, base, log }
    }

    /// Everything the server wrote on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (at most 10 minutes) until the log says every model is loaded.
    pub fn wait_ready(&self) {
        for _ in 0..6000 {
            if self.log().contains("ready: every model is loaded") {
                return;
            }
            if let Some(line) = self.log().lines().find(|l| l.starts_with("error:")) {
                panic!("suite serve failed: {line}\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("models not loaded after 10 minutes:\n{}", self.log());
    }

    /// A plain HTTP/1.1 request (`Connection: close`): the status and the body as JSON.
    pub fn request(&self, method: &str, path: &str, key: Option<&str>) -> (u16, Value) {
        let (status, body) = self.request_text(method, path, key);
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"));
        (status, json)
    }

    /// A plain HTTP/1.1 request (`Connection: close`): the status and the body as text.
    pub fn request_text(&self, method: &str, path: &str, key: Option<&str>) -> (u16, String) {
        let host = self.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(host).unwrap_or_else(|e| panic!("connecting to {host}: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP header end: {text}"));
        let status: u16 = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status code");
        let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
        (status, if chunked { dechunk(body) } else { body.to_string() })
    }

    /// Waits (at most 2 minutes) until `/metrics` shows a request in flight on `route`.
    pub fn wait_in_flight(&self, route: &str, key: Option<&str>) {
        let needle = format!("suite_requests_in_flight{{route=\"{route}\"}} ");
        for _ in 0..1200 {
            let (_, metrics) = self.request_text("GET", "/metrics", key);
            let busy = metrics
                .lines()
                .find_map(|l| l.strip_prefix(&needle))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .is_some_and(|v| v >= 1.0);
            if busy {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no request in flight on {route} after 2 minutes:\n{}", self.log());
    }

    /// Runs `tests/py/serve_clients.py BASE COMMAND ARGS` and parses what it prints.
    pub fn clients(&self, command: &str, args: &Value) -> Value {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/py/serve_clients.py");
        let out = super::python_file(script, &[&self.base, command, &args.to_string()]);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{command}: {e}: {out}\n{}", self.log()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The payload of a chunked HTTP body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
