//! The record of the run: the table of compared numbers, printed whether the checks
//! pass or not (`-- --nocapture` shows it).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use crate::dashboards::{Share, errors_if_4xx_counted};
use crate::metrics::Kinds;
use crate::prometheus::{Key, Latency};
use crate::run::Run;
use crate::{FAULT_ERROR_RATE, FAULT_LATENCY_MS, FAULT_ROUTE, REQUESTS, SEED, SHARE_TOLERANCE};

/// What the checks returned for the record.
pub struct Record<'a> {
    pub run: &'a Run,
    pub kinds: Kinds,
    pub shares: Vec<Share>,
    pub by_status: BTreeMap<String, u64>,
    pub latency: BTreeMap<String, Latency>,
    pub panel_rows: Vec<String>,
    pub verify_outputs: Vec<String>,
    pub server_spans: BTreeMap<Key, u64>,
    /// Since the run started, when the trace and log checks were done.
    pub checks_done: Duration,
}

pub fn print(record: &Record) {
    let run = record.run;
    let mut report = String::new();
    let _ = writeln!(
        report,
        "\n== pipeline test: seed {SEED}, {REQUESTS} requests, fault on {FAULT_ROUTE} (error rate {FAULT_ERROR_RATE}, +{FAULT_LATENCY_MS} ms)"
    );
    let _ = writeln!(
        report,
        "{:<7} {:<26} {:>6} {:>6} {:>13} {:>11} {:>13}",
        "METHOD", "ROUTE", "STATUS", "SENT", "SPAN METRICS", "APP METRIC", "SERVER SPANS"
    );
    let keys: BTreeSet<&Key> = run
        .sent
        .keys()
        .chain(run.settled.span.keys())
        .chain(run.settled.app.keys())
        .chain(record.server_spans.keys())
        .collect();
    let cell = |map: &BTreeMap<Key, u64>, key: &Key| map.get(key).copied().unwrap_or(0);
    for key in keys {
        let _ = writeln!(
            report,
            "{:<7} {:<26} {:>6} {:>6} {:>13} {:>11} {:>13}",
            key.0,
            key.1,
            key.2,
            cell(&run.sent, key),
            cell(&run.settled.span, key),
            cell(&run.settled.app, key),
            cell(&record.server_spans, key)
        );
    }
    let sum = |map: &BTreeMap<Key, u64>| map.values().sum::<u64>();
    let _ = writeln!(
        report,
        "{:<7} {:<26} {:>6} {:>6} {:>13} {:>11} {:>13}   (tolerance: exact)",
        "TOTAL",
        "",
        "",
        sum(&run.sent),
        sum(&run.settled.span),
        sum(&run.settled.app),
        sum(&record.server_spans)
    );
    let _ = writeln!(
        report,
        "span metrics of every kind (SERVER + CLIENT): {}; SERVER only: {}",
        record.kinds.all, record.kinds.server
    );
    let _ = writeln!(
        report,
        "span status of the 4xx/5xx server spans: {:?} (sent: {} 5xx, {} 4xx)",
        record.by_status, run.totals.status_5xx, run.totals.status_4xx
    );
    let _ = writeln!(
        report,
        "\n{:<48} {:>10} {:>10} {:>16}",
        "SHARE", "SENT", "PANEL", "PANEL AS SAVED"
    );
    for share in &record.shares {
        let saved = share
            .as_saved
            .map(|v| format!("{v:.6}"))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            report,
            "{:<48} {:>10.6} {:>10.6} {saved:>16}",
            share.label, share.sent, share.shown
        );
    }
    let _ = writeln!(
        report,
        "(panel: its expression with [1m] widened to [{}], at the last flush; as saved: [1m] at the same time; \
         tolerance {SHARE_TOLERANCE}; 5xx+4xx share would be {:.6})",
        run.window,
        errors_if_4xx_counted(run)
    );
    let _ = writeln!(
        report,
        "\n{:<26} {:>10} {:>10} {:>14}   (ms; whole run, from the cumulative buckets)",
        "LATENCY", "p50", "p95", "app p50"
    );
    for (route, row) in &record.latency {
        let _ = writeln!(
            report,
            "{route:<26} {:>10.1} {:>10.1} {:>14.1}",
            row.p50, row.p95, row.app_p50
        );
    }
    let _ = writeln!(
        report,
        "\n{:<60} {:>7}  LAST VALUE",
        "DASHBOARD QUERY", "SERIES"
    );
    for row in &record.panel_rows {
        let _ = writeln!(report, "{row}");
    }
    for output in &record.verify_outputs {
        let _ = writeln!(report, "\nlabctl verify --native:\n{output}");
    }
    let _ = writeln!(
        report,
        "timings: stack + app up {:.1}s | traffic done {:.1}s | counts settled {:.1}s | traces and logs checked {:.1}s | total {:.1}s",
        run.up.as_secs_f64(),
        run.traffic_done.as_secs_f64(),
        run.settled_after.as_secs_f64(),
        record.checks_done.as_secs_f64(),
        run.started.elapsed().as_secs_f64()
    );
    eprintln!("{report}");
}
