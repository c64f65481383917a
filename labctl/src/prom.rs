//! A small Prometheus HTTP API client: instant and range queries and label values, read
//! in the response format documented in Prometheus' `docs/querying/api.md`.

use std::collections::BTreeMap;

use reqwest::Client;
use serde::Deserialize;

use crate::http::{self, ApiError};

/// The envelope every `/api/v1` answer shares.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    error: Option<String>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
}

impl<T> Envelope<T> {
    fn into_data(self, what: &str) -> Result<T, ApiError> {
        match (self.status.as_str(), self.data) {
            ("success", Some(data)) => Ok(data),
            _ => Err(ApiError::Failed(format!(
                "{what}: {} {}",
                self.error_type.unwrap_or_default(),
                self.error.unwrap_or_else(|| "answered without data".into())
            ))),
        }
    }
}

/// `data` of a query answer: `{"resultType": ..., "result": ...}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
pub enum QueryData {
    Vector(Vec<InstantSample>),
    Matrix(Vec<RangeSeries>),
    Scalar(Point),
    String((f64, String)),
}

/// A sample time (unix seconds) and its value, which Prometheus sends as a string so
/// that NaN and ±Inf survive JSON.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Point(pub f64, pub String);

impl Point {
    pub fn value(&self) -> f64 {
        parse_sample(&self.1)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InstantSample {
    pub metric: BTreeMap<String, String>,
    /// Absent for native-histogram samples, which carry `histogram` instead.
    pub value: Option<Point>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RangeSeries {
    pub metric: BTreeMap<String, String>,
    #[serde(default)]
    pub values: Vec<Point>,
}

impl QueryData {
    /// Series (or the scalar) in the answer: zero is what Grafana shows as "No data".
    pub fn series_count(&self) -> usize {
        match self {
            Self::Vector(samples) => samples.len(),
            Self::Matrix(series) => series.iter().filter(|s| !s.values.is_empty()).count(),
            Self::Scalar(_) | Self::String(_) => 1,
        }
    }

    /// Every numeric value in the answer.
    pub fn values(&self) -> Vec<f64> {
        match self {
            Self::Vector(samples) => samples
                .iter()
                .filter_map(|s| s.value.as_ref())
                .map(Point::value)
                .collect(),
            Self::Matrix(series) => series
                .iter()
                .flat_map(|s| s.values.iter().map(Point::value))
                .collect(),
            Self::Scalar(point) => vec![point.value()],
            Self::String(_) => Vec::new(),
        }
    }

    /// The label sets of the series in the answer.
    pub fn label_sets(&self) -> Vec<&BTreeMap<String, String>> {
        match self {
            Self::Vector(samples) => samples.iter().map(|s| &s.metric).collect(),
            Self::Matrix(series) => series.iter().map(|s| &s.metric).collect(),
            Self::Scalar(_) | Self::String(_) => Vec::new(),
        }
    }
}

/// Prometheus' sample strings: decimals plus `NaN`, `+Inf`, `-Inf`.
fn parse_sample(text: &str) -> f64 {
    match text {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().unwrap_or(f64::NAN),
    }
}

#[derive(Debug, Clone)]
pub struct Prometheus {
    api: http::Api,
}

impl Prometheus {
    pub fn new(client: Client, base_url: &str) -> Self {
        Self {
            api: http::Api::new(client, base_url),
        }
    }

    pub fn base_url(&self) -> &str {
        self.api.base_url()
    }

    /// `GET /api/v1/query` evaluated at `time` (unix seconds).
    pub async fn instant(&self, expr: &str, time: f64) -> Result<QueryData, ApiError> {
        let query = [("query", expr.to_owned()), ("time", format!("{time:.3}"))];
        self.fetch("/api/v1/query", &query).await
    }

    /// `GET /api/v1/query_range` from `start` to `end` (unix seconds) every `step_seconds`.
    pub async fn range(
        &self,
        expr: &str,
        start: f64,
        end: f64,
        step_seconds: f64,
    ) -> Result<QueryData, ApiError> {
        let query = [
            ("query", expr.to_owned()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{step_seconds}")),
        ];
        self.fetch("/api/v1/query_range", &query).await
    }

    /// `GET /api/v1/label/<label>/values`, restricted to series matching `selector` when given.
    pub async fn label_values(
        &self,
        label: &str,
        selector: Option<&str>,
        start: f64,
        end: f64,
    ) -> Result<Vec<String>, ApiError> {
        let mut query = vec![
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
        ];
        if let Some(selector) = selector {
            query.push(("match[]", selector.to_owned()));
        }
        self.fetch(&format!("/api/v1/label/{label}/values"), &query)
            .await
    }

    async fn fetch<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ApiError> {
        let body = self.api.get(path, query).await?;
        let what = format!("Prometheus {path}");
        http::parse::<Envelope<T>>(&what, &body)?.into_data(&what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_sample_values_survive() {
        assert_eq!(parse_sample("1.5"), 1.5);
        assert_eq!(parse_sample("+Inf"), f64::INFINITY);
        assert_eq!(parse_sample("-Inf"), f64::NEG_INFINITY);
        assert!(parse_sample("NaN").is_nan());
    }

    #[test]
    fn empty_matrix_series_do_not_count_as_data() {
        let data = QueryData::Matrix(vec![RangeSeries {
            metric: BTreeMap::new(),
            values: vec![],
        }]);
        assert_eq!(data.series_count(), 0);
    }
}
