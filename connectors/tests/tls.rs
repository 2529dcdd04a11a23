//! HTTPS through the clients `connectors::http` builds (rustls on ring): reqwest completes a
//! handshake with a server it is told to trust and refuses one it is not; the AWS SDK's client
//! speaks TLS and verifies the server's certificate against the system's roots.

use std::net::SocketAddr;
use std::sync::Arc;

use aws_sdk_secretsmanager::config::{Credentials, Region};
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The name the test server's certificate is for.
const HOST: &str = "tidemark.test";

/// A loopback HTTPS server with a self-signed certificate for [`HOST`] and `127.0.0.1`,
/// answering every request with `200 hello`. Returns its address and certificate (DER).
async fn https_server() -> (SocketAddr, Vec<u8>) {
    let certified =
        rcgen::generate_simple_self_signed(vec![HOST.to_string(), "127.0.0.1".to_string()])
            .expect("self-signed certificate");
    let der = certified.cert.der().to_vec();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(der.clone())], key)
        .expect("certificate and key");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, der)
}

/// `error` and its sources, one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[tokio::test]
async fn reqwest_completes_a_handshake_with_a_trusted_server() {
    let (addr, der) = https_server().await;
    let client = connectors::http::client_builder()
        .resolve(HOST, addr)
        .tls_certs_merge([reqwest::Certificate::from_der(&der).unwrap()])
        .build()
        .expect("client");
    let response = client
        .get(format!("https://{HOST}:{}/", addr.port()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "hello");
}

#[tokio::test]
async fn reqwest_refuses_a_certificate_it_does_not_trust() {
    let (addr, _) = https_server().await;
    let client = connectors::http::client_builder()
        .resolve(HOST, addr)
        .build()
        .expect("client");
    let error = client
        .get(format!("https://{HOST}:{}/", addr.port()))
        .send()
        .await
        .expect_err("a self-signed certificate is not trusted");
    let text = chain(&error);
    assert!(text.contains("certificate"), "{text}");
}

#[test]
fn a_default_client_builds_and_ring_is_the_process_provider() {
    let _client = connectors::http::client();
    assert!(tokio_rustls::rustls::crypto::CryptoProvider::get_default().is_some());
}

#[tokio::test]
async fn the_aws_client_speaks_tls_and_verifies_the_certificate() {
    let (addr, _) = https_server().await;
    let config = connectors::http::aws_config_loader()
        .region(Region::new("us-east-1"))
        .endpoint_url(format!("https://127.0.0.1:{}", addr.port()))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    let error = client
        .get_secret_value()
        .secret_id("x")
        .send()
        .await
        .expect_err("a self-signed certificate is not trusted");
    let text = DisplayErrorContext(&error).to_string();
    assert!(text.contains("certificate"), "{text}");
}
