//! The HTTP listener: accepts connections and serves the API router on each, with the limits a
//! server open to untrusted clients needs, for every route alike.
//!
//! - **Request head**: a client has `header_timeout` to send a request's line and headers, from
//!   the moment the connection opens or the previous response was written — so a connection
//!   dripping its head, or sitting idle between keep-alive requests, is closed after it. A head
//!   over `max_header_bytes` answers 431.
//! - **Request body**: a `Content-Length` over `max_body_bytes` answers 413 before a byte of the
//!   body is read; a body without a length is cut off at the same size (413). The whole body
//!   must arrive within `body_timeout` of the head (408), whatever its pace.
//! - **Shutdown**: once `stop` turns true the listener stops accepting, idle connections close,
//!   and in-flight requests get `shutdown_grace` to finish before their connections are
//!   dropped, so a half-sent request cannot hold the process.
//!
//! Each request carries its peer address as axum's `ConnectInfo<SocketAddr>` (the login
//! throttle counts failures per address).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::ApiError;

/// The limits of every connection and request (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Time to send a request head; also how long a keep-alive connection may idle.
    pub header_timeout: Duration,
    /// Time to send a whole request body once the head arrived.
    pub body_timeout: Duration,
    /// Largest request head, bytes.
    pub max_header_bytes: usize,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// How long in-flight requests may take to finish after `stop`.
    pub shutdown_grace: Duration,
}

/// Serves `app` on `listener` until `stop` turns true and the connections are drained (or the
/// grace period is over).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: watch::Receiver<bool>,
) {
    let app = app.layer(axum::middleware::from_fn_with_state(
        Arc::new(limits),
        read_body,
    ));
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes);
    let http1 = Arc::new(http1);
    let mut connections = JoinSet::new();
    let (each, mut stop) = (stop.clone(), stop);
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let (app, http1, stop) = (app.clone(), http1.clone(), each.clone());
                    connections.spawn(connection(socket, peer, app, http1, stop));
                }
                Err(e) => {
                    // Typically out of file descriptors: wait instead of spinning.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = &mut stopped => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            grace = ?limits.shutdown_grace,
            "closing HTTP connections still busy after the shutdown grace period"
        );
        connections.shutdown().await;
    }
}

/// One connection: served until the client closes it, a limit closes it, or `stop`.
async fn connection(
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    http1: Arc<hyper::server::conn::http1::Builder>,
    mut stop: watch::Receiver<bool>,
) {
    let service = app.map_request(move |mut request: Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    });
    let conn = http1.serve_connection(TokioIo::new(socket), TowerToHyperService::new(service));
    tokio::pin!(conn);
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stopped => {
            // Finish the request in flight (if any), then close; the listener bounds the wait.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

/// Enforces the body limits before a handler runs: refuses a declared length over the limit
/// without reading, then reads the body within the deadline and the size limit.
async fn read_body(State(limits): State<Arc<Limits>>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return too_large(limits.max_body_bytes);
    }
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, limits.max_body_bytes);
    let bytes = match tokio::time::timeout(limits.body_timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            // Over the limit (a body without a length) or the client went away mid-body.
            if is_length_limit(&e) {
                return too_large(limits.max_body_bytes);
            }
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("the request body could not be read: {e}"),
            )
            .into_response();
        }
        Err(_) => {
            let mut response = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    limits.body_timeout.as_secs_f64()
                ),
            )
            .into_response();
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            return response;
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn too_large(limit: usize) -> Response {
    let mut response = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!(
            "the request body is larger than the limit of {limit} bytes (server.max_body_bytes)"
        ),
    )
    .into_response();
    // The unread body stays on the wire: close rather than read it.
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

/// Whether a body error is `to_bytes` hitting its size limit.
fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}
