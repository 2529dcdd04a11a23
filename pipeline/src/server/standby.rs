//! Servers taking turns on one shared store. One server holds the engine lease and runs
//! everything; the others stand by: they listen on their own address and forward every HTTP
//! request to the running server (whose internal URL it publishes in the store), so a client or
//! load balancer may talk to any of them. When the running server dies, the next one to take the
//! lease stops forwarding, starts for real on the same address, and publishes itself.
//!
//! A forwarded request carries [`FORWARDED`](super::relay::FORWARDED); a server standing by never forwards such a request
//! again (two standbys that both believe the other runs answer 503 instead of bouncing it).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use connectors::store::{Leadership, Store};
use serde_json::json;
use tokio::sync::watch;

use super::relay::{FORWARDED, relay, relay_client};
use crate::config::Config;
use crate::http::listener;

/// Meta key holding the running server's internal URL.
const RUNNING_URL: &str = "engine.running_url";

/// Holds the engine lease before returning: at once on a store only this process uses, else
/// after standing by (forwarding requests on `config.server.listen`) until the lease is this
/// server's. Then watches the lease on a thread of its own and stops the process if another
/// server takes it over (its supervisor starts it again, to stand by). Returns whether the store
/// is shared (a lease was needed).
pub(super) async fn hold_the_engine_lease(
    config: &Config,
    store: &Arc<dyn Store>,
) -> anyhow::Result<bool> {
    let (standing_tx, standing_rx) = tokio::sync::oneshot::channel::<()>();
    let standing_tx = Mutex::new(Some(standing_tx));
    let waiting = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            store.wait_to_lead(&|| {
                if let Some(tx) = standing_tx.lock().ok().and_then(|mut tx| tx.take()) {
                    let _ = tx.send(());
                }
            })
        })
    };
    tokio::pin!(waiting);
    let lease = tokio::select! {
        lease = &mut waiting => lease??,
        Ok(()) = standing_rx => {
            let (stop, stopped) = watch::channel(false);
            let forwarding = tokio::spawn(forward_requests(config.clone(), store.clone(), stopped));
            let lease = (&mut waiting).await;
            let _ = stop.send(true);
            // The listener is closed when this returns; the server binds the address again.
            forwarding.await.context("the forwarding listener failed")??;
            lease??
        }
    };
    let Some(lease) = lease else {
        return Ok(false);
    };
    tracing::info!("this server holds the engine lease on its database");
    watch_lease(lease)?;
    Ok(true)
}

/// Publishes `url` as the running server's, for servers standing by to forward to.
pub(super) async fn publish_running_url(store: &Arc<dyn Store>, url: String) -> anyhow::Result<()> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.set_meta(RUNNING_URL, &url))
        .await?
        .context("cannot publish this server's URL in the store")
}

fn watch_lease(mut lease: Box<dyn Leadership>) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("tidemark-lease".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                match lease.check() {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::error!(
                            "another server took over the engine lease on this database; stopping"
                        );
                        std::process::exit(3);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot check the engine lease; retrying"),
                }
            }
        })
        .context("cannot start the engine lease thread")?;
    Ok(())
}

#[derive(Clone)]
struct Forwarder {
    store: Arc<dyn Store>,
    http: reqwest::Client,
}

/// Serves the forwarding router on the configured address until `stop`.
async fn forward_requests(
    config: Config,
    store: Arc<dyn Store>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let addr = config.listen_addr()?;
    let socket = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    tracing::info!(
        %addr,
        "another server runs on this database; standing by (forwarding requests to it) to take \
         over when it stops"
    );
    let http = relay_client().context("cannot build the forwarding HTTP client")?;
    let app = Router::new()
        .fallback(forward)
        .with_state(Forwarder { store, http });
    let limits = listener::Limits {
        header_timeout: config.server.header_timeout.get(),
        body_timeout: config.server.body_timeout.get(),
        max_header_bytes: config.server.max_header_bytes,
        max_body_bytes: config.server.max_body_bytes,
        shutdown_grace: config.server.shutdown_grace.get(),
    };
    listener::serve(socket, app, limits, stop).await;
    Ok(())
}

fn standby_error(status: StatusCode, message: &str) -> Response {
    let mut response = (
        status,
        axum::Json(json!({"error": {"code": "standby", "message": message}})),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(1));
    response
}

async fn forward(State(forwarder): State<Forwarder>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if parts.uri.path() == "/healthz" && !parts.headers.contains_key(FORWARDED) {
        // This server is up and forwarding; the running one's health is its own.
        return axum::Json(json!({"status": "ok", "role": "standby"})).into_response();
    }
    if parts.headers.contains_key(FORWARDED) {
        return standby_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server this request was forwarded to is standing by too; retry shortly",
        );
    }
    let store = forwarder.store.clone();
    let running = tokio::task::spawn_blocking(move || store.get_meta(RUNNING_URL)).await;
    let Ok(Ok(Some(base))) = running else {
        return standby_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no server is running on this database yet; retry shortly",
        );
    };
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => {
            return standby_error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the body: {e}"),
            );
        }
    };
    match relay(&forwarder.http, &base, parts, body).await {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(error = %e, %base, "cannot forward a request to the running server");
            standby_error(
                StatusCode::BAD_GATEWAY,
                "the running server did not answer in full; retry shortly",
            )
        }
    }
}
