//! A tiny HTTP server on 127.0.0.1:0 that answers with recorded backend responses, so the
//! clients' real HTTP code (URL building, query encoding, status handling, JSON reading)
//! runs in the tests. Each rule matches a path and, optionally, a substring of one query
//! parameter; the first matching rule answers. Every request is recorded.

use std::sync::{Arc, Mutex};

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Request, Response, Server};

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
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FixtureServer {
    pub async fn start(rules: Vec<Rule>) -> Self {
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("bind 127.0.0.1:0");
        let address = *acceptor.local_addr()[0]
            .as_socket_addr()
            .expect("a TCP address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = seen.clone();
        let endpoint = poem::endpoint::make(move |request: Request| {
            let rules = rules.clone();
            let recorder = recorder.clone();
            async move {
                let params: Vec<(String, String)> =
                    url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
                        .into_owned()
                        .collect();
                let path = request.uri().path().to_owned();
                let rule = rules.iter().find(|rule| {
                    rule.path == path
                        && rule.param.as_ref().is_none_or(|(name, needle)| {
                            params
                                .iter()
                                .any(|(key, value)| key == name && value.contains(needle.as_str()))
                        })
                });
                recorder.lock().unwrap().push(Seen { path, params });
                match rule {
                    Some(rule) => Response::builder()
                        .status(StatusCode::from_u16(rule.status).unwrap())
                        .content_type("application/json")
                        .body(rule.body.clone()),
                    None => Response::builder()
                        .status(StatusCode::NOT_FOUND)
                        .body("404 page not found"),
                }
            }
        });
        tokio::spawn(Server::new_with_acceptor(acceptor).run(endpoint));
        Self {
            url: format!("http://{address}"),
            seen,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}
