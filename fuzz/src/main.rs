//! `suite-fuzz`: mutation fuzzing of suite's parsers on stable Rust (cargo-fuzz and libFuzzer need nightly).
//!
//! ```text
//! suite-fuzz list                              the targets
//! suite-fuzz run TARGET SECONDS [SEED]         fuzz one target; prints executions, seconds, findings
//! suite-fuzz repro TARGET FILE                 run one input and say what happened
//! ```
//!
//! `run` is a supervisor: a worker process (this binary, `worker`) mutates the seeds of `fuzz/corpus/TARGET/` (bit
//! flips, byte insert/delete/duplicate, splices of two inputs, interesting integers over 1/2/4/8-byte fields and
//! in decimal text) and calls the target inside `catch_unwind`. Before each call it copies the input into a
//! memory-mapped state file, so whatever kills it — a call over 5 s (the supervisor kills it), an allocation over
//! 1 GiB (the allocator aborts), a stack overflow — the supervisor still has the input. A panic, a hang or a
//! runaway allocation is a finding, written to `fuzz/findings/TARGET/` (git-ignored) and printed; the worker is
//! restarted after a fatal one. An input whose error message is new joins the in-memory corpus, a cheap stand-in
//! for coverage feedback.

mod targets;

/// What `job.rs` takes from the command line's `args` module: the domain names of recipes.
mod args {
    /// A domain, as `crates/cli/src/args.rs` spells it in recipes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Domain {
        Vision,
        Text,
        Speech,
    }
}

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashSet;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use targets::{Scratch, Target, TARGETS};

// ---------------------------------------------------------------------------------------------------------------
// Runaway allocations

/// One allocation this large from an input of at most [`MAX_INPUT`] bytes is a finding.
const MAX_ALLOC: usize = 1 << 30;
/// Nor may the live heap grow past this.
const MAX_LIVE: usize = 3 << 30;

/// The system allocator, counting live bytes and aborting on a runaway request (with a line on stderr for the
/// supervisor), since an allocator must not unwind.
struct Capped;

static LIVE: AtomicUsize = AtomicUsize::new(0);

impl Capped {
    fn check(size: usize) {
        let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
        if size > MAX_ALLOC || live > MAX_LIVE {
            let msg: &[u8] = if size > MAX_ALLOC {
                b"\nFINDING runaway allocation: one allocation over 1 GiB\n"
            } else {
                b"\nFINDING runaway allocation: live heap over 3 GiB\n"
            };
            // SAFETY: a plain write of a static buffer; nothing here allocates.
            unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
            std::process::abort();
        }
    }
}

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        Self::check(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Capped = Capped;

// ---------------------------------------------------------------------------------------------------------------
// The state file shared by worker and supervisor

/// Largest input the mutator makes.
const MAX_INPUT: usize = 256 << 10;
/// A call longer than this is a hang.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Layout of the state file: executions, panics found, the monotonic time (ns) the current call began (0 between
/// calls), the current input's length, then the input.
const HEADER: usize = 32;

struct State {
    ptr: *mut u8,
}

impl State {
    /// Maps `path` (created at the right size).
    fn map(path: &Path) -> State {
        let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).unwrap();
        f.set_len((HEADER + MAX_INPUT) as u64).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: a shared mapping of a file of exactly this size, kept for the life of the process.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                HEADER + MAX_INPUT,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        assert!(ptr != libc::MAP_FAILED, "mapping {}", path.display());
        State { ptr: ptr.cast() }
    }

    fn get(&self, i: usize) -> u64 {
        // SAFETY: within the mapping; aligned (the mapping is page-aligned).
        unsafe { std::ptr::read_volatile(self.ptr.cast::<u64>().add(i)) }
    }

    fn set(&self, i: usize, v: u64) {
        // SAFETY: as `get`.
        unsafe { std::ptr::write_volatile(self.ptr.cast::<u64>().add(i), v) }
    }

    fn begin(&self, input: &[u8]) {
        // SAFETY: the input is at most MAX_INPUT bytes, the room after the header.
        unsafe { std::ptr::copy_nonoverlapping(input.as_ptr(), self.ptr.add(HEADER), input.len()) };
        self.set(3, input.len() as u64);
        self.set(2, now_ns());
    }

    fn end(&self) {
        self.set(2, 0);
        self.set(0, self.get(0) + 1);
    }

    fn input(&self) -> Vec<u8> {
        let n = (self.get(3) as usize).min(MAX_INPUT);
        // SAFETY: within the mapping.
        unsafe { std::slice::from_raw_parts(self.ptr.add(HEADER), n).to_vec() }
    }
}

fn now_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: fills `t`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64 + 1
}

// ---------------------------------------------------------------------------------------------------------------
// Mutations

/// xorshift64*: fast, seeded, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[i64] = &[
    0,
    1,
    -1,
    2,
    7,
    8,
    16,
    32,
    64,
    100,
    127,
    128,
    255,
    256,
    512,
    1000,
    1024,
    4096,
    32767,
    32768,
    65535,
    65536,
    100_000,
    1 << 24,
    i32::MAX as i64,
    i32::MIN as i64,
    u32::MAX as i64,
    1 << 32,
    1 << 40,
    i64::MAX,
    i64::MIN,
    -2,
    -128,
    -32768,
];

/// One random edit of `data`, `corpus` being the other inputs a splice may take from.
fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let len = data.len();
    match rng.below(12) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = rng.next() as u8;
        }
        2 => {
            // Insert a few random or repeated bytes.
            let i = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let b = rng.next() as u8;
            let bytes: Vec<u8> = (0..n).map(|_| if rng.below(2) == 0 { b } else { rng.next() as u8 }).collect();
            data.splice(i..i, bytes);
        }
        3 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(64));
            data.drain(i..i + n);
        }
        4 if len > 0 => {
            // Duplicate a range in place.
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(256));
            let copy = data[i..i + n].to_vec();
            let at = rng.below(len + 1);
            data.splice(at..at, copy);
        }
        5 if !corpus.is_empty() => {
            // Splice: a head of this input and a tail of another.
            let other = &corpus[rng.below(corpus.len())];
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        6 | 7 if len > 0 => {
            // An interesting integer over a 1/2/4/8-byte field, either byte order.
            let v = INTERESTING[rng.below(INTERESTING.len())];
            let w = [1, 2, 4, 8][rng.below(4)];
            let bytes = if rng.below(2) == 0 { v.to_le_bytes() } else { v.to_be_bytes() };
            let field = if rng.below(2) == 0 { &bytes[..w] } else { &bytes[8 - w..] };
            let i = rng.below(len);
            for (k, b) in field.iter().enumerate() {
                if i + k < data.len() {
                    data[i + k] = *b;
                }
            }
        }
        8 | 9 => {
            // An interesting number in decimal over a run of digits (or anywhere): text formats.
            let v = INTERESTING[rng.below(INTERESTING.len())];
            let text = if rng.below(4) == 0 { format!("{}.5e{}", v, rng.below(400)) } else { v.to_string() };
            let digits: Vec<usize> = (0..len).filter(|&i| data[i].is_ascii_digit()).collect();
            if digits.is_empty() {
                let i = rng.below(len + 1);
                data.splice(i..i, text.into_bytes());
            } else {
                let start = digits[rng.below(digits.len())];
                let end = (start..len).find(|&i| !data[i].is_ascii_digit()).unwrap_or(len);
                data.splice(start..end, text.into_bytes());
            }
        }
        10 => {
            // Tokens that mean something to one of the formats.
            const TOKENS: &[&[u8]] = &[
                b"\"",
                b",",
                b"\n",
                b"\r\n",
                b"\t",
                b"{",
                b"}",
                b"[",
                b"]",
                b":",
                b"null",
                b"\\u0000",
                b"\xff\xfe",
                b"\xc3",
                b"=",
                b"[[",
                b"\"\"\"",
                b"'",
                b"#",
                b" ",
                b"\0",
                b"-DOCSTART-",
                b"B-",
                b"I-",
                b"..",
                b"/",
            ];
            let t = TOKENS[rng.below(TOKENS.len())];
            let i = rng.below(len + 1);
            data.splice(i..i, t.iter().copied());
        }
        _ if len > 1 => {
            // Swap two bytes.
            let (i, j) = (rng.below(len), rng.below(len));
            data.swap(i, j);
        }
        _ => data.push(rng.next() as u8),
    }
    data.truncate(MAX_INPUT);
}

fn mutate(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut data = if corpus.is_empty() { Vec::new() } else { corpus[rng.below(corpus.len())].clone() };
    for _ in 0..1 + rng.below(4) {
        mutate_once(rng, &mut data, corpus);
    }
    data
}

// ---------------------------------------------------------------------------------------------------------------
// Findings

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn findings_dir(target: &str) -> PathBuf {
    fuzz_dir().join("findings").join(target)
}

/// FNV-1a, to name a finding by its bytes.
fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Whether a finding with this description is already in `fuzz/findings/TARGET/` (from an earlier worker or run).
fn known(target: &str, kind: &str, what: &str) -> bool {
    let line = format!("{kind}: {what}\n");
    std::fs::read_dir(findings_dir(target)).is_ok_and(|d| {
        d.filter_map(|e| e.ok()).any(|e| {
            e.path().extension().is_some_and(|x| x == "txt")
                && std::fs::read_to_string(e.path()).is_ok_and(|t| t == line)
        })
    })
}

/// Writes a finding and prints it (the first 200 bytes, escaped).
fn report(target: &str, kind: &str, what: &str, input: &[u8]) -> PathBuf {
    let dir = findings_dir(target);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{kind}-{:016x}", hash(input)));
    std::fs::write(&path, input).unwrap();
    std::fs::write(path.with_extension("txt"), format!("{kind}: {what}\n")).unwrap();
    let shown: String = input.iter().take(200).flat_map(|b| std::ascii::escape_default(*b)).map(char::from).collect();
    println!("FINDING {target} {kind}: {what}\n  input ({} bytes) {}: \"{shown}\"", input.len(), path.display());
    path
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.into_iter().map(|p| std::fs::read(p).unwrap()).filter(|d| d.len() <= MAX_INPUT).collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Worker

/// What the last panic said, kept by the panic hook instead of printing.
static PANIC: Mutex<Option<String>> = Mutex::new(None);

fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("?");
        let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let first = msg.lines().next().unwrap_or("");
        *PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("panic at {at}: {first}"));
    }));
}

/// An error message with its digits dropped: inputs that differ only in numbers say the same thing.
fn shape_of(msg: &str) -> String {
    msg.chars().filter(|c| !c.is_ascii_digit()).take(160).collect()
}

/// Fuzzes until the monotonic clock reads `deadline_ns` (the supervisor's deadline, whatever this process's
/// start-up took).
fn worker(target: &Target, deadline_ns: u64, seed: u64, state_path: &Path) {
    quiet_panics();
    tch::set_num_threads(1);
    let state = State::map(state_path);
    let scratch = Scratch::new();
    let mut pool = corpus(target.name);
    let seeds = pool.len();
    let mut rng = Rng(seed | 1);
    let mut messages: HashSet<String> = HashSet::new();
    let mut panics: HashSet<String> = HashSet::new();
    let mut i = 0u64;
    while now_ns() < deadline_ns {
        // The seeds as they are first, then mutants.
        let input = if (i as usize) < seeds { pool[i as usize].clone() } else { mutate(&mut rng, &pool) };
        i += 1;
        state.begin(&input);
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| (target.run)(&scratch, &input)));
        state.end();
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let shape = shape_of(&format!("{e:#}"));
                if messages.len() < 5000 && messages.insert(shape) && pool.len() < 2000 {
                    pool.push(input);
                }
            }
            Err(_) => {
                let what = PANIC.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
                // One finding per panic site: the same bug found again is not news.
                let site = shape_of(what.split(": ").next().unwrap_or(""));
                if panics.insert(site) && !known(target.name, "panic", &what) {
                    report(target.name, "panic", &what, &input);
                    state.set(1, state.get(1) + 1);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Supervisor

/// Fuzzes `target` for `seconds`; returns (executions, findings).
fn supervise(target: &Target, seconds: f64, seed: u64) -> (u64, u64) {
    let dir = findings_dir(target.name);
    std::fs::create_dir_all(&dir).unwrap();
    let state_path = dir.join(format!(".state-{}", std::process::id()));
    let _ = std::fs::remove_file(&state_path);
    let state = State::map(&state_path);
    let start = Instant::now();
    let deadline = now_ns() + (seconds * 1e9) as u64;
    let (mut execs, mut findings) = (0u64, 0u64);
    let mut fatal_sites: HashSet<String> = HashSet::new();
    let mut round = 0u64;
    loop {
        let left = seconds - start.elapsed().as_secs_f64();
        if left <= 0.5 {
            break;
        }
        for i in 0..4 {
            state.set(i, 0);
        }
        round += 1;
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .args(["worker", target.name, &deadline.to_string(), &format!("{}", seed ^ round.wrapping_mul(0x9E37))])
            .arg(&state_path)
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the worker");
        // Drain stderr on a thread (a chatty library must not block the worker) and keep its tail.
        let mut err = child.stderr.take().unwrap();
        let tail = std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = std::io::Read::read_to_end(&mut err, &mut all);
            let s = String::from_utf8_lossy(&all).into_owned();
            s[s.len().saturating_sub(2000)..].to_string()
        });
        let mut hung = false;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            let began = state.get(2);
            if began != 0 && now_ns().saturating_sub(began) > TIMEOUT.as_nanos() as u64 {
                hung = true;
                let _ = child.kill();
                break child.wait().unwrap();
            }
            // Past the deadline by more than a hang's length: the worker is stuck outside a call.
            if start.elapsed().as_secs_f64() > seconds + 2.0 * TIMEOUT.as_secs_f64() {
                let _ = child.kill();
                break child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = tail.join().unwrap_or_default();
        execs += state.get(0);
        findings += state.get(1);
        let in_call = state.get(2) != 0;
        if hung || (!status.success() && in_call) {
            let input = state.input();
            let (kind, what) = if hung {
                ("timeout", format!("a call over {} s", TIMEOUT.as_secs()))
            } else {
                let reason = stderr
                    .lines()
                    .rev()
                    .find(|l| l.starts_with("FINDING") || l.contains("overflow") || l.contains("fatal"))
                    .unwrap_or("")
                    .trim_start_matches("FINDING ")
                    .to_string();
                ("crash", format!("{status}; {reason}"))
            };
            execs += 1;
            if fatal_sites.insert(format!("{kind} {}", shape_of(&what))) && !known(target.name, kind, &what) {
                report(target.name, kind, &what, &input);
                findings += 1;
            }
        } else if !status.success() {
            eprintln!("{}: the worker failed outside a call ({status}):\n{stderr}", target.name);
            break;
        }
    }
    let _ = std::fs::remove_file(&state_path);
    (execs, findings)
}

/// Runs one input in this process and says what happened.
fn repro(target: &Target, file: &Path) -> ExitCode {
    let input = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let scratch = Scratch::new();
    let t = Instant::now();
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| (target.run)(&scratch, &input)));
    match r {
        Ok(Ok(())) => println!("ok in {:?}", t.elapsed()),
        Ok(Err(e)) => println!("error in {:?}: {e:#}", t.elapsed()),
        Err(_) => {
            println!("PANIC");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!("usage: suite-fuzz list | run TARGET SECONDS [SEED] | repro TARGET FILE");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target = |name: &str| {
        targets::find(name).unwrap_or_else(|| {
            let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
            eprintln!("unknown target {name:?}; targets: {}", names.join(" "));
            std::process::exit(2)
        })
    };
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["list"] => {
            for t in TARGETS {
                println!("{}", t.name);
            }
            ExitCode::SUCCESS
        }
        ["run", name, seconds, rest @ ..] => {
            let Ok(seconds) = seconds.parse::<f64>() else { return usage() };
            let seed = rest.first().and_then(|s| s.parse().ok()).unwrap_or_else(now_ns);
            let t = target(name);
            let start = Instant::now();
            let (execs, findings) = supervise(t, seconds, seed);
            println!(
                "{:<16} executions {:>9}  seconds {:>6.0}  findings {}",
                t.name,
                execs,
                start.elapsed().as_secs_f64(),
                findings
            );
            let _ = std::io::stdout().flush();
            ExitCode::SUCCESS
        }
        ["worker", name, deadline, seed, state] => {
            worker(target(name), deadline.parse().unwrap(), seed.parse().unwrap(), Path::new(state));
            ExitCode::SUCCESS
        }
        ["repro", name, file] => repro(target(name), Path::new(file)),
        _ => usage(),
    }
}
