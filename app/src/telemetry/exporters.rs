//! Exporter plumbing: which exporter each signal uses, and a wrapper that reports a
//! failing backend once instead of once per batch.

use std::{
    sync::atomic::{AtomicBool, Ordering},
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

/// Wraps an exporter so that an unreachable backend is reported once, when exports start
/// failing, and once more when they succeed again - not on every batch.
#[derive(Debug)]
pub struct WarnOnce<E> {
    inner: E,
    signal: &'static str,
    failing: AtomicBool,
}

impl<E> WarnOnce<E> {
    pub fn new(signal: &'static str, inner: E) -> Self {
        Self {
            inner,
            signal,
            failing: AtomicBool::new(false),
        }
    }

    fn observe(&self, result: OTelSdkResult) -> OTelSdkResult {
        match &result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    eprintln!("telemetry: {} export recovered", self.signal);
                }
            }
            Err(error) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    eprintln!(
                        "telemetry: {} export failing ({error}); data is dropped until the \
                         collector is reachable again (reported once)",
                        self.signal
                    );
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
