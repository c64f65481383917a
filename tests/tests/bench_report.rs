//! bench/*.py write bench/results.md from Python f-strings: a piece of a message
//! that names a value but lacks the `f` prefix prints the placeholder itself, as
//! `({args.protocol})` once did.

use std::process::Command;

use lab_tests::workspace_root;

/// Python's own parser lists the string pieces of `file` that hold a `{name}`
/// placeholder as text: plain literals, and the literal parts of f-strings (Python joins
/// adjacent literals, so a piece without its `f` ends up as text inside the f-string
/// before it). `None` when python3 is missing.
fn placeholders_outside_f_strings(file: &str) -> Option<Vec<String>> {
    const SCRIPT: &str = r#"
import ast, re, sys
tree = ast.parse(open(sys.argv[1]).read())
for node in ast.walk(tree):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        if re.search(r"\{[A-Za-z_][A-Za-z0-9_.]*(\[[^\]]*\])?(![rsa])?(:[^{}]*)?\}", node.value):
            print(f"line {node.lineno}: {node.value!r}")
"#;
    let output = Command::new("python3")
        .args(["-c", SCRIPT, file])
        .output()
        .ok()?;
    assert!(
        output.status.success(),
        "python3 could not read {file}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
    )
}

#[test]
fn bench_report_strings_with_placeholders_are_f_strings() {
    let mut scripts: Vec<_> = std::fs::read_dir(workspace_root().join("bench"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "py"))
        .collect();
    scripts.sort();
    assert!(scripts.iter().any(|path| path.ends_with("report.py")), "{scripts:?}");
    for script in scripts {
        let found = placeholders_outside_f_strings(script.to_str().unwrap())
            .expect("python3 runs (the bench needs it too)");
        assert!(
            found.is_empty(),
            "{} has string pieces with a {{placeholder}} but no f prefix:\n{}",
            script.display(),
            found.join("\n")
        );
    }
}

#[test]
fn the_placeholder_check_finds_a_missing_f_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.py");
    std::fs::write(
        &file,
        "x = (f\"{a} and \"\n     \" over ({args.protocol})\")\ny = f\"{ok}\"\nz = \"{{}}\".format(1)\n",
    )
    .unwrap();
    let found = placeholders_outside_f_strings(file.to_str().unwrap()).expect("python3 runs");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("{args.protocol}"), "{found:?}");
}

#[test]
fn bench_results_hold_no_placeholder() {
    let results = std::fs::read_to_string(workspace_root().join("bench/results.md")).unwrap();
    assert!(
        !results.contains("{args."),
        "bench/results.md holds an unformatted placeholder"
    );
}

/// bench/native.py's reading of the SDK's drop reports from a service console.
fn dropped_counts(console: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("console.log");
    std::fs::write(&file, console).unwrap();
    let output = Command::new("python3")
        .current_dir(workspace_root().join("bench"))
        .args([
            "-c",
            "import sys; from native import dropped_counts; print(dropped_counts(open(sys.argv[1]).read()))",
            file.to_str().unwrap(),
        ])
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn the_bench_reads_the_sdks_drop_reports() {
    // Recorded from the release build with OTEL_BSP_MAX_QUEUE_SIZE=1 (colour codes and all).
    let shutdown = "\u{1b}[2m2026-12-02T00:43:15.183769Z\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m \u{1b}[3mname\u{1b}[0m\u{1b}[2m=\u{1b}[0m\"BatchSpanProcessor.SpansDropped\" \u{1b}[3mdropped_span_count\u{1b}[0m\u{1b}[2m=\u{1b}[0m14674 \u{1b}[3mmax_queue_size\u{1b}[0m\u{1b}[2m=\u{1b}[0m1 Spans were dropped due to a queue being full.\n";
    assert_eq!(dropped_counts(shutdown), "{'spans': 14674, 'logs': 0}");
    // The first drop reported, the shutdown total missing (a shutdown cut short): not 0.
    let started = "WARN name=\"BatchLogProcessor.LogDroppingStarted\" BatchLogProcessor dropped a LogRecord due to queue full.\n";
    assert_eq!(dropped_counts(started), "{'spans': 0, 'logs': 1}");
    assert_eq!(
        dropped_counts("INFO listening on 127.0.0.1:8000\n"),
        "{'spans': 0, 'logs': 0}"
    );
}

/// bench/report.py's tables for measurements made up here: `off`, `grpc`, and the same two
/// of a `--baseline` build.
fn report_of(script: &str) -> String {
    let output = Command::new("python3")
        .current_dir(workspace_root().join("bench"))
        .args(["-c", script])
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const BASELINE_RUN: &str = r#"
import types
from report import report
def run(app_us, rss=20.0):
    return {"rps": 1000.0, "p50": 1.0, "p99": 2.0, "errors": 0, "app_us": app_us, "pg_us": 10.0,
            "collector_us": 1.0, "backends_us": 1.0, "rss": rss, "dropped": {"spans": 0, "logs": 0}}
modes = ["off", "grpc", "off (baseline)", "grpc (baseline)"]
results = {("GET by id", "off"): [run(40.0)], ("GET by id", "grpc"): [run(42.0)],
           ("GET by id", "off (baseline)"): [run(50.0)], ("GET by id", "grpc (baseline)"): [run(60.0, rss=99.0)]}
args = types.SimpleNamespace(connections=32, threads=2, duration=10, warmup=3, runs=1)
print(report(results, [("GET by id", "get_by_id.lua")], modes, [], [], {}, args))
"#;

#[test]
fn a_baseline_builds_cost_is_measured_against_its_own_off_run() {
    let text = report_of(BASELINE_RUN);
    // The current build: 42 over 40; the baseline: 60 over its own 50, not over 40.
    assert!(
        text.contains("| GET by id | grpc | 40.0 | 42.0 | +2.0 | +5.0% | 1.05 | <= 1.10 met |"),
        "{text}"
    );
    assert!(
        text.contains("| GET by id | grpc (baseline) | 50.0 | 60.0 | +10.0 | +20.0% | 1.20 | (baseline) |"),
        "{text}"
    );
    // The targets hold the build being measured: the baseline's 99 MB is not held against it.
    assert!(text.contains("| RSS after the runs (max) | 20.0 MB | < 32.0 MB | met |"), "{text}");
    // Before and after side by side: service CPU 60 -> 42 us (-30%).
    assert!(text.contains("| GET by id | grpc | 60.0 | 42.0 | -30.0% |"), "{text}");
}

#[test]
fn the_baseline_check_sees_a_baseline_compared_with_the_current_off_run() {
    // The broken pairing: the baseline's on run over the current build's off run.
    let broken = BASELINE_RUN.replace(
        "from report import report",
        "import report as r\nr.off_of = lambda mode: \"off\"\nfrom report import report",
    );
    let text = report_of(&broken);
    assert!(!text.contains("| GET by id | grpc (baseline) | 50.0 | 60.0 |"), "{text}");
    assert!(text.contains("| GET by id | grpc (baseline) | 40.0 | 60.0 |"), "{text}");
}
