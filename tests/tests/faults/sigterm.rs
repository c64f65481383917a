//! SIGTERM during load: in-flight requests finish, new ones are refused, and every
//! completed request's span is exported before the exit.

use std::time::{Duration, Instant};

use lab_tests::{
    app::TestApp,
    lab_collector::LabCollector,
    load::{Limits, Load},
    otlp::OtlpReceiver,
};

use crate::{MAX_REQUESTS, ONE_AT_A_TIME, client, ms, not_ok, seed, send, signal, spans_arriving};

/// Added to every list request, so that some are surely in flight at SIGTERM.
const IN_FLIGHT_LATENCY_MS: u64 = 1500;
const IN_FLIGHT: usize = 6;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_load_drains_refuses_and_exports_every_span() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let receiver = OtlpReceiver::start().await;
    let collector = LabCollector::start(&receiver.http_endpoint)
        .await
        .unwrap_or_else(|e| panic!("lab collector: {e:#}"));
    let latency = IN_FLIGHT_LATENCY_MS.to_string();
    let app = TestApp::spawn_with(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        // The lab's default batch delay (5 s): spans still queued at SIGTERM must be
        // flushed by the shutdown, not by a timer.
        ("LAB_FAULT_LATENCY_MS", &latency),
        ("LAB_FAULT_ROUTES", "/api/v1/todos"),
    ])
    .await;
    let ids = seed(&app, 20).await;
    let agent = "sigterm-load";
    let address = app.address.trim_start_matches("http://").to_owned();

    // Fast reads of one todo keep going through the signal...
    let fast = Load::start(
        Limits {
            workers: 4,
            duration: Duration::from_secs(10),
            max_requests: MAX_REQUESTS,
        },
        {
            let (client, base, ids) = (client(agent), app.address.clone(), ids.clone());
            move |n| send(client.get(format!("{base}/api/v1/todos/{}", ids[n % ids.len()])))
        },
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    // ...and slow list requests are in flight when it arrives.
    let slow: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (client, url) = (client(agent), app.url("/api/v1/todos"));
            tokio::spawn(async move {
                let answer = send(client.get(url)).await;
                (answer, Instant::now())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = app.pid();
    let signalled = Instant::now();
    signal(pid, "TERM");

    // New connections are refused once shutdown has started.
    let refused_at = loop {
        match tokio::net::TcpStream::connect(&address).await {
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                break Instant::now();
            }
            _ => {}
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "new connections were still accepted 2 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut first_slow_done = None::<Instant>;
    for task in slow {
        let (answer, done) = task.await.unwrap();
        assert_eq!(
            answer.status(),
            Some(200),
            "an in-flight request did not complete: {answer:?}"
        );
        first_slow_done = Some(first_slow_done.map_or(done, |first| first.min(done)));
    }
    assert!(
        refused_at < first_slow_done.unwrap(),
        "connections were refused only after the in-flight requests had finished"
    );
    let samples = fast.finish().await;
    let status = app.shutdown();
    let exited_after = signalled.elapsed();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");

    // Every request that got an answer was answered 200, and has its server span.
    let answered: Vec<_> = samples
        .iter()
        .filter(|s| s.outcome.status().is_some())
        .collect();
    let (failed, first) = not_ok(&samples, |answer| {
        matches!(answer.status(), None | Some(200))
    });
    assert_eq!(failed, 0, "answers other than 200: {first:?}");
    let completed = answered.len() + IN_FLIGHT;
    // The seed requests went out with the kit's own client (no user agent of ours).
    let arrived = spans_arriving(&receiver, agent, completed).await;
    println!(
        "sigterm: {completed} requests completed ({IN_FLIGHT} in flight at SIGTERM), {} \
         refused after it; new connections refused {:.0} ms after SIGTERM; exit after \
         {:.0} ms; {arrived} server spans arrived",
        samples.len() - answered.len(),
        ms(refused_at - signalled),
        ms(exited_after)
    );
    assert_eq!(
        arrived, completed,
        "one server span per completed request, no more"
    );
}
