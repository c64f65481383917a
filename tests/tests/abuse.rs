//! Hostile input against the real service: bodies at and past the size limit, deep JSON
//! nesting, huge headers, a client that sends its headers one byte a second, invalid
//! UTF-8, SQL-looking strings in every field, paging parameters at and past their bounds.
//! The service must answer each with a 4xx (a problem document where the service itself
//! answers), store what it accepts verbatim, and stay up.
//!
//! Needs the `todo-api` binary built (`cargo test --workspace` builds it; with
//! `-p lab-tests`, run `cargo build -p todo-api` first).

use std::time::{Duration, Instant};

use lab_tests::{app::TestApp, otlp::OtlpReceiver};
use serde_json::{Value, json};
use todo_api::api::{LIMIT_MAX, SKIP_MAX};
use todo_api::body_limit::MAX_BODY_BYTES;
// Longer exported values are a cost any client could impose on the whole pipeline.
use todo_api::telemetry::http::MAX_ATTRIBUTE_CHARS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An answer read off the socket: hyper's own refusals (431, 414, 400 on a malformed
/// request line) have no problem body, so the tests look at the raw response.
#[derive(Debug)]
struct RawAnswer {
    status: u16,
    body: String,
}

/// Sends `request` as is on a new connection and reads the answer until the server
/// closes it (the requests say `Connection: close`).
async fn raw(app: &TestApp, request: &[u8]) -> RawAnswer {
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    // The server may answer (and close) before it has read all of a refused request.
    let _ = stream.write_all(request).await;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 8192];
        while let Ok(read) = stream.read(&mut buffer).await {
            if read == 0 {
                break;
            }
            response.extend_from_slice(&buffer[..read]);
        }
    })
    .await
    .expect("the server answered and closed within 10 s");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    RawAnswer { status, body }
}

/// A request with `Connection: close`, the given extra header lines and body.
fn request(method: &str, target: &[u8], headers: &[u8], body: &[u8]) -> Vec<u8> {
    let mut request = format!("{method} ").into_bytes();
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    request.extend_from_slice(headers);
    if !body.is_empty() {
        request.extend_from_slice(b"Content-Type: application/json\r\n");
        request.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body);
    request
}

fn problem_type(answer: &RawAnswer) -> String {
    let body: Value = serde_json::from_str(&answer.body)
        .unwrap_or_else(|_| panic!("a problem document, got {answer:?}"));
    body["type"].as_str().unwrap_or_default().to_owned()
}

/// Still up: the liveness probe answers.
async fn assert_alive(app: &TestApp) {
    let response = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 200, "the service is still up");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_body_limit_is_exact_and_a_huge_declared_length_is_refused_at_once() {
    let app = TestApp::spawn().await;
    // JSON allows trailing whitespace: a valid body of exactly the limit...
    let mut body = br#"{"title":"at the limit"}"#.to_vec();
    body.resize(MAX_BODY_BYTES, b' ');
    let answer = raw(&app, &request("POST", b"/api/v1/todos", b"", &body)).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    // ...and one byte more.
    body.push(b' ');
    let answer = raw(&app, &request("POST", b"/api/v1/todos", b"", &body)).await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(problem_type(&answer), "/problems/payload-too-large");

    // 10 GB announced, nothing sent: refused from the header alone, without waiting.
    let started = Instant::now();
    let answer = raw(
        &app,
        b"POST /api/v1/todos HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
          Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        app.list("").await.len(),
        1,
        "only the body at the limit was stored"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deeply_nested_json_is_a_400_and_the_service_stays_up() {
    let app = TestApp::spawn().await;
    let nested = |open: &str, depth: usize| {
        let mut body = String::from(r#"{"title":"#);
        body.push_str(&open.repeat(depth));
        body.into_bytes()
    };
    // 60 000 levels fit under the body limit: the parser's recursion limit refuses them.
    for body in [
        nested("[", 60_000),
        nested(r#"{"a":"#, 12_000),
        "[".repeat(60_000).into_bytes(),
    ] {
        let answer = raw(&app, &request("POST", b"/api/v1/todos", b"", &body)).await;
        assert_eq!(answer.status, 400, "{answer:?}");
        assert_eq!(problem_type(&answer), "/problems/malformed-json");
    }
    // 100 000 levels are over the limit before any parsing.
    let answer = raw(
        &app,
        &request("POST", b"/api/v1/todos", b"", &nested("[", 100_000)),
    )
    .await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_alive(&app).await;
    assert!(app.list("").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_headers_are_refused_and_do_not_take_the_service_down() {
    let app = TestApp::spawn().await;
    // Past hyper's request head buffer (about 400 KiB): 431, no crash.
    let megabyte = format!("X-Big: {}\r\n", "a".repeat(1024 * 1024));
    let answer = raw(&app, &request("GET", b"/health", megabyte.as_bytes(), b"")).await;
    assert_eq!(answer.status, 431, "{answer:?}");
    // More than hyper's 100 headers: 431 as well.
    let many: String = (0..200).map(|n| format!("X-Header-{n}: v\r\n")).collect();
    let answer = raw(&app, &request("GET", b"/health", many.as_bytes(), b"")).await;
    assert_eq!(answer.status, 431, "{answer:?}");
    // Within the buffer, a 100 KiB header is served (what it costs the telemetry is
    // `huge_headers_and_paths_do_not_bloat_the_exported_spans`).
    let big = format!("User-Agent: {}\r\n", "a".repeat(100 * 1024));
    let answer = raw(&app, &request("GET", b"/health", big.as_bytes(), b"")).await;
    assert!(answer.status < 500, "{answer:?}");
    // A path longer than hyper accepts.
    let long_path = format!("/api/v1/todos/{}", "a".repeat(100_000));
    let answer = raw(&app, &request("GET", long_path.as_bytes(), b"", b"")).await;
    assert_eq!(answer.status, 414, "{answer:?}");
    assert_alive(&app).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_headers_and_paths_do_not_bloat_the_exported_spans() {
    let receiver = OtlpReceiver::start().await;
    let app = TestApp::spawn_with(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.grpc_endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ])
    .await;
    let big_agent = format!("User-Agent: {}\r\n", "u".repeat(100 * 1024));
    assert_eq!(
        raw(&app, &request("GET", b"/health", big_agent.as_bytes(), b""))
            .await
            .status,
        200
    );
    let long_path = format!("/api/v1/todos/{}", "p".repeat(30_000));
    assert_eq!(
        raw(&app, &request("GET", long_path.as_bytes(), b"", b""))
            .await
            .status,
        400
    );
    let big_host = format!(
        "GET /health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        "h".repeat(50_000)
    );
    assert_eq!(raw(&app, big_host.as_bytes()).await.status, 200);
    let status = app.shutdown();
    assert!(status.success());
    let spans = receiver.spans();
    assert!(
        spans.len() >= 3,
        "every request has its span: {}",
        spans.len()
    );
    for span in &spans {
        for (key, value) in &span.attributes {
            let length = value.as_str().map_or(0, |text| text.chars().count());
            assert!(
                length <= MAX_ATTRIBUTE_CHARS,
                "span `{}` carries a {length}-character `{key}`",
                span.span.name
            );
        }
    }
}

/// A request head must arrive within this (app: header read timeout 10 s, plus slack).
const SLOW_HEADERS_BOUND: Duration = Duration::from_secs(12);

#[tokio::test(flavor = "multi_thread")]
async fn a_client_sending_its_headers_one_byte_a_second_is_disconnected() {
    let app = TestApp::spawn().await;
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: {}",
        "a".repeat(100)
    );
    let started = Instant::now();
    let mut closed = None;
    for byte in head.bytes() {
        if started.elapsed() > SLOW_HEADERS_BOUND {
            break;
        }
        if stream.write_all(&[byte]).await.is_err() {
            closed = Some(started.elapsed());
            break;
        }
        // Anything the server sends back (a 408, or the end of the stream) ends it.
        let mut buffer = [0u8; 256];
        // (nothing within the second: send the next byte)
        if tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buffer))
            .await
            .is_ok()
        {
            closed = Some(started.elapsed());
            break;
        }
    }
    println!("slow headers: connection closed after {closed:?}");
    let closed = closed.unwrap_or_else(|| {
        panic!("the connection was still open {SLOW_HEADERS_BOUND:?} into a one-byte-a-second request head")
    });
    assert!(closed <= SLOW_HEADERS_BOUND, "closed after {closed:?}");
    assert_alive(&app).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_utf8_in_body_path_query_and_headers_is_refused_or_ignored() {
    let app = TestApp::spawn().await;
    let answer = raw(
        &app,
        &request("POST", b"/api/v1/todos", b"", b"{\"title\":\"\xff\xfe\"}"),
    )
    .await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(problem_type(&answer), "/problems/malformed-json");
    // Raw bytes in the request line: refused by the HTTP parser.
    let answer = raw(&app, &request("GET", b"/api/v1/todos/\xff\xfe", b"", b"")).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    // Percent-encoded, they reach the service: a 400 problem, not a 500.
    for target in [
        &b"/api/v1/todos/%FF%FE"[..],
        b"/api/v1/todos?completed=%FF",
        b"/api/v1/todos?limit=%C0%AF",
    ] {
        let answer = raw(&app, &request("GET", target, b"", b"")).await;
        assert_eq!(
            answer.status,
            400,
            "{}: {answer:?}",
            String::from_utf8_lossy(target)
        );
        problem_type(&answer);
    }
    // A header value that is not UTF-8 is legal HTTP (obs-text): served.
    let answer = raw(
        &app,
        &request("GET", b"/health", b"User-Agent: \xff\xfe\r\n", b""),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_alive(&app).await;
    assert!(app.list("").await.is_empty());
}

/// SQL (and format-string) fragments that would do damage if any field were pasted into
/// a statement instead of bound as a parameter.
const SQL_LOOKING: [&str; 7] = [
    "'); DROP TABLE todos; --",
    "\" OR 1=1 --",
    "x'; UPDATE todos SET title = 'pwned'; --",
    "'; SELECT pg_sleep(10); --",
    "$1 $$ $2::text \\'",
    "%s %n {0} ${title}",
    "Robert'); DELETE FROM todos WHERE ('1'='1",
];

#[tokio::test(flavor = "multi_thread")]
async fn sql_looking_strings_are_stored_verbatim_and_never_executed() {
    let app = TestApp::spawn().await;
    let mut created = Vec::new();
    let started = Instant::now();
    for text in SQL_LOOKING {
        let response = app
            .client
            .post(app.url("/api/v1/todos"))
            .json(&json!({ "title": text, "description": text }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{text}");
        let todo: Value = response.json().await.unwrap();
        assert_eq!(
            (todo["title"].as_str(), todo["description"].as_str()),
            (Some(text), Some(text))
        );
        created.push(todo["id"].as_str().unwrap().to_owned());
    }
    // Updated through every field of PUT as well, in reverse order.
    for (id, text) in created.iter().zip(SQL_LOOKING.iter().rev()) {
        let response = app
            .client
            .put(app.url(&format!("/api/v1/todos/{id}")))
            .json(&json!({ "title": text, "description": text, "completed": true }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{text}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no pg_sleep ran"
    );
    // Read back identical, one by one and in the list; nothing else changed or vanished.
    for (id, text) in created.iter().zip(SQL_LOOKING.iter().rev()) {
        let todo = app.get_json(&format!("/api/v1/todos/{id}")).await;
        assert_eq!(todo["title"], *text);
        assert_eq!(todo["description"], *text);
    }
    let listed = app.list("?completed=true").await;
    assert_eq!(
        listed.len(),
        SQL_LOOKING.len(),
        "the table is intact: {listed:?}"
    );
    // The same strings in the path and the query are validation errors.
    for target in [
        "/api/v1/todos/1'%20OR%20'1'%3D'1",
        "/api/v1/todos?completed=true'%20OR%20'1'%3D'1",
        "/api/v1/todos?skip=0;DROP%20TABLE%20todos",
        "/api/v1/todos?limit=1%20OR%201%3D1",
    ] {
        let response = app.client.get(app.url(target)).send().await.unwrap();
        assert_eq!(response.status(), 400, "{target}");
    }
    assert_eq!(app.list("").await.len(), SQL_LOOKING.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn paging_at_and_past_its_bounds() {
    let app = TestApp::spawn().await;
    for n in 0..3 {
        app.create_ok(&format!("t{n}")).await;
    }
    // At the bounds.
    assert_eq!(app.list("?limit=1").await.len(), 1);
    assert_eq!(
        app.list(&format!("?limit={LIMIT_MAX}&skip=0")).await.len(),
        3
    );
    assert!(app.list(&format!("?skip={SKIP_MAX}")).await.is_empty());
    assert_eq!(
        app.list(&format!("?skip=2&limit={LIMIT_MAX}")).await.len(),
        1
    );
    let past_skip = format!("skip={}", SKIP_MAX + 1);
    // Past them, or not integers at all: a 400 naming the parameter.
    for (query, field) in [
        (past_skip.as_str(), "skip"),
        ("limit=9223372036854775807", "limit"),
        ("limit=9223372036854775808", "limit"),
        ("skip=-9223372036854775808", "skip"),
        ("skip=99999999999999999999999", "skip"),
        ("limit=1.5", "limit"),
        ("limit=1e3", "limit"),
        ("limit=", "limit"),
        ("skip=0x10", "skip"),
        ("limit=%205", "limit"),
        ("completed=1", "completed"),
    ] {
        let response = app
            .client
            .get(app.url(&format!("/api/v1/todos?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }
}
