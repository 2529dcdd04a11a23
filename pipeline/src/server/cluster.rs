//! A served cluster's HTTP side: a tenant's requests go to the process that owns the tenant.
//!
//! Every process of a cluster serves the same tenants (the same `[[tenants]]` and keys) and
//! accepts their events — `POST /v1/events`, and its share of each Fluvio topic's partitions —
//! into its own log, from which the dataflow takes each event to the worker that owns its
//! tenant. That worker's process matches the tenant's rules, renders and delivers its
//! notifications and runs its reports, so the tenant's definitions live in that process's store:
//! every other tenant request under `/v1/` (rules, destinations, secrets, reports, notifications,
//! alerts, audiences, campaigns, dashboards, queries) is relayed there. A process answers with
//! `x-tidemark-process`, its index, so a client can see who served it. The web console, which
//! calls the API in-process under a session of its own, serves only the tenants its process
//! owns and points the others to their process's console.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use connectors::store::Store;
use serde_json::json;

use super::relay::{FORWARDED, relay};
use crate::config::ClusterHost;
use crate::http::{KeyTenants, SignedIn, api_key};

/// The header naming the process that answered.
pub const PROCESS_HEADER: &str = "x-tidemark-process";

/// Who owns which tenant, and how to reach them.
pub(super) struct Owners {
    /// This process's index.
    process: usize,
    /// Dataflow workers per process (the same in every process).
    workers: usize,
    /// Every process's API base URL, in process order.
    apis: Vec<String>,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    /// The tenants of the API keys seen so far (the API's own).
    keys: Arc<KeyTenants>,
}

impl Owners {
    pub(super) fn new(
        process: usize,
        workers: usize,
        hosts: &[ClusterHost],
        store: Arc<dyn Store>,
        keys: Arc<KeyTenants>,
    ) -> anyhow::Result<Owners> {
        Ok(Owners {
            process,
            workers,
            apis: hosts.iter().map(|host| host.api.clone()).collect(),
            http: super::relay::relay_client()?,
            store,
            keys,
        })
    }

    /// The other process whose worker owns `tenant`'s dataflow state; `None` when it is this
    /// one.
    fn elsewhere(&self, tenant: &str) -> Option<usize> {
        let owner = operators::engine::owner(tenant, self.workers * self.apis.len()) / self.workers;
        (owner != self.process).then_some(owner)
    }

    /// Whether a request is one the tenant's owner serves.
    fn belongs_to_owner(request: &Request) -> bool {
        let path = request.uri().path();
        path.starts_with("/v1/") && path != "/v1/events" && !path.starts_with("/v1/sources/")
    }

    /// The tenant a request's API key names, if it names one (else the request is served here,
    /// which refuses it as it would anywhere).
    async fn tenant_of(&self, headers: &HeaderMap) -> Option<String> {
        let key = api_key(headers)?;
        self.keys.tenant(&self.store, &key).await.ok()?
    }
}

/// The API as the console calls it in-process: a tenant another process owns is refused
/// (421) with the address of that process's console, at sign-in and after.
pub(super) fn only_own_tenants(api: Router, owners: Arc<Owners>) -> Router {
    api.layer(axum::middleware::from_fn_with_state(
        owners,
        own_tenants_only,
    ))
}

async fn own_tenants_only(
    State(owners): State<Arc<Owners>>,
    request: Request,
    next: Next,
) -> Response {
    let tenant = match request.extensions().get::<SignedIn>() {
        Some(SignedIn(tenant)) => Some(tenant.clone()),
        None => owners.tenant_of(request.headers()).await,
    };
    let owner = tenant
        .as_deref()
        .and_then(|tenant| Some((tenant, owners.elsewhere(tenant)?)));
    match owner {
        Some((tenant, owner)) => cluster_error(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "tenant {tenant} is served by process {owner} of the cluster: open the console at {}/",
                owners.apis[owner]
            ),
        ),
        None => next.run(request).await,
    }
}

/// `app` with each tenant's requests relayed to the process that owns the tenant.
pub(super) fn route_to_owners(app: Router, owners: Arc<Owners>) -> Router {
    app.layer(axum::middleware::from_fn_with_state(owners, to_owner))
}

async fn to_owner(State(owners): State<Arc<Owners>>, request: Request, next: Next) -> Response {
    let owner = match Owners::belongs_to_owner(&request) {
        true => owners.tenant_of(request.headers()).await,
        false => None,
    }
    .and_then(|tenant| owners.elsewhere(&tenant));
    let Some(owner) = owner else {
        let mut response = next.run(request).await;
        response
            .headers_mut()
            .insert(PROCESS_HEADER, HeaderValue::from(owners.process));
        return response;
    };
    // A relayed request always reaches its tenant's owner; one that claims to be relayed
    // elsewhere is refused rather than served by a process without the tenant's definitions.
    if request.headers().contains_key(FORWARDED) {
        return cluster_error(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this tenant is served by process {owner} of the cluster, at {}",
                owners.apis[owner]
            ),
        );
    }
    let (parts, body) = request.into_parts();
    // The listener has already bounded the body (server.max_body_bytes).
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => {
            return cluster_error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}"),
            );
        }
    };
    let base = &owners.apis[owner];
    match relay(&owners.http, base, parts, body).await {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(error = %e, owner, %base, "cannot relay a request to the tenant's process");
            cluster_error(
                StatusCode::BAD_GATEWAY,
                format!(
                    "process {owner} of the cluster, which serves this tenant, did not answer in full; retry shortly"
                ),
            )
        }
    }
}

fn cluster_error(status: StatusCode, message: String) -> Response {
    let mut response = (
        status,
        axum::Json(json!({"error": {"code": "cluster", "message": message}})),
    )
        .into_response();
    if status == StatusCode::BAD_GATEWAY {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from_static("1"),
        );
    }
    response
}
