//! Checkpoint 7 (`labctl check 7`, lab 7): one trace crosses both services. The client's
//! spans reach the collector; Tempo holds traces where a todo-api SERVER span is the child
//! of a todo-client CLIENT span, and API spans carrying the run's baggage; Tempo's
//! metrics generator has drawn the graph `todo-client -> todo-api -> postgresql`.
//!
//! The PromQL of the service-graph rows is built here, once: the native test runs the
//! same expressions against series computed from real spans, with numbers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::duration;
use crate::http::ApiError;
use crate::probe::{self, Outcome, Report};
use crate::prom::Prometheus;
use crate::telemetry::{RUN_ID_KEY, SERVICE_NAME as CLIENT};
use crate::tempo::{self, Tempo};
use crate::verify::{Backends, VerifyConfig};

/// The database's node, as the API's DB spans name it (`peer.service`).
pub const DATABASE: &str = "postgresql";
/// Why the generator rows are skipped without Tempo.
pub const NO_GENERATOR: &str =
    "not available here (the service graph comes from Tempo's metrics generator, container-only)";
const SEARCH_LIMIT: u32 = 20;

/// The service graph's edges as Tempo's generator labels them (`client`, `server`,
/// `connection_type`: empty for a CLIENT/SERVER pair, `database` for a DB span).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub client: &'static str,
    pub server: &'static str,
}

/// The graph the lab must show, given the API's service name.
pub fn edges(api: &'static str) -> [Edge; 2] {
    [
        Edge {
            client: CLIENT,
            server: api,
        },
        Edge {
            client: api,
            server: DATABASE,
        },
    ]
}

impl Edge {
    fn selector(&self) -> String {
        format!(r#"client="{}", server="{}""#, self.client, self.server)
    }

    /// Requests over the edge in `window`.
    pub fn requests(&self, window: &str) -> String {
        format!(
            "sum(increase(traces_service_graph_request_total{{{}}}[{window}]))",
            self.selector()
        )
    }

    /// Failed requests (either span's status Error) in `window`; 0 when none failed.
    pub fn failed(&self, window: &str) -> String {
        format!(
            "sum(increase(traces_service_graph_request_failed_total{{{}}}[{window}])) or vector(0)",
            self.selector()
        )
    }

    /// Mean latency in seconds, as the server side measured it, over `window`.
    pub fn mean_server_seconds(&self, window: &str) -> String {
        let selector = self.selector();
        format!(
            "sum(increase(traces_service_graph_request_server_seconds_sum{{{selector}}}[{window}])) / \
             sum(increase(traces_service_graph_request_server_seconds_count{{{selector}}}[{window}]))"
        )
    }

    fn name(&self) -> String {
        format!("service graph: {} -> {}", self.client, self.server)
    }
}

/// TraceQL: a todo-api SERVER span whose parent is a todo-client CLIENT span.
pub fn joined_trace_query(api: &str) -> String {
    format!(
        r#"{{resource.service.name="{CLIENT}" && kind=client}} > {{resource.service.name="{api}" && kind=server}}"#
    )
}

/// TraceQL: API spans that carry the run id copied from baggage.
pub fn baggage_query(api: &str) -> String {
    format!(r#"{{resource.service.name="{api}" && span.{RUN_ID_KEY} != nil}}"#)
}

#[derive(Debug, Clone, Copy)]
enum Check {
    ClientSpans,
    JoinedTrace,
    Baggage,
    Graph(Edge),
}

/// The checks of lab 7, after those of lab 3 (app, LGTM, collector).
pub async fn run(config: &VerifyConfig, backends: &Backends, deadline: Instant) -> Report {
    let api: &'static str = Box::leak(config.service.clone().into_boxed_str());
    let mut list = vec![Check::ClientSpans, Check::JoinedTrace, Check::Baggage];
    list.extend(edges(api).map(Check::Graph));
    let names = list
        .iter()
        .map(|check| match check {
            Check::ClientSpans => format!("collector: {CLIENT} CLIENT spans counted"),
            Check::JoinedTrace => format!("tempo: one trace across {CLIENT} and {api}"),
            Check::Baggage => format!("tempo: {api} spans carry {RUN_ID_KEY}"),
            Check::Graph(edge) => edge.name(),
        })
        .collect();
    let window = duration::format(config.timeout.max(Duration::from_secs(15 * 60)));
    probe::settle(names, deadline, config.progress, |i| {
        attempt(list[i], api, backends, window.clone())
    })
    .await
}

async fn attempt(check: Check, api: &str, backends: &Backends, window: String) -> Outcome {
    match check {
        Check::ClientSpans => {
            let expr = format!(
                r#"sum(increase(traces_span_metrics_calls_total{{service_name="{CLIENT}", span_kind="SPAN_KIND_CLIENT"}}[{window}]))"#
            );
            positive(
                &backends.prometheus,
                &expr,
                "requests",
                "run `just traffic`: labctl traffic traces its requests as todo-client and sends them where the \
                 API sends its own (the lab collector from lab 3 on); its first stderr line says where, or why not",
            )
            .await
        }
        Check::JoinedTrace => {
            search(
                backends.tempo.as_ref(),
                &joined_trace_query(api),
                "no trace where a todo-api SERVER span is the child of a todo-client CLIENT span: the API \
                 started its own traces. Two traces instead of one means the context did not cross: does \
                 the request carry `traceparent` (OTEL_PROPAGATORS on the client, tracecontext on the API)?",
            )
            .await
        }
        Check::Baggage => {
            search(
                backends.tempo.as_ref(),
                &baggage_query(api),
                "the API's spans have no lab.run.id: is `baggage` among OTEL_PROPAGATORS on both sides, and \
                 lab.run.id in the API's BAGGAGE_TO_SPAN_KEYS?",
            )
            .await
        }
        Check::Graph(edge) => {
            if backends.tempo.is_none() {
                return Outcome::Skip(NO_GENERATOR.into());
            }
            positive(
                &backends.prometheus,
                &edge.requests(&window),
                "requests",
                if edge.server == DATABASE {
                    "the generator pairs a DB CLIENT span with db.namespace into a database edge named after \
                     peer.service: do the API's DB spans carry both (a todo-api older than lab 7 does not)?"
                } else {
                    "the generator pairs a CLIENT span with the SERVER span that is its child: send \
                     `just traffic` through the lab, then allow the generator ~15 s"
                },
            )
            .await
        }
    }
}

async fn positive(prometheus: &Prometheus, expr: &str, unit: &str, fix: &str) -> Outcome {
    match prometheus.instant(expr, now()).await {
        Ok(data) => {
            let total: f64 = data.values().into_iter().filter(|v| v.is_finite()).sum();
            if total > 0.0 {
                Outcome::Pass(format!("{total:.0} {unit}"))
            } else {
                Outcome::waiting(format!("nothing yet: {expr}"), fix)
            }
        }
        Err(ApiError::Rejected { message, .. }) => {
            Outcome::fail(format!("Prometheus refused {expr}: {message}"), fix)
        }
        Err(error) => Outcome::waiting(
            format!("Prometheus at {}: {error}", prometheus.base_url()),
            "is the stack up (`just status`)?",
        ),
    }
}

async fn search(tempo: Option<&Tempo>, query: &str, fix: &str) -> Outcome {
    let Some(tempo) = tempo else {
        return Outcome::Skip(crate::verify::SKIP_REASON.into());
    };
    let end = now() as u64;
    match tempo
        .search(query, end.saturating_sub(3_600), end, SEARCH_LIMIT)
        .await
    {
        Ok(traces) if traces.is_empty() => Outcome::waiting(
            format!(
                "none found for {query} (Tempo searches end {} before now)",
                duration::format(tempo::QUERY_END_CUTOFF)
            ),
            fix,
        ),
        Ok(traces) => Outcome::Pass(format!(
            "{} traces, e.g. {}",
            traces.len(),
            traces[0].trace_id
        )),
        Err(ApiError::Rejected { message, .. }) => {
            Outcome::fail(format!("Tempo refused {query}: {message}"), fix)
        }
        Err(error) => Outcome::waiting(
            format!("Tempo at {}: {error}", tempo.base_url()),
            "is the lgtm container up (`just status`)?",
        ),
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graph_is_client_api_database() {
        let [first, second] = edges("todo-api");
        assert_eq!((first.client, first.server), ("todo-client", "todo-api"));
        assert_eq!((second.client, second.server), ("todo-api", "postgresql"));
        assert_eq!(
            first.requests("5m"),
            r#"sum(increase(traces_service_graph_request_total{client="todo-client", server="todo-api"}[5m]))"#
        );
    }

    #[test]
    fn the_trace_queries_name_both_services() {
        assert_eq!(
            joined_trace_query("todo-api"),
            r#"{resource.service.name="todo-client" && kind=client} > {resource.service.name="todo-api" && kind=server}"#
        );
        assert!(baggage_query("todo-api").contains("span.lab.run.id != nil"));
    }
}
