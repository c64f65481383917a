//! Exporting to a real backend, over both OTLP protocols: TLS with a private CA and with
//! a client certificate (mTLS), credentials in `OTEL_EXPORTER_OTLP_HEADERS`, gzip; and
//! what a learner is told when TLS fails, the credentials are refused or a variable is
//! wrong. The backend is the kit's receiver behind a TLS front, with certificates made
//! at test time. Waits are on conditions with generous deadlines: the box may be loaded.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use lab_tests::{
    app::TestApp,
    otlp::OtlpReceiver,
    tls::{Pki, TlsFront},
};
use reqwest::StatusCode;

const WAIT: Duration = Duration::from_secs(90);
const TOKEN: &str = "tok-9f2c7a51e0";
const PROTOCOLS: [&str; 2] = ["grpc", "http/protobuf"];
const SIGNALS: [&str; 3] = ["traces", "metrics", "logs"];

fn plain_endpoint<'a>(receiver: &'a OtlpReceiver, protocol: &str) -> &'a str {
    if protocol == "grpc" {
        &receiver.grpc_endpoint
    } else {
        &receiver.http_endpoint
    }
}

async fn spawn(endpoint: &str, protocol: &str, extra: &[(&str, String)]) -> TestApp {
    lab_tests::app::use_binary(env!("CARGO_BIN_EXE_todo-api"));
    let mut env: Vec<(&str, &str)> = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "100"),
    ];
    env.extend(extra.iter().map(|(name, value)| (*name, value.as_str())));
    TestApp::spawn_with(&env).await
}

/// A receiver that admits only the bearer `TOKEN`, behind a TLS front, and the service
/// trusting the front's CA and sending `token` (URL-encoded space) plus `extra`.
async fn spawn_behind_token(
    pki: &Pki,
    protocol: &str,
    token: &str,
    extra: &[(&str, String)],
) -> (OtlpReceiver, TlsFront, TestApp) {
    let receiver = OtlpReceiver::start_requiring(&format!("Bearer {TOKEN}")).await;
    let front = TlsFront::start(pki.server_config(false), plain_endpoint(&receiver, protocol)).await;
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", pki.path("ca.pem")),
        ("OTEL_EXPORTER_OTLP_HEADERS", format!("authorization=Bearer%20{token}")),
    ];
    env.extend_from_slice(extra);
    let app = spawn(&front.endpoint(), protocol, &env).await;
    (receiver, front, app)
}

/// Sends requests (each makes a span, a log record and a metric point) until `done`.
async fn drive_until(app: &TestApp, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}; output:\n{}",
            app.output()
        );
        let _ = app
            .client
            .post(app.url("/api/v1/todos"))
            .json(&serde_json::json!({ "title": "tls" }))
            .send()
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Drives requests until `line(signal)` was printed for every signal, then until
/// `failures()` counted six more failed exports, and checks that none of those added a
/// line: a failing backend is reported once, not per batch. Returns the output.
async fn reported_once_per_signal(
    app: &TestApp,
    what: &str,
    line: impl Fn(&str) -> String,
    failures: impl Fn() -> usize,
) -> String {
    drive_until(app, what, || {
        let output = app.output();
        SIGNALS.iter().all(|signal| output.contains(&line(signal)))
    })
    .await;
    let seen = failures();
    drive_until(app, "six more failed exports", || failures() >= seen + 6).await;
    let output = app.output();
    for signal in SIGNALS {
        assert_eq!(output.matches(&line(signal)).count(), 1, "{what}: {output}");
    }
    output
}

fn all_signals_arrived(receiver: &OtlpReceiver) -> bool {
    !receiver.spans().is_empty() && !receiver.metrics().is_empty() && !receiver.logs().is_empty()
}

fn assert_no_export_complaint(app: &TestApp) {
    let output = app.output();
    assert!(!output.contains("export failing"), "{output}");
    assert!(!output.contains("rejected"), "{output}");
}

/// A private CA from `OTEL_EXPORTER_OTLP_CERTIFICATE`, a bearer token from the headers
/// variable (URL-encoded space) and gzip: every signal arrives, compressed, admitted.
#[tokio::test(flavor = "multi_thread")]
async fn private_ca_headers_and_gzip_arrive_over_both_protocols() {
    let pki = Pki::generate();
    for protocol in PROTOCOLS {
        let (receiver, _front, app) = spawn_behind_token(
            &pki,
            protocol,
            TOKEN,
            &[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".to_owned())],
        )
        .await;
        drive_until(&app, &format!("all signals over {protocol}"), || {
            all_signals_arrived(&receiver)
        })
        .await;
        assert_eq!(receiver.refused_count(), 0, "{protocol}: the token arrived");
        assert!(receiver.gzipped_count() > 0, "{protocol}: requests are gzip-compressed");
        assert_no_export_complaint(&app);
        assert!(!app.output().contains(TOKEN), "the token is never printed");
    }
}

/// A backend that requires a client certificate admits the one from
/// `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`/`_CLIENT_KEY`.
#[tokio::test(flavor = "multi_thread")]
async fn mtls_arrives_over_both_protocols() {
    let pki = Pki::generate();
    for protocol in PROTOCOLS {
        let receiver = OtlpReceiver::start().await;
        let front = TlsFront::start(pki.server_config(true), plain_endpoint(&receiver, protocol)).await;
        let app = spawn(
            &front.endpoint(),
            protocol,
            &[
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", pki.path("ca.pem")),
                ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", pki.path("client.pem")),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", pki.path("client-key.pem")),
            ],
        )
        .await;
        drive_until(&app, &format!("all signals over {protocol} with mTLS"), || {
            all_signals_arrived(&receiver)
        })
        .await;
        assert_eq!(front.failed_handshakes(), 0, "{protocol}");
        assert_no_export_complaint(&app);
    }
}

/// Per-signal variables win over the general one: traces trust the right CA through
/// `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` while the other signals trust a wrong one.
#[tokio::test(flavor = "multi_thread")]
async fn a_per_signal_certificate_overrides_the_general_one() {
    let (pki, other) = (Pki::generate(), Pki::generate());
    let receiver = OtlpReceiver::start().await;
    let front = TlsFront::start(pki.server_config(false), &receiver.http_endpoint).await;
    let app = spawn(
        &front.endpoint(),
        "http/protobuf",
        &[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", other.path("ca.pem")),
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", pki.path("ca.pem")),
        ],
    )
    .await;
    drive_until(&app, "spans and the metrics TLS line", || {
        !receiver.spans().is_empty() && app.output().contains("metrics export failing: TLS")
    })
    .await;
    assert!(receiver.metrics().is_empty());
    assert!(!app.output().contains("traces export failing"));
}

/// The wrong CA: one line per signal that says TLS and what to set, however many exports
/// fail after it, and requests are served at their usual pace meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_ca_is_one_tls_line_per_signal_and_the_service_keeps_serving() {
    let (pki, other) = (Pki::generate(), Pki::generate());
    for protocol in PROTOCOLS {
        let receiver = OtlpReceiver::start().await;
        let front = TlsFront::start(pki.server_config(false), plain_endpoint(&receiver, protocol)).await;
        let app = spawn(
            &front.endpoint(),
            protocol,
            &[("OTEL_EXPORTER_OTLP_CERTIFICATE", other.path("ca.pem"))],
        )
        .await;
        let tls_line = |signal: &str| format!("{signal} export failing: TLS handshake failed");
        let what = format!("a TLS line per signal over {protocol}");
        // Failed handshakes after the lines were printed add none; the service still
        // answers promptly.
        let output =
            reported_once_per_signal(&app, &what, tls_line, || front.failed_handshakes()).await;
        assert!(output.contains("not signed by a trusted CA"), "{output}");
        assert!(output.contains("OTEL_EXPORTER_OTLP_CERTIFICATE"), "{output}");
        assert!(!output.contains("collector is reachable again"), "{output}");
        assert!(receiver.spans().is_empty() && receiver.request_count() == 0);
        for _ in 0..20 {
            let started = Instant::now();
            let response = app.client.get(app.url("/health")).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{protocol}: /health took {:?} while exports fail",
                started.elapsed()
            );
        }
    }
}

/// A certificate for another host name is a TLS failure that says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_for_another_name_is_a_tls_line() {
    let pki = Pki::generate_for(&["collector.otel-lab.invalid"]);
    let receiver = OtlpReceiver::start().await;
    let front = TlsFront::start(pki.server_config(false), &receiver.http_endpoint).await;
    let app = spawn(
        &front.endpoint(),
        "http/protobuf",
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", pki.path("ca.pem"))],
    )
    .await;
    drive_until(&app, "the name-mismatch line", || {
        app.output()
            .contains("traces export failing: TLS handshake failed: the server's certificate is not valid for the endpoint's host name")
    })
    .await;
}

/// Wrong credentials: the backend answers 401/UNAUTHENTICATED; that is one "rejected:
/// check the credentials" line per signal, never "unreachable", and the token sent is
/// not printed.
#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_are_one_rejected_line_per_signal() {
    let pki = Pki::generate();
    let wrong = "wrong-9d3e1b";
    for protocol in PROTOCOLS {
        let (receiver, _front, app) = spawn_behind_token(&pki, protocol, wrong, &[]).await;
        let rejected = |signal: &str| format!("{signal} export rejected: check the credentials");
        let what = format!("a rejected line per signal over {protocol}");
        let output =
            reported_once_per_signal(&app, &what, rejected, || receiver.refused_count()).await;
        assert!(!output.contains("export failing"), "not reported as unreachable: {output}");
        assert!(!output.contains(wrong), "the credentials are never printed: {output}");
    }
}

/// Runs the binary with `env` and expects it to stop at start-up.
fn start_up_failure(env: &[(&str, &str)]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_todo-api"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        // Never reached; bounded in case a check lets the start-up go on.
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:9/none")
        .env("DATABASE_CONNECT_TIMEOUT_SECS", "1")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:9")
        .envs(env.iter().copied())
        .output()
        .expect("run todo-api");
    assert!(!output.status.success(), "{env:?} was accepted");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    text
}

/// Each mistake stops the service with one line that names the variable and no value
/// that could be a secret.
#[test]
fn a_misconfiguration_is_one_line_naming_the_variable() {
    let missing = "/nonexistent/otel-lab/ca.pem";
    let cases: [(&[(&str, &str)], &str); 9] = [
        (
            &[("OTEL_EXPORTER_OTLP_HEADERS", "x-team=a,Bearer-s3cr3t")],
            "OTEL_EXPORTER_OTLP_HEADERS",
        ),
        (
            &[("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "authorization=Bearer%0As3cr3t")],
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ),
        (
            &[("OTEL_EXPORTER_OTLP_HEADERS", "authorization=s3cr3t%ZZ%FF")],
            "OTEL_EXPORTER_OTLP_HEADERS",
        ),
        (&[("OTEL_EXPORTER_OTLP_CERTIFICATE", missing)], "OTEL_EXPORTER_OTLP_CERTIFICATE"),
        (
            &[("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "brotli")],
            "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
        ),
        (
            &[("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", missing)],
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        ),
        (
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/xml")],
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318/v1/tra ces")],
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ),
        (
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:43 17"),
            ],
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
    ];
    for (env, variable) in cases {
        let output = start_up_failure(env);
        let lines: Vec<&str> = output.lines().filter(|line| !line.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{env:?}: {output}");
        assert!(lines[0].contains(variable), "{env:?}: {output}");
        assert!(!output.contains("s3cr3t"), "{env:?} printed a secret: {output}");
    }
}
