//! The PostgreSQL wire-protocol endpoint: `psql` and BI tools connect to the dashboard engine.
//!
//! Login: user = tenant id, password = that tenant's API key (cleartext password exchange,
//! checked against the stored key hash; the tenant is fixed by the login for the connection).
//! Keep the listener on loopback or behind a TLS-terminating proxy: the key crosses in clear.
//!
//! Both the simple and the extended query protocol run statements through the engine's read-only
//! gate ([`sql::check_read_only`]): SELECT, EXPLAIN, DESCRIBE, SHOW and `information_schema`
//! queries run; INSERT, DELETE, DDL, COPY and the rest are refused with SQLSTATE 25006. Drivers
//! open sessions with `BEGIN`/`COMMIT` and `SET application_name = …`-style settings; those are
//! acknowledged and change nothing (every statement reads the same data either way).
//!
//! Statements are parsed, planned and run on the dashboard query runtime ([`crate::queries`]),
//! admitted per tenant, under `dashboard.query_timeout` (SQLSTATE 57014, the query stopped).
//! Limits answer with their own SQLSTATE: SQL too long or nested too deep 54001
//! (statement_too_complex), a query over its memory budget 53200 (out_of_memory), an answer over
//! its row limit 54000, busy (queue full, shared memory in use) 53300/53000.

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ::pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use ::pgwire::api::portal::{Format, Portal};
use ::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use ::pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use ::pgwire::api::stmt::QueryParser;
use ::pgwire::api::store::PortalStore;
use ::pgwire::api::{
    ClientInfo, ClientPortalStore, METADATA_USER, PgWireConnectionState, PgWireServerHandlers,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator, Type,
};
use ::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use ::pgwire::messages::startup::Authentication;
use ::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use ::pgwire::types::format::FormatOptions;
use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use connectors::store::Store;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use futures::sink::{Sink, SinkExt};
use futures::stream;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sql::datafusion::arrow::array::RecordBatch;
use sql::datafusion::arrow::datatypes::DataType;
use sql::datafusion::logical_expr::LogicalPlan;
use sql::datafusion::prelude::SessionContext;
use sql::datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use sql::datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use sql::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use sql::{DashboardEngine, QueryLimits, SqlError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use crate::auth::{AuthThrottle, key_hash};
use crate::queries::{QueryRefusal, QueryRuntime};

/// Session settings a driver may send on connect; acknowledged, never applied.
const HARMLESS_SETTINGS: [&str; 10] = [
    "application_name",
    "extra_float_digits",
    "client_encoding",
    "client_min_messages",
    "datestyle",
    "intervalstyle",
    "search_path",
    "statement_timeout",
    "standard_conforming_strings",
    "bytea_output",
];

/// The TLS acceptor for a PEM certificate chain and private key (PKCS#8, PKCS#1 or SEC1).
pub fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("dashboard.pgwire_tls_cert: {}: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "dashboard.pgwire_tls_cert: {} holds no certificate",
            cert.display()
        );
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("dashboard.pgwire_tls_key: {}: {e}", key.display()))?;
    let config = ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key_der))
    .map_err(|e| {
        anyhow::anyhow!("dashboard.pgwire_tls_cert / pgwire_tls_key: not a usable pair: {e}")
    })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until `stop` turns true; each connection runs on its own task. With a
/// TLS acceptor, connections that do not negotiate TLS are refused before any password.
pub async fn serve(
    listener: TcpListener,
    engine: DashboardEngine,
    store: Arc<dyn Store>,
    throttle: Arc<AuthThrottle>,
    queries: QueryRuntime,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let core = Arc::new(Core {
        engine,
        queries,
        sessions: Default::default(),
    });
    let handlers = Arc::new(Handlers {
        backend: Arc::new(Backend {
            parser: Arc::new(Parser { core: core.clone() }),
            core,
        }),
        login: Arc::new(TenantLogin {
            store,
            throttle,
            tls_only: tls.is_some(),
            parameters: DefaultServerParameterProvider::default(),
            pids: RandomPidSecretKeyGenerator::default(),
        }),
    });
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((socket, peer)) => {
                let (handlers, tls) = (handlers.clone(), tls.clone());
                tokio::spawn(async move {
                    if let Err(e) = ::pgwire::tokio::process_socket(socket, tls, handlers).await {
                        tracing::debug!(%peer, error = %e, "pgwire connection ended with an error");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "pgwire accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The login: a cleartext password exchange where the password must be an API key of the
/// tenant named as the user. Keys are stored only as hashes, so the check is done here rather
/// than by comparing with a stored password.
struct TenantLogin {
    store: Arc<dyn Store>,
    /// Failed logins, counted per client address and per tenant (shared with HTTP).
    throttle: Arc<AuthThrottle>,
    /// Refuse connections that did not negotiate TLS (set when a certificate is configured).
    tls_only: bool,
    parameters: DefaultServerParameterProvider,
    pids: RandomPidSecretKeyGenerator,
}

impl TenantLogin {
    async fn verify(&self, user: &str, key: &str) -> PgWireResult<bool> {
        let hash = key_hash(key);
        let store = self.store.clone();
        let tenant = tokio::task::spawn_blocking(move || store.tenant_for_api_key(&hash))
            .await
            .map_err(|e| PgWireError::ApiError(Box::new(e)))?
            .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        Ok(tenant.as_deref() == Some(user))
    }
}

#[async_trait]
impl StartupHandler for TenantLogin {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                if self.tls_only && !client.is_secure() {
                    // Passwords are API keys: never accept one in the clear once TLS is set up.
                    return Err(user_error(
                        "28000",
                        "this server accepts TLS connections only (use sslmode=require)",
                    ));
                }
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                let password = password.into_password()?;
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                let peer = Some(client.socket_addr().ip());
                let tenant = Some(user.as_str()).filter(|u| !u.is_empty());
                // A throttled client or tenant is refused before the key is looked at.
                if let Err(wait) = self.throttle.check(peer, tenant) {
                    tracing::info!(user = %user, peer = %client.socket_addr(), "pgwire login throttled");
                    return Err(user_error(
                        "28000",
                        format!(
                            "too many failed logins from this address or for this user; retry in {} s",
                            wait.as_secs().max(1)
                        ),
                    ));
                }
                if user.is_empty() || !self.verify(&user, &password.password).await? {
                    self.throttle.failed(peer, tenant);
                    tracing::info!(user = %user, peer = %client.socket_addr(), "pgwire login refused");
                    return Err(PgWireError::InvalidPassword(user));
                }
                let (pid, secret_key) = self.pids.generate(client);
                client.set_pid_and_secret_key(pid, secret_key);
                finish_authentication(client, &self.parameters).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

struct Handlers {
    backend: Arc<Backend>,
    login: Arc<TenantLogin>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.backend.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.backend.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.login.clone()
    }
}

/// The query handlers (simple and extended protocol) of authenticated connections.
struct Backend {
    core: Arc<Core>,
    parser: Arc<Parser>,
}

/// Plans, checks and runs statements in tenant sessions.
struct Core {
    engine: DashboardEngine,
    /// Where statements are parsed, planned and run.
    queries: QueryRuntime,
    /// One session per tenant, shared by its connections (nothing a client can run changes it).
    sessions: RwLock<HashMap<String, SessionContext>>,
}

/// A parsed statement of the extended protocol.
#[derive(Clone, Debug)]
enum Prepared {
    /// A checked, read-only plan (may hold `$n` placeholders).
    Plan(LogicalPlan),
    /// A transaction or session statement acknowledged without effect.
    Ack(Acknowledged),
}

#[derive(Clone, Copy, Debug)]
enum Acknowledged {
    Begin,
    Commit,
    Rollback,
    Set,
}

impl Acknowledged {
    fn response(self) -> Response {
        match self {
            Acknowledged::Begin => Response::TransactionStart(Tag::new("BEGIN")),
            Acknowledged::Commit => Response::TransactionEnd(Tag::new("COMMIT")),
            Acknowledged::Rollback => Response::TransactionEnd(Tag::new("ROLLBACK")),
            Acknowledged::Set => Response::Execution(Tag::new("SET")),
        }
    }
}

fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message.into(),
    )))
}

/// The SQLSTATE form of an engine error.
fn pg_error(error: SqlError) -> PgWireError {
    match &error {
        SqlError::NotAllowed(message) => user_error("25006", message.clone()),
        SqlError::BadRequest { message, .. } => {
            let code = if message.contains("not found") {
                "42P01" // undefined_table (or column)
            } else {
                "42601" // syntax_error
            };
            user_error(code, message.clone())
        }
        SqlError::NoData(message) => user_error("42P01", message.clone()),
        SqlError::TooComplex { message, .. } => user_error("54001", message.clone()),
        SqlError::TooLarge { limit, message } => {
            let code = if limit.contains("memory") {
                "53200" // out_of_memory
            } else {
                "54000" // program_limit_exceeded
            };
            user_error(code, message.clone())
        }
        SqlError::Busy(message) => user_error("53000", message.clone()),
        // connection_failure: the external source (Trino, GA4) could not answer.
        SqlError::Source(message) => user_error("08006", message.clone()),
        _ => {
            tracing::error!(error = %error, "pgwire query failed");
            user_error("XX000", error.to_string())
        }
    }
}

/// The SQLSTATE form of a query that was not admitted or did not finish.
fn refusal_error(refusal: QueryRefusal) -> PgWireError {
    let code = match &refusal {
        QueryRefusal::Busy { .. } | QueryRefusal::TenantBusy { .. } => "53300",
        QueryRefusal::Timeout(_) => "57014", // query_canceled
        QueryRefusal::Failed(_) => "XX000",
    };
    user_error(code, refusal.to_string())
}

fn tenant_of<C: ClientInfo>(client: &C) -> PgWireResult<String> {
    client
        .metadata()
        .get(METADATA_USER)
        .cloned()
        .ok_or_else(|| user_error("28000", "no user in the startup message"))
}

/// Splits `sql` into statements. PostgreSQL clients' catalog queries (psql's `\d`, BI tools'
/// introspection) are first rewritten into forms DataFusion plans (`OPERATOR(pg_catalog.~)`,
/// `::regclass` casts…); what that parser cannot read goes to DataFusion's own parser, whose
/// error is the one reported.
///
/// The text is checked against the limits first: DataFusion's parse is checked for nesting
/// before the compatibility parser rewrites it (rewriting recurses once per level); each
/// statement is checked again before it is planned ([`Core::prepare`]).
fn parse(sql: &str, limits: &QueryLimits) -> PgWireResult<Vec<DfStatement>> {
    sql::limits::check_sql_size(sql, limits).map_err(pg_error)?;
    let dialect = PostgreSqlDialect {};
    let own = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .build()
        .and_then(|mut parser| parser.parse_statements());
    match &own {
        Ok(statements) => {
            for statement in statements {
                sql::limits::check_statement(statement, limits).map_err(pg_error)?;
            }
        }
        Err(e) => {
            if let Some(limit) = sql::limits::parser_limit(e) {
                return Err(pg_error(limit));
            }
        }
    }
    if let Ok(statements) = PostgresCompatibilityParser::new().parse(sql) {
        return Ok(statements
            .into_iter()
            .map(|s| DfStatement::Statement(Box::new(s)))
            .collect());
    }
    own.map(|statements| statements.into_iter().collect())
        .map_err(|e| user_error("42601", e.to_string()))
}

/// Transaction control and harmless session settings, which are acknowledged and not run.
fn acknowledged(statement: &DfStatement) -> Option<Acknowledged> {
    let DfStatement::Statement(statement) = statement else {
        return None;
    };
    match statement.as_ref() {
        SqlStatement::StartTransaction { .. } => Some(Acknowledged::Begin),
        SqlStatement::Commit { .. } => Some(Acknowledged::Commit),
        SqlStatement::Rollback { .. } => Some(Acknowledged::Rollback),
        SqlStatement::Set(set) => {
            let text = set.to_string().to_ascii_lowercase();
            let name = text
                .trim_start_matches("set ")
                .trim_start_matches("session ")
                .trim_start_matches("local ")
                .split([' ', '='])
                .next()
                .unwrap_or("");
            HARMLESS_SETTINGS
                .contains(&name)
                .then_some(Acknowledged::Set)
        }
        _ => None,
    }
}

impl Core {
    async fn session(&self, tenant: &str) -> PgWireResult<SessionContext> {
        if let Some(ctx) = self
            .sessions
            .read()
            .ok()
            .and_then(|s| s.get(tenant).cloned())
        {
            return Ok(ctx);
        }
        let ctx = self.engine.session(tenant).await.map_err(pg_error)?;
        setup_pg_catalog(&ctx, sql::catalog::CATALOG, EmptyContextProvider)
            .map_err(|e| PgWireError::ApiError(Box::new(*e)))?;
        if let Ok(mut sessions) = self.sessions.write() {
            sessions.insert(tenant.to_string(), ctx.clone());
        }
        Ok(ctx)
    }

    /// Plans one statement and checks it is read-only.
    async fn prepare(&self, tenant: &str, statement: DfStatement) -> PgWireResult<Prepared> {
        if let Some(ack) = acknowledged(&statement) {
            return Ok(Prepared::Ack(ack));
        }
        sql::limits::check_statement(&statement, self.engine.limits()).map_err(pg_error)?;
        let ctx = self.session(tenant).await?;
        let plan = ctx
            .state()
            .statement_to_plan(statement)
            .await
            .map_err(|e| user_error(sqlstate_of_plan_error(&e.to_string()), e.to_string()))?;
        sql::check_read_only(&plan).map_err(pg_error)?;
        Ok(Prepared::Plan(plan))
    }

    /// Parses, plans and runs every statement of a simple query.
    async fn simple(
        &self,
        tenant: &str,
        query: &str,
        options: Arc<FormatOptions>,
    ) -> PgWireResult<Vec<Response>> {
        let statements = parse(query, self.engine.limits())?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::with_capacity(statements.len());
        for statement in statements {
            let response = match self.prepare(tenant, statement).await? {
                Prepared::Ack(ack) => ack.response(),
                Prepared::Plan(plan) => {
                    self.execute(tenant, plan, &Format::UnifiedText, options.clone())
                        .await?
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }

    /// Runs a checked plan under the engine's limits and encodes its rows.
    async fn execute(
        &self,
        tenant: &str,
        plan: LogicalPlan,
        format: &Format,
        options: Arc<FormatOptions>,
    ) -> PgWireResult<Response> {
        sql::check_read_only(&plan).map_err(pg_error)?;
        let ctx = self.session(tenant).await?;
        let fields = Arc::new(arrow_schema_to_pg_fields(
            plan.schema().as_arrow(),
            format,
            Some(options),
        )?);
        let batches: Vec<RecordBatch> = self
            .engine
            .run_session_plan(&ctx, plan)
            .await
            .map_err(pg_error)?
            .batches;
        let rows: Vec<_> = batches
            .into_iter()
            .flat_map(|batch| encode_recordbatch(fields.clone(), batch))
            .collect();
        Ok(Response::Query(QueryResponse::new(
            fields,
            stream::iter(rows),
        )))
    }
}

fn sqlstate_of_plan_error(message: &str) -> &'static str {
    if message.contains("not found") {
        "42P01"
    } else {
        "42601"
    }
}

#[async_trait]
impl SimpleQueryHandler for Backend {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let tenant = tenant_of(client)?;
        // Refused before it is queued, let alone parsed.
        sql::limits::check_sql_size(query, self.core.engine.limits()).map_err(pg_error)?;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let (core, query, t) = (self.core.clone(), query.to_string(), tenant.clone());
        self.core
            .queries
            .run(
                &tenant,
                async move { core.simple(&t, &query, options).await },
            )
            .await
            .map_err(refusal_error)?
    }
}

/// The extended protocol's parser: plans (and checks) at Parse time, in the tenant's session.
struct Parser {
    core: Arc<Core>,
}

/// `$1`, `$2`, … of a plan with their inferred types, in order.
fn parameters(plan: &LogicalPlan) -> PgWireResult<Vec<Option<DataType>>> {
    let types = plan
        .get_parameter_types()
        .map_err(|e| user_error("42P18", e.to_string()))?;
    let mut ordered: Vec<(usize, Option<DataType>)> = types
        .into_iter()
        .filter_map(|(id, ty)| id.trim_start_matches('$').parse().ok().map(|n| (n, ty)))
        .collect();
    ordered.sort_by_key(|(n, _)| *n);
    Ok(ordered.into_iter().map(|(_, ty)| ty).collect())
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let tenant = tenant_of(client)?;
        sql::limits::check_sql_size(sql, self.core.engine.limits()).map_err(pg_error)?;
        let (core, sql, t) = (self.core.clone(), sql.to_string(), tenant.clone());
        let prepare = async move {
            let mut statements = parse(&sql, core.engine.limits())?;
            if statements.len() > 1 {
                return Err(user_error(
                    "42601",
                    "a prepared statement must be a single statement",
                ));
            }
            match statements.pop() {
                Some(statement) => core.prepare(&t, statement).await.map(Some),
                None => Ok(None),
            }
        };
        self.core
            .queries
            .run(&tenant, prepare)
            .await
            .map_err(refusal_error)?
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        let Prepared::Plan(plan) = stmt else {
            return Ok(Vec::new());
        };
        parameters(plan)?
            .into_iter()
            .map(|ty| match ty {
                Some(ty) => into_pg_type(&ty),
                None => Ok(Type::UNKNOWN),
            })
            .collect()
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match stmt {
            Prepared::Plan(plan) => arrow_schema_to_pg_fields(
                plan.schema().as_arrow(),
                column_format.unwrap_or(&Format::UnifiedText),
                None,
            ),
            Prepared::Ack(_) => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for Backend {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let tenant = tenant_of(client)?;
        let plan = match &portal.statement.statement {
            Prepared::Ack(ack) => return Ok(ack.response()),
            Prepared::Plan(plan) => plan,
        };
        let types = parameters(plan)?;
        let inferred: Vec<Option<&DataType>> = types.iter().map(Option::as_ref).collect();
        let params = deserialize_parameters(portal, &inferred)?;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let (core, plan, t) = (self.core.clone(), plan.clone(), tenant.clone());
        let format = portal.result_column_format.clone();
        let run = async move {
            let plan = plan
                .replace_params_with_values(&params)
                .map_err(|e| user_error("22023", e.to_string()))?;
            core.execute(&t, plan, &format, options).await
        };
        self.core
            .queries
            .run(&tenant, run)
            .await
            .map_err(refusal_error)?
    }
}
