//! otel-lgtm keeps all it stores under /data, which the lab mounts as the `lgtm-data`
//! volume - all but Tempo 3's live-store WAL, whose default is
//! /var/tempo/live-store/traces (modules/livestore/config.go at Tempo v3.0.3), inside the
//! container: recreating it (`just lab-4` does) would drop the newest traces. The lab
//! moves that WAL into the volume with a Tempo flag; this holds that it stays there.

use std::fs;

use lab_tests::workspace_root;
use serde_norway::Value as Yaml;

const WAL_FLAG: &str = "-live-store.wal.path=";

/// Problems with where the lgtm service of `compose` keeps Tempo's live-store WAL.
fn wal_problems(compose: &str) -> Vec<String> {
    let doc: Yaml = serde_norway::from_str(compose).expect("compose YAML");
    let lgtm = &doc["services"]["lgtm"];
    let volume_targets: Vec<&str> = lgtm["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Yaml::as_str)
        .filter(|spec| !spec.starts_with(['.', '/', '~'])) // named volumes only
        .filter_map(|spec| spec.split(':').nth(1))
        .collect();
    let args = lgtm["environment"]["TEMPO_EXTRA_ARGS"]
        .as_str()
        .unwrap_or_default();
    let Some(path) = args
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix(WAL_FLAG))
    else {
        return vec![format!(
            "lgtm: TEMPO_EXTRA_ARGS has no {WAL_FLAG}...: Tempo's live-store WAL stays in the container and is lost when it is recreated"
        )];
    };
    if volume_targets
        .iter()
        .any(|target| path.starts_with(&format!("{}/", target.trim_end_matches('/'))))
    {
        Vec::new()
    } else {
        vec![format!(
            "lgtm: the live-store WAL {path} is on no named volume (mounted: {volume_targets:?})"
        )]
    }
}

#[test]
fn tempo_keeps_its_newest_traces_in_the_volume() {
    let compose = fs::read_to_string(workspace_root().join("stack/compose.lgtm.yaml"))
        .expect("stack/compose.lgtm.yaml");
    let problems = wal_problems(&compose);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_wal_check_rejects_what_it_should() {
    let compose = |args: &str| {
        format!(
            "services:\n  lgtm:\n    volumes:\n      - lgtm-data:/data\n      - ./x.yaml:/otel-lgtm/x.yaml:ro\n    environment:\n      TEMPO_EXTRA_ARGS: {args}\n"
        )
    };
    assert!(
        wal_problems(&compose(
            "-live-store.wal.path=/data/tempo/live-store/traces"
        ))
        .is_empty()
    );
    assert!(wal_problems(&compose("-log.level=warn"))[0].contains("lost when it is recreated"));
    assert!(
        wal_problems(&compose(
            "-live-store.wal.path=/var/tempo/live-store/traces"
        ))[0]
            .contains("on no named volume")
    );
    // /database is not under /data.
    assert!(!wal_problems(&compose("-live-store.wal.path=/database/wal")).is_empty());
}
