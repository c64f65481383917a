//! The exporters' connections: one rustls client configuration (system roots, the
//! private CA of `OTEL_EXPORTER_OTLP_CERTIFICATE`, the client identity for mTLS) used by
//! both protocols, and a typed record of why an export failed (a TLS error, an answer
//! refusing the credentials) for the once-only report in `exporters`.

use std::{
    error::Error as StdError,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use anyhow::Context as _;
use bytes::Bytes;
use http::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use opentelemetry_http::{HttpClient, HttpError};
use otlp_reqwest as reqwest;
use rustls::{CertificateError, ClientConfig, RootCertStore, pki_types::ServerName};
use tokio::net::TcpStream;

use super::otlp_env::{OtlpSettings, Protocol};

/// Why exports of one signal fail, when the transport can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The backend answered, refusing the credentials (HTTP 401/403, gRPC
    /// UNAUTHENTICATED/PERMISSION_DENIED).
    Rejected(String),
    /// The TLS handshake failed; the text says why in a learner's words.
    Tls(String),
}

/// The last failure a transport saw, read (and cleared) by the export wrapper.
#[derive(Debug, Default)]
pub struct Verdict(Mutex<Option<Failure>>);

impl Verdict {
    fn record(&self, failure: Failure) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(failure);
    }

    pub fn take(&self) -> Option<Failure> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The rustls client configuration for one signal. The provider is named here rather
/// than taken from the process default, so no other crate's feature choice changes it.
pub fn client_config(settings: &OtlpSettings, alpn: &[&[u8]]) -> anyhow::Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    // A machine without a system store still works with a private CA.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots.add_parsable_certificates(settings.tls.ca.iter().cloned());
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS set-up")?
            .with_root_certificates(roots);
    let mut config = match &settings.tls.identity {
        None => builder.with_no_client_auth(),
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|error| anyhow::anyhow!("{} is not usable: {error}", identity.key_variable))?,
    };
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(config)
}

/// The blocking reqwest client for OTLP/HTTP (the SDK's batch processors run on their
/// own threads), wrapped to record refusals and TLS errors.
pub fn http_client(settings: &OtlpSettings, verdict: Arc<Verdict>) -> anyhow::Result<ObservedHttp> {
    debug_assert_eq!(settings.protocol, Protocol::HttpProtobuf);
    let tls = client_config(settings, &[])?;
    let timeout = settings.timeout;
    // reqwest's blocking client must not be built on a Tokio worker thread.
    let client = std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(timeout)
            .build()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("building the OTLP/HTTP client panicked"))?
    .context("building the OTLP/HTTP client")?;
    Ok(ObservedHttp {
        inner: client,
        verdict,
    })
}

#[derive(Debug)]
pub struct ObservedHttp {
    inner: reqwest::blocking::Client,
    verdict: Arc<Verdict>,
}

#[async_trait::async_trait]
impl HttpClient for ObservedHttp {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let outcome = self.inner.send_bytes(request).await;
        match &outcome {
            Ok(response) => {
                let status = response.status();
                if status == http::StatusCode::UNAUTHORIZED || status == http::StatusCode::FORBIDDEN {
                    self.verdict.record(Failure::Rejected(format!("HTTP {}", status.as_u16())));
                }
            }
            Err(error) => {
                if let Some(reason) = tls_failure(&**error) {
                    self.verdict.record(Failure::Tls(reason));
                }
            }
        }
        outcome
    }
}

/// The gRPC endpoint of one signal (the default `http://localhost:4317` when none is set),
/// with its timeouts; a malformed one is an error naming its variable.
fn grpc_endpoint(settings: &OtlpSettings) -> anyhow::Result<tonic::transport::Endpoint> {
    let endpoint = settings.endpoint.as_deref().unwrap_or("http://localhost:4317");
    Ok(tonic::transport::Endpoint::from_shared(endpoint.trim().to_owned())
        .with_context(|| format!("{} is not a valid gRPC endpoint", settings.endpoint_variable()))?
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout))
}

/// A tonic channel for one signal's gRPC endpoint. For `https://` the TLS handshake is
/// done here, with the same configuration as OTLP/HTTP and a typed view of its errors.
/// (tonic's own TLS would need one of its TLS features; keep them off, or tonic's
/// connector insists on doing TLS itself for `https://` URIs.)
pub fn grpc_channel(
    settings: &OtlpSettings,
    verdict: Arc<Verdict>,
) -> anyhow::Result<tonic::transport::Channel> {
    let endpoint = grpc_endpoint(settings)?;
    if !settings.uses_tls() {
        return Ok(endpoint.connect_lazy());
    }
    let config = Arc::new(client_config(settings, &[b"h2"])?);
    Ok(endpoint.connect_with_connector_lazy(TlsConnector { config, verdict }))
}

#[derive(Clone)]
struct TlsConnector {
    config: Arc<ClientConfig>,
    verdict: Arc<Verdict>,
}

type BoxError = Box<dyn StdError + Send + Sync>;

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move {
            let host = uri.host().ok_or("the endpoint has no host")?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let name = ServerName::try_from(host)?;
            match tokio_rustls::TlsConnector::from(connector.config)
                .connect(name, tcp)
                .await
            {
                Ok(stream) => Ok(TokioIo::new(stream)),
                Err(error) => {
                    if let Some(reason) = tls_failure(&error) {
                        connector.verdict.record(Failure::Tls(reason));
                    }
                    Err(error.into())
                }
            }
        })
    }
}

/// The rustls error somewhere in `error`'s chain, said plainly. `io::Error` hides the
/// error it wraps from `source()`, so it is unwrapped by hand.
fn tls_failure(error: &(dyn StdError + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(describe(tls));
        }
        if let Some(inner) = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && let Some(found) = tls_failure(inner)
        {
            return Some(found);
        }
        next = error.source();
    }
    None
}

fn describe(error: &rustls::Error) -> String {
    match error {
        // A CA of the same name that did not sign it fails on the signature.
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => {
            "the server's certificate is not signed by a trusted CA; set \
             OTEL_EXPORTER_OTLP_CERTIFICATE to the PEM file of the CA that signed it"
                .to_owned()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "the server's certificate is not valid for the endpoint's host name".to_owned(),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the server's certificate has expired".to_owned(),
        rustls::Error::AlertReceived(alert) => format!(
            "the server refused the connection ({alert:?}); if it asks for a client \
             certificate, set OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and \
             OTEL_EXPORTER_OTLP_CLIENT_KEY"
        ),
        other => other.to_string(),
    }
}

/// A gRPC refusal of the credentials. The SDK passes only its text on, which names the
/// status code by tonic's `Code` variant; the names are taken from that enum.
pub fn grpc_rejection(error: &str) -> Option<Failure> {
    [tonic::Code::Unauthenticated, tonic::Code::PermissionDenied]
        .into_iter()
        .find(|code| error.contains(&format!("gRPC code: {code:?}")))
        .map(|code| Failure::Rejected(format!("gRPC {code:?}")))
}
