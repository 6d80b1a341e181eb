//! Helpers shared by the end-to-end tests of the `suite` binary (`tests/*_cli.rs`, `tests/serve_*.rs`): running
//! the binary, reading what it left, the reference Python, temporary folders and the offline assets.
//!
//! Each test file is its own crate and uses a part of this module, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub mod serve;

/// The binary under test.
pub const SUITE: &str = env!("CARGO_BIN_EXE_suite");

/// What a finished `suite` process left.
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    pub fn show(&self) -> String {
        format!("exit code {:?}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(self.ok(), "suite failed: {}", self.show());
        self
    }

    /// Asserts a clean failure of a job refused before any work: a non-zero exit code, no panic, and a stderr
    /// that starts with `error:` (after the `run folder:` line of a job that got as far as its run folder) and
    /// contains every `needle`. Returns the error.
    #[track_caller]
    pub fn assert_error(&self, needles: &[&str]) -> String {
        let err = self.assert_error_after_progress(needles);
        let before: Vec<&str> = self.stderr[..self.stderr.len() - err.len()].lines().collect();
        assert!(
            before.iter().all(|l| l.starts_with("run folder: ")),
            "stderr does not start with `error:`: {}",
            self.show()
        );
        err
    }

    /// Like [`Out::assert_error`] for a command that may print progress first: the error is everything from the
    /// first line that starts with `error:`.
    #[track_caller]
    pub fn assert_error_after_progress(&self, needles: &[&str]) -> String {
        assert!(self.code.is_some_and(|c| c != 0), "expected a failure: {}", self.show());
        for bad in ["panicked", "internal failure", "internal error", "RUST_BACKTRACE"] {
            assert!(!self.stderr.contains(bad), "stderr shows a panic ({bad:?}): {}", self.show());
        }
        let at =
            if self.stderr.starts_with("error: ") { Some(0) } else { self.stderr.find("\nerror: ").map(|i| i + 1) };
        let Some(at) = at else { panic!("no `error:` line: {}", self.show()) };
        let err = &self.stderr[at..];
        for n in needles {
            assert!(err.contains(n), "the error does not name {n:?}: {}", self.show());
        }
        err.to_string()
    }
}

impl Out {
    /// Checks a user error as suite should report one: exit code exactly 2, no panic, and one `error:` line that
    /// contains every `needle` (the file, the line or field, the reason) and stays short (a huge input line is not
    /// echoed). Progress may come before it; after it, only a command over several inputs may add its count line
    /// (`error: N of M …`). Returns the error line, or what is wrong.
    pub fn check_user_error(&self, needles: &[&str]) -> Result<String, String> {
        if self.code != Some(2) {
            return Err(format!("exit code {:?}, expected 2: {}", self.code, self.show()));
        }
        for bad in ["panicked", "internal failure", "internal error", "RUST_BACKTRACE"] {
            if self.stderr.contains(bad) {
                return Err(format!("stderr shows a panic ({bad:?}): {}", self.show()));
            }
        }
        let lines: Vec<&str> = self.stderr.lines().collect();
        let Some(at) = lines.iter().position(|l| l.starts_with("error: ")) else {
            return Err(format!("no `error:` line: {}", self.show()));
        };
        let is_count = |l: &str| {
            let mut w = l.trim_start_matches("error: ").split(' ');
            w.next().is_some_and(|n| n.parse::<usize>().is_ok()) && w.next() == Some("of")
        };
        if let Some(extra) = lines[at + 1..].iter().find(|l| !is_count(l)) {
            return Err(format!("the error takes more than one line ({extra:?}): {}", self.show()));
        }
        let line = lines[at];
        if line.len() > 600 {
            return Err(format!("an error line of {} bytes: {}…", line.len(), &line[..line.floor_char_boundary(300)]));
        }
        for n in needles {
            if !line.contains(n) {
                return Err(format!("the error line does not name {n:?}: {}", self.show()));
            }
        }
        Ok(line.to_string())
    }

    /// [`Out::check_user_error`] as an assertion.
    #[track_caller]
    pub fn assert_user_error(&self, needles: &[&str]) -> String {
        self.check_user_error(needles).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Runs `suite ARGS` in `cwd` with `stdin` as its standard input.
pub fn suite_with_stdin(cwd: &Path, args: &[&str], stdin: &str) -> Out {
    suite_env(cwd, args, stdin, &[])
}

/// Runs `suite ARGS` in `cwd` with `stdin` as its standard input and `env` added to its environment.
pub fn suite_env<A: AsRef<std::ffi::OsStr>>(cwd: &Path, args: &[A], stdin: &str, env: &[(String, String)]) -> Out {
    let mut child = Command::new(SUITE)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting suite");
    let mut pipe = child.stdin.take().expect("piped stdin");
    let input = stdin.to_string();
    // Written from another thread so that a large output cannot block both sides.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().expect("waiting for suite");
    writer.join().unwrap();
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `suite ARGS` in `cwd` with empty standard input.
pub fn suite(cwd: &Path, args: &[&str]) -> Out {
    suite_with_stdin(cwd, args, "")
}

/// A path as `&str` (temporary paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary folder")
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `code` in the reference Python with `args`; its stdout, or a panic with its stderr.
pub fn python(code: &str, args: &[&str]) -> String {
    suite_core::python::run_python(code, args).unwrap_or_else(|e| panic!("{e:#}"))
}

/// An unpacked offline asset, `$SUITE_CACHE/assets/REL`.
pub fn asset(rel: &str) -> PathBuf {
    suite_core::cache::asset(rel)
}

/// A LibriVox utterance of pocketsphinx's test data (16 kHz mono WAV), by file stem.
pub fn librivox(id: &str) -> PathBuf {
    asset(&format!("pocketsphinx-testdata/usr/share/pocketsphinx/test/data/librivox/{id}.wav"))
}

/// Runs the Python script `path` in the reference Python with `args`; its stdout, or a panic with its stderr.
pub fn python_file(path: &str, args: &[&str]) -> String {
    let exe = suite_core::python::python_exe().unwrap_or_else(|e| panic!("{e:#}"));
    let out = Command::new(&exe).arg(path).args(args).output().unwrap_or_else(|e| panic!("starting {path}: {e}"));
    if !out.status.success() {
        panic!("{path} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `size`×`size` PNG of class `class`: a class colour with stripes in a class-specific direction, plus seeded
/// noise of `noise_bits` bits (5: 0..32, an easy task; 7: 0..128, hard enough that training runs differ).
pub fn striped_image(path: &Path, class: usize, seed: usize, size: u32, noise_bits: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let base = [[200u8, 60, 60], [60, 200, 60], [60, 60, 200]][class % 3];
    let img = image::RgbImage::from_fn(size, size, |x, y| {
        let stripe = match class % 3 {
            0 => x / 4 % 2,
            1 => y / 4 % 2,
            _ => (x + y) / 4 % 2,
        } as u8;
        let h = ((x as u64 * 73_856_093) ^ (y as u64 * 19_349_663) ^ (seed as u64 * 83_492_791))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let noise = (h >> (64 - noise_bits)) as u8;
        image::Rgb(base.map(|b| b.saturating_sub(40 * stripe).saturating_add(noise)))
    });
    img.save(path).unwrap();
}
