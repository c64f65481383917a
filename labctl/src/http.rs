//! The one GET helper the backend clients share, and the three ways a call can fail.
//! The difference matters to `verify`: an unreachable backend or an empty answer may
//! change while we wait, a refused query (bad PromQL, bad TraceQL) never will.

use std::fmt;
use std::time::Duration;

use reqwest::{Client, Url};

/// Each backend call gives up after this long; the overall wait is `verify --timeout`.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// No HTTP answer: not running, wrong port, timed out.
    Unreachable(String),
    /// The backend answered that the request itself is wrong (4xx).
    Rejected { status: u16, message: String },
    /// Anything else: a 5xx, or a body that is not the documented format.
    Failed(String),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable(message) => write!(f, "unreachable: {message}"),
            Self::Rejected { status, message } => write!(f, "rejected ({status}): {message}"),
            Self::Failed(message) => write!(f, "{message}"),
        }
    }
}

pub fn client() -> Client {
    Client::builder()
        .timeout(CALL_TIMEOUT)
        .user_agent(concat!("labctl/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a plain HTTP client always builds")
}

/// Joins `path` to `base` (which may carry a path prefix, as behind a proxy).
pub fn endpoint(base: &str, path: &str) -> Result<Url, ApiError> {
    let joined = format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    Url::parse(&joined).map_err(|error| ApiError::Unreachable(format!("bad URL {joined}: {error}")))
}

/// GETs `url` with `query` and returns status and body. 4xx become `Rejected` carrying
/// the backend's own message (Prometheus sends JSON with an `error` field, Tempo and
/// Loki plain text), other non-2xx become `Failed`.
pub async fn get(client: &Client, url: Url, query: &[(&str, String)]) -> Result<String, ApiError> {
    let shown = url.to_string();
    let response = client.get(url).query(query).send().await.map_err(|error| {
        let mut cause: &dyn std::error::Error = &error;
        while let Some(source) = cause.source() {
            cause = source;
        }
        if error.is_timeout() {
            ApiError::Unreachable(format!(
                "{shown}: no answer within {}s",
                CALL_TIMEOUT.as_secs()
            ))
        } else {
            ApiError::Unreachable(format!("{shown}: {cause}"))
        }
    })?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|error| ApiError::Failed(format!("{shown}: reading the answer: {error}")))?;
    if status.is_success() {
        return Ok(body);
    }
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|json| json["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.trim().chars().take(300).collect());
    if status.is_client_error() {
        Err(ApiError::Rejected {
            status: status.as_u16(),
            message,
        })
    } else {
        Err(ApiError::Failed(format!(
            "{shown} answered {status}: {message}"
        )))
    }
}

/// Parses a JSON body, naming the endpoint when the format is not the documented one.
pub fn parse<T: serde::de::DeserializeOwned>(what: &str, body: &str) -> Result<T, ApiError> {
    serde_json::from_str(body)
        .map_err(|error| ApiError::Failed(format!("{what}: unexpected answer format ({error})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keeps_a_path_prefix_and_avoids_double_slashes() {
        assert_eq!(
            endpoint("http://127.0.0.1:9090/", "/api/v1/query")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9090/api/v1/query"
        );
        assert_eq!(
            endpoint("http://host/prom", "api/v1/query")
                .unwrap()
                .as_str(),
            "http://host/prom/api/v1/query"
        );
        assert!(endpoint("not a url", "x").is_err());
    }
}

/// One backend's HTTP API: the shared client and the base URL its paths go under.
#[derive(Debug, Clone)]
pub struct Api {
    client: Client,
    base_url: String,
}

impl Api {
    pub fn new(client: Client, base_url: &str) -> Self {
        Self {
            client,
            base_url: base_url.to_owned(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `GET` of `path` under the base URL with `query`: the body, or the error as
    /// [`get`] tells it.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<String, ApiError> {
        get(&self.client, endpoint(&self.base_url, path)?, query).await
    }
}
