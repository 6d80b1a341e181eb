//! `suite`: fine-tune pretrained text, vision and speech models from the command line.

mod args;
mod commands;
mod job;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A file over the file-size limit (RLIMIT_FSIZE) would kill the process with SIGXFSZ mid-write; ignored, the
    // write fails with EFBIG and is reported like a full disk (ENOSPC): one error line naming the file.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let cli = args::Cli::parse();
    // libtorch reports some failures by panicking inside tch; turn any panic into one error line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("unknown failure");
        // `suite … | head` closes stdout early: end quietly, as a tool killed by SIGPIPE does (128 + 13).
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        // tch's panics carry libtorch's whole C++ backtrace, escaped: keep its first line.
        let first = msg.lines().next().unwrap_or(msg).split("\\n").next().unwrap_or(msg);
        eprintln!("error: internal failure: {first}");
    }));
    match std::panic::catch_unwind(|| commands::run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", chain.join(": "));
            ExitCode::from(2)
        }
        Err(_) => ExitCode::from(101),
    }
}
