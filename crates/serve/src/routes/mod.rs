//! The HTTP routes, one small module each, and the middleware around them (API key, metrics, JSON 404/405).

mod audio;
mod chat;
mod chat_body;
mod info;
mod predict;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use subtle::ConstantTimeEq;

use crate::error::AppError;
use crate::state::{digest, AppState};

/// The model a response was about, put into its extensions by the handler so that the metrics can label it.
#[derive(Clone)]
pub struct ModelLabel(pub String);

/// The try-it page: one self-contained file, no external resources.
const PAGE: &str = include_str!("../../assets/index.html");

/// The whole application: every route with its middleware, over `state`. Apart from [`crate::serve`] so that
/// tests drive it without a socket.
pub fn app(state: Arc<AppState>) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/", get(page))
        .route("/health", get(info::health))
        .route("/ready", get(info::ready))
        .route("/metrics", get(info::metrics))
        .route("/v1/models", get(info::list_models))
        .route("/v1/models/{id}", get(info::one_model))
        .route("/v1/models/{id}/predict", post(predict::predict))
        .route("/v1/audio/transcriptions", post(audio::transcriptions))
        .route("/v1/audio/translations", post(audio::translations))
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/completions", post(chat::completions))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), require_key))
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn not_found(req: Request) -> AppError {
    AppError::NotFound { message: format!("no route {} {}", req.method(), req.uri().path()), code: "not_found" }
}

async fn method_not_allowed(req: Request) -> AppError {
    AppError::MethodNotAllowed(format!("{} is not allowed on {}", req.method(), req.uri().path()))
}

/// With an API key, every route but `/health` and the page needs `Authorization: Bearer KEY`; the digests of the
/// given and the expected key are compared in constant time.
async fn require_key(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(expected) = state.api_key_digest else { return next.run(req).await };
    let path = req.uri().path();
    if path == "/health" || path == "/" {
        return next.run(req).await;
    }
    let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = match given {
        None => {
            return AppError::Unauthorized("missing API key: send `Authorization: Bearer KEY`".into()).into_response()
        }
        Some(v) => match v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
            Some(t) => t.trim(),
            None => {
                return AppError::Unauthorized("the Authorization header must be `Bearer KEY`".into()).into_response()
            }
        },
    };
    if bool::from(digest(token).ct_eq(&expected)) {
        next.run(req).await
    } else {
        AppError::Unauthorized("incorrect API key".into()).into_response()
    }
}

/// Counts every answered request by route, model and status, and observes its latency.
async fn record(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let route = route.unwrap_or_else(|| "unmatched".into());
    let path_model = model_from_path(req.uri().path());
    let in_flight = state.metrics.in_flight.with_label_values(&[&route]);
    in_flight.inc();
    // Decremented on drop too, so that a client that goes away mid-request is not counted forever.
    struct Done(prometheus::IntGauge);
    impl Drop for Done {
        fn drop(&mut self) {
            self.0.dec();
        }
    }
    let _done = Done(in_flight);
    let response = next.run(req).await;
    let model = response.extensions().get::<ModelLabel>().map(|m| m.0.clone()).or(path_model);
    // A label only for served ids, so that clients cannot grow the metric without bound.
    let model = model.filter(|m| state.models.contains_key(m)).unwrap_or_else(|| "-".into());
    let status = response.status().as_u16().to_string();
    let m = &state.metrics;
    m.requests.with_label_values(&[&route, &model, &status]).inc();
    if response.status() != StatusCode::NOT_FOUND {
        m.latency.with_label_values(&[&route, &model]).observe(started.elapsed().as_secs_f64());
    }
    response
}

/// `ID` of `/v1/models/ID/…`.
fn model_from_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v1/models/")?;
    Some(rest.split('/').next().unwrap_or(rest).to_string())
}

#[cfg(test)]
mod chat_tests;
#[cfg(test)]
mod tests;
