//! Loki's range query (`GET /loki/api/v1/query_range`), read in the format documented in
//! Loki's `docs/sources/reference/loki-http-api.md` ("Query logs within a range of time").

use std::collections::BTreeMap;

use reqwest::Client;
use serde::Deserialize;

use crate::http::{self, ApiError};

#[derive(Debug, Deserialize)]
struct Envelope {
    status: String,
    data: LokiData,
}

/// A log query answers streams of lines; a metric query (`rate({...}[1m])`) a matrix.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
pub enum LokiData {
    Streams(Vec<Stream>),
    Matrix(Vec<MatrixSeries>),
    Vector(Vec<serde_json::Value>),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Stream {
    pub stream: BTreeMap<String, String>,
    /// `[nanosecond timestamp, line]` pairs, both strings.
    pub values: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MatrixSeries {
    pub metric: BTreeMap<String, String>,
    pub values: Vec<(f64, String)>,
}

impl LokiData {
    /// Log lines, or samples for a metric query.
    pub fn entry_count(&self) -> usize {
        match self {
            Self::Streams(streams) => streams.iter().map(|s| s.values.len()).sum(),
            Self::Matrix(series) => series.iter().map(|s| s.values.len()).sum(),
            Self::Vector(samples) => samples.len(),
        }
    }

    /// The log lines themselves (empty for metric queries).
    pub fn lines(&self) -> Vec<&str> {
        match self {
            Self::Streams(streams) => streams
                .iter()
                .flat_map(|s| s.values.iter().map(|(_, line)| line.as_str()))
                .collect(),
            Self::Matrix(_) | Self::Vector(_) => Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Loki {
    api: http::Api,
}

impl Loki {
    pub fn new(client: Client, base_url: &str) -> Self {
        Self {
            api: http::Api::new(client, base_url),
        }
    }

    pub fn base_url(&self) -> &str {
        self.api.base_url()
    }

    /// Runs the LogQL `query` between `start` and `end` (unix seconds), newest first.
    pub async fn query_range(
        &self,
        query: &str,
        start: u64,
        end: u64,
        limit: u32,
    ) -> Result<LokiData, ApiError> {
        // Loki takes nanosecond epochs.
        let params = [
            ("query", query.to_owned()),
            ("start", format!("{start}000000000")),
            ("end", format!("{end}000000000")),
            ("limit", limit.to_string()),
            ("direction", "backward".to_owned()),
        ];
        let body = self.api.get("/loki/api/v1/query_range", &params).await?;
        let envelope: Envelope = http::parse("Loki query_range", &body)?;
        if envelope.status != "success" {
            return Err(ApiError::Failed(format!(
                "Loki query_range answered status {}",
                envelope.status
            )));
        }
        Ok(envelope.data)
    }
}
