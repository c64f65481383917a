//! A stand-in for the service graph of Tempo's metrics generator, which cannot run here
//! (Tempo is AGPL and container-only in this lab): the `service-graphs` processor of
//! Tempo v3.0.3 (grafana/otel-lgtm 0.31.0, `overrides.defaults.metrics_generator.processors`
//! in its tempo-config.yaml), redone from `modules/generator/processor/servicegraphs` at
//! that tag for the cases the lab produces, applied to the spans the lab collector
//! forwarded, and remote-written into Prometheus as Tempo writes them.
//!
//! What the processor pairs on:
//! - a CLIENT span and the SERVER span whose parent it is (same trace): one request from
//!   the client's `service.name` to the server's, `connection_type=""`;
//! - a CLIENT span with `db.namespace` (or `db.name`, `db.system`): a database request,
//!   complete at once, `connection_type="database"`, the server named after its
//!   `peer.service`, else `server.address`, else `network.peer.address`, else the
//!   database name; its latency is the client span's;
//! - left unpaired: a root SERVER span becomes a request from `user` (or its
//!   `peer.service`), `connection_type="virtual_node"`; a CLIENT span with a peer
//!   attribute (`peer.service`, `db.name`, `db.system`) one to that peer; others are lost;
//! - failed when either span has status Error; latencies in the default buckets
//!   (0.1 s doubling, 8 of them); every series carries `__metrics_gen_instance`.

use std::collections::BTreeMap;

use anyhow::{Context, ensure};
use prost::Message;

use crate::sink_spans::{KIND_CLIENT, KIND_SERVER, STATUS_ERROR, SinkSpan};

/// Tempo's default histogram buckets: `prometheus.ExponentialBuckets(0.1, 2, 8)`.
pub const BUCKETS: [f64; 8] = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8];
const PEER_ATTRIBUTES: [&str; 3] = ["peer.service", "db.name", "db.system"];
const DATABASE_NAME_ATTRIBUTES: [&str; 3] = ["db.namespace", "db.name", "db.system"];
const INSTANCE: &str = "tempo-service-graph-stand-in";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EdgeKey {
    pub client: String,
    pub server: String,
    pub connection_type: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EdgeStats {
    pub requests: u64,
    pub failed: u64,
    pub server_seconds: Vec<f64>,
    pub client_seconds: Vec<f64>,
}

#[derive(Default)]
struct Pending {
    client: Option<String>,
    server: Option<String>,
    connection_type: &'static str,
    failed: bool,
    client_seconds: f64,
    server_seconds: f64,
    peer: Option<String>,
    root_server: bool,
}

/// The edges Tempo's generator would count for `spans`.
pub fn edges(spans: &[SinkSpan]) -> BTreeMap<EdgeKey, EdgeStats> {
    let mut pending: BTreeMap<(String, String), Pending> = BTreeMap::new();
    for span in spans {
        let failed = span.status_code == STATUS_ERROR;
        match span.kind {
            KIND_CLIENT => {
                let edge = pending
                    .entry((span.trace_id.clone(), span.span_id.clone()))
                    .or_default();
                edge.client = Some(span.service.clone());
                edge.client_seconds = span.seconds();
                edge.failed |= failed;
                edge.peer = PEER_ATTRIBUTES
                    .iter()
                    .find_map(|key| span.text(key))
                    .map(str::to_owned);
                let database = DATABASE_NAME_ATTRIBUTES
                    .iter()
                    .find_map(|key| span.text(key));
                if let Some(name) = database {
                    edge.connection_type = "database";
                    edge.server_seconds = span.seconds();
                    let server = ["peer.service", "server.address", "network.peer.address"]
                        .iter()
                        .find_map(|key| span.text(key))
                        .unwrap_or(name);
                    edge.server = Some(server.to_owned());
                }
            }
            KIND_SERVER => {
                let edge = pending
                    .entry((span.trace_id.clone(), span.parent_span_id.clone()))
                    .or_default();
                edge.server = Some(span.service.clone());
                edge.server_seconds = span.seconds();
                edge.failed |= failed;
                edge.root_server = span.is_root();
                if edge.peer.is_none() {
                    edge.peer = PEER_ATTRIBUTES
                        .iter()
                        .find_map(|key| span.text(key))
                        .map(str::to_owned);
                }
            }
            _ => {}
        }
    }
    let mut graph: BTreeMap<EdgeKey, EdgeStats> = BTreeMap::new();
    for edge in pending.into_values() {
        let (client, server, connection_type) = match (edge.client, edge.server) {
            (Some(client), Some(server)) => (client, server, edge.connection_type),
            (None, Some(server)) if edge.root_server => (
                edge.peer.unwrap_or_else(|| "user".to_owned()),
                server,
                "virtual_node",
            ),
            (Some(client), None) if edge.peer.is_some() => {
                (client, edge.peer.expect("checked"), "virtual_node")
            }
            // Expired without a match: Tempo counts it nowhere.
            _ => continue,
        };
        let stats = graph
            .entry(EdgeKey {
                client,
                server,
                connection_type: connection_type.to_owned(),
            })
            .or_default();
        stats.requests += 1;
        stats.failed += u64::from(edge.failed);
        stats.server_seconds.push(edge.server_seconds);
        stats.client_seconds.push(edge.client_seconds);
    }
    graph
}

// Prometheus remote-write 1.0 messages (prompb/types.proto, prompb/remote.proto).
#[derive(Clone, PartialEq, Message)]
struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Message)]
struct Label {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, Message)]
struct Sample {
    #[prost(double, tag = "1")]
    value: f64,
    #[prost(int64, tag = "2")]
    timestamp: i64,
}

/// The series of `graph` as Tempo writes them: each starts at 0 at `start_ms` (a new
/// series' first sample) and holds its total at `end_ms`.
fn series(graph: &BTreeMap<EdgeKey, EdgeStats>, start_ms: i64, end_ms: i64) -> Vec<TimeSeries> {
    let mut out = Vec::new();
    let mut push = |name: &str, key: &EdgeKey, extra: Option<(&str, String)>, total: f64| {
        let mut labels = vec![
            ("__metrics_gen_instance", INSTANCE.to_owned()),
            ("__name__", name.to_owned()),
            ("client", key.client.clone()),
            ("connection_type", key.connection_type.clone()),
            ("server", key.server.clone()),
        ];
        labels.extend(extra);
        labels.sort();
        out.push(TimeSeries {
            labels: labels
                .into_iter()
                .map(|(name, value)| Label {
                    name: name.to_owned(),
                    value,
                })
                .collect(),
            samples: vec![
                Sample {
                    value: 0.0,
                    timestamp: start_ms,
                },
                Sample {
                    value: total,
                    timestamp: end_ms,
                },
            ],
        });
    };
    for (key, stats) in graph {
        push(
            "traces_service_graph_request_total",
            key,
            None,
            stats.requests as f64,
        );
        if stats.failed > 0 {
            push(
                "traces_service_graph_request_failed_total",
                key,
                None,
                stats.failed as f64,
            );
        }
        for (side, values) in [
            ("server", &stats.server_seconds),
            ("client", &stats.client_seconds),
        ] {
            let name = format!("traces_service_graph_request_{side}_seconds");
            for bound in BUCKETS {
                let below = values.iter().filter(|v| **v <= bound).count();
                push(
                    &format!("{name}_bucket"),
                    key,
                    Some(("le", bound.to_string())),
                    below as f64,
                );
            }
            push(
                &format!("{name}_bucket"),
                key,
                Some(("le", "+Inf".to_owned())),
                values.len() as f64,
            );
            push(&format!("{name}_sum"), key, None, values.iter().sum());
            push(&format!("{name}_count"), key, None, values.len() as f64);
        }
    }
    out
}

/// Writes `graph` to Prometheus' remote-write receiver (`/api/v1/write`, on in otel-lgtm
/// and in `stack/native/run.sh`), as Tempo's generator does.
pub async fn remote_write(
    prometheus_url: &str,
    graph: &BTreeMap<EdgeKey, EdgeStats>,
    start_ms: i64,
    end_ms: i64,
) -> anyhow::Result<()> {
    let request = WriteRequest {
        timeseries: series(graph, start_ms, end_ms),
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .context("snappy")?;
    let response = reqwest::Client::new()
        .post(format!("{prometheus_url}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .context("remote write")?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    ensure!(status.is_success(), "remote write: {status} {text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(service: &str, kind: i64, ids: (&str, &str, &str), attrs: &[(&str, &str)]) -> SinkSpan {
        SinkSpan {
            service: service.into(),
            trace_id: ids.0.into(),
            span_id: ids.1.into(),
            parent_span_id: ids.2.into(),
            name: String::new(),
            kind,
            status_code: 0,
            start_unix_nano: 0,
            end_unix_nano: 50_000_000,
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
                .collect(),
        }
    }

    fn key(client: &str, server: &str, connection_type: &str) -> EdgeKey {
        EdgeKey {
            client: client.into(),
            server: server.into(),
            connection_type: connection_type.into(),
        }
    }

    #[test]
    fn pairs_client_and_server_and_names_the_database_after_peer_service() {
        let spans = [
            span("todo-client", KIND_CLIENT, ("t1", "c1", ""), &[]),
            span("todo-api", KIND_SERVER, ("t1", "s1", "c1"), &[]),
            span(
                "todo-api",
                KIND_CLIENT,
                ("t1", "d1", "s1"),
                &[
                    ("db.namespace", "tododb"),
                    ("peer.service", "postgresql"),
                    ("server.address", "127.0.0.1"),
                ],
            ),
            // A request without trace context: a root server span.
            span("todo-api", KIND_SERVER, ("t2", "s2", ""), &[]),
            // A client span whose server never reported: lost.
            span("todo-client", KIND_CLIENT, ("t3", "c3", ""), &[]),
        ];
        let graph = edges(&spans);
        let keys: Vec<&EdgeKey> = graph.keys().collect();
        assert_eq!(
            keys,
            [
                &key("todo-api", "postgresql", "database"),
                &key("todo-client", "todo-api", ""),
                &key("user", "todo-api", "virtual_node"),
            ]
        );
        assert!(graph.values().all(|stats| stats.requests == 1));
    }

    #[test]
    fn without_peer_service_the_database_is_its_address() {
        let spans = [span(
            "todo-api",
            KIND_CLIENT,
            ("t", "d", "s"),
            &[("db.namespace", "tododb"), ("server.address", "127.0.0.1")],
        )];
        assert!(edges(&spans).contains_key(&key("todo-api", "127.0.0.1", "database")));
        let no_namespace = [span(
            "todo-api",
            KIND_CLIENT,
            ("t", "d", "s"),
            &[("db.system.name", "postgresql")],
        )];
        assert!(
            edges(&no_namespace).is_empty(),
            "db.system.name alone is not what Tempo v3.0.3 reads"
        );
    }
}
