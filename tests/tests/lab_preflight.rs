//! The checks a lab recipe runs before `docker compose up`: stack/check-docker.sh (Docker
//! Engine and Compose new enough for the compose files) and stack/check-ports.sh (the
//! stage's host ports free). Both are run as the recipes run them - the version check
//! with the versions docker would report handed in, the port check against the real
//! compose files with a lab.env whose ports this test holds open or leaves free.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lab_tests::workspace_root;
use labctl::lab::{self, LabEnv};

fn script(name: &str) -> PathBuf {
    workspace_root().join("stack").join(name)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---- Docker versions ---------------------------------------------------------------------

/// The minimum the script enforces, read from its `NAME=VALUE` line.
fn minimum(name: &str) -> String {
    let source = fs::read_to_string(script("check-docker.sh")).expect("readable");
    source
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("check-docker.sh has no {name}="))
        .to_owned()
}

/// The version check with docker's answers handed in: (engine, API, compose).
fn versions(engine: &str, api: &str, compose: &str) -> Output {
    Command::new(script("check-docker.sh"))
        .env("LAB_CHECK_ENGINE_VERSION", engine)
        .env("LAB_CHECK_API_VERSION", api)
        .env("LAB_CHECK_COMPOSE_VERSION", compose)
        .output()
        .expect("run check-docker.sh")
}

fn assert_accepted(engine: &str, api: &str, compose: &str) {
    let out = versions(engine, api, compose);
    assert!(
        out.status.success(),
        "Engine {engine} (API {api}) with Compose {compose} was refused: {}",
        text(&out.stderr)
    );
}

fn assert_refused(engine: &str, api: &str, compose: &str, needles: &[&str]) {
    let out = versions(engine, api, compose);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "accepted {engine}/{api}/{compose}: {stderr}"
    );
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
}

#[test]
fn current_docker_passes_the_version_check() {
    let (engine, api, compose) = (
        minimum("min_engine"),
        minimum("min_api"),
        minimum("min_compose"),
    );
    // Exactly the minimum, and what releases print: a `v`, a distribution or Desktop
    // suffix, Compose's new major.
    assert_accepted(&format!("{engine}.0"), &api, &compose);
    assert_accepted("27.3.1", "1.47", "2.29.1");
    assert_accepted("28.0.0-rc.1", "1.48", "v2.30.0-desktop.1");
    assert_accepted("29.1.2", "1.52", "5.0.2");
    assert_accepted("26.1.5+dfsg1", "1.45", "2.24.10");
}

#[test]
fn an_old_engine_is_refused_by_name() {
    let engine = minimum("min_engine");
    let api = minimum("min_api");
    assert_refused(
        "24.0.7",
        "1.43",
        "2.29.1",
        &["Docker Engine 24.0.7 (API 1.43) is too old", &engine, &api],
    );
    assert_refused(
        "20.10.24+dfsg1",
        "1.41",
        "2.29.1",
        &["20.10.24+dfsg1", "upgrade Docker"],
    );
}

#[test]
fn an_old_compose_is_refused_by_name() {
    let compose = minimum("min_compose");
    assert_refused(
        "27.3.1",
        "1.47",
        "2.24.0",
        &["Docker Compose 2.24.0 is too old", &compose],
    );
    // 2.9 is older than 2.24, though "9" > "2" as text.
    assert_refused("27.3.1", "1.47", "v2.9.0", &["v2.9.0 is too old"]);
    assert_refused("27.3.1", "1.47", "1.29.2", &["1.29.2"]);
    // Both too old: both named.
    assert_refused(
        "24.0.7",
        "1.43",
        "2.20.2",
        &["Docker Engine", "Docker Compose 2.20.2"],
    );
}

#[test]
fn an_unreadable_version_warns_and_goes_on() {
    let out = versions("dev", "master", "dev-build");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot read"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_readme_states_the_minimum_versions() {
    let readme = fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    for needle in [
        format!("Docker Engine {}", minimum("min_engine")),
        format!("Compose {}", minimum("min_compose")),
    ] {
        assert!(readme.contains(&needle), "README.md should say {needle:?}");
    }
}

// ---- free ports --------------------------------------------------------------------------

/// lab.env with every port moved to a free one, written to `dir`; returns the file and
/// the new ports by key. Listening on a returned port makes it "in use".
fn relocated_lab_env(dir: &Path) -> (PathBuf, Vec<(String, u16)>) {
    let source = fs::read_to_string(workspace_root().join(lab::PATH)).expect("lab.env");
    let settings = LabEnv::parse(&source).expect("lab.env parses");
    let mut ports = Vec::new();
    let mut text = String::new();
    for line in source.lines() {
        match line.split_once('=') {
            Some((key, _)) if settings.ports().unwrap().iter().any(|(k, _)| *k == key) => {
                // A port just released can be handed out again: each key gets its own.
                let port = loop {
                    let port = lab_tests::postgres::free_port().expect("a free port");
                    if !ports.iter().any(|(_, taken)| *taken == port) {
                        break port;
                    }
                };
                ports.push((key.to_owned(), port));
                text.push_str(&format!("{key}={port}\n"));
            }
            _ => text.push_str(&format!("{line}\n")),
        }
    }
    let path = dir.join("lab.env");
    fs::write(&path, text).expect("write lab.env");
    (path, ports)
}

/// check-ports.sh with `args`, reading `lab_env`.
fn check_ports(lab_env: &Path, args: &[&str]) -> Output {
    Command::new(script("check-ports.sh"))
        .args(args)
        .env("LAB_ENV_FILE", lab_env)
        .current_dir(workspace_root())
        .output()
        .expect("run check-ports.sh")
}

/// The compose files of every stage, as `-f` arguments.
fn every_stage() -> Vec<String> {
    let mut files: Vec<String> = fs::read_dir(workspace_root().join("stack"))
        .expect("stack/")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("compose") && name.ends_with(".yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .flat_map(|name| ["-f".to_owned(), format!("stack/{name}")])
        .collect()
}

fn port_of(ports: &[(String, u16)], key: &str) -> u16 {
    ports
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, p)| *p)
        .expect("key")
}

#[test]
fn free_ports_pass() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (env, _) = relocated_lab_env(dir.path());
    let mut args = vec!["--profile".to_owned(), "app".to_owned()];
    args.extend(every_stage());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = check_ports(&env, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_port_in_use_is_named_with_its_service() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (env, ports) = relocated_lab_env(dir.path());
    let port = port_of(&ports, lab::POSTGRES_PORT);
    let _holder = TcpListener::bind(("127.0.0.1", port)).expect("hold the port");
    let out = check_ports(&env, &["-f", "stack/compose.yaml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "port {port} on 127.0.0.1 (postgres, {})",
            lab::POSTGRES_PORT
        )),
        "{stderr}"
    );
}

#[test]
fn every_published_port_of_every_stage_is_checked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (env, ports) = relocated_lab_env(dir.path());
    let _holders: Vec<TcpListener> = ports
        .iter()
        .map(|(_, port)| TcpListener::bind(("127.0.0.1", *port)).expect("hold the port"))
        .collect();
    let mut args = vec!["--profile".to_owned(), "app".to_owned()];
    args.extend(every_stage());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = check_ports(&env, &args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for (key, port) in &ports {
        assert!(
            stderr.contains(&format!("port {port} on 127.0.0.1 ("))
                && stderr.contains(key.as_str()),
            "{key} ({port}) not named: {stderr}"
        );
    }
}

#[test]
fn the_app_port_counts_only_with_the_app_profile() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (env, ports) = relocated_lab_env(dir.path());
    let port = port_of(&ports, lab::APP_PORT);
    // The API on the host (`just run`) holds it while the stage comes up without the app
    // container: that is the lab's normal state, not a clash.
    let _host_app = TcpListener::bind(("127.0.0.1", port)).expect("hold the port");
    let out = check_ports(&env, &["-f", "stack/compose.yaml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = check_ports(&env, &["--profile", "app", "-f", "stack/compose.yaml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "port {port} on 127.0.0.1 (app, {})",
            lab::APP_PORT
        )),
        "{stderr}"
    );
}
