//! A wiremock server on 127.0.0.1 that answers with recorded backend responses, so the
//! clients' real HTTP code (URL building, query encoding, status handling, JSON reading)
//! runs in the tests. Each rule matches a path and, optionally, a substring of one query
//! parameter; the first matching rule answers (wiremock's priorities follow the order of
//! the rules), anything else gets wiremock's 404. Every request is recorded.

use std::path::PathBuf;
use std::time::Duration;

use labctl::checks::CheckpointConfig;
use labctl::verify::VerifyConfig;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

#[derive(Clone)]
pub struct Rule {
    path: String,
    param: Option<(String, String)>,
    status: u16,
    body: String,
}

/// Answers `path` with the fixture file `fixture` (relative to tests/fixtures).
pub fn on(path: &str, fixture: &str) -> Rule {
    Rule {
        path: path.into(),
        param: None,
        status: 200,
        body: fixture_text(fixture),
    }
}

impl Rule {
    /// Only when query parameter `name` contains `needle`.
    pub fn when(mut self, name: &str, needle: &str) -> Self {
        self.param = Some((name.into(), needle.into()));
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
}

pub fn fixture_text(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A request as received: path and decoded query parameters.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub params: Vec<(String, String)>,
}

impl Seen {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

pub struct FixtureServer {
    pub url: String,
    server: MockServer,
}

impl FixtureServer {
    pub async fn start(rules: Vec<Rule>) -> Self {
        let server = MockServer::start().await;
        for (index, rule) in rules.into_iter().enumerate() {
            let param = rule.param.clone();
            // wiremock answers with the matching mock of the lowest priority number.
            let priority = u8::try_from(index + 1).expect("at most 255 rules");
            Mock::given(path(rule.path.as_str()))
                .and(move |request: &Request| {
                    param.as_ref().is_none_or(|(name, needle)| {
                        request.url.query_pairs().any(|(key, value)| {
                            key == name.as_str() && value.contains(needle.as_str())
                        })
                    })
                })
                .respond_with(
                    ResponseTemplate::new(rule.status)
                        .set_body_raw(rule.body.clone(), "application/json"),
                )
                .with_priority(priority)
                .mount(&server)
                .await;
        }
        Self {
            url: server.uri(),
            server,
        }
    }

    pub async fn seen(&self) -> Vec<Seen> {
        self.server
            .received_requests()
            .await
            .expect("wiremock records requests")
            .into_iter()
            .map(|request| Seen {
                path: request.url.path().to_owned(),
                params: request.url.query_pairs().into_owned().collect(),
            })
            .collect()
    }
}

/// The checkpoints' settings with every backend at `url` (Tempo too when `tempo`).
#[allow(dead_code)] // the checkpoint suites use it, the backend suites do not
pub fn checkpoint_config(url: &str, timeout: Duration, tempo: bool) -> CheckpointConfig {
    CheckpointConfig {
        app_url: url.into(),
        grafana_url: url.into(),
        collector_health_url: format!("{url}/collector"),
        dashboard_uid: "todo-api-overview".into(),
        verify: VerifyConfig {
            prometheus_url: url.into(),
            tempo_url: tempo.then(|| url.to_owned()),
            loki_url: None,
            service: "todo-api".into(),
            dashboard: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/dashboard.json"),
            timeout,
            scrape_interval: Duration::from_secs(15),
            variables: Vec::new(),
            progress: false,
        },
    }
}
