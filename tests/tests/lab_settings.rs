//! stack/lab.env is the one copy of the lab's settings: the host ports the stack
//! publishes and the app's telemetry environment. These checks hold that compose
//! publishes exactly those ports, that no other file of the lab spells a setting out
//! again, that the docs quote the ports the file has, and that the ports table of
//! stack/README.md lists them all. Each checker is also fed a broken case.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use lab_tests::workspace_root;
use labctl::lab::{self, LabEnv};
use regex::Regex;
use serde_norway::Value as Yaml;
use walkdir::WalkDir;

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn lab_env() -> LabEnv {
    LabEnv::parse(&read(&workspace_root().join(lab::PATH)))
        .unwrap_or_else(|e| panic!("{}: {e}", lab::PATH))
}

/// Files under `dir` (relative to the root) whose names end in one of `extensions`,
/// skipping build output and hidden directories.
fn files_under(dir: &str, extensions: &[&str]) -> Vec<PathBuf> {
    let root = workspace_root().join(dir);
    WalkDir::new(&root)
        .into_iter()
        .filter_entry(|entry| {
            let name = entry.file_name().to_string_lossy();
            entry.depth() == 0 || !(name.starts_with('.') || name == "target")
        })
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_file())
        .map(|entry| entry.into_path())
        .filter(|path| {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            name.is_some_and(|name| extensions.iter().any(|ext| name.ends_with(ext)))
        })
        .collect()
}

fn shown(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

// ---- compose publishes the lab's ports, and only through lab.env ----------------------

static PUBLISHED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^127\.0\.0\.1:\$\{(LAB_[A-Z0-9_]+_PORT)\?[^}:]+\}:\d+$").expect("valid regex")
});

/// Problems with the `ports:` of compose documents, given as (file name, text).
fn compose_port_problems(files: &[(String, String)], settings: &LabEnv) -> Vec<String> {
    let ports = settings.ports().expect("lab.env ports");
    let mut published = Vec::new();
    let mut problems = Vec::new();
    for (file, text) in files {
        let doc: Yaml = serde_norway::from_str(text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let services = doc.get("services").and_then(Yaml::as_mapping);
        for (name, service) in services.into_iter().flatten() {
            let name = name.as_str().unwrap_or("?");
            for port in service
                .get("ports")
                .and_then(Yaml::as_sequence)
                .into_iter()
                .flatten()
            {
                let spec = port.as_str().unwrap_or_default();
                match PUBLISHED.captures(spec) {
                    Some(found) if settings.get(&found[1]).is_some() => {
                        published.push(found[1].to_owned())
                    }
                    Some(found) => problems.push(format!(
                        "{file}: service {name} publishes {}, which {} does not set",
                        &found[1],
                        lab::PATH
                    )),
                    None => problems.push(format!(
                        "{file}: service {name}: port {port:?} must read \
                         \"127.0.0.1:${{LAB_..._PORT?see {}}}:CONTAINER_PORT\", the host port from lab.env",
                        lab::PATH
                    )),
                }
            }
        }
    }
    for (key, port) in ports {
        if !published.iter().any(|p| p == key) {
            problems.push(format!(
                "{} sets {key}={port}, but no compose file publishes it",
                lab::PATH
            ));
        }
    }
    problems
}

fn compose_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = files_under("stack", &[".yaml"])
        .into_iter()
        .filter(|path| {
            path.parent() == Some(&workspace_root().join("stack"))
                && path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("compose"))
        })
        .map(|path| (shown(&path), read(&path)))
        .collect();
    files.sort();
    files
}

#[test]
fn compose_publishes_exactly_the_ports_of_lab_env() {
    let problems = compose_port_problems(&compose_files(), &lab_env());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn compose_port_check_rejects_what_it_should() {
    let settings = LabEnv::parse("LAB_DB_PORT=5432\nLAB_UI_PORT=3000\n").unwrap();
    let file = |text: &str| vec![("compose.yaml".to_owned(), text.to_owned())];
    let good = "services:\n  db:\n    ports: [\"127.0.0.1:${LAB_DB_PORT?see stack/lab.env}:5432\"]\n  ui:\n    ports: [\"127.0.0.1:${LAB_UI_PORT?x}:3000\"]\n";
    assert_eq!(
        compose_port_problems(&file(good), &settings),
        Vec::<String>::new()
    );

    let copied = good.replace("${LAB_DB_PORT?see stack/lab.env}", "5432");
    let problems = compose_port_problems(&file(&copied), &settings);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("service db") && p.contains("the host port from lab.env")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("LAB_DB_PORT=5432, but no compose file")),
        "{problems:?}"
    );

    let unknown = good.replace("LAB_UI_PORT?x", "LAB_WEB_PORT?x");
    let problems = compose_port_problems(&file(&unknown), &settings);
    assert!(
        problems.iter().any(|p| p.contains("LAB_WEB_PORT, which")),
        "{problems:?}"
    );
}

// ---- no other file spells a setting out again ------------------------------------------

static HOST_PORT: LazyLock<Regex> = LazyLock::new(|| {
    // 127.0.0.1:5432, localhost:8000, [::1]:9090, and bash's /dev/tcp/127.0.0.1/5432 (not
    // 0.0.0.0:4317: that is where a process listens inside its container).
    Regex::new(r"(?:127\.0\.0\.1|localhost|\[::1\])[:/](\d{2,5})\b").expect("valid regex")
});

/// Copies of lab.env's settings in one file of code or configuration: a host address
/// with one of its ports, or one of its `OTEL_*` variables next to its value. Rust unit
/// tests (everything after `#[cfg(test)]`) are left out: they exercise URL handling with
/// example addresses, which are not the lab's settings.
fn copies(file: &str, text: &str, settings: &LabEnv) -> Vec<String> {
    let ports = settings.ports().expect("lab.env ports");
    let text = match file.ends_with(".rs") {
        true => text.split("\n#[cfg(test)]").next().unwrap_or(text),
        false => text,
    };
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let at = format!("{file}:{}", number + 1);
        for port in HOST_PORT.captures_iter(line) {
            if let Some((key, _)) = ports.iter().find(|(_, p)| p.to_string() == port[1]) {
                found.push(format!(
                    "{at}: `{}` copies {key} from {}",
                    &port[0],
                    lab::PATH
                ));
            }
        }
        for (key, value) in settings.otel() {
            if let Some(at_key) = line.find(key)
                && line[at_key + key.len()..].contains(value)
            {
                found.push(format!(
                    "{at}: {key} with the value {value} copies {}",
                    lab::PATH
                ));
            }
        }
    }
    found
}

/// The lab's own code and configuration - every reader of lab.env.
fn lab_code() -> Vec<PathBuf> {
    let mut files = vec![workspace_root().join("justfile")];
    files.extend(files_under("stack", &[".yaml", ".yml", ".sh", ".py"]));
    files.extend(files_under("bench", &[".py", ".lua", ".sh"]));
    files.extend(files_under("labctl/src", &[".rs"]));
    files.extend(files_under("tests/src", &[".rs"]));
    files.extend(files_under("tests/tests", &[".rs"]));
    files.push(workspace_root().join(".ci/run"));
    files
}

#[test]
fn no_file_copies_a_lab_setting() {
    let settings = lab_env();
    // The end-to-end tests configure the app themselves (fast intervals, free ports); of
    // the lab's values they may not spell out the resource attributes, which describe
    // the lab, so only that value is looked for there.
    let resource = settings
        .get(lab::RESOURCE_ATTRIBUTES)
        .expect("set")
        .to_owned();
    let mut problems = Vec::new();
    for path in lab_code() {
        let file = shown(&path);
        let text = read(&path);
        if file.starts_with("tests/tests/") {
            problems.extend(
                text.lines()
                    .enumerate()
                    .filter(|(_, line)| line.contains(&resource))
                    .map(|(n, _)| format!("{file}:{}: {resource} copies {}", n + 1, lab::PATH)),
            );
        } else {
            problems.extend(copies(&file, &text, &settings));
        }
    }
    assert!(
        problems.is_empty(),
        "read these from {} instead:\n{}",
        lab::PATH,
        problems.join("\n")
    );
}

#[test]
fn the_copy_check_rejects_what_it_should() {
    let settings = LabEnv::parse("OTEL_METRIC_EXPORT_INTERVAL=5000\nLAB_APP_PORT=8000\n").unwrap();
    let found = |file: &str, text: &str| copies(file, text, &settings);
    assert!(
        found("justfile", "echo http://127.0.0.1:8000/docs")[0]
            .contains("justfile:1: `127.0.0.1:8000` copies LAB_APP_PORT")
    );
    assert!(!found("run.sh", "until (exec 3<>/dev/tcp/127.0.0.1/8000)").is_empty());
    assert!(
        !found(
            "main.rs",
            r#"#[arg(default_value = "http://localhost:8000")]"#
        )
        .is_empty()
    );
    assert!(
        found(
            "compose.yaml",
            "      OTEL_METRIC_EXPORT_INTERVAL: \"5000\""
        )[0]
        .contains("OTEL_METRIC_EXPORT_INTERVAL with the value 5000")
    );
    assert!(!found("bench.py", "OTEL_METRIC_EXPORT_INTERVAL=\"5000\",").is_empty());
    // Not copies: another port, a variable without the lab's value, a unit test.
    assert!(found("justfile", "echo 127.0.0.1:$LAB_APP_PORT 127.0.0.1:18000").is_empty());
    assert!(
        found(
            "bench.py",
            "OTEL_METRIC_EXPORT_INTERVAL=LAB[\"OTEL_METRIC_EXPORT_INTERVAL\"]"
        )
        .is_empty()
    );
    assert!(
        found(
            "http.rs",
            "fn a() {}\n#[cfg(test)]\nmod tests { const U: &str = \"http://127.0.0.1:8000\"; }"
        )
        .is_empty()
    );
}

// ---- the docs quote the ports lab.env has ------------------------------------------

/// Ports the docs give for a local address that lab.env does not publish: a stale copy.
fn doc_port_problems(file: &str, text: &str, settings: &LabEnv) -> Vec<String> {
    let ports = settings.ports().expect("lab.env ports");
    let mut problems = Vec::new();
    for (number, line) in text.lines().enumerate() {
        for port in HOST_PORT.captures_iter(line) {
            if !ports.iter().any(|(_, p)| p.to_string() == port[1]) {
                problems.push(format!(
                    "{file}:{}: `{}` is no port of {}",
                    number + 1,
                    &port[0],
                    lab::PATH
                ));
            }
        }
    }
    problems
}

#[test]
fn the_docs_quote_the_ports_of_lab_env() {
    let settings = lab_env();
    let mut docs = files_under("labs", &[".md"]);
    docs.extend(files_under("stack", &[".md"]));
    docs.extend(files_under("bench", &[".md"]));
    docs.push(workspace_root().join("README.md"));
    let problems: Vec<String> = docs
        .iter()
        .flat_map(|path| doc_port_problems(&shown(path), &read(path), &settings))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_doc_check_rejects_what_it_should() {
    let settings = LabEnv::parse("LAB_APP_PORT=8000\n").unwrap();
    let problems = doc_port_problems("a.md", "open http://127.0.0.1:8080/docs", &settings);
    assert_eq!(
        problems,
        ["a.md:1: `127.0.0.1:8080` is no port of stack/lab.env"]
    );
    assert!(doc_port_problems("a.md", "open http://127.0.0.1:8000/docs", &settings).is_empty());
}

// ---- stack/README.md lists every port --------------------------------------------------

/// Rows of the "Ports" table in stack/README.md missing a lab.env port (key and number).
fn ports_table_problems(readme: &str, settings: &LabEnv) -> Vec<String> {
    let table: Vec<&str> = readme
        .split("\n## Ports")
        .nth(1)
        .map(|section| section.split("\n## ").next().unwrap_or(section))
        .map(|section| section.lines().filter(|l| l.starts_with('|')).collect())
        .unwrap_or_default();
    if table.is_empty() {
        return vec!["stack/README.md has no \"## Ports\" table".into()];
    }
    let mut problems = Vec::new();
    for (key, port) in settings.ports().expect("lab.env ports") {
        let cell = format!("| {port} |");
        if !table
            .iter()
            .any(|row| row.starts_with(&cell) && row.contains(key))
        {
            problems.push(format!(
                "stack/README.md, \"Ports\": no row `{cell} ... {key} ...`"
            ));
        }
    }
    problems
}

#[test]
fn the_ports_table_lists_every_port() {
    let readme = read(&workspace_root().join("stack/README.md"));
    let problems = ports_table_problems(&readme, &lab_env());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_ports_table_check_rejects_what_it_should() {
    let settings = LabEnv::parse("LAB_A_PORT=1000\nLAB_B_PORT=2000\n").unwrap();
    let readme = "# x\n\n## Ports\n\n| port | what |\n|---|---|\n| 1000 | a (`LAB_A_PORT`) |\n\n## Next\n| 2000 | LAB_B_PORT |\n";
    assert_eq!(
        ports_table_problems(readme, &settings),
        ["stack/README.md, \"Ports\": no row `| 2000 | ... LAB_B_PORT ...`"]
    );
    assert_eq!(ports_table_problems("# x\n", &settings).len(), 1);
}

// ---- labctl was built from the file in the tree ------------------------------------------

#[test]
fn labctl_carries_the_file_of_this_tree() {
    assert_eq!(
        lab::SOURCE,
        read(&workspace_root().join(lab::PATH)),
        "labctl embeds stack/lab.env at build time; rebuild it"
    );
    assert_eq!(lab::settings(), &lab_env());
}
