//! The check of `labctl verify --native`: the learner's own verifier passes against the
//! same stack, and says plainly that Tempo and Loki are not there.

use crate::SETTLE_TIMEOUT;
use crate::findings::Findings;
use crate::run::Run;

/// `labctl verify --native` passes on every dashboard and prints a SKIP line (with its
/// reason) for Tempo and for Loki; returns its outputs for the record.
pub async fn native_mode_passes_and_skips_tempo_and_loki(
    run: &Run,
    findings: &mut Findings,
) -> Vec<String> {
    let mut verify_outputs = Vec::new();
    for path in &run.dashboards {
        let verify = tokio::time::timeout(
            SETTLE_TIMEOUT,
            tokio::process::Command::new(&run.labctl)
                .args([
                    "verify",
                    "--native",
                    "--quiet",
                    "--timeout",
                    "30s",
                    "--prometheus-url",
                    &run.stack.prometheus_url,
                ])
                .arg("--dashboard")
                .arg(path)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("labctl verify finishes within the timeout")
        .expect("labctl runs");
        let output = String::from_utf8_lossy(&verify.stdout).into_owned();
        findings.check(
            verify.status.success(),
            format!(
                "labctl verify --native --dashboard {} exited with {}:\n{output}{}",
                path.display(),
                verify.status,
                String::from_utf8_lossy(&verify.stderr)
            ),
        );
        for backend in ["tempo:", "loki:"] {
            let skipped = output.lines().any(|line| {
                line.starts_with(backend)
                    && line.contains("SKIP")
                    && line.contains(labctl::verify::SKIP_REASON)
            });
            findings.check(
                skipped,
                format!(
                    "labctl verify --native has no `{backend} ... SKIP {}` line:\n{output}",
                    labctl::verify::SKIP_REASON
                ),
            );
        }
        verify_outputs.push(output);
    }
    verify_outputs
}
