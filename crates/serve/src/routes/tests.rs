//! The router driven without a socket (`tower::ServiceExt::oneshot`): routes that need no model — the page,
//! health, readiness, metrics, JSON 404/405/401 in OpenAI's error shape. Requests to real models are tested end
//! to end in tests/serve_cli.rs.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::app;
use crate::metrics::Metrics;
use crate::state::AppState;

fn state(key: Option<&str>) -> Arc<AppState> {
    Arc::new(AppState::new(Vec::new(), Arc::new(Metrics::new()), key, 1024, 1))
}

async fn call(state: Arc<AppState>, req: Request<Body>) -> (StatusCode, String, String) {
    let res = app(state).oneshot(req).await.unwrap();
    let status = res.status();
    let ctype = res.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, ctype, String::from_utf8_lossy(&body).into_owned())
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// Asserts OpenAI's error shape and returns the message.
#[track_caller]
fn error_message(ctype: &str, body: &str) -> String {
    assert!(ctype.starts_with("application/json"), "{ctype}: {body}");
    let v: Value = serde_json::from_str(body).unwrap();
    let e = &v["error"];
    assert!(e["type"].is_string() && e.get("param").is_some() && e.get("code").is_some(), "{body}");
    e["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn health_page_and_metrics_answer() {
    let (s, _, body) = call(state(None), get("/health")).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, r#"{"status":"ok"}"#));
    let (s, ctype, body) = call(state(None), get("/")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(
        body.contains("/v1/models") && !body.contains("http://") && !body.contains("https://"),
        "the page must be self-contained"
    );
    let (s, ctype, _) = call(state(None), get("/metrics")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    // The request above was counted before this one answered.
    let st = state(None);
    call(st.clone(), get("/health")).await;
    let (_, _, body2) = call(st, get("/metrics")).await;
    assert!(body2.contains(r#"suite_requests_total{model="-",route="/health",status="200"} 1"#), "{body2}");
}

#[tokio::test]
async fn unknown_routes_methods_and_models_are_json_errors() {
    let (s, ctype, body) = call(state(None), get("/nowhere")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(error_message(&ctype, &body).contains("/nowhere"));
    let (s, ctype, body) = call(state(None), Request::delete("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert!(error_message(&ctype, &body).contains("DELETE"));
    let req = Request::post("/v1/models/ghost/predict").body(Body::from("{}")).unwrap();
    let (s, ctype, body) = call(state(None), req).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(error_message(&ctype, &body).contains("ghost"));
    let (s, ctype, body) = call(state(None), get("/v1/models/ghost")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(error_message(&ctype, &body).contains("ghost"));
}

#[tokio::test]
async fn the_api_key_guards_every_route_but_health_and_the_page() {
    let key = Some("s3cret");
    assert_eq!(call(state(key), get("/health")).await.0, StatusCode::OK);
    assert_eq!(call(state(key), get("/")).await.0, StatusCode::OK);
    for (auth, expected) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("Bearer nope"), StatusCode::UNAUTHORIZED),
        (Some("Basic czNjcmV0"), StatusCode::UNAUTHORIZED),
        (Some("Bearer s3cret"), StatusCode::OK),
    ] {
        let mut req = Request::get("/v1/models");
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let (s, ctype, body) = call(state(key), req.body(Body::empty()).unwrap()).await;
        assert_eq!(s, expected, "{auth:?}: {body}");
        if s == StatusCode::UNAUTHORIZED {
            error_message(&ctype, &body);
        }
    }
}

#[tokio::test]
async fn audio_routes_want_a_form_and_a_speech_model() {
    let req = Request::post("/v1/audio/transcriptions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let (s, ctype, body) = call(state(None), req).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(error_message(&ctype, &body).contains("multipart/form-data"));
    // A well-formed form, but nothing serves speech here.
    let form = "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--b\r\nContent-Disposition: \
                form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF\r\n--b--\r\n";
    let req = Request::post("/v1/audio/transcriptions")
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=b")
        .body(Body::from(form))
        .unwrap();
    let (s, ctype, body) = call(state(None), req).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert!(error_message(&ctype, &body).contains("no speech model"));
    // Over the 1 KiB limit of these tests' state.
    let big = format!(
        "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n{}\r\n--b--\r\n",
        "x".repeat(4096)
    );
    let req = Request::post("/v1/audio/transcriptions")
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=b")
        .body(Body::from(big))
        .unwrap();
    let (s, ctype, body) = call(state(None), req).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    error_message(&ctype, &body);
}
