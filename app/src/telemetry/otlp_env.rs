//! The `OTEL_EXPORTER_OTLP_*` settings, checked at start-up. The SDK reads headers and
//! compression itself but skips a malformed header without a word, and it does not read
//! the TLS file variables at all; both are resolved here, per signal, so that a mistake
//! is one line naming the variable. Values are never echoed: headers carry credentials.

use std::{fmt, fs, time::Duration};

use anyhow::{Context as _, bail};
use percent_encoding::percent_decode_str;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};

use crate::config::var;

/// One of the three signals, as the per-signal variables name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Self::Traces => "traces",
            Self::Metrics => "metrics",
            Self::Logs => "logs",
        }
    }

    fn infix(self) -> &'static str {
        match self {
            Self::Traces => "TRACES_",
            Self::Metrics => "METRICS_",
            Self::Logs => "LOGS_",
        }
    }

    /// The variable that decides `setting` for this signal: the per-signal one when set,
    /// else the general one. Returns its name and value.
    fn lookup(self, setting: &str) -> (String, Option<String>) {
        let specific = format!("OTEL_EXPORTER_OTLP_{}{setting}", self.infix());
        if let Some(value) = var(&specific) {
            return (specific, Some(value));
        }
        let general = format!("OTEL_EXPORTER_OTLP_{setting}");
        let value = var(&general);
        (general, value)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// The client side of TLS: extra trusted CAs and an optional client identity (mTLS).
#[derive(Debug, Default)]
pub struct TlsFiles {
    pub ca: Vec<CertificateDer<'static>>,
    pub identity: Option<ClientIdentity>,
}

pub struct ClientIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The variable that named the key, for a message if rustls refuses it.
    pub key_variable: String,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("chain", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Everything the service decides itself about one signal's OTLP export.
#[derive(Debug)]
pub struct OtlpSettings {
    pub signal: Signal,
    pub protocol: Protocol,
    /// The endpoint as configured (per-signal or general), if any: for `https://`
    /// detection and the gRPC channel; the SDK appends the HTTP paths itself.
    pub endpoint: Option<String>,
    pub timeout: Duration,
    pub tls: TlsFiles,
    /// Whether exports are gzip-compressed (`..._COMPRESSION=gzip`).
    pub gzip: bool,
}

impl OtlpSettings {
    pub fn from_env(signal: Signal) -> anyhow::Result<Self> {
        let protocol = protocol(signal)?;
        signal_headers(signal)?;
        let gzip = gzip(signal)?;
        let (_, endpoint) = signal.lookup("ENDPOINT");
        Ok(Self {
            signal,
            protocol,
            endpoint,
            gzip,
            timeout: timeout(signal)?,
            tls: tls_files(signal)?,
        })
    }

    /// The per-signal endpoint alone (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`...), which
    /// OTLP/HTTP uses as given; the general one gets the signal's path appended.
    pub fn endpoint_for_signal(&self) -> Option<String> {
        var(&format!("OTEL_EXPORTER_OTLP_{}ENDPOINT", self.signal.infix()))
    }

    /// The variable the endpoint came from (per-signal, else general), for messages.
    pub fn endpoint_variable(&self) -> String {
        self.signal.lookup("ENDPOINT").0
    }

    /// The headers sent with every export (checked by [`Self::from_env`]).
    pub fn headers(&self) -> anyhow::Result<Vec<(http::HeaderName, http::HeaderValue)>> {
        signal_headers(self.signal)
    }

    pub fn uses_tls(&self) -> bool {
        self.endpoint
            .as_deref()
            .is_some_and(|endpoint| endpoint.trim().to_ascii_lowercase().starts_with("https://"))
    }
}

fn protocol(signal: Signal) -> anyhow::Result<Protocol> {
    match signal.lookup("PROTOCOL") {
        (_, None) => Ok(Protocol::HttpProtobuf),
        (name, Some(value)) => match value.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            other => bail!("{name}={other:?} is not supported (use grpc or http/protobuf)"),
        },
    }
}

fn timeout(signal: Signal) -> anyhow::Result<Duration> {
    match signal.lookup("TIMEOUT") {
        (_, None) => Ok(Duration::from_secs(10)),
        (name, Some(value)) => value
            .trim()
            .parse()
            .map(Duration::from_millis)
            .with_context(|| format!("{name}={value:?} is not a number of milliseconds")),
    }
}

/// Whether the compression is gzip. `gzip` is built in; `zstd` would need a C library
/// the build does not carry.
fn gzip(signal: Signal) -> anyhow::Result<bool> {
    match signal.lookup("COMPRESSION") {
        (_, None) => Ok(false),
        (name, Some(value)) => match value.trim() {
            "gzip" => Ok(true),
            "none" => Ok(false),
            other => bail!("{name}={other:?} is not supported (use gzip or none)"),
        },
    }
}

/// The signal's headers: `key=value` pairs separated by commas, values URL-encoded (the
/// spec's format). Only keys and positions appear in a message, never a value.
fn signal_headers(signal: Signal) -> anyhow::Result<Vec<(http::HeaderName, http::HeaderValue)>> {
    match signal.lookup("HEADERS") {
        (name, Some(list)) => parse_headers(&list).with_context(|| format!("{name} is not valid")),
        (_, None) => Ok(Vec::new()),
    }
}

/// The headers of a `OTEL_EXPORTER_OTLP_HEADERS` value, decoded.
pub fn parse_headers(list: &str) -> anyhow::Result<Vec<(http::HeaderName, http::HeaderValue)>> {
    let mut headers = Vec::new();
    for (index, entry) in list.split(',').map(str::trim).enumerate() {
        let position = index + 1;
        if entry.is_empty() {
            continue;
        }
        let Some((key, value)) = entry.split_once('=') else {
            bail!("entry {position} is not key=value");
        };
        let key = key.trim();
        let name = http::HeaderName::from_bytes(key.as_bytes())
            .ok()
            .filter(|_| !key.is_empty())
            .with_context(|| format!("entry {position}: {key:?} is not a header name"))?;
        let decoded = percent_decode_str(value.trim())
            .decode_utf8()
            .ok()
            .with_context(|| format!("the value of {key} is not URL-encoded UTF-8"))?;
        if decoded.is_empty() {
            bail!("the value of {key} is empty");
        }
        let value = http::HeaderValue::from_str(&decoded).ok().with_context(|| {
            format!("the value of {key} has characters a header cannot carry (URL-encode them)")
        })?;
        headers.push((name, value));
    }
    Ok(headers)
}

fn tls_files(signal: Signal) -> anyhow::Result<TlsFiles> {
    let ca = match signal.lookup("CERTIFICATE") {
        (_, None) => Vec::new(),
        (name, Some(path)) => certificates(&name, &path)?,
    };
    let identity = match (
        signal.lookup("CLIENT_CERTIFICATE"),
        signal.lookup("CLIENT_KEY"),
    ) {
        ((_, None), (_, None)) => None,
        ((cert_name, Some(cert)), (key_name, Some(key))) => Some(ClientIdentity {
            chain: certificates(&cert_name, &cert)?,
            key: private_key(&key_name, &key)?,
            key_variable: key_name,
        }),
        ((cert_name, Some(_)), (key_name, None)) => {
            bail!("{cert_name} is set but {key_name} is not (mTLS needs both)")
        }
        ((cert_name, None), (key_name, Some(_))) => {
            bail!("{key_name} is set but {cert_name} is not (mTLS needs both)")
        }
    };
    Ok(TlsFiles { ca, identity })
}

fn read(name: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    fs::read(path.trim()).with_context(|| format!("{name}={path:?} cannot be read"))
}

fn certificates(name: &str, path: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read(name, path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|certificates| !certificates.is_empty());
    certificates.with_context(|| format!("{name}={path:?} holds no PEM certificate"))
}

fn private_key(name: &str, path: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = read(name, path)?;
    // The parser's error is not shown: it could quote part of the key.
    PrivateKeyDer::from_pem_slice(&pem)
        .ok()
        .with_context(|| format!("{name}={path:?} holds no PEM private key"))
}

#[cfg(test)]
mod tests {
    use super::parse_headers;

    #[test]
    fn headers_are_url_decoded() {
        let headers = parse_headers("authorization=Basic%20dXNlcjpwYXNz==, x-scope=team-a").unwrap();
        assert_eq!(headers[0].0, "authorization");
        assert_eq!(headers[0].1, "Basic dXNlcjpwYXNz==");
        assert_eq!(headers[1].1, "team-a");
    }

    #[test]
    fn a_bad_entry_is_named_by_position_without_its_value() {
        let error = parse_headers("a=1,secret-token-no-equals").unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("entry 2"), "{message}");
        assert!(!message.contains("secret-token"), "{message}");
    }

    #[test]
    fn a_value_a_header_cannot_carry_is_refused() {
        let error = parse_headers("authorization=Bearer%0Atoken").unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("authorization"), "{message}");
        assert!(!message.contains("token"), "{message}");
    }
}
