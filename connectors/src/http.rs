//! HTTP(S) clients: every reqwest client and every AWS SDK configuration is built here.
//!
//! TLS is rustls with the `ring` crypto provider throughout (the pgwire endpoint uses the same),
//! so no second crypto library (aws-lc) is built. reqwest is compiled without a provider of its
//! own and uses the process-wide default, which [`install_crypto_provider`] sets; the AWS SDK
//! gets its HTTPS client from [`aws_http_client`]. Certificates are verified as before: reqwest
//! with the platform verifier (the system's roots), the AWS SDK with the system's roots.
//!
//! Clippy refuses the direct constructors (`reqwest::Client::new`, `reqwest::get`,
//! `aws_config::defaults`, …; see `clippy.toml`): a client built before the provider is
//! installed would panic, and an AWS configuration without our HTTP client has none.

use std::sync::Once;

use aws_sdk_secretsmanager::config::SharedHttpClient;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::Provider;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::{Builder, ConnectorBuilder};

/// Makes `ring` the process's default rustls crypto provider, unless one is installed already
/// (then that one stays). Idempotent and cheap; every builder here calls it first.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error means another provider was installed first; it is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// `reqwest::Client::builder()` with TLS ready: use this instead.
#[allow(clippy::disallowed_methods)]
pub fn client_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

/// A client with reqwest's default settings (`reqwest::Client::new()`, which it replaces).
///
/// # Panics
///
/// When the client cannot be built (as `reqwest::Client::new()` does): the system's TLS
/// configuration could not be loaded.
pub fn client() -> reqwest::Client {
    client_builder()
        .build()
        .expect("an HTTP client with default settings")
}

/// The AWS SDK's HTTPS client: hyper 1 and rustls with `ring`, the system's root certificates,
/// and HTTP(S) proxies from the environment (`HTTPS_PROXY`, `NO_PROXY`, …), as the SDK's own
/// default client has them.
pub fn aws_http_client() -> SharedHttpClient {
    // Built as the SDK builds its default client (there with aws-lc); `build_with_connector_fn`
    // keeps one connector (and connection pool) per timeout settings.
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::Ring));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// `aws_config::defaults(BehaviorVersion::latest())` — the standard AWS configuration
/// (environment, profiles, web identity, container and instance roles) — with
/// [`aws_http_client`] as its HTTP client, for the SDK's clients and its credential providers.
#[allow(clippy::disallowed_methods)]
pub fn aws_config_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(aws_http_client())
}
