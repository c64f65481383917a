//! Checkpoint 6's pipeline-health checks: the lab 6 collectors' own `otelcol_*`
//! metrics, which each of them pushes to Prometheus under its `service.name` as the job
//! (`lab-agent`, `lab-gateway-1`, `lab-gateway-2`; stack/collector/agent.yaml and
//! gateway.yaml). The same queries drive the "Collector pipeline" dashboard.

use crate::probe::Outcome;
use crate::prom::{Prometheus, QueryData};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Both gateways are running and reporting (a fresh uptime sample from each).
    GatewaysReporting,
    /// The agent's load balancer routes to 2 backends.
    Backends,
    /// No collector refused data in the last 5 minutes.
    NothingRefused,
    /// The gateways take sampling decisions (traces are arriving).
    SamplingDecisions,
}

pub const ALL: [Check; 4] = [
    Check::GatewaysReporting,
    Check::Backends,
    Check::NothingRefused,
    Check::SamplingDecisions,
];

/// The gateways' jobs whose uptime sample is at most 30 s old.
pub const GATEWAYS_REPORTING: &str = r#"count(time() - timestamp(otelcol_process_uptime_seconds_total{job=~"lab-gateway-.*"}) < 30)"#;
pub const BACKENDS: &str = r#"max(otelcol_loadbalancer_num_backends{job="lab-agent"})"#;
/// Per signal: `increase()` drops the metric name, so one regex over the three names
/// would collide.
pub const REFUSED: &str = concat!(
    r#"(sum(increase(otelcol_receiver_refused_spans_total{job=~"lab-.*"}[5m])) or vector(0))"#,
    r#" + (sum(increase(otelcol_receiver_refused_metric_points_total{job=~"lab-.*"}[5m])) or vector(0))"#,
    r#" + (sum(increase(otelcol_receiver_refused_log_records_total{job=~"lab-.*"}[5m])) or vector(0))"#
);
pub const DECISIONS: &str = r#"sum(increase(otelcol_processor_tail_sampling_global_count_traces_sampled_total{job=~"lab-gateway-.*"}[5m]))"#;

const FIX_UP: &str = "start lab 6 (`just lab-6`): the collectors push their otelcol_* metrics to Prometheus every 5 s; `just logs gateway1 gateway2 collector` shows why one does not";

impl Check {
    pub fn name(self) -> &'static str {
        match self {
            Self::GatewaysReporting => "pipeline: both gateways report",
            Self::Backends => "pipeline: agent balances over 2 gateways",
            Self::NothingRefused => "pipeline: nothing refused (5 min)",
            Self::SamplingDecisions => "pipeline: gateways sample traces",
        }
    }

    pub async fn probe(self, prometheus: &Prometheus) -> Outcome {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let expr = match self {
            Self::GatewaysReporting => GATEWAYS_REPORTING,
            Self::Backends => BACKENDS,
            Self::NothingRefused => REFUSED,
            Self::SamplingDecisions => DECISIONS,
        };
        let value = match prometheus.instant(expr, now).await {
            Ok(QueryData::Vector(samples)) => samples
                .first()
                .and_then(|s| s.value.as_ref())
                .map(|v| v.value()),
            Ok(_) => None,
            Err(error) => {
                return Outcome::waiting(format!("Prometheus: {error}"), FIX_UP);
            }
        };
        judge(self, value)
    }
}

/// The verdict on a query's value (`None`: the query returned no series).
pub fn judge(check: Check, value: Option<f64>) -> Outcome {
    match (check, value) {
        (Check::GatewaysReporting, Some(n)) if n >= 2.0 => Outcome::Pass("2 of 2".into()),
        (Check::GatewaysReporting, n) => Outcome::waiting(
            format!(
                "{} of 2 gateways reported in the last 30 s",
                n.unwrap_or(0.0)
            ),
            FIX_UP,
        ),
        (Check::Backends, Some(2.0)) => Outcome::Pass("2 backends".into()),
        (Check::Backends, n) => Outcome::waiting(
            format!("otelcol_loadbalancer_num_backends is {n:?}"),
            "the agent's load_balancing resolver lists both gateways (agent.yaml, GATEWAY_1_ENDPOINT/GATEWAY_2_ENDPOINT)",
        ),
        // No series: no receiver ever refused anything.
        (Check::NothingRefused, None | Some(0.0)) => Outcome::Pass("0".into()),
        (Check::NothingRefused, Some(n)) => Outcome::fail(
            format!("{n:.0} items refused: data is being dropped"),
            "the \"Collector pipeline\" dashboard shows which collector and signal; a gateway refuses when memory_limiter trips or a client lacks the token/TLS (labs/lab-6-gateway, Troubleshooting)",
        ),
        (Check::SamplingDecisions, Some(n)) if n > 0.0 => {
            Outcome::Pass(format!("{n:.0} traces decided in 5 min"))
        }
        (Check::SamplingDecisions, _) => Outcome::waiting(
            "no tail-sampling decisions in the last 5 minutes",
            "send traffic through the agent: `just traffic`",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert!(!judge(Check::Backends, Some(2.0)).is_failure());
        assert!(judge(Check::Backends, Some(1.0)).is_failure());
        assert!(judge(Check::Backends, None).is_failure());
        assert!(!judge(Check::NothingRefused, None).is_failure());
        assert!(judge(Check::NothingRefused, Some(3.0)).is_failure());
        assert!(judge(Check::GatewaysReporting, Some(1.0)).is_failure());
        assert!(!judge(Check::GatewaysReporting, Some(2.0)).is_failure());
        assert!(judge(Check::SamplingDecisions, Some(0.0)).is_failure());
    }
}
