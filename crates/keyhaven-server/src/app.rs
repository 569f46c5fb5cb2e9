//! Router assembly, the per-request middleware and the server's life cycle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use keyhaven_core::time::Clock;

use crate::api;
use crate::api::error::{render, ApiError, ErrorInfo};
use keyhaven_service::config::Config;
use keyhaven_service::organizations::Bootstrap;
use keyhaven_service::{Service, SystemClock};

/// Largest request body, except where a route sets its own.
pub const MAX_BODY: usize = 1024 * 1024;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The use cases.
    pub service: Service,
    /// Resolved settings.
    pub config: Arc<Config>,
}

/// Request counters for `/metrics`, by status class (1xx…5xx), with total latency.
#[derive(Default)]
pub struct RequestStats {
    /// Requests per status class, index 0 = 1xx.
    pub by_class: [std::sync::atomic::AtomicU64; 5],
    /// Sum of request durations, microseconds.
    pub micros: std::sync::atomic::AtomicU64,
}

/// The process-wide request counters.
pub static REQUESTS: std::sync::LazyLock<RequestStats> =
    std::sync::LazyLock::new(RequestStats::default);

/// The request id of the current request.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A new request id: 26 lowercase characters, time-sortable, unique (a ULID built from
/// the clock and a per-process counter seeded at random, so no RNG call per request).
fn new_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: std::sync::LazyLock<AtomicU64> =
        std::sync::LazyLock::new(|| AtomicU64::new(rand::random()));
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut id = ulid::Ulid::from_parts(ms, u128::from(n)).to_string();
    id.make_ascii_lowercase();
    id
}

fn sane_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| s.to_string())
}

/// The request's id: the caller's `X-Request-Id` when it is sane, else a new one.
fn request_id(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(sane_request_id)
        .unwrap_or_else(new_request_id)
}

/// Longest path plus query answered, bytes. Longer ones get 414 with the error object;
/// hyper itself refuses a URI over 64 KiB before it reaches Keyhaven (an empty 414).
pub const MAX_URI: usize = 16 * 1024;

/// Whether `uri`'s path and query together are over [`MAX_URI`].
pub fn uri_too_long(uri: &axum::http::Uri) -> bool {
    uri.path().len() + uri.query().map_or(0, str::len) > MAX_URI
}

/// Gives every request an id (the caller's, if sane), echoes it in `X-Request-Id`,
/// renders error objects with it, and logs the request.
pub async fn request_context(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let rid = request_id(req.headers());
    req.extensions_mut().insert(RequestId(rid.clone()));
    let method = req.method().clone();
    let uri = req.uri().clone();
    if uri_too_long(&uri) {
        let res = ApiError::uri_too_long().into_response();
        return finish(res, &rid, started, &method, "(too long)");
    }
    let res = next.run(req).await;
    finish(res, &rid, started, &method, uri.path())
}

/// What every answer gets on its way out, on the router and on the hot path alike: the
/// error object rendered with the request id, `X-Request-Id`, the request counters and a
/// debug line in the log.
fn finish(
    mut res: Response,
    rid: &str,
    started: Instant,
    method: &axum::http::Method,
    path: &str,
) -> Response {
    if let Some(info) = res.extensions_mut().remove::<ErrorInfo>() {
        let status = res.status();
        let mut headers = std::mem::take(res.headers_mut());
        headers.remove(header::CONTENT_TYPE);
        headers.remove(header::CONTENT_LENGTH);
        res = (status, axum::Json(render(&info, rid))).into_response();
        // Keep what the handler set (`Retry-After`, `X-Keyhaven-Code`, …).
        for (name, value) in headers.iter() {
            res.headers_mut().append(name.clone(), value.clone());
        }
        if status.is_server_error() {
            tracing::error!(request_id = %rid, %method, %path, status = status.as_u16(), "request failed");
        }
    }
    if let Ok(v) = HeaderValue::from_str(rid) {
        res.headers_mut().insert("x-request-id", v);
    }
    let class = (res.status().as_u16() / 100).clamp(1, 5) as usize - 1;
    REQUESTS.by_class[class].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    REQUESTS.micros.fetch_add(
        started.elapsed().as_micros() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    tracing::debug!(
        request_id = %rid,
        %method,
        %path,
        status = res.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    res
}

/// The two verification routes, which [`Node`] serves without the router.
#[derive(Clone, Copy)]
enum Hot {
    Verify,
    Auth,
    Ratelimit,
}

/// What a connection is served by: verification requests (`POST /v1/keys/verify`,
/// `GET /v1/auth`) go straight to their handlers — the hot path skips routing and the
/// per-route layers, and needs no copy of the peer address in the request — while every
/// other request goes through the [`router`] as usual. Both end in the same
/// [`finish`] (request id, error object, counters) and both catch a panicking handler
/// (the router with `CatchPanicLayer`, the hot path with [`guarded`]), so answers are
/// the same either way.
#[derive(Clone)]
pub struct Node {
    router: Router,
    state: AppState,
    peer: SocketAddr,
}

impl Node {
    /// A node's service for the connection from `peer`.
    pub fn new(router: Router, state: AppState, peer: SocketAddr) -> Self {
        Node {
            router,
            state,
            peer,
        }
    }
}

type HotFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>;

/// [`Node`]'s answer in progress: the hot path's, or the router's.
// Unboxed on purpose: boxing the router's future would cost every routed request an
// allocation; one of these lives per request in flight.
#[allow(clippy::large_enum_variant)]
pub enum NodeFuture {
    /// A verification.
    Hot(HotFuture),
    /// Anything else.
    Routed(axum::routing::future::RouteFuture<std::convert::Infallible>),
}

impl std::future::Future for NodeFuture {
    type Output = Result<Response, std::convert::Infallible>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.get_mut() {
            NodeFuture::Hot(f) => f.as_mut().poll(cx).map(Ok),
            NodeFuture::Routed(f) => std::pin::Pin::new(f).poll(cx),
        }
    }
}

impl tower::Service<Request> for Node {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = NodeFuture;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request) -> NodeFuture {
        let hot = match (req.method(), req.uri().path()) {
            (&axum::http::Method::POST, "/v1/keys/verify") => Some(Hot::Verify),
            (&axum::http::Method::GET, "/v1/auth") => Some(Hot::Auth),
            // With a key, authenticated like a verification; with a session, routed.
            (&axum::http::Method::POST, "/v1/ratelimit")
                if req
                    .headers()
                    .contains_key(axum::http::header::AUTHORIZATION)
                    || req.headers().contains_key("x-api-key") =>
            {
                Some(Hot::Ratelimit)
            }
            _ => None,
        };
        match hot {
            Some(kind) => {
                let state = self.state.clone();
                let peer = Some(self.peer.ip());
                NodeFuture::Hot(Box::pin(async move {
                    let started = Instant::now();
                    let rid = request_id(req.headers());
                    // The same panic guard as the router's layers: a panic answers the
                    // 500 error object instead of dropping the connection.
                    let (method, path, res) = match kind {
                        Hot::Verify => (
                            axum::http::Method::POST,
                            "/v1/keys/verify",
                            guarded(api::verify::verify_request(&state, peer, req)).await,
                        ),
                        Hot::Auth => (
                            axum::http::Method::GET,
                            "/v1/auth",
                            guarded(api::verify::forward_auth_request(&state, peer, req)).await,
                        ),
                        Hot::Ratelimit => (
                            axum::http::Method::POST,
                            "/v1/ratelimit",
                            guarded(api::ratelimit::check_request(&state, peer, req)).await,
                        ),
                    };
                    finish(res, &rid, started, &method, path)
                }))
            }
            None => {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(self.peer));
                NodeFuture::Routed(tower::Service::call(&mut self.router, req))
            }
        }
    }
}

/// Polls a hot-path handler, answering [`panic_response`] if it panics.
struct CatchPanic<'a, F>(std::pin::Pin<&'a mut F>);

impl<F: std::future::Future<Output = Response>> std::future::Future for CatchPanic<'_, F> {
    type Output = Response;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Response> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(poll) => poll,
            // Answered: the panicked future is never polled again.
            Err(panic) => std::task::Poll::Ready(panic_response(panic)),
        }
    }
}

/// Runs a hot-path handler under the panic guard (no allocation: pinned in place).
async fn guarded<F: std::future::Future<Output = Response>>(handler: F) -> Response {
    let handler = std::pin::pin!(handler);
    CatchPanic(handler).await
}

/// Serves `state` on `listener` until `shutdown` resolves: each connection gets a
/// [`Node`].
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let app = router(state.clone());
    // Answers go out as soon as they are written, not held back by Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let make = tower::service_fn(move |conn: axum::serve::IncomingStream<'_, _>| {
        let node = Node::new(app.clone(), state.clone(), *conn.remote_addr());
        std::future::ready(Ok::<_, std::convert::Infallible>(node))
    });
    axum::serve(listener, make)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "route_not_found",
        "no such endpoint",
        None,
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        "method_not_allowed",
        "this endpoint does not accept that method",
        None,
    )
}

/// The answer to a request whose handler panicked: the internal-error object. The
/// panic message is not echoed (it may hold request data); it is logged instead.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = what, "a request handler panicked");
    ApiError::internal().into_response()
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    outer_layers(
        api::routes()
            .merge(crate::console::routes())
            .fallback(|s: axum::extract::State<AppState>, r: Request| {
                crate::console::not_found(s.0, r, not_found)
            })
            .method_not_allowed_fallback(|s: axum::extract::State<AppState>, r: Request| {
                crate::console::method_not_allowed(s.0, r, method_not_allowed)
            }),
    )
    .with_state(state)
}

/// The layers around every route: body limit, panic catching, request context.
fn outer_layers<S: Clone + Send + Sync + 'static>(r: Router<S>) -> Router<S> {
    r.layer(DefaultBodyLimit::max(MAX_BODY))
        // A panicking handler answers with the contract's 500 error object (rendered
        // with the request id by `request_context`) instead of dropping the connection.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(middleware::from_fn(request_context))
}

/// Builds the state from settings: opens (and migrates) the database.
pub async fn build_state(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
    let service = Service::open(&config, clock).await?;
    Ok(AppState {
        service,
        config: Arc::new(config),
    })
}

/// Runs `keyhaven serve` until SIGTERM or SIGINT.
pub async fn serve(mut config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let local = listener.local_addr()?;
    if config.public_url_from_listen {
        config.public_url = format!("http://{local}");
    }
    config.listen = local;
    let state = build_state(config, Arc::new(SystemClock)).await?;
    let cfg = state.config.clone();
    match state
        .service
        .bootstrap(
            &cfg.bootstrap_admin_email,
            cfg.bootstrap_admin_password.as_ref().map(|p| p.expose()),
        )
        .await?
    {
        Bootstrap::Created {
            organization,
            admin,
            generated_password,
        } => {
            println!(
                "Created organization {:?} ({}) and its super-admin.",
                organization.name, organization.id
            );
            println!("  Console:  {}/", cfg.public_url);
            println!("  Email:    {}", admin.email);
            match generated_password {
                Some(p) => println!("  Password: {p}   (shown once: write it down, then change it on the account page)"),
                None => println!("  Password: the one set in KEYHAVEN_BOOTSTRAP_ADMIN_PASSWORD"),
            }
        }
        Bootstrap::AlreadyInitialized => {}
    }
    println!(
        "Keyhaven listening on http://{local} (console: {}/)",
        cfg.public_url
    );
    tracing::info!(%local, backend = ?state.service.backend(), "listening");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let background = spawn_background(&state, stopped);
    serve_on(listener, state.clone(), shutdown_signal()).await?;
    tracing::info!("shutting down");
    let _ = stop.send(true);
    for task in background {
        let _ = task.await;
    }
    // The last usage counts: nothing acknowledged is lost on a graceful stop.
    state.service.finish().await;
    Ok(())
}

/// Starts the background work of a node (see [`Service::spawn_background`]); it stops
/// when `stopped` turns true.
pub fn spawn_background(
    state: &AppState,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    state.service.spawn_background(&state.config, stopped)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_answers_the_error_object() {
        async fn boom() -> &'static str {
            panic!("handler bug")
        }
        let app = outer_layers(Router::new().route("/boom", axum::routing::get(boom)));
        let res = app
            .oneshot(
                Request::builder()
                    .uri("/boom")
                    .header("x-request-id", "req-1")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(res.headers()["x-request-id"], "req-1");
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "internal");
        assert_eq!(v["error"]["request_id"], "req-1");
        assert!(!v.to_string().contains("handler bug"), "{v}");
    }
}
