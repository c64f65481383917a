//! The compose stages: stack/compose.yaml and the stage overrides stack/compose.*.yaml.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::sync::LazyLock;

use lab_tests::workspace_root;
use regex::Regex;
use serde_norway::Value as Yaml;

use crate::{assert_no_problems, assert_reported, parse_yaml, read, str_of};

/// Every compose file of the stack, as (file name, parsed document).
pub fn compose_files() -> Vec<(String, Yaml)> {
    let dir = workspace_root().join("stack");
    let mut files: Vec<(String, Yaml)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_owned();
            (name.starts_with("compose.") && name.ends_with(".yaml")).then_some((name, path))
        })
        .map(|(name, path)| {
            let doc = parse_yaml(&name, &read(&path));
            (name, doc)
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        files.iter().any(|(name, _)| name == "compose.yaml"),
        "stack/compose.yaml (the base of every lab stage) is missing"
    );
    files
}

fn compose_problems(files: &[(String, Yaml)], stack_dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let mut has_healthcheck: BTreeMap<String, bool> = BTreeMap::new();
    let mut runnable = BTreeSet::new();
    let mut declared_volumes = BTreeSet::new();
    let mut used_volumes = Vec::new();

    for (file, doc) in files {
        if let Some(volumes) = doc.get("volumes").and_then(Yaml::as_mapping) {
            declared_volumes.extend(volumes.keys().filter_map(Yaml::as_str).map(str::to_owned));
        }
        let Some(services) = doc.get("services").and_then(Yaml::as_mapping) else {
            problems.push(format!("{file}: no `services` mapping"));
            continue;
        };
        for (name, service) in services {
            let name = name.as_str().unwrap_or("?").to_owned();
            let at = format!("{file}: service {name}");
            has_healthcheck.entry(name.clone()).or_insert(false);
            let built = service.get("build").is_some();
            if built {
                runnable.insert(name.clone());
            }
            if let Some(image) = service.get("image") {
                runnable.insert(name.clone());
                match image.as_str() {
                    Some(image) => {
                        problems.extend(image_problem(image, built).map(|p| format!("{at}: {p}")))
                    }
                    None => problems.push(format!("{at}: `image` is not a string")),
                }
            }
            if let Some(healthcheck) = service.get("healthcheck") {
                match healthcheck_problem(healthcheck) {
                    None => {
                        has_healthcheck.insert(name.clone(), true);
                    }
                    Some(problem) => problems.push(format!("{at}: {problem}")),
                }
            }
            for port in service
                .get("ports")
                .and_then(Yaml::as_sequence)
                .into_iter()
                .flatten()
            {
                problems.extend(port_problem(port).map(|p| format!("{at}: {p}")));
            }
            for volume in service
                .get("volumes")
                .and_then(Yaml::as_sequence)
                .into_iter()
                .flatten()
            {
                match mount(volume) {
                    Mount::Bind(source) if source.starts_with('/') || source.starts_with('~') => problems.push(
                        format!("{at}: bind mount of the absolute path {source} exists on this machine only; use a path relative to stack/"),
                    ),
                    Mount::Bind(source) if !stack_dir.join(&source).exists() => problems.push(format!(
                        "{at}: bind mount source {source} does not exist (relative to stack/); Docker would mount an empty directory instead"
                    )),
                    Mount::Named(volume) => used_volumes.push((at.clone(), volume)),
                    Mount::Unreadable => problems.push(format!("{at}: unreadable volume entry {volume:?}")),
                    Mount::Bind(_) | Mount::Other => {}
                }
            }
        }
    }
    for (service, ok) in has_healthcheck {
        if !ok {
            problems.push(format!(
                "service {service}: no healthcheck in any compose file, so `docker compose up --wait` cannot tell when it is ready"
            ));
        }
        if !runnable.contains(&service) {
            problems.push(format!(
                "service {service}: neither `image` nor `build` in any compose file"
            ));
        }
    }
    for (at, volume) in used_volumes {
        if !declared_volumes.contains(&volume) {
            problems.push(format!(
                "{at}: named volume {volume} is not declared under the top-level `volumes`"
            ));
        }
    }
    problems
}

static VERSION_TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\d+\.\d+").expect("valid regex"));

/// An image must name an exact release. Images the stack builds itself (`build:`) only
/// need an explicit tag other than `latest`.
fn image_problem(image: &str, built_here: bool) -> Option<String> {
    if image.contains('$') {
        return Some(format!(
            "image {image:?} is chosen by a variable; pin it in the file"
        ));
    }
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_segment = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last_segment.split_once(':') {
        None => Some(format!(
            "image {image:?} has no tag, which means :latest; pin an exact version"
        )),
        Some((_, "latest")) => Some(format!("image {image:?} is :latest; pin an exact version")),
        Some((_, tag)) if !built_here && !VERSION_TAG.is_match(tag) => Some(format!(
            "image {image:?} has the floating tag {tag:?}; pin an exact release (major.minor at least)"
        )),
        Some(_) => None,
    }
}

fn healthcheck_problem(healthcheck: &Yaml) -> Option<String> {
    if healthcheck.get("disable").and_then(Yaml::as_bool) == Some(true) {
        return Some("its healthcheck is disabled".into());
    }
    match healthcheck.get("test") {
        Some(Yaml::Sequence(words)) => {
            let words: Vec<&str> = words.iter().filter_map(Yaml::as_str).collect();
            match words.as_slice() {
                ["CMD" | "CMD-SHELL", command, ..] if !command.trim().is_empty() => None,
                _ => Some(format!(
                    "healthcheck test {words:?} must be [\"CMD\", command, ...] or [\"CMD-SHELL\", script]"
                )),
            }
        }
        Some(Yaml::String(script)) if !script.trim().is_empty() => None,
        _ => Some("its healthcheck has no test".into()),
    }
}

/// Published ports must bind the loopback address only.
fn port_problem(port: &Yaml) -> Option<String> {
    match port {
        Yaml::String(spec) if spec.starts_with("127.0.0.1:") && spec.matches(':').count() == 2 => {
            None
        }
        Yaml::String(spec) => Some(format!(
            "port {spec:?} is reachable from other machines; write \"127.0.0.1:HOST_PORT:CONTAINER_PORT\""
        )),
        Yaml::Number(number) => Some(format!(
            "port {number} is published on every interface; write \"127.0.0.1:{number}:{number}\""
        )),
        Yaml::Mapping(_) => match str_of(port.get("host_ip")) {
            Some("127.0.0.1") => None,
            other => Some(format!(
                "port with target {:?} has host_ip {other:?}; set host_ip: 127.0.0.1",
                port.get("target")
            )),
        },
        other => Some(format!("unreadable port entry {other:?}")),
    }
}

enum Mount {
    Bind(String),
    Named(String),
    Other,
    Unreadable,
}

fn mount(volume: &Yaml) -> Mount {
    match volume {
        Yaml::String(spec) => match spec.split_once(':') {
            None => Mount::Other, // an anonymous volume: only a container path
            Some((source, _)) if source.starts_with(['.', '/', '~']) => {
                Mount::Bind(source.to_owned())
            }
            Some((source, _)) => Mount::Named(source.to_owned()),
        },
        Yaml::Mapping(_) => match (str_of(volume.get("type")), str_of(volume.get("source"))) {
            (Some("bind"), Some(source)) => Mount::Bind(source.to_owned()),
            (Some("volume"), Some(source)) => Mount::Named(source.to_owned()),
            (Some(_), _) => Mount::Other,
            (None, _) => Mount::Unreadable,
        },
        _ => Mount::Unreadable,
    }
}

#[test]
fn compose_stages_in_the_repository() {
    let files = compose_files();
    assert_no_problems(
        "stack/compose*.yaml",
        &compose_problems(&files, &workspace_root().join("stack")),
    );
}

#[test]
fn compose_check_rejects_what_it_should() {
    let base = r#"
services:
  db:
    image: postgres:latest
    ports: ["5432:5432", 8000, {target: 9000, published: "9000"}]
    volumes: [data:/var/lib/x, ./no-such-file.yaml:/etc/x.yaml, /etc/hosts:/etc/hosts]
  cache:
    image: redis
    healthcheck: {test: ["NONE"]}
  web:
    image: nginx:stable-alpine
    healthcheck: {disable: true}
  ghost:
    environment: {A: "1"}
    healthcheck: {test: ["CMD", "true"]}
"#;
    let files = vec![("compose.yaml".to_owned(), parse_yaml("fixture", base))];
    let problems = compose_problems(&files, &workspace_root().join("stack"));
    assert_reported(&problems, &["service db", "is :latest"]);
    assert_reported(&problems, &["service cache", "no tag"]);
    assert_reported(&problems, &["service web", "floating tag"]);
    assert_reported(
        &problems,
        &["\"5432:5432\"", "reachable from other machines"],
    );
    assert_reported(&problems, &["port 8000", "every interface"]);
    assert_reported(&problems, &["host_ip None"]);
    assert_reported(&problems, &["named volume data is not declared"]);
    assert_reported(&problems, &["./no-such-file.yaml does not exist"]);
    assert_reported(&problems, &["absolute path /etc/hosts"]);
    assert_reported(&problems, &["service db: no healthcheck"]);
    assert_reported(&problems, &["service cache", "[\"NONE\"]"]);
    assert_reported(&problems, &["service web", "disabled"]);
    assert_reported(&problems, &["service ghost: neither `image` nor `build`"]);

    // A healthcheck in an override file counts for the service; a pinned image passes.
    let fixed_base = "services:\n  db:\n    image: postgres:16.11-alpine\n    ports: [\"127.0.0.1:5432:5432\"]\n";
    let overlay = "services:\n  db:\n    healthcheck:\n      test: [\"CMD\", \"pg_isready\"]\n";
    let files = vec![
        ("compose.yaml".to_owned(), parse_yaml("fixture", fixed_base)),
        (
            "compose.extra.yaml".to_owned(),
            parse_yaml("fixture", overlay),
        ),
    ];
    assert_no_problems(
        "fixed fixture",
        &compose_problems(&files, &workspace_root().join("stack")),
    );
}
