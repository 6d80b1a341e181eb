//! `POST /v1/models/{id}/predict`: image classification (raw image, multipart `file` or JSON base64) and text
//! models (JSON `{"inputs": …}`), answered with the same JSON as `suite predict --json`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use suite_text::predict::TextInput;

use super::ModelLabel;
use crate::engines::{TextRequest, VisionRequest};
use crate::error::{from_rejection, AppError};
use crate::state::{AppState, Handle};

/// Labels per input when the request does not say (as `suite predict --top-k`).
const DEFAULT_TOP_K: usize = 5;
/// Most inputs in one text request.
const MAX_INPUTS: usize = 256;

/// `?top_k=N`.
#[derive(Debug, Deserialize)]
pub struct PredictQuery {
    top_k: Option<usize>,
}

/// The handler: the model's domain decides how the body is read.
pub async fn predict(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Result<Query<PredictQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Result<Response, AppError> {
    let (served, info) = state.model(&id)?;
    let Query(query) = query.map_err(|e| from_rejection(e.status(), e.body_text(), "top_k"))?;
    let body = match &served.handle {
        Handle::Vision(queue) => {
            let (bytes, top_k) = vision_body(&state, req).await?;
            let top_k = check_top_k(top_k.or(query.top_k))?;
            let pre = info.preprocessor.clone().ok_or_else(|| AppError::Internal("no image preprocessor".into()))?;
            // Decoding is CPU work: on the blocking pool, beside the inference thread, never on the runtime's.
            let image = tokio::task::spawn_blocking(move || pre.decode(&bytes))
                .await
                .map_err(|_| AppError::Internal("image decoding failed inside libtorch".into()))?
                .map_err(|e| AppError::bad("file", format!("{e:#}")))?;
            let p = queue.submit(VisionRequest { image, top_k }).await?;
            json!({"model": id, "top": p.top})
        }
        Handle::Text(queue) => {
            let (inputs, top_k) = text_body(&state, req).await?;
            let top_k = check_top_k(top_k.or(query.top_k))?;
            let predictions = queue.submit(TextRequest { inputs, top_k }).await?;
            json!({"model": id, "predictions": predictions})
        }
        Handle::Speech(_) => {
            return Err(AppError::bad(
                "model",
                format!("{id:?} is a speech model: POST audio to /v1/audio/transcriptions or /v1/audio/translations"),
            ))
        }
        Handle::Chat(_) => {
            return Err(AppError::bad(
                "model",
                format!("{id:?} is a language model: POST to /v1/chat/completions or /v1/completions"),
            ))
        }
    };
    let mut response = Json(body).into_response();
    response.extensions_mut().insert(ModelLabel(id));
    Ok(response)
}

fn check_top_k(k: Option<usize>) -> Result<usize, AppError> {
    match k {
        None => Ok(DEFAULT_TOP_K),
        Some(0) => Err(AppError::bad("top_k", "top_k = 0: expected at least 1")),
        Some(k) => Ok(k),
    }
}

/// The request's media type, lower-case, without parameters (`multipart/form-data`, `application/json`…).
pub(super) fn media_type(req: &Request) -> Option<String> {
    let v = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(v.split(';').next().unwrap_or(v).trim().to_ascii_lowercase())
}

/// The whole body; an empty one is a 400.
pub(super) async fn body_bytes(state: &Arc<AppState>, req: Request) -> Result<Bytes, AppError> {
    let bytes = Bytes::from_request(req, state).await.map_err(|e| from_rejection(e.status(), e.body_text(), "body"))?;
    if bytes.is_empty() {
        return Err(AppError::bad("body", "the request body is empty"));
    }
    Ok(bytes)
}

/// An image request: `(encoded image, top_k from the body)`.
async fn vision_body(state: &Arc<AppState>, req: Request) -> Result<(Bytes, Option<usize>), AppError> {
    match media_type(&req).as_deref() {
        Some("multipart/form-data") => {
            let mut form = Multipart::from_request(req, state)
                .await
                .map_err(|e| from_rejection(e.status(), e.body_text(), "body"))?;
            let (mut file, mut top_k) = (None, None);
            while let Some(field) = form.next_field().await.map_err(multipart_error)? {
                match field.name().unwrap_or_default() {
                    "file" => file = Some(field.bytes().await.map_err(multipart_error)?),
                    "top_k" => {
                        let text = field.text().await.map_err(multipart_error)?;
                        top_k = Some(text.trim().parse::<usize>().map_err(|_| {
                            AppError::bad("top_k", format!("top_k = {text:?}: expected a positive whole number"))
                        })?);
                    }
                    _ => {}
                }
            }
            let file = file.ok_or_else(|| AppError::bad("file", "the form has no `file` field with the image"))?;
            if file.is_empty() {
                return Err(AppError::bad("file", "file: the uploaded image is empty (0 bytes)"));
            }
            Ok((file, top_k))
        }
        Some("application/json") => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct ImageJson {
                image: String,
                top_k: Option<usize>,
            }
            let bytes = body_bytes(state, req).await?;
            let body: ImageJson = serde_json::from_slice(&bytes).map_err(|e| {
                AppError::bad("body", format!("expected JSON {{\"image\": \"<base64>\", \"top_k\": N}}: {e}"))
            })?;
            let b64 = body.image.split_once("base64,").map(|(_, b)| b).unwrap_or(&body.image);
            let image = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| AppError::bad("image", format!("image: not valid base64: {e}")))?;
            if image.is_empty() {
                return Err(AppError::bad("image", "image: empty"));
            }
            Ok((Bytes::from(image), body.top_k))
        }
        None | Some("application/octet-stream") => Ok((body_bytes(state, req).await?, None)),
        Some(t) if t.starts_with("image/") => Ok((body_bytes(state, req).await?, None)),
        Some(t) => Err(AppError::UnsupportedMediaType(format!(
            "Content-Type {t}: an image model takes the image as the body (image/*, application/octet-stream), a \
             multipart form with `file`, or JSON {{\"image\": \"<base64>\"}}"
        ))),
    }
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> AppError {
    from_rejection(e.status(), e.body_text(), "body")
}

/// A text request: `(inputs, top_k from the body)`.
async fn text_body(state: &Arc<AppState>, req: Request) -> Result<(Vec<TextInput>, Option<usize>), AppError> {
    match media_type(&req).as_deref() {
        Some("application/json") => {}
        other => {
            return Err(AppError::UnsupportedMediaType(format!(
                "Content-Type {}: a text model takes JSON {{\"inputs\": …}} (application/json)",
                other.unwrap_or("(none)")
            )))
        }
    }
    let bytes = body_bytes(state, req).await?;
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|e| AppError::bad("body", format!("the body is not valid JSON: {e}")))?;
    let Value::Object(map) = body else {
        return Err(AppError::bad("body", "expected a JSON object {\"inputs\": …}"));
    };
    let top_k = match map.get("top_k") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .map(|k| k as usize)
                .ok_or_else(|| AppError::bad("top_k", format!("top_k = {v}: expected a positive whole number")))?,
        ),
    };
    for key in map.keys() {
        if key != "inputs" && key != "top_k" {
            return Err(AppError::bad(key.as_str(), format!("unknown field {key:?}; expected `inputs` and `top_k`")));
        }
    }
    let inputs = map.get("inputs").ok_or_else(|| AppError::bad("inputs", "the body has no `inputs` field"))?;
    Ok((parse_inputs(inputs)?, top_k))
}

/// `inputs`: a string, an object, or a non-empty list of those.
pub fn parse_inputs(v: &Value) -> Result<Vec<TextInput>, AppError> {
    match v {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(AppError::bad("inputs", "inputs: an empty list"));
            }
            if items.len() > MAX_INPUTS {
                return Err(AppError::bad("inputs", format!("inputs: {} items, at most {MAX_INPUTS}", items.len())));
            }
            items.iter().enumerate().map(|(i, item)| parse_input(item, &format!("inputs[{i}]"))).collect()
        }
        other => Ok(vec![parse_input(other, "inputs")?]),
    }
}

/// One input, read by the text crate's own JSON reader (the one `suite predict text` uses for JSONL lines); its
/// error is prefixed with where in the body the input stands.
fn parse_input(v: &Value, at: &str) -> Result<TextInput, AppError> {
    TextInput::from_json(v).map_err(|e| AppError::bad(at, format!("{at}: {e:#}")))
}
