//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use crate::app::AppState;

/// `GET /healthz`: 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "the process runs")))]
pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when the database answers, else 503.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "ready"), (status = 503, description = "the database does not answer")))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let check = tokio::time::timeout(std::time::Duration::from_secs(2), state.service.ping()).await;
    match check {
        Ok(Ok(())) => (StatusCode::OK, axum::Json(json!({ "status": "ready" }))),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                json!({ "status": "unavailable", "reason": "the database does not answer" }),
            ),
        ),
    }
}

/// `GET /metrics`: Prometheus text — requests, verifications by code, cache size and
/// hit ratio, usage flush lag.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let v = &state.service.verifier();
    let mut out = String::with_capacity(2048);
    let _ = writeln!(
        out,
        "# HELP keyhaven_http_requests_total HTTP requests answered, by status class."
    );
    let _ = writeln!(out, "# TYPE keyhaven_http_requests_total counter");
    for (i, c) in crate::app::REQUESTS.by_class.iter().enumerate() {
        let _ = writeln!(
            out,
            "keyhaven_http_requests_total{{class=\"{}xx\"}} {}",
            i + 1,
            c.load(Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP keyhaven_http_request_duration_seconds_sum Total time spent answering requests."
    );
    let _ = writeln!(
        out,
        "# TYPE keyhaven_http_request_duration_seconds_sum counter"
    );
    let _ = writeln!(
        out,
        "keyhaven_http_request_duration_seconds_sum {}",
        crate::app::REQUESTS.micros.load(Relaxed) as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "# HELP keyhaven_verifications_total Key verifications, by answer code."
    );
    let _ = writeln!(out, "# TYPE keyhaven_verifications_total counter");
    for code in keyhaven_service::verify::Code::ALL {
        let _ = writeln!(
            out,
            "keyhaven_verifications_total{{code=\"{}\"}} {}",
            code.as_str(),
            v.stats.count(code)
        );
    }
    let hits = v.stats.hits.load(Relaxed);
    let misses = v.stats.misses.load(Relaxed);
    let _ = writeln!(
        out,
        "# TYPE keyhaven_key_cache_entries gauge\nkeyhaven_key_cache_entries {}",
        v.cache.len()
    );
    let _ = writeln!(
        out,
        "# TYPE keyhaven_key_cache_hits_total counter\nkeyhaven_key_cache_hits_total {hits}"
    );
    let _ = writeln!(
        out,
        "# TYPE keyhaven_key_cache_misses_total counter\nkeyhaven_key_cache_misses_total {misses}"
    );
    let _ = writeln!(
        out,
        "# TYPE keyhaven_key_index_refusals_total counter\nkeyhaven_key_index_refusals_total {}",
        v.stats.index_refusals.load(Relaxed)
    );
    let _ = writeln!(
        out,
        "# TYPE keyhaven_key_index_prefixes gauge\nkeyhaven_key_index_prefixes {}",
        v.index.len()
    );
    let ratio = if hits + misses == 0 {
        0.0
    } else {
        hits as f64 / (hits + misses) as f64
    };
    let _ = writeln!(
        out,
        "# TYPE keyhaven_key_cache_hit_ratio gauge\nkeyhaven_key_cache_hit_ratio {ratio}"
    );
    let last = v.usage.last_flush_ms.load(Relaxed);
    let lag = if last == 0 {
        0.0
    } else {
        (chrono::Utc::now().timestamp_millis() - last).max(0) as f64 / 1000.0
    };
    let _ = writeln!(
        out,
        "# HELP keyhaven_usage_flush_lag_seconds Time since usage counts were last written."
    );
    let _ = writeln!(
        out,
        "# TYPE keyhaven_usage_flush_lag_seconds gauge\nkeyhaven_usage_flush_lag_seconds {lag}"
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
}
