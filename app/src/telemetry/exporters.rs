//! Exporter plumbing: which exporter each signal uses, a wrapper that reports a failing
//! backend once instead of once per batch, and log timestamps.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, SystemTime},
};

use anyhow::bail;
use opentelemetry::{InstrumentationScope, logs::LogRecord as _};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    logs::{LogBatch, LogExporter, LogProcessor, SdkLogRecord},
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

/// The tracing bridge sets only the observed time of a record; backends sort and display
/// by the event time, so it is filled in here.
#[derive(Debug)]
pub struct LogTimestamps<P>(P);

impl<P> LogTimestamps<P> {
    pub fn new(inner: P) -> Self {
        Self(inner)
    }
}

impl<P: LogProcessor> LogProcessor for LogTimestamps<P> {
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        if record.timestamp().is_none() {
            record.set_timestamp(record.observed_timestamp().unwrap_or_else(SystemTime::now));
        }
        self.0.emit(record, scope);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}
