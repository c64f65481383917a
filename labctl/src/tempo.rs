//! Tempo's search API (`GET /api/search` with a TraceQL `q`), read in the format documented
//! in Tempo's `docs/sources/tempo/api_docs/_index.md` ("Search").

use std::time::Duration;

use reqwest::Client;
use serde::Deserialize;

use crate::http::{self, ApiError};

/// Tempo 3 ends every search this long before now: the query frontend clamps a request's
/// `end` to `now - query_end_cutoff` (modules/frontend/config.go and
/// pkg/api/http.go `ClampDateRangeReq` at Tempo v3.0.3, the version in the pinned
/// grafana/otel-lgtm 0.31.0, whose tempo-config.yaml keeps the 30 s default). A trace is
/// therefore found no sooner than this after it ended - in labctl's waits and in
/// Grafana's Tempo panels alike (the dashboard shifts them by it; a test holds that).
pub const QUERY_END_CUTOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceSummary {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    /// The root span's name; absent while the root span has not arrived yet.
    #[serde(default)]
    pub root_trace_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SearchResponse {
    #[serde(default)]
    traces: Vec<TraceSummary>,
}

#[derive(Debug, Clone)]
pub struct Tempo {
    api: http::Api,
}

impl Tempo {
    pub fn new(client: Client, base_url: &str) -> Self {
        Self {
            api: http::Api::new(client, base_url),
        }
    }

    pub fn base_url(&self) -> &str {
        self.api.base_url()
    }

    /// Traces matching the TraceQL `query` between `start` and `end` (unix seconds).
    /// With both bounds Tempo searches its backend blocks too, not only recent data.
    pub async fn search(
        &self,
        query: &str,
        start: u64,
        end: u64,
        limit: u32,
    ) -> Result<Vec<TraceSummary>, ApiError> {
        let params = [
            ("q", query.to_owned()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("limit", limit.to_string()),
        ];
        let body = self.api.get("/api/search", &params).await?;
        Ok(http::parse::<SearchResponse>("Tempo /api/search", &body)?.traces)
    }
}
