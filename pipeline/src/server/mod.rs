//! Wires a whole server: store, runtime, sender, HTTP API, dashboard engine and pgwire endpoint.
//! The only place that opens the store, the secrets and the engines.

mod cluster;
pub mod dashboards;
mod relay;
pub mod sources;
mod standby;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use connectors::secrets::{
    AwsKekSettings, AwsSecretsManager, KekSource, LocalKeyFile, Secrets, SecretsOptions,
};
use connectors::store::{PostgresOptions, PostgresStore, SecretRows, Store, Tenant};
use tokio::sync::watch;

use crate::audiences::AudienceService;
use crate::auth::AuthThrottle;
use crate::config::{Config, KekProvider, StoreSetting};
use crate::console::{self, ConsoleState};
use crate::deliver;
use crate::generate::report::{ReportContext, ReportGenerator};
use crate::http::query::{self, DashboardState};
use crate::http::reports::ReportsState;
use crate::http::{self, AppState, key_hash};
use crate::ingest::Runtime;
use crate::metrics::Metrics;
use crate::queries::QueryRuntime;

/// A running server.
pub struct Server {
    /// Where the HTTP API listens.
    pub addr: SocketAddr,
    /// Where the PostgreSQL wire-protocol endpoint listens, when it is on.
    pub pgwire_addr: Option<SocketAddr>,
    /// The ingest runtime.
    pub runtime: Arc<Runtime>,
    stop: watch::Sender<bool>,
    http: tokio::task::JoinHandle<()>,
    sender: tokio::task::JoinHandle<()>,
    reports: tokio::task::JoinHandle<()>,
    /// The event log's tables (`[dashboard.live]`), when on.
    pub live: Option<Arc<sql::live::LiveTables>>,
    /// Keeps live tables read and compacted.
    live_task: Option<tokio::task::JoinHandle<()>>,
    sources: Vec<tokio::task::JoinHandle<()>>,
    /// CRM contacts and audiences (the audience engine's thread).
    pub audiences: Arc<AudienceService>,
    /// The campaign thread.
    campaigns: std::thread::JoinHandle<()>,
    membership_log: std::thread::JoinHandle<()>,
    pgwire: Option<tokio::task::JoinHandle<()>>,
    _lock: std::fs::File,
}

/// Lowers the calling thread's CPU priority (nice 10): background work that must yield to
/// ingest and queries when the machine is saturated, and catches up when it is not.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only reads its arguments; on Linux, PRIO_PROCESS with a thread id
    // changes that one thread.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, 10) != 0 {
            tracing::debug!("cannot lower the live tables thread's priority");
        }
    }
}

/// Takes the data directory's lock: one process per store, since the sender re-queues every
/// unfinished claim it finds at start-up.
pub(crate) fn lock_data_dir(config: &Config) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let path = config.data_dir.join("tidemark.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "data directory {} is in use by another tidemark process",
            config.data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Opens the configured store: the one handle a process shares between its runtime, sender,
/// API and secrets.
pub fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    match &config.store {
        Some(setting) if is_postgres_url(setting.url()) => {
            Ok(Arc::new(open_postgres(setting)?) as Arc<dyn Store>)
        }
        Some(StoreSetting::Table(_)) => anyhow::bail!(
            "[store] password_file and ca_file are for a postgres:// URL, not {}",
            config.store_display()
        ),
        _ => connectors::store::open(config.store_location())
            .with_context(|| format!("cannot open store {}", config.store_display())),
    }
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// Opens the PostgreSQL store `setting` names, with its password file and CA file.
pub fn open_postgres(setting: &StoreSetting) -> anyhow::Result<PostgresStore> {
    let display = crate::config::redact_password(setting.url());
    let options = match setting {
        StoreSetting::Url(_) => PostgresOptions::default(),
        StoreSetting::Table(table) => PostgresOptions {
            password: match &table.password_file {
                Some(path) => Some(read_password_file(path)?),
                None => None,
            },
            ca_file: table.ca_file.clone(),
        },
    };
    PostgresStore::open_with(setting.url(), &options)
        .with_context(|| format!("cannot open store {display}"))
}

/// A password file's first line (a trailing newline is not part of the password).
fn read_password_file(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the store's password file {}", path.display()))?;
    let password = text.lines().next().unwrap_or_default();
    anyhow::ensure!(
        !password.is_empty(),
        "the store's password file {} is empty",
        path.display()
    );
    Ok(password.to_owned())
}

/// Each configured tenant's locale, currency and zone, for the console.
fn console_prefs(config: &Config) -> std::collections::HashMap<String, console::Prefs> {
    config
        .tenants
        .iter()
        .map(|t| {
            let prefs = console::Prefs {
                locale: t.locale.clone(),
                currency: t.currency.clone(),
                time_zone: t.time_zone.parse().unwrap_or(chrono_tz::Tz::UTC),
            };
            (t.id.clone(), prefs)
        })
        .collect()
}

/// Creates the configured tenants and makes their configured keys the only valid ones: a key
/// removed from the configuration, or every key of a tenant removed from it, stops working
/// once the server has started (over HTTP and pgwire alike, which both ask the store).
fn create_tenants(config: &Config, store: &dyn Store) -> anyhow::Result<()> {
    let mut keys = Vec::new();
    for tenant in &config.tenants {
        store.put_tenant(&Tenant {
            id: tenant.id.clone(),
            name: tenant.name.clone().unwrap_or_else(|| tenant.id.clone()),
            time_zone: tenant.time_zone.clone(),
        })?;
        for key in std::iter::once(&tenant.api_key).chain(&tenant.previous_api_keys) {
            keys.push((tenant.id.clone(), key_hash(key)));
        }
    }
    store.replace_api_keys(&keys)?;
    Ok(())
}

/// Opens the secrets store the configuration describes: sealed rows in `store` (the handle
/// from [`open_store`]) and the configured KEK provider. Shared with anything else in the
/// binary that needs secrets.
pub async fn open_secrets(
    config: &Config,
    store: Arc<dyn SecretRows>,
) -> anyhow::Result<Secrets<dyn SecretRows>> {
    let keks = match config.secrets.kek {
        KekProvider::Local => {
            let path = config.key_file_path();
            KekSource::LocalFile(
                tokio::task::spawn_blocking(move || LocalKeyFile::open_or_create(path)).await??,
            )
        }
        KekProvider::Aws => {
            let aws = &config.secrets.aws;
            KekSource::AwsSecretsManager(
                AwsSecretsManager::from_settings(&AwsKekSettings {
                    secret_id: aws.secret_id.clone(),
                    region: aws.region.clone(),
                    endpoint_url: aws.endpoint_url.clone(),
                    create_if_missing: aws.create_if_missing,
                })
                .await,
            )
        }
    };
    let options = SecretsOptions {
        rewrap_batch: config.secrets.rewrap_batch,
        ..SecretsOptions::default()
    };
    Ok(Secrets::new(store, keks, options))
}

/// The API's listener (`server.listen`) and pgwire's (`dashboard.pgwire_listen`), when set.
async fn bind_listeners(
    config: &Config,
) -> anyhow::Result<(tokio::net::TcpListener, Option<tokio::net::TcpListener>)> {
    let listener = tokio::net::TcpListener::bind(config.listen_addr()?)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let pgwire =
        match config.pgwire_addr()? {
            Some(pg_addr) => Some(tokio::net::TcpListener::bind(pg_addr).await.with_context(
                || format!("cannot listen on {pg_addr} (dashboard.pgwire_listen)"),
            )?),
            None => None,
        };
    Ok((listener, pgwire))
}

impl Server {
    /// Starts everything; the listener is bound when this returns.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        let lock = lock_data_dir(&config)?;
        let pgwire_tls = match (
            &config.dashboard.pgwire_tls_cert,
            &config.dashboard.pgwire_tls_key,
        ) {
            (Some(cert), Some(key)) if config.pgwire_addr()?.is_some() => {
                Some(crate::pgwire::tls_acceptor(cert, key)?)
            }
            _ => None,
        };
        let store = open_store(&config)?;
        let shared = standby::hold_the_engine_lease(&config, &store).await?;
        create_tenants(&config, store.as_ref())?;
        let secrets = Arc::new(open_secrets(&config, store.clone()).await?);
        let dashboards = dashboards::open_engine(&config, &secrets, store.clone()).await?;
        let queries = QueryRuntime::start(
            &config.dashboard.limits,
            config.dashboard.query_timeout.get(),
        )
        .context("cannot start the dashboard query threads")?;
        let metrics = Arc::new(Metrics::new());
        // A process of a cluster takes its ports before it joins: a port in use then fails this
        // process alone, where failing after joining would stop the whole cluster. A lone
        // server takes them once it has recovered, so nothing connects to a server not ready.
        let bound_early = match config.cluster {
            Some(_) => Some(bind_listeners(&config).await?),
            None => None,
        };
        let runtime = {
            let (config, store, metrics) = (config.clone(), store.clone(), metrics.clone());
            tokio::task::spawn_blocking(move || Runtime::start(&config, store, metrics)).await??
        };
        // The live tables' tail takes each commit's events from the committer rather than
        // reading them back from the log.
        if let Some(live) = dashboards.live() {
            runtime.feed_committed_to(Box::new(move |after, events| live.offer(after, events)));
        }
        let (listener, pgwire_listener) = match bound_early {
            Some(listeners) => listeners,
            None => match bind_listeners(&config).await {
                Ok(listeners) => listeners,
                Err(e) => {
                    runtime.shutdown();
                    return Err(e);
                }
            },
        };
        let addr = listener.local_addr()?;
        if shared {
            let url = if config.server.internal_url.is_empty() {
                format!("http://{addr}")
            } else {
                config.server.internal_url.clone()
            };
            if let Err(e) = standby::publish_running_url(&store, url).await {
                runtime.shutdown();
                return Err(e);
            }
        }
        let pgwire_addr = match &pgwire_listener {
            Some(listener) => Some(listener.local_addr()?),
            None => None,
        };
        // Destinations may not point back at this server, whatever the allow-list says.
        let own_endpoints = std::iter::once(addr).chain(pgwire_addr).collect();
        let sink_settings = match config.sink_settings(own_endpoints) {
            Ok(settings) => Arc::new(settings),
            Err(e) => {
                runtime.shutdown();
                return Err(e);
            }
        };
        if sink_settings.outbound.allows_private_networks() {
            tracing::info!(allowed = ?config.outbound.allow_private_networks, "destinations may reach these non-public networks (outbound.allow_private_networks)");
        }
        let (stop, stop_rx) = watch::channel(false);
        let throttle = Arc::new(AuthThrottle::new(config.server.auth_failures_per_minute));
        let sources_health = sources::SourcesHealth::default();
        let audiences = match AudienceService::start(
            store.clone(),
            operators::audience::AudienceConfig {
                workers: config.crm.audience_workers,
                ..Default::default()
            },
        ) {
            Ok(audiences) => audiences,
            Err(e) => {
                runtime.shutdown();
                return Err(e.context("cannot start the audience engine"));
            }
        };
        // So does the audience thread, decoded.
        {
            let audiences = audiences.clone();
            runtime.feed_events_to(Box::new(move |after, events| {
                audiences.offer(after, events)
            }));
        }
        dashboards.attach_crm(store.clone());
        let unsubscribe_key = {
            let store = store.clone();
            match tokio::task::spawn_blocking(move || crate::campaigns::token_key(store.as_ref()))
                .await?
            {
                Ok(key) => key,
                Err(e) => {
                    runtime.shutdown();
                    return Err(anyhow::Error::new(e).context("cannot read the unsubscribe key"));
                }
            }
        };
        let public_url = if config.server.public_url.is_empty() {
            format!("http://{addr}")
        } else {
            config.server.public_url.trim_end_matches('/').to_string()
        };
        let campaigns = crate::campaigns::start(
            crate::campaigns::CampaignContext {
                store: store.clone(),
                templates: config.templates.limits(),
                public_url,
                key: unsubscribe_key.clone(),
            },
            stop_rx.clone(),
        )
        .context("cannot start the campaign thread")?;
        let membership_log = crate::audiences::retention::start(
            store.clone(),
            config.crm.membership_log_retention.get(),
            stop_rx.clone(),
        )
        .context("cannot start the membership log's pruning thread")?;
        let app_state = AppState::new(runtime.clone(), secrets.clone(), throttle.clone())
            .with_audiences(audiences.clone())
            .with_unsubscribe_key(unsubscribe_key)
            .with_sink_settings(sink_settings.clone())
            .with_sources(sources_health.clone());
        // The cluster's processes, when this is one of them (the file was checked at load).
        let membership = match &config.cluster {
            Some(settings) => Some((settings.process, settings.read_hosts()?)),
            None => None,
        };
        let share = membership
            .as_ref()
            .map_or((0, 1), |(process, hosts)| (*process, hosts.len()));
        let source_tasks = sources::start(
            &config.sources.fluvio,
            share,
            runtime.clone(),
            sources_health,
            stop_rx.clone(),
        );
        let dashboard_state = DashboardState {
            app: app_state.clone(),
            engine: dashboards.clone(),
            queries: queries.clone(),
        };
        let generator = Arc::new(ReportGenerator::new(
            store.clone(),
            ReportContext {
                engine: dashboards.clone(),
                queries: queries.clone(),
                templates: config.templates.limits(),
            },
            metrics.clone(),
            runtime.report_wake(),
        ));
        let key_tenants = app_state.key_tenants();
        let api = http::router(app_state, config.server.max_body_bytes)
            .merge(query::router(
                dashboard_state.clone(),
                config.server.max_body_bytes,
            ))
            .merge(http::dashboards::router(
                dashboard_state.clone(),
                config.server.max_body_bytes,
            ))
            .merge(http::reports::router(
                ReportsState {
                    dashboards: dashboard_state,
                    generator: generator.clone(),
                },
                config.server.max_body_bytes,
            ));
        let owners = match &membership {
            Some((process, hosts)) => Some(Arc::new(cluster::Owners::new(
                *process,
                config.engine.workers,
                hosts,
                store.clone(),
                key_tenants,
            )?)),
            None => None,
        };
        // The web console calls the API router in-process, as the signed-in tenant; in a
        // cluster, only for the tenants this process owns.
        let console_api = match &owners {
            Some(owners) => cluster::only_own_tenants(api.clone(), owners.clone()),
            None => api.clone(),
        };
        let app = api.merge(console::router(ConsoleState::new(
            console_api,
            console_prefs(&config),
            config.server.public_url.starts_with("https://"),
        )));
        let app = match owners {
            Some(owners) => cluster::route_to_owners(app, owners),
            None => app,
        };
        let reports = tokio::spawn(generator.run(stop_rx.clone()));
        let live = dashboards.live();
        let live_task = live.clone().map(|live| {
            let (metrics, mut stop) = (metrics.clone(), stop_rx.clone());
            let worker = {
                let (live, stop) = (live.clone(), stop_rx.clone());
                std::thread::Builder::new()
                    .name("tidemark-live".into())
                    .spawn(move || {
                        lower_priority();
                        live.run(|| *stop.borrow());
                    })
            };
            tokio::spawn(async move {
                while !*stop.borrow() {
                    let status = live.status();
                    metrics.live_tail_events.set(status.tail_events as i64);
                    metrics
                        .live_compacted_seq
                        .set(i64::try_from(status.watermark).unwrap_or(i64::MAX));
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                }
                match worker {
                    Ok(worker) => {
                        let _ = tokio::task::spawn_blocking(move || worker.join()).await;
                    }
                    Err(e) => tracing::error!(error = %e, "cannot start the live tables thread"),
                }
            })
        });
        let pgwire = pgwire_listener.map(|listener| {
            tokio::spawn(crate::pgwire::serve(
                listener,
                dashboards,
                store.clone(),
                throttle,
                queries,
                pgwire_tls,
                stop_rx.clone(),
            ))
        });
        let limits = http::listener::Limits {
            header_timeout: config.server.header_timeout.get(),
            body_timeout: config.server.body_timeout.get(),
            max_header_bytes: config.server.max_header_bytes,
            max_body_bytes: config.server.max_body_bytes,
            shutdown_grace: config.server.shutdown_grace.get(),
        };
        let http = tokio::spawn(http::listener::serve(
            listener,
            app,
            limits,
            stop_rx.clone(),
        ));
        let (sender_done, sender_finished) = std::sync::mpsc::channel::<()>();
        let sender = {
            let (store, metrics, sender_config) =
                (store.clone(), metrics.clone(), config.sender.clone());
            let files_root = config.data_dir.join("files");
            tokio::spawn(async move {
                let sender = deliver::Sender {
                    config: sender_config,
                    sink_settings,
                    files_root,
                };
                if let Err(e) = deliver::run(sender, store, secrets, metrics, stop_rx).await {
                    tracing::error!(error = %e, "sender stopped");
                }
                let _ = sender_done.send(());
            })
        };
        if config.cluster.is_some() {
            // Leaving a cluster that lost a process, finish the deliveries in flight first, so
            // the restarted cluster does not send them again.
            let (stop, grace) = (stop.clone(), config.server.shutdown_grace.get());
            runtime.before_leaving_the_cluster(move || {
                let _ = stop.send(true);
                let _ = sender_finished.recv_timeout(grace);
            });
        }
        tracing::info!(%addr, data_dir = %config.data_dir.display(), workers = config.engine.workers, "tidemark listening");
        if let Some(pg_addr) = pgwire_addr {
            tracing::info!(%pg_addr, "PostgreSQL wire protocol listening");
        }
        Ok(Server {
            addr,
            pgwire_addr,
            runtime,
            audiences,
            campaigns,
            membership_log,
            stop,
            http,
            sender,
            reports,
            live,
            live_task,
            sources: source_tasks,
            pgwire,
            _lock: lock,
        })
    }

    /// Stops accepting requests, finishes in-flight work and waits for every thread.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.http.await;
        if let Some(pgwire) = self.pgwire {
            let _ = pgwire.await;
        }
        // Sources commit what they hold through the runtime, so they stop before it.
        for source in self.sources {
            let _ = source.await;
        }
        let runtime = self.runtime.clone();
        let _ = tokio::task::spawn_blocking(move || runtime.shutdown()).await;
        let audiences = self.audiences.clone();
        let _ = tokio::task::spawn_blocking(move || audiences.shutdown()).await;
        let campaigns = self.campaigns;
        let _ = tokio::task::spawn_blocking(move || campaigns.join()).await;
        let membership_log = self.membership_log;
        let _ = tokio::task::spawn_blocking(move || membership_log.join()).await;
        let _ = self.sender.await;
        let _ = self.reports.await;
        if let Some(live) = self.live_task {
            let _ = live.await;
        }
    }
}
