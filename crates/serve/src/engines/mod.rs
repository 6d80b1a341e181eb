//! The inference side of each domain: an [`Engine`](crate::worker::Engine) per domain that answers a batch of
//! requests through the domain crate's prediction API, and the loader that builds it on its inference thread.

mod chat;
mod speech;
mod text;
mod vision;

pub use chat::{ChatEngine, ChatEvent, ChatQueue, ChatRequest, Events, Prompt, TEXT_GENERATION};
pub use speech::{SpeechEngine, SpeechQueue, SpeechReply, SpeechRequest};
pub use text::{TextEngine, TextQueue, TextRequest};
pub use vision::{VisionEngine, VisionQueue, VisionRequest};

/// What `GET /v1/models` says of a model's weights.
fn precision_name(int8: bool) -> &'static str {
    if int8 {
        "int8"
    } else {
        "fp32"
    }
}
