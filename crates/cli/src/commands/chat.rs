//! `suite chat (--run RUN | --model DIR)`: a conversation on the terminal. Each line read from stdin is a user
//! message; the assistant's reply is streamed as it is generated. `/reset` forgets the conversation (the
//! `--system` message stays), `/exit` or the end of input quits.

use std::io::{BufRead, Write};

use anyhow::{Context, Result};
use suite_text::chat::ChatMessage;
use suite_text::generate::GenerationRequest;

use super::generate::{load_model, sampling_params};
use crate::args::ChatArgs;

/// Sampling temperature of a chat when `--temperature` is not given: greedy decoding makes small models repeat.
const DEFAULT_TEMPERATURE: f64 = 0.7;

/// Entry point.
pub fn run(args: ChatArgs) -> Result<()> {
    let sampling = sampling_params(&args.sampling, DEFAULT_TEMPERATURE)?;
    let lm = load_model(&args.model)?;
    let start: Vec<ChatMessage> = args.system.iter().map(|s| ChatMessage::new("system", s.as_str())).collect();
    // Fails now, not at the first message, when the model has no chat template.
    lm.render_chat(&start, true)?;
    eprintln!("chatting with {} (/reset starts over, /exit quits)", lm.model_id());
    let mut messages = start.clone();
    let mut stdout = std::io::stdout().lock();
    let mut turn: u64 = 0;
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading stdin")?;
        let text = line.trim();
        match text {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                messages = start.clone();
                eprintln!("(conversation reset)");
                continue;
            }
            _ => {}
        }
        messages.push(ChatMessage::new("user", text));
        let request = GenerationRequest {
            prompt: lm.render_chat(&messages, true)?,
            sampling,
            // Another seed each turn, so that a repeated question is not answered identically; reproducible.
            seed: args.sampling.seed.wrapping_add(turn),
            max_new_tokens: args.sampling.max_new_tokens,
            stop: Vec::new(),
        };
        turn += 1;
        let mut write_error = None;
        let result = lm.generate(std::slice::from_ref(&request), &mut |_, delta| {
            if let Err(e) = stdout.write_all(delta.as_bytes()).and_then(|_| stdout.flush()) {
                write_error.get_or_insert(e);
            }
        });
        if let Some(e) = write_error {
            return Err(e).context("writing to stdout");
        }
        match result {
            Ok(mut out) => {
                writeln!(stdout)?;
                messages.push(ChatMessage::new("assistant", out.remove(0).text));
            }
            Err(e) => {
                // The conversation outgrew the context: the user's last message is dropped, the session goes on.
                messages.pop();
                eprintln!("error: {e:#} (/reset to start over)");
            }
        }
    }
    Ok(())
}
