//! Checks of the traces and logs as they left the lab collector (the sink's file).

use std::collections::{BTreeMap, BTreeSet};

use labctl::plan::{ROUTE_TODO, ROUTE_TODOS};
use regex::Regex;

use crate::findings::Findings;
use crate::inputs::sent_strings;
use crate::prometheus::{Key, differences};
use crate::run::Run;
use crate::sink::{
    CLIENT_KIND, CREATED_LOG, INJECTED_FAULT_LOG, SERVER_KIND, Sink, SinkLog, SinkSpan,
};
use crate::{REQUESTS, SEED, SERVICE};

fn server_spans(sink: &Sink) -> Vec<&SinkSpan> {
    sink.spans
        .iter()
        .filter(|s| s.kind == SERVER_KIND)
        .collect()
}

/// One server span per request sent, by (method, route, status), exactly; returns the
/// counts for the record.
pub fn server_spans_match_what_was_sent(
    run: &Run,
    sink: &Sink,
    findings: &mut Findings,
) -> BTreeMap<Key, u64> {
    let mut by_key = BTreeMap::new();
    for span in server_spans(sink) {
        *by_key.entry(span.key()).or_insert(0) += 1;
    }
    findings.check(
        by_key == run.sent,
        format!(
            "server spans in the sink differ from what was sent (exact match expected):\n{}",
            differences(&[("sent", &run.sent), ("server spans", &by_key)])
        ),
    );
    by_key
}

/// Every request that reaches the database has a DB (CLIENT) span under its server span.
/// 4xx from validation, 405 and injected 500s are answered before any query; a 404 of an
/// unknown id is the answer of a query.
pub fn database_calls_have_a_client_span(sink: &Sink, findings: &mut Findings) {
    let crud = [ROUTE_TODOS, ROUTE_TODO];
    let children: BTreeSet<(&str, &str)> = sink
        .spans
        .iter()
        .filter(|s| s.kind == CLIENT_KIND)
        .map(|s| (s.trace_id.as_str(), s.parent_span_id.as_str()))
        .collect();
    let touching_db: Vec<&SinkSpan> = server_spans(sink)
        .into_iter()
        .filter(|s| {
            crud.contains(&s.key().1.as_str()) && matches!(s.status(), 200 | 201 | 204 | 404)
        })
        .collect();
    let orphans: Vec<String> = touching_db
        .iter()
        .filter(|s| !children.contains(&(s.trace_id.as_str(), s.span_id.as_str())))
        .map(|s| format!("{} -> {} (trace {})", s.name, s.status(), s.trace_id))
        .collect();
    findings.check(
        !touching_db.is_empty() && orphans.is_empty(),
        format!(
            "{} of {} server spans that query the database have no CLIENT child span, e.g. {:?}",
            orphans.len(),
            touching_db.len(),
            &orphans[..orphans.len().min(5)]
        ),
    );
}

fn server_by_trace(sink: &Sink) -> BTreeMap<&str, &SinkSpan> {
    server_spans(sink)
        .into_iter()
        .map(|s| (s.trace_id.as_str(), s))
        .collect()
}

/// Log records written in a request carry that request's trace and span.
pub fn log_records_name_exported_spans(sink: &Sink, findings: &mut Findings) {
    let server_by_trace = server_by_trace(sink);
    let span_ids: BTreeSet<(&str, &str)> = sink
        .spans
        .iter()
        .map(|s| (s.trace_id.as_str(), s.span_id.as_str()))
        .collect();
    let mut stray = Vec::new();
    for log in sink.logs.iter().filter(|l| !l.trace_id.is_empty()) {
        let known_span = log.span_id.is_empty()
            || span_ids.contains(&(log.trace_id.as_str(), log.span_id.as_str()));
        if !server_by_trace.contains_key(log.trace_id.as_str()) || !known_span {
            stray.push(format!(
                "\"{}\" (trace {}, span {})",
                log.body, log.trace_id, log.span_id
            ));
        }
    }
    findings.check(
        stray.is_empty(),
        format!(
            "{} log records name a trace or span that was not exported, e.g. {:?}",
            stray.len(),
            &stray[..stray.len().min(5)]
        ),
    );
}

/// One "injected fault" record per 5xx and one "todo created" per create, each in the
/// trace of a request with that status.
pub fn fault_and_create_logs_sit_in_their_request(run: &Run, sink: &Sink, findings: &mut Findings) {
    let server_by_trace = server_by_trace(sink);
    for (body, expected, status, what) in [
        (
            INJECTED_FAULT_LOG,
            run.totals.status_5xx,
            500,
            "5xx answers",
        ),
        (
            CREATED_LOG,
            run.summary.count("POST", ROUTE_TODOS, 201),
            201,
            "creates",
        ),
    ] {
        let records: Vec<&SinkLog> = sink.logs.iter().filter(|l| l.body == body).collect();
        let in_their_request = records
            .iter()
            .filter(|l| {
                server_by_trace
                    .get(l.trace_id.as_str())
                    .is_some_and(|s| s.status() == status)
            })
            .count() as u64;
        findings.check(
            records.len() as u64 == expected && in_their_request == expected,
            format!(
                "\"{body}\" log records: {} exported, {in_their_request} in the trace of a {status} request; {expected} {what} were sent",
                records.len()
            ),
        );
    }
}

/// service.name on every resource, spans and logs alike.
pub fn every_resource_names_the_service(sink: &Sink, findings: &mut Findings) {
    for signal in ["spans", "logs"] {
        let names: Vec<&Option<String>> = sink
            .resources
            .iter()
            .filter(|(s, _)| *s == signal)
            .map(|(_, name)| name)
            .collect();
        findings.check(
            !names.is_empty() && names.iter().all(|name| name.as_deref() == Some(SERVICE)),
            format!("service.name of the exported {signal}' resources: {names:?}; expected {SERVICE} on every one"),
        );
    }
}

/// No literal values in SQL: no string that labctl sent, no quoted string, no number
/// outside a $N placeholder, no id.
pub fn sql_text_holds_no_literal_values(sink: &Sink, findings: &mut Findings) {
    let sent_literals = sent_strings(SEED, REQUESTS);
    let quoted = Regex::new(r"'[^']*'").unwrap();
    let number = Regex::new(r"(^|[^$\w])\d+").unwrap();
    let uuid =
        Regex::new(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
            .unwrap();
    let queries: BTreeSet<&str> = sink
        .spans
        .iter()
        .filter_map(|s| s.attributes.get("db.query.text")?.as_str())
        .collect();
    findings.check(
        !queries.is_empty(),
        "no db.query.text on any exported span".to_owned(),
    );
    for query in queries {
        let leaked: Vec<&String> = sent_literals
            .iter()
            .filter(|literal| query.contains(literal.as_str()))
            .collect();
        findings.check(
            leaked.is_empty()
                && !quoted.is_match(query)
                && !number.is_match(query)
                && !uuid.is_match(query),
            format!(
                "db.query.text holds a literal value (sent strings found: {leaked:?}): {query}"
            ),
        );
    }
}
