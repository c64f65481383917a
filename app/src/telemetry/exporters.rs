//! Exporter plumbing: which exporter each signal uses, and a wrapper that reports a
//! failing backend once instead of once per batch (and says whether TLS or the
//! credentials are the cause).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::bail;
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    logs::{LogBatch, LogExporter},
    metrics::{Temporality, data::ResourceMetrics, exporter::PushMetricExporter},
    trace::{SpanData, SpanExporter},
};

use super::transport::{Failure, Verdict, grpc_rejection};
use crate::config::var;

/// The values of `OTEL_{TRACES,METRICS,LOGS}_EXPORTER` the service supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExporterKind {
    Otlp,
    Console,
    None,
}

impl ExporterKind {
    pub fn from_env(name: &str) -> anyhow::Result<Self> {
        match var(name).as_deref().map(str::trim) {
            None | Some("otlp") => Ok(Self::Otlp),
            Some("console") => Ok(Self::Console),
            Some("none") => Ok(Self::None),
            Some(other) => bail!("{name}={other:?} is not supported (use otlp, console or none)"),
        }
    }
}

/// Builds the OTLP exporter of one signal from its [`OtlpSettings`]: OTLP/HTTP always
/// through the service's own client, gRPC through its own TLS channel for `https://`.
/// Metrics and logs use it; spans have the service's own exporter (`span_export`).
/// (The signals' builders share the methods but no trait that builds.)
macro_rules! otlp_exporter {
    ($builder:expr, $settings:expr, $verdict:expr) => {{
        use opentelemetry_otlp::{WithHttpConfig as _, WithTonicConfig as _};
        use $crate::telemetry::{otlp_env::Protocol, transport};
        let settings: &$crate::telemetry::otlp_env::OtlpSettings = $settings;
        let verdict: &std::sync::Arc<$crate::telemetry::transport::Verdict> = $verdict;
        match settings.protocol {
            Protocol::HttpProtobuf => $builder
                .with_http()
                .with_http_client(transport::http_client(settings, verdict.clone())?)
                .build()?,
            Protocol::Grpc if settings.uses_tls() => $builder
                .with_tonic()
                .with_channel(transport::grpc_channel(settings, verdict.clone())?)
                .build()?,
            Protocol::Grpc => $builder.with_tonic().build()?,
        }
    }};
}
pub(crate) use otlp_exporter;

/// Wraps an exporter so that a failing backend is reported once, when exports start
/// failing, and once more when they succeed again - not on every batch.
#[derive(Debug)]
pub struct WarnOnce<E> {
    inner: E,
    signal: &'static str,
    failing: AtomicBool,
    /// What the transport saw of the failure, if it could tell.
    verdict: Arc<Verdict>,
}

impl<E> WarnOnce<E> {
    pub fn new(signal: &'static str, inner: E, verdict: Arc<Verdict>) -> Self {
        Self {
            inner,
            signal,
            failing: AtomicBool::new(false),
            verdict,
        }
    }

    fn observe(&self, result: OTelSdkResult) -> OTelSdkResult {
        match &result {
            Ok(()) => {
                self.verdict.take();
                if self.failing.swap(false, Ordering::Relaxed) {
                    eprintln!("telemetry: {} export recovered", self.signal);
                }
            }
            Err(error) => {
                let failure = self
                    .verdict
                    .take()
                    .or_else(|| grpc_rejection(&error.to_string()));
                if !self.failing.swap(true, Ordering::Relaxed) {
                    let signal = self.signal;
                    // The SDK's error text names no header value; ours name none either.
                    match failure {
                        Some(Failure::Rejected(answer)) => eprintln!(
                            "telemetry: {signal} export rejected: check the credentials (the \
                             backend answered {answer}; they come from OTEL_EXPORTER_OTLP_HEADERS); \
                             data is dropped (reported once)"
                        ),
                        Some(Failure::Tls(reason)) => eprintln!(
                            "telemetry: {signal} export failing: TLS handshake failed: {reason}; \
                             data is dropped until it succeeds (reported once)"
                        ),
                        None => eprintln!(
                            "telemetry: {signal} export failing ({error}); data is dropped until \
                             the collector is reachable again (reported once)"
                        ),
                    }
                }
            }
        }
        result
    }
}

impl<E: SpanExporter> SpanExporter for WarnOnce<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.observe(self.inner.export(batch).await)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: LogExporter> LogExporter for WarnOnce<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        self.observe(self.inner.export(batch).await)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for WarnOnce<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        self.observe(self.inner.export(metrics).await)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}
