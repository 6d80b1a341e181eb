//! The server's error type: what went wrong with a request, answered as JSON in OpenAI's error shape
//! (`{"error": {"message", "type", "param", "code"}}`) with the matching HTTP status.
//!
//! User-input errors become 4xx with a message meant for the client; anything else is a logged 500 whose message
//! does not leak internals beyond one line.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered to one request.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request is malformed (a missing or mistyped field, an undecodable image or audio file…).
    #[error("{message}")]
    BadRequest { message: String, param: Option<String> },
    /// 401: no API key, or the wrong one.
    #[error("{0}")]
    Unauthorized(String),
    /// 404: an unknown model or route.
    #[error("{message}")]
    NotFound { message: String, code: &'static str },
    /// 405: a known route called with another method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 413: the body is over `--max-body-mb`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: a content type the route does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 503: the model's queue is full (or the model is still loading); the client should retry after a while.
    #[error("{message}")]
    Unavailable { message: String, retry_after_s: u64 },
    /// 500: a bug or an internal failure (a libtorch error, a panic on the inference thread).
    #[error("{0}")]
    Internal(String),
}

impl AppError {
    /// A 400 naming the request part at fault.
    pub fn bad(param: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::BadRequest { message: message.into(), param: Some(param.into()) }
    }

    /// A 404 for a model id that is not served.
    pub fn unknown_model(id: &str, known: &[String]) -> Self {
        AppError::NotFound {
            message: format!("the model {id:?} is not served here; models: {}", known.join(", ")),
            code: "model_not_found",
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::NotFound { .. } => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `type` and `code` fields.
    fn kind(&self) -> (&'static str, Option<&'static str>) {
        match self {
            AppError::BadRequest { .. } => ("invalid_request_error", None),
            AppError::Unauthorized(_) => ("invalid_request_error", Some("invalid_api_key")),
            AppError::NotFound { code, .. } => ("invalid_request_error", Some(code)),
            AppError::MethodNotAllowed(_) => ("invalid_request_error", Some("method_not_allowed")),
            AppError::PayloadTooLarge(_) => ("invalid_request_error", Some("payload_too_large")),
            AppError::UnsupportedMediaType(_) => ("invalid_request_error", Some("unsupported_media_type")),
            AppError::Unavailable { .. } => ("server_error", Some("overloaded")),
            AppError::Internal(_) => ("server_error", None),
        }
    }

    /// The body of the error answer, `{"error": {"message", "type", "param", "code"}}` (also the event a stream
    /// sends when it fails after its start).
    pub fn to_json(&self) -> serde_json::Value {
        let (kind, code) = self.kind();
        let param = match self {
            AppError::BadRequest { param, .. } => param.clone(),
            _ => None,
        };
        json!({"error": {"message": self.to_string(), "type": kind, "param": param, "code": code}})
    }
}

impl From<anyhow::Error> for AppError {
    /// Errors that reach a handler through `?` without a status are internal: user-input errors are built as
    /// [`AppError::BadRequest`] where the input is checked.
    fn from(e: anyhow::Error) -> Self {
        AppError::Internal(format!("{e:#}"))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            eprintln!("error: internal failure answering a request: {self}");
        }
        let mut response = (status, axum::Json(self.to_json())).into_response();
        if let AppError::Unavailable { retry_after_s, .. } = &self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
        }
        if let AppError::Unauthorized(_) = &self {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Maps axum's extractor rejections (body too large, wrong content type, unparsable JSON or form) to the JSON
/// errors above, keeping axum's explanation.
pub fn from_rejection(status: StatusCode, text: String, param: &str) -> AppError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge(format!("{param}: {text}")),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => AppError::UnsupportedMediaType(format!("{param}: {text}")),
        s if s.is_client_error() => AppError::bad(param, format!("{param}: {text}")),
        _ => AppError::Internal(format!("{param}: {text}")),
    }
}
