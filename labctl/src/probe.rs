//! Checks that wait: each check is asked again until it passes or the time runs out,
//! because telemetry arrives late by design (export intervals, the collector's flush).
//! The result is a table with, for every failure, the fix.

use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

const POLL_EVERY: Duration = Duration::from_secs(2);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Pass(String),
    /// Not there yet; asking again later may pass (no data yet, backend still starting).
    Waiting {
        reason: String,
        fix: String,
    },
    /// Waiting will not change it (a refused query, an undefined variable).
    Fail {
        reason: String,
        fix: String,
    },
    /// Not checked, and the table says why.
    Skip(String),
}

impl Outcome {
    pub fn waiting(reason: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::Waiting {
            reason: reason.into(),
            fix: fix.into(),
        }
    }

    pub fn fail(reason: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::Fail {
            reason: reason.into(),
            fix: fix.into(),
        }
    }

    fn is_settled(&self) -> bool {
        !matches!(self, Self::Waiting { .. })
    }

    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Waiting { .. } | Self::Fail { .. })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub check: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub rows: Vec<Row>,
}

impl Report {
    pub fn passed(&self) -> bool {
        !self.rows.iter().any(|row| row.outcome.is_failure())
    }

    pub fn failures(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|row| row.outcome.is_failure())
    }

    pub fn extend(&mut self, other: Report) {
        self.rows.extend(other.rows);
    }

    /// `CHECK | RESULT | REASON`, with a `fix:` line under each failure.
    pub fn render(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|row| row.check.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = String::new();
        let _ = writeln!(out, "{:<width$}  {:<6}  REASON", "CHECK", "RESULT");
        for row in &self.rows {
            let (result, reason, fix) = match &row.outcome {
                Outcome::Pass(reason) => ("PASS", reason.as_str(), None),
                Outcome::Skip(reason) => ("SKIP", reason.as_str(), None),
                Outcome::Waiting { reason, fix } | Outcome::Fail { reason, fix } => {
                    ("FAIL", reason.as_str(), Some(fix.as_str()))
                }
            };
            let _ = writeln!(out, "{:<width$}  {result:<6}  {reason}", row.check);
            if let Some(fix) = fix {
                let _ = writeln!(out, "{:<width$}  {:<6}  fix: {fix}", "", "");
            }
        }
        let failed = self.failures().count();
        let skipped = self
            .rows
            .iter()
            .filter(|row| matches!(row.outcome, Outcome::Skip(_)))
            .count();
        let _ = writeln!(
            out,
            "\n{} passed, {failed} failed, {skipped} skipped",
            self.rows.len() - failed - skipped
        );
        out
    }
}

/// Runs `attempt(i)` for each of `names` until every check has settled or `deadline`
/// passes; a check still waiting at the deadline ends as a failure with its last reason.
pub async fn settle<F, Fut>(
    names: Vec<String>,
    deadline: Instant,
    progress: bool,
    mut attempt: F,
) -> Report
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let mut outcomes: Vec<Option<Outcome>> = vec![None; names.len()];
    let mut last_progress = Instant::now();
    loop {
        for (index, outcome) in outcomes.iter_mut().enumerate() {
            if outcome.as_ref().is_none_or(|o| !o.is_settled()) {
                *outcome = Some(attempt(index).await);
            }
        }
        let waiting: Vec<&str> = names
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| outcome.as_ref().is_some_and(|o| !o.is_settled()))
            .map(|(name, _)| name.as_str())
            .collect();
        let now = Instant::now();
        if waiting.is_empty() || now >= deadline {
            break;
        }
        if progress && now.duration_since(last_progress) >= PROGRESS_EVERY {
            last_progress = now;
            let shown: Vec<&str> = waiting.iter().take(4).copied().collect();
            eprintln!(
                "waiting for {} of {} checks ({}s left): {}{}",
                waiting.len(),
                names.len(),
                deadline.duration_since(now).as_secs(),
                shown.join(", "),
                if waiting.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                }
            );
        }
        tokio::time::sleep(POLL_EVERY.min(deadline.duration_since(now))).await;
    }
    Report {
        rows: names
            .into_iter()
            .zip(outcomes)
            .map(|(check, outcome)| Row {
                check,
                outcome: outcome.expect("every check ran at least once"),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_waiting_checks_until_they_pass() {
        let calls = AtomicUsize::new(0);
        let report = settle(
            vec!["late".into(), "ok".into()],
            Instant::now() + Duration::from_secs(30),
            false,
            |i| {
                let attempt = if i == 0 {
                    calls.fetch_add(1, Ordering::SeqCst)
                } else {
                    99
                };
                async move {
                    if attempt >= 2 {
                        Outcome::Pass("there".into())
                    } else {
                        Outcome::waiting("not yet", "wait")
                    }
                }
            },
        )
        .await;
        assert!(report.passed(), "{}", report.render());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn settled_failures_are_not_retried_and_waiting_ones_time_out() {
        let calls = AtomicUsize::new(0);
        let report = settle(
            vec!["broken".into(), "never".into()],
            Instant::now() + Duration::from_secs(10),
            false,
            |i| {
                if i == 0 {
                    calls.fetch_add(1, Ordering::SeqCst);
                }
                async move {
                    if i == 0 {
                        Outcome::fail("refused", "fix the query")
                    } else {
                        Outcome::waiting("no data", "send traffic")
                    }
                }
            },
        )
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(!report.passed());
        let table = report.render();
        assert!(table.contains("FAIL    refused"), "{table}");
        assert!(table.contains("fix: send traffic"), "{table}");
        assert!(table.contains("0 passed, 2 failed, 0 skipped"), "{table}");
    }

    #[test]
    fn skips_are_shown_and_do_not_fail() {
        let report = Report {
            rows: vec![
                Row {
                    check: "tempo".into(),
                    outcome: Outcome::Skip("not available here".into()),
                },
                Row {
                    check: "prometheus".into(),
                    outcome: Outcome::Pass("3 series".into()),
                },
            ],
        };
        assert!(report.passed());
        assert!(report.render().contains("SKIP    not available here"));
    }
}
