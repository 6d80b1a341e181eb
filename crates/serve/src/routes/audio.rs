//! OpenAI's audio API: `POST /v1/audio/transcriptions` and `/v1/audio/translations` with a multipart form
//! (`file`, `model`, `language`, `prompt`, `response_format`, `temperature`, `timestamp_granularities[]`), so
//! OpenAI's own client and the curl examples of its documentation work unchanged.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use suite_speech::decode::{language_name, ResponseFormat, TranscribeOptions};
use suite_speech::tokenizer::Task;

use super::ModelLabel;
use crate::config::Domain;
use crate::engines::SpeechRequest;
use crate::error::{from_rejection, AppError};
use crate::state::{AppState, Handle};

/// OpenAI's model name, which clients send by default: the first speech model served answers it.
const OPENAI_MODEL: &str = "whisper-1";

pub async fn transcriptions(state: State<Arc<AppState>>, req: Request) -> Result<Response, AppError> {
    audio(state, req, Task::Transcribe).await
}

pub async fn translations(state: State<Arc<AppState>>, req: Request) -> Result<Response, AppError> {
    audio(state, req, Task::Translate).await
}

/// The fields of the form, as sent.
#[derive(Default)]
struct Form {
    file: Option<(Bytes, Option<String>)>,
    model: Option<String>,
    language: Option<String>,
    prompt: Option<String>,
    response_format: Option<String>,
    temperature: Option<String>,
    granularities: Vec<String>,
}

async fn read_form(state: &Arc<AppState>, req: Request) -> Result<Form, AppError> {
    let ctype = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("(none)");
    if !ctype.to_ascii_lowercase().starts_with("multipart/form-data") {
        return Err(AppError::UnsupportedMediaType(format!(
            "Content-Type {ctype}: the audio API takes a multipart/form-data form with `file` and `model`"
        )));
    }
    let mut form_data =
        Multipart::from_request(req, state).await.map_err(|e| from_rejection(e.status(), e.body_text(), "body"))?;
    let mut form = Form::default();
    let err = |e: axum::extract::multipart::MultipartError| from_rejection(e.status(), e.body_text(), "body");
    while let Some(field) = form_data.next_field().await.map_err(err)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            let filename = field.file_name().map(String::from);
            form.file = Some((field.bytes().await.map_err(err)?, filename));
            continue;
        }
        let text = || async { field.text().await.map_err(err) };
        match name.as_str() {
            "model" => form.model = Some(text().await?),
            "language" => form.language = Some(text().await?),
            "prompt" => form.prompt = Some(text().await?),
            "response_format" => form.response_format = Some(text().await?),
            "temperature" => form.temperature = Some(text().await?),
            "timestamp_granularities[]" | "timestamp_granularities" => form.granularities.push(text().await?),
            // Fields of newer API versions (stream, chunking_strategy, include[]) are not errors.
            _ => {}
        }
    }
    Ok(form)
}

async fn audio(State(state): State<Arc<AppState>>, req: Request, task: Task) -> Result<Response, AppError> {
    let form = read_form(&state, req).await?;
    let (audio, filename) =
        form.file.ok_or_else(|| AppError::bad("file", "the form has no `file` field with the audio"))?;
    if audio.is_empty() {
        return Err(AppError::bad("file", "file: the uploaded audio is empty (0 bytes)"));
    }
    let id = resolve_model(&state, form.model.as_deref())?;
    let (served, _) = state.model(&id)?;
    let Handle::Speech(queue) = &served.handle else {
        return Err(AppError::bad("model", format!("model {id:?} is not a speech model")));
    };
    let format = match form.response_format.as_deref().map(str::trim) {
        None | Some("") => ResponseFormat::Json,
        Some(f) => f.parse::<ResponseFormat>().map_err(|e| AppError::bad("response_format", format!("{e:#}")))?,
    };
    let language = match form.language.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(code) => {
            let code = code.to_ascii_lowercase();
            if language_name(&code).is_none() {
                return Err(AppError::bad(
                    "language",
                    format!("language {code:?}: expected an ISO-639-1 code that Whisper knows (en, de, fr, …)"),
                ));
            }
            Some(code)
        }
    };
    let temperature = match form.temperature.as_deref().map(str::trim) {
        None | Some("") => 0.0,
        Some(t) => match t.parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => v,
            _ => return Err(AppError::bad("temperature", format!("temperature = {t:?}: expected a number in 0..1"))),
        },
    };
    for g in &form.granularities {
        match g.trim() {
            "segment" => {}
            "word" => {
                return Err(AppError::bad(
                    "timestamp_granularities[]",
                    "word-level timestamps are not available from this server yet; use `segment`",
                ))
            }
            other => {
                return Err(AppError::bad(
                    "timestamp_granularities[]",
                    format!("timestamp_granularities[] = {other:?}: expected `segment` or `word`"),
                ))
            }
        }
    }
    let options = TranscribeOptions {
        language,
        task,
        beam_size: state.beam_size,
        // OpenAI: "If set to 0, the model will use log probability to automatically increase the temperature
        // until certain thresholds are hit": the ladder starts at the given temperature.
        temperatures: TranscribeOptions::fallback_temperatures(temperature),
        initial_prompt: form.prompt.filter(|p| !p.trim().is_empty()),
        ..TranscribeOptions::default()
    };
    options.validate().map_err(|e| AppError::bad("body", format!("{e:#}")))?;
    // Decoding and resampling are CPU work: on the blocking pool, beside the inference thread.
    let samples =
        tokio::task::spawn_blocking(move || suite_speech::audio::decode_audio_bytes(&audio, filename.as_deref()))
            .await
            .map_err(|_| AppError::Internal("audio decoding failed".into()))?
            .map_err(|e| AppError::bad("file", format!("file: {e:#}")))?;
    if samples.is_empty() {
        return Err(AppError::bad("file", "file: no audio in the upload (0 samples)"));
    }
    let reply = queue.submit(SpeechRequest { samples, options, format }).await?;
    let mut response = ([(header::CONTENT_TYPE, reply.content_type)], reply.body).into_response();
    response.extensions_mut().insert(ModelLabel(id));
    Ok(response)
}

/// The speech model a form names: a served speech model by id, or — for `whisper-1` (OpenAI's name, which
/// clients send by default) or no name — the first speech model served.
fn resolve_model(state: &AppState, asked: Option<&str>) -> Result<String, AppError> {
    let asked = asked.map(str::trim).filter(|m| !m.is_empty());
    if let Some(id) = asked {
        if state.models.contains_key(id) {
            return Ok(id.to_string());
        }
    }
    let first_speech = state.models.values().find(|m| m.domain == Domain::Speech).map(|m| m.id.clone());
    match (asked, first_speech) {
        (None | Some(OPENAI_MODEL), Some(id)) => Ok(id),
        (None | Some(OPENAI_MODEL), None) => {
            Err(AppError::NotFound { message: "no speech model is served here".into(), code: "model_not_found" })
        }
        (Some(id), _) => Err(AppError::unknown_model(id, &state.ids())),
    }
}
