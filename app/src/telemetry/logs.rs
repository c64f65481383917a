//! Log records as the `tracing` bridge makes them, corrected before they are exported.

use std::time::{Duration, SystemTime};

use opentelemetry::{InstrumentationScope, logs::LogRecord as _};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    logs::{LogProcessor, SdkLogRecord},
};

/// Wraps the export processor and fixes two things the bridge gets wrong:
/// - it sets only the observed time of a record, while backends sort and display by the
///   event time, so the event time is filled in;
/// - it names every record after the `tracing` event's metadata name, which is
///   `event src/api.rs:150` (or a file in the cargo registry, for a dependency) unless
///   the call gives a `name:`. The conventions reserve the event name for events with a
///   defined meaning; a plain log line has none, so such names are removed.
#[derive(Debug)]
pub struct BridgeFixes<P>(P);

impl<P> BridgeFixes<P> {
    pub fn new(inner: P) -> Self {
        Self(inner)
    }
}

impl<P: LogProcessor> LogProcessor for BridgeFixes<P> {
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        if record.timestamp().is_none() {
            record.set_timestamp(record.observed_timestamp().unwrap_or_else(SystemTime::now));
        }
        if record.event_name().is_some_and(is_source_location) {
            // The SDK cannot unset a name; OTLP exports an empty one as none.
            record.set_event_name("");
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

/// `tracing`'s default event name: `event <file>:<line>`.
fn is_source_location(name: &str) -> bool {
    name.strip_prefix("event ")
        .and_then(|location| location.rsplit_once(':'))
        .is_some_and(|(file, line)| !file.is_empty() && line.parse::<u32>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::is_source_location;

    #[test]
    fn recognises_tracings_default_event_names() {
        assert!(is_source_location("event app/src/api.rs:150"));
        assert!(is_source_location(
            "event /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/poem-3.1.12/src/server.rs:182"
        ));
        assert!(!is_source_location("todo.created"));
        assert!(!is_source_location("event todo:created"));
        assert!(!is_source_location("event :12"));
    }
}
