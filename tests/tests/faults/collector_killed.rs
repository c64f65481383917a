//! The lab collector dies mid-load, then comes back: requests stay fast and answered,
//! RSS stays bounded, the export errors are reported without flooding the log, and
//! spans flow again once it is back.

use std::time::{Duration, Instant};

use lab_tests::{
    app::TestApp,
    lab_collector::LabCollector,
    load::{Limits, Load, percentile, rss_kib},
    otlp::OtlpReceiver,
};

use crate::{
    Answer, MAX_REQUESTS, ONE_AT_A_TIME, TELEMETRY_WAIT, WORKERS, client, crud_mix, lines_with, ms,
    not_ok, seed, server_spans_from,
};

/// The p99 under a dead collector may exceed the healthy p99 by this factor, or by
/// [`P99_SLACK`] when that is larger: a debug build on 2 shared cores has a p99 of a
/// few milliseconds, where 2x is within scheduling noise.
const P99_FACTOR: u32 = 2;
const P99_SLACK: Duration = Duration::from_millis(5);
/// "Flat": the batch queues are bounded (2048 spans, 2048 log records), so memory must
/// not grow with the number of requests the collector misses.
const RSS_GROWTH_LIMIT_KIB: u64 = 10 * 1024;
const PHASE: Duration = Duration::from_secs(4);
/// When in the second phase the collector is killed.
const KILL_AFTER: Duration = Duration::from_secs(1);

async fn collector_down_mid_load(protocol: &str) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let receiver = OtlpReceiver::start().await;
    let mut collector = LabCollector::start(&receiver.http_endpoint)
        .await
        .unwrap_or_else(|e| panic!("lab collector: {e:#}"));
    let endpoint = if protocol == "grpc" {
        collector.grpc_endpoint.clone()
    } else {
        collector.http_endpoint.clone()
    };
    let app = TestApp::spawn_with(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        // Short intervals, so that all three signals export (and fail) within a phase.
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "200"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
    ])
    .await;
    let ids = seed(&app, 50).await;
    let limits = Limits {
        workers: WORKERS,
        duration: PHASE,
        max_requests: MAX_REQUESTS,
    };
    let load = || crud_mix(&app, client("collector-fault"), ids.clone());

    // Warm-up (connections, pool, allocator), then the healthy reference.
    Load::run(
        Limits {
            duration: Duration::from_secs(1),
            ..limits
        },
        load(),
    )
    .await;
    let healthy = Load::run(limits, load()).await;
    let rss_before = rss_kib(app.pid());

    let running = Load::start(limits, load());
    tokio::time::sleep(KILL_AFTER).await;
    collector.kill();
    let killed_at = Instant::now();
    let mut rss_peak = rss_before;
    let phase_end = Instant::now() + PHASE - KILL_AFTER;
    while Instant::now() < phase_end {
        rss_peak = rss_peak.max(rss_kib(app.pid()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let down = running.join().await;
    let rss_after = rss_kib(app.pid());
    rss_peak = rss_peak.max(rss_after);

    let ok = |answer: &Answer| matches!(answer.status(), Some(200 | 201));
    // The p99 of the requests sent after the kill: the ones that could meet a dead collector.
    let down: Vec<_> = down
        .into_iter()
        .filter(|s| s.started >= KILL_AFTER)
        .collect();
    let (p99_healthy, p99_down) = (percentile(&healthy, 99.0), percentile(&down, 99.0));
    let bound = (p99_healthy * P99_FACTOR).max(p99_healthy + P99_SLACK);
    println!(
        "collector down ({protocol}): healthy {} requests p99 {:.1} ms | collector killed \
         {} requests p99 {:.1} ms (bound {:.1} ms) | RSS {} KiB before, {} KiB after, \
         {} KiB peak",
        healthy.len(),
        ms(p99_healthy),
        down.len(),
        ms(p99_down),
        ms(bound),
        rss_before,
        rss_after,
        rss_peak
    );
    let (failed, first) = not_ok(&healthy, ok);
    assert_eq!(
        failed, 0,
        "requests failed with the collector up: {first:?}"
    );
    let (failed, first) = not_ok(&down, ok);
    assert_eq!(
        failed, 0,
        "requests failed while the collector was down: {first:?}"
    );
    assert!(
        p99_down <= bound,
        "p99 with the collector down {p99_down:?} > max({P99_FACTOR} x {p99_healthy:?}, +{P99_SLACK:?})"
    );
    assert!(
        rss_peak <= rss_before + RSS_GROWTH_LIMIT_KIB,
        "RSS grew from {rss_before} KiB to {rss_peak} KiB with the collector down"
    );

    // Each signal's failure is reported (an export may still be retrying when the load
    // ends)...
    for signal in ["traces", "metrics", "logs"] {
        let line = format!("{signal} export failing");
        let deadline = Instant::now() + TELEMETRY_WAIT;
        while !app.output().contains(&line) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "collector down ({protocol}): `{line}` printed by {:.1} s after the kill",
            killed_at.elapsed().as_secs_f64()
        );
    }
    // ...once per signal, not once per failed batch (the SDK's own per-batch error
    // events must not reach the console either).
    let output = app.output();
    let export_lines = lines_with(&output, &["export"]);
    for signal in ["traces", "metrics", "logs"] {
        assert_eq!(
            output.matches(&format!("{signal} export failing")).count(),
            1,
            "one failure line for {signal}:\n{export_lines}"
        );
    }
    let per_batch = lines_with(&output, &["ExportError", "Export.Failed"]);
    assert!(
        per_batch.is_empty(),
        "per-batch export errors on the console:\n{per_batch}"
    );

    // Back on the same ports: new spans arrive without restarting the service.
    let restarted = Instant::now();
    collector
        .start_again()
        .await
        .unwrap_or_else(|e| panic!("restarting the lab collector: {e:#}"));
    // The batch queue is still full of spans from the outage when the collector comes
    // back (new spans are dropped until it drains), so requests keep coming until the
    // first of their spans gets through.
    let after = client("after-restart");
    let mut sent_after = 0;
    while server_spans_from(&receiver, "after-restart").is_empty()
        && restarted.elapsed() < TELEMETRY_WAIT
    {
        let response = after.get(app.url("/health")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        sent_after += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = app.output();
    assert!(
        !server_spans_from(&receiver, "after-restart").is_empty(),
        "no span of the {sent_after} requests sent in the {TELEMETRY_WAIT:?} after the \
         restart arrived; the service printed:\n{}\nthe collector printed:\n{}",
        lines_with(&output, &["export", "Dropp"]),
        collector.output()
    );
    println!(
        "collector down ({protocol}): first new span through {:.1} s after the restart \
         ({sent_after} requests sent)",
        restarted.elapsed().as_secs_f64()
    );
    assert_eq!(
        output.matches("traces export recovered").count(),
        1,
        "{}",
        lines_with(&output, &["export"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn collector_killed_mid_load_over_grpc() {
    collector_down_mid_load("grpc").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn collector_killed_mid_load_over_http() {
    collector_down_mid_load("http/protobuf").await;
}
