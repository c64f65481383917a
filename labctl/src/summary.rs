//! What a traffic run sent and what came back, counted the way the dashboard counts:
//! by method, route template and status code. The error rate here is the 5xx share of
//! answered requests, the dashboard's "Error rate"; 4xx are client errors and counted
//! apart, never as errors.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteCount {
    pub method: String,
    pub route: String,
    pub status: u16,
    pub count: u64,
}

/// A response whose status was not the one the plan expected (fault switch, or a bug).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unexpected {
    pub method: String,
    pub route: String,
    pub expected: u16,
    pub actual: u16,
    pub count: u64,
}

/// Requests that got no HTTP answer (refused, reset, timed out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportErrors {
    pub method: String,
    pub route: String,
    pub count: u64,
    /// The first error seen, enough to tell "connection refused" from a timeout.
    pub example: String,
}

/// One traced request worth opening in Tempo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceSample {
    pub trace_id: String,
    pub method: String,
    pub route: String,
    pub status: u16,
    /// As the client measured it, body included.
    pub milliseconds: f64,
}

/// How many trace ids of each kind the summary keeps.
pub const TRACE_SAMPLES: usize = 5;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub seed: u64,
    pub elapsed_seconds: f64,
    pub responses: Vec<RouteCount>,
    pub unexpected: Vec<Unexpected>,
    pub transport_errors: Vec<TransportErrors>,
    /// Planned requests not sent because an earlier create or delete of their unit
    /// did not do what was planned, which makes their answer unpredictable.
    pub skipped: u64,
    /// The `lab.run.id` baggage entry of a traced run (the API copies it onto its spans).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Traced requests answered with a 5xx (the first few).
    #[serde(default)]
    pub server_error_traces: Vec<TraceSample>,
    /// The slowest traced requests, slowest first.
    #[serde(default)]
    pub slowest_traces: Vec<TraceSample>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Totals {
    /// Requests sent: answered plus transport errors.
    pub requests: u64,
    pub responses: u64,
    pub transport_errors: u64,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    /// 5xx share of responses: what the dashboard's error-rate panel should read.
    pub error_rate: f64,
    /// 4xx share of responses, shown apart from errors.
    pub client_error_rate: f64,
    pub requests_per_second: f64,
}

/// The JSON written by `--json`: the counts plus the totals derived from them.
#[derive(Serialize)]
struct Document<'a> {
    #[serde(flatten)]
    summary: &'a Summary,
    totals: Totals,
}

impl Summary {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            ..Self::default()
        }
    }

    pub fn record_response(&mut self, method: &str, route: &str, expected: u16, actual: u16) {
        match self
            .responses
            .iter_mut()
            .find(|row| row.method == method && row.route == route && row.status == actual)
        {
            Some(row) => row.count += 1,
            None => self.responses.push(RouteCount {
                method: method.into(),
                route: route.into(),
                status: actual,
                count: 1,
            }),
        }
        if expected != actual {
            match self.unexpected.iter_mut().find(|row| {
                row.method == method
                    && row.route == route
                    && row.expected == expected
                    && row.actual == actual
            }) {
                Some(row) => row.count += 1,
                None => self.unexpected.push(Unexpected {
                    method: method.into(),
                    route: route.into(),
                    expected,
                    actual,
                    count: 1,
                }),
            }
        }
    }

    pub fn record_transport_error(&mut self, method: &str, route: &str, error: &str) {
        match self
            .transport_errors
            .iter_mut()
            .find(|row| row.method == method && row.route == route)
        {
            Some(row) => row.count += 1,
            None => self.transport_errors.push(TransportErrors {
                method: method.into(),
                route: route.into(),
                count: 1,
                example: error.into(),
            }),
        }
    }

    /// Keeps `sample` if it is a 5xx among the first few, or among the slowest so far.
    pub fn record_trace(&mut self, sample: TraceSample) {
        if sample.status >= 500 && self.server_error_traces.len() < TRACE_SAMPLES {
            self.server_error_traces.push(sample.clone());
        }
        let slowest = &mut self.slowest_traces;
        let at = slowest.partition_point(|kept| kept.milliseconds >= sample.milliseconds);
        if at < TRACE_SAMPLES {
            slowest.insert(at, sample);
            slowest.truncate(TRACE_SAMPLES);
        }
    }

    /// Sorts the rows (route, method, status) so that output does not depend on which
    /// worker answered first, and stamps the elapsed time.
    pub fn finish(&mut self, elapsed: Duration) {
        self.elapsed_seconds = elapsed.as_secs_f64();
        self.responses
            .sort_by(|a, b| (&a.route, &a.method, a.status).cmp(&(&b.route, &b.method, b.status)));
        self.unexpected.sort_by(|a, b| {
            (&a.route, &a.method, a.expected, a.actual)
                .cmp(&(&b.route, &b.method, b.expected, b.actual))
        });
        self.transport_errors
            .sort_by(|a, b| (&a.route, &a.method).cmp(&(&b.route, &b.method)));
    }

    /// Responses with this method, route and status: what a test compares with
    /// Prometheus' count for the same labels.
    pub fn count(&self, method: &str, route: &str, status: u16) -> u64 {
        self.responses
            .iter()
            .filter(|row| row.method == method && row.route == route && row.status == status)
            .map(|row| row.count)
            .sum()
    }

    /// Responses by (method, route, status): the whole table [`Summary::count`] reads.
    pub fn count_by_key(&self) -> BTreeMap<(String, String, u16), u64> {
        let mut counts = BTreeMap::new();
        for row in &self.responses {
            *counts
                .entry((row.method.clone(), row.route.clone(), row.status))
                .or_insert(0) += row.count;
        }
        counts
    }

    pub fn totals(&self) -> Totals {
        let class = |hundred: u16| {
            self.responses
                .iter()
                .filter(|row| row.status / 100 == hundred)
                .map(|row| row.count)
                .sum()
        };
        let responses: u64 = self.responses.iter().map(|row| row.count).sum();
        let transport_errors: u64 = self.transport_errors.iter().map(|row| row.count).sum();
        let status_4xx = class(4);
        let status_5xx = class(5);
        let share = |part: u64| {
            if responses == 0 {
                0.0
            } else {
                part as f64 / responses as f64
            }
        };
        let requests = responses + transport_errors;
        Totals {
            requests,
            responses,
            transport_errors,
            status_2xx: class(2),
            status_3xx: class(3),
            status_4xx,
            status_5xx,
            error_rate: share(status_5xx),
            client_error_rate: share(status_4xx),
            requests_per_second: if self.elapsed_seconds > 0.0 {
                requests as f64 / self.elapsed_seconds
            } else {
                0.0
            },
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&Document {
            summary: self,
            totals: self.totals(),
        })
        .expect("the summary is plain data")
    }

    /// The table printed at the end of a run.
    pub fn render(&self) -> String {
        let totals = self.totals();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "labctl traffic: {} requests in {:.1}s ({:.1} req/s), seed {}\n",
            totals.requests, self.elapsed_seconds, totals.requests_per_second, self.seed
        );
        let width = self
            .responses
            .iter()
            .map(|row| row.route.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let _ = writeln!(
            out,
            "{:<7} {:<width$} {:>6} {:>7}",
            "METHOD", "ROUTE", "STATUS", "COUNT"
        );
        for row in &self.responses {
            let _ = writeln!(
                out,
                "{:<7} {:<width$} {:>6} {:>7}",
                row.method, row.route, row.status, row.count
            );
        }
        if !self.unexpected.is_empty() {
            let _ = writeln!(
                out,
                "\nStatuses other than planned (fault switch or a bug):"
            );
            for row in &self.unexpected {
                let _ = writeln!(
                    out,
                    "  {} {}: planned {}, got {} x{}",
                    row.method, row.route, row.expected, row.actual, row.count
                );
            }
        }
        if !self.transport_errors.is_empty() {
            let _ = writeln!(out, "\nNo HTTP answer:");
            for row in &self.transport_errors {
                let _ = writeln!(
                    out,
                    "  {} {}: x{} ({})",
                    row.method, row.route, row.count, row.example
                );
            }
        }
        if self.skipped > 0 {
            let _ = writeln!(
                out,
                "\n{} planned requests skipped: an earlier create or delete of their todo failed.",
                self.skipped
            );
        }
        let _ = writeln!(
            out,
            "\nTotals: {} requests | 2xx {} | 3xx {} | 4xx {} | 5xx {} | no answer {}",
            totals.requests,
            totals.status_2xx,
            totals.status_3xx,
            totals.status_4xx,
            totals.status_5xx,
            totals.transport_errors
        );
        let _ = writeln!(
            out,
            "Error rate (5xx share of responses; the dashboard's error rate): {:.2}%",
            totals.error_rate * 100.0
        );
        let _ = writeln!(
            out,
            "Client errors (4xx share; shown separately, not errors): {:.2}%",
            totals.client_error_rate * 100.0
        );
        self.render_traces(&mut out);
        out
    }

    fn render_traces(&self, out: &mut String) {
        let Some(run_id) = &self.run_id else {
            return;
        };
        let _ = writeln!(
            out,
            "\nTraced as todo-client, baggage lab.run.id={run_id}. Open one in Tempo \
             (Grafana > Explore > Tempo, paste the trace id):"
        );
        for (what, samples) in [
            ("5xx", &self.server_error_traces),
            ("slowest", &self.slowest_traces),
        ] {
            for sample in samples {
                let _ = writeln!(
                    out,
                    "  {what:<8} {}  {} {} -> {} in {:.1} ms",
                    sample.trace_id,
                    sample.method,
                    sample.route,
                    sample.status,
                    sample.milliseconds
                );
            }
        }
        let _ = writeln!(
            out,
            "Every span of this run, client and API: {{ span.lab.run.id = \"{run_id}\" }}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Summary {
        let mut summary = Summary::new(42);
        for _ in 0..6 {
            summary.record_response("GET", "/health", 200, 200);
        }
        summary.record_response("POST", "/api/v1/todos", 201, 201);
        summary.record_response("POST", "/api/v1/todos", 400, 400);
        summary.record_response("POST", "/api/v1/todos", 201, 500);
        summary.record_response("GET", "/api/v1/todos/{todo_id}", 404, 404);
        summary.record_transport_error("GET", "/health", "connection refused");
        summary.finish(Duration::from_secs(2));
        summary
    }

    #[test]
    fn totals_split_errors_from_client_errors() {
        let totals = sample().totals();
        assert_eq!(totals.requests, 11);
        assert_eq!(totals.responses, 10);
        assert_eq!(totals.transport_errors, 1);
        assert_eq!(
            (totals.status_2xx, totals.status_4xx, totals.status_5xx),
            (7, 2, 1)
        );
        assert!((totals.error_rate - 0.1).abs() < 1e-12);
        assert!((totals.client_error_rate - 0.2).abs() < 1e-12);
        assert!((totals.requests_per_second - 5.5).abs() < 1e-12);
    }

    #[test]
    fn counts_are_keyed_by_method_route_and_status() {
        let summary = sample();
        assert_eq!(summary.count("GET", "/health", 200), 6);
        assert_eq!(summary.count("POST", "/api/v1/todos", 500), 1);
        assert_eq!(summary.count("GET", "/api/v1/todos", 200), 0);
        assert_eq!(
            summary.unexpected,
            vec![Unexpected {
                method: "POST".into(),
                route: "/api/v1/todos".into(),
                expected: 201,
                actual: 500,
                count: 1
            }]
        );
    }

    #[test]
    fn rows_are_sorted_regardless_of_arrival_order() {
        let mut summary = Summary::new(1);
        summary.record_response("POST", "/b", 201, 201);
        summary.record_response("GET", "/b", 200, 200);
        summary.record_response("GET", "/a", 200, 200);
        summary.finish(Duration::from_secs(1));
        let order: Vec<(&str, &str)> = summary
            .responses
            .iter()
            .map(|r| (r.route.as_str(), r.method.as_str()))
            .collect();
        assert_eq!(order, [("/a", "GET"), ("/b", "GET"), ("/b", "POST")]);
    }

    #[test]
    fn an_empty_run_has_zero_rates_not_nan() {
        let totals = Summary::new(0).totals();
        assert_eq!(totals.error_rate, 0.0);
        assert_eq!(totals.requests_per_second, 0.0);
    }

    #[test]
    fn json_round_trips_and_carries_totals() {
        let summary = sample();
        let json = summary.to_json();
        let back: Summary = serde_json::from_str(&json).unwrap();
        assert_eq!(back, summary);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["totals"]["status_5xx"], 1);
        assert_eq!(value["totals"]["error_rate"], 0.1);
    }

    fn trace(id: &str, status: u16, milliseconds: f64) -> TraceSample {
        TraceSample {
            trace_id: id.into(),
            method: "GET".into(),
            route: "/health".into(),
            status,
            milliseconds,
        }
    }

    #[test]
    fn keeps_the_first_5xx_and_the_slowest_traces() {
        let mut summary = Summary::new(1);
        summary.run_id = Some("run-1".into());
        for i in 0..20 {
            let status = if i % 3 == 0 { 500 } else { 200 };
            summary.record_trace(trace(&format!("t{i}"), status, f64::from(i % 7)));
        }
        assert_eq!(summary.server_error_traces.len(), TRACE_SAMPLES);
        assert!(summary.server_error_traces.iter().all(|t| t.status == 500));
        let times: Vec<f64> = summary
            .slowest_traces
            .iter()
            .map(|t| t.milliseconds)
            .collect();
        assert_eq!(times, [6.0, 6.0, 5.0, 5.0, 5.0]);
        let table = summary.render();
        assert!(table.contains("Open one in Tempo"), "{table}");
        assert!(table.contains("5xx      t0"), "{table}");
        assert!(table.contains(r#"span.lab.run.id = "run-1""#), "{table}");
        assert!(
            !sample().render().contains("Tempo"),
            "an untraced run names no traces"
        );
    }

    #[test]
    fn the_table_names_the_error_rate_and_the_surprises() {
        let table = sample().render();
        assert!(table.contains("Error rate (5xx share"), "{table}");
        assert!(table.contains("10.00%"), "{table}");
        assert!(table.contains("planned 201, got 500 x1"), "{table}");
        assert!(table.contains("connection refused"), "{table}");
    }
}
