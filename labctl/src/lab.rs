//! The lab's shared settings from `stack/lab.env`: the ports the stack publishes and the
//! app's telemetry environment. That file is the one copy - the justfile, compose, the
//! bench and the tests read it too - so labctl's default URLs and its hints follow it.
//! It is embedded at build time, so the labctl container image carries the same values.
//!
//! The format is deliberately smaller than "dotenv": `KEY=VALUE` lines, `#` comments,
//! no quoting or expansion, because bash (`source`), compose (`--env-file`, `env_file:`)
//! and Python must all read the same bytes the same way. A dotenv crate would accept
//! quotes and `${...}` that the other readers treat differently, so the parser below
//! rejects them instead.

use std::sync::LazyLock;

/// Where the file lives, relative to the repository root.
pub const PATH: &str = "stack/lab.env";
/// The file as it was when labctl was built.
pub const SOURCE: &str = include_str!("../../stack/lab.env");

pub const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
pub const OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
pub const METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";
pub const RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";

pub const POSTGRES_PORT: &str = "LAB_POSTGRES_PORT";
pub const APP_PORT: &str = "LAB_APP_PORT";
pub const GRAFANA_PORT: &str = "LAB_GRAFANA_PORT";
pub const LGTM_OTLP_GRPC_PORT: &str = "LAB_LGTM_OTLP_GRPC_PORT";
pub const LGTM_OTLP_HTTP_PORT: &str = "LAB_LGTM_OTLP_HTTP_PORT";
pub const PROMETHEUS_PORT: &str = "LAB_PROMETHEUS_PORT";
pub const TEMPO_PORT: &str = "LAB_TEMPO_PORT";
pub const LOKI_PORT: &str = "LAB_LOKI_PORT";
pub const COLLECTOR_OTLP_GRPC_PORT: &str = "LAB_COLLECTOR_OTLP_GRPC_PORT";
pub const COLLECTOR_OTLP_HTTP_PORT: &str = "LAB_COLLECTOR_OTLP_HTTP_PORT";
pub const COLLECTOR_HEALTH_PORT: &str = "LAB_COLLECTOR_HEALTH_PORT";

/// Every key labctl reads; a test holds that each is in the file.
pub const KEYS: [&str; 15] = [
    SERVICE_NAME,
    OTLP_PROTOCOL,
    METRIC_EXPORT_INTERVAL,
    RESOURCE_ATTRIBUTES,
    POSTGRES_PORT,
    APP_PORT,
    GRAFANA_PORT,
    LGTM_OTLP_GRPC_PORT,
    LGTM_OTLP_HTTP_PORT,
    PROMETHEUS_PORT,
    TEMPO_PORT,
    LOKI_PORT,
    COLLECTOR_OTLP_GRPC_PORT,
    COLLECTOR_OTLP_HTTP_PORT,
    COLLECTOR_HEALTH_PORT,
];

/// The settings, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabEnv {
    entries: Vec<(String, String)>,
}

impl LabEnv {
    /// Reads `KEY=VALUE` lines; the error names the line and what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries: Vec<(String, String)> = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let at = format!("line {}", number + 1);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!("{at}: `{line}` is not KEY=VALUE"));
            };
            let key_ok = key.starts_with(|c: char| c.is_ascii_uppercase())
                && key
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !key_ok {
                return Err(format!(
                    "{at}: the key `{key}` must be upper case letters, digits and _"
                ));
            }
            if value.is_empty() {
                return Err(format!("{at}: {key} has no value"));
            }
            if let Some(bad) = value
                .chars()
                .find(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '$' | '\\' | '`'))
            {
                return Err(format!(
                    "{at}: the value of {key} contains {bad:?}, which bash and compose read differently; \
                     write it plain"
                ));
            }
            if entries.iter().any(|(k, _)| k == key) {
                return Err(format!("{at}: {key} is set twice"));
            }
            entries.push((key.to_owned(), value.to_owned()));
        }
        Ok(Self { entries })
    }

    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The published host ports: every `LAB_*_PORT` entry, as (key, port).
    pub fn ports(&self) -> Result<Vec<(&str, u16)>, String> {
        self.entries
            .iter()
            .filter(|(key, _)| key.starts_with("LAB_") && key.ends_with("_PORT"))
            .map(|(key, value)| match value.parse::<u16>() {
                Ok(port) if port > 0 => Ok((key.as_str(), port)),
                _ => Err(format!("{key}={value} is not a TCP port")),
            })
            .collect()
    }

    /// Where an app on the host exports to the lab collector (lab 3 on), over the lab's
    /// protocol: the collector's OTLP/HTTP port for `http/protobuf`, its gRPC port for
    /// `grpc`. What `just run collector` sets, and what labctl's hints must say.
    pub fn collector_endpoint(&self) -> Result<String, String> {
        let key = match self.get(OTLP_PROTOCOL) {
            Some("grpc") => COLLECTOR_OTLP_GRPC_PORT,
            Some("http/protobuf" | "http/json") => COLLECTOR_OTLP_HTTP_PORT,
            other => {
                return Err(format!(
                    "{OTLP_PROTOCOL} is {other:?}, not grpc or http/protobuf"
                ));
            }
        };
        let port = self.get(key).ok_or_else(|| format!("{key} is not set"))?;
        Ok(format!("http://127.0.0.1:{port}"))
    }

    /// The `OTEL_*` entries: the environment the lab gives the app.
    pub fn otel(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .filter(|(key, _)| key.starts_with("OTEL_"))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

static SETTINGS: LazyLock<LabEnv> = LazyLock::new(|| {
    LabEnv::parse(SOURCE).unwrap_or_else(|error| panic!("{PATH} (built into labctl): {error}"))
});

/// The settings labctl was built with.
pub fn settings() -> &'static LabEnv {
    &SETTINGS
}

/// The value of `key`. Every key in [`KEYS`] is there (a test holds it), so a missing
/// one is a build from a broken checkout, not a user error.
pub fn value(key: &str) -> &'static str {
    settings()
        .get(key)
        .unwrap_or_else(|| panic!("{PATH} has no {key}"))
}

pub fn port(key: &str) -> u16 {
    value(key)
        .parse()
        .unwrap_or_else(|_| panic!("{PATH}: {key} is not a port"))
}

/// [`LabEnv::collector_endpoint`] of the built-in settings.
pub fn collector_endpoint() -> String {
    settings()
        .collector_endpoint()
        .unwrap_or_else(|e| panic!("{PATH}: {e}"))
}

/// `http://127.0.0.1:PORT` for the published port `key`: the lab publishes on loopback only.
pub fn local_url(key: &str) -> String {
    format!("http://127.0.0.1:{}", port(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_file_has_every_key_labctl_reads() {
        let settings = LabEnv::parse(SOURCE).expect("stack/lab.env parses");
        for key in KEYS {
            assert!(settings.get(key).is_some(), "{PATH} lacks {key}");
        }
        let ports = settings.ports().expect("every LAB_*_PORT is a port");
        assert!(ports.iter().any(|(key, _)| *key == APP_PORT), "{ports:?}");
        let mut numbers: Vec<u16> = ports.iter().map(|(_, port)| *port).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(
            numbers.len(),
            ports.len(),
            "two services share a port: {ports:?}"
        );
    }

    #[test]
    fn plain_lines_and_comments_are_read() {
        let settings = LabEnv::parse("# c\n\nA=1\n  B_2=x=y  \n").unwrap();
        assert_eq!(settings.get("A"), Some("1"));
        assert_eq!(settings.get("B_2"), Some("x=y"));
        assert_eq!(settings.entries().len(), 2);
    }

    #[test]
    fn what_the_other_readers_would_read_differently_is_refused() {
        for (text, needle) in [
            ("A=\"1\"", "contains '\"'"),
            ("A=${B}", "contains '$'"),
            ("A=1 2", "contains ' '"),
            ("lower=1", "upper case"),
            ("A=", "has no value"),
            ("A", "not KEY=VALUE"),
            ("A=1\nA=2", "line 2: A is set twice"),
        ] {
            let error = LabEnv::parse(text).expect_err(text);
            assert!(error.contains(needle), "{text:?}: {error}");
        }
    }

    #[test]
    fn the_collector_endpoint_follows_the_protocol() {
        let env = |protocol: &str| {
            LabEnv::parse(&format!(
                "{OTLP_PROTOCOL}={protocol}\n{COLLECTOR_OTLP_GRPC_PORT}=1\n{COLLECTOR_OTLP_HTTP_PORT}=2\n"
            ))
            .unwrap()
        };
        assert_eq!(
            env("http/protobuf").collector_endpoint().unwrap(),
            "http://127.0.0.1:2"
        );
        assert_eq!(
            env("grpc").collector_endpoint().unwrap(),
            "http://127.0.0.1:1"
        );
        assert!(env("carrier-pigeon").collector_endpoint().is_err());
        assert!(LabEnv::parse(SOURCE).unwrap().collector_endpoint().is_ok());
    }

    #[test]
    fn a_port_that_is_not_one_is_refused() {
        let settings = LabEnv::parse("LAB_X_PORT=70000").unwrap();
        assert!(settings.ports().unwrap_err().contains("LAB_X_PORT=70000"));
        let settings = LabEnv::parse("LAB_X_PORT=0").unwrap();
        assert!(settings.ports().is_err());
    }
}
