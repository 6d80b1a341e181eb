//! `GET /health`, `/ready`, `/metrics` and the model list in OpenAI's shape.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use crate::error::AppError;
use crate::state::{AppState, Served};

/// Alive: answers as long as the process serves HTTP.
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready once every model is loaded (503 before, so that a load balancer waits).
pub async fn ready(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let loading: Vec<&str> = state.models.values().filter(|m| m.info.get().is_none()).map(|m| m.id.as_str()).collect();
    if loading.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "loading", "loading": loading})))
    }
}

/// The Prometheus text exposition.
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render())
}

fn model_object(state: &AppState, m: &Served) -> Value {
    let info = m.info.get();
    json!({
        "id": m.id,
        "object": "model",
        "created": state.created,
        "owned_by": "suite",
        "domain": m.domain,
        "task": info.map(|i| i.task.as_str()),
        "labels": info.map(|i| i.labels.clone()).unwrap_or_default(),
        "precision": info.map(|i| i.precision),
        "ready": info.is_some(),
    })
}

/// `GET /v1/models`: OpenAI's list shape, plus each model's domain, task, labels and precision.
pub async fn list_models(State(state): State<Arc<AppState>>) -> Json<Value> {
    let data: Vec<Value> = state.models.values().map(|m| model_object(&state, m)).collect();
    Json(json!({"object": "list", "data": data}))
}

/// `GET /v1/models/{id}`.
pub async fn one_model(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Value>, AppError> {
    let m = state.models.get(&id).ok_or_else(|| AppError::unknown_model(&id, &state.ids()))?;
    Ok(Json(model_object(&state, m)))
}
