//! Every lab page opens with a mermaid diagram of its stage, and README.md shows the
//! whole pipeline. These checks keep each diagram's nodes in step with the compose
//! services of its stage: the stages are the justfile's `stageN` variables (the `-f`
//! files `just lab-N` passes), their services what those compose files define.
//!
//! A diagram node is one of the stage's services (its label, if any, names the service),
//! a part of one drawn inside it (`lgtm_tempo`: Tempo inside `lgtm`), or `you`, the
//! learner. Every service of the stage must be drawn.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use lab_tests::workspace_root;
use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Parser, Tag, TagEnd};
use regex::Regex;
use serde_norway::Value as Yaml;

/// Nodes that stand for people, not containers.
const PARTICIPANTS: [&str; 1] = ["you"];

// ---- the stages, from the justfile and the compose files -----------------------------------

fn just_evaluate(variable: Option<&str>) -> String {
    let mut args = vec!["--evaluate"];
    args.extend(variable);
    lab_tests::just(&args)
}

/// (stage number, its compose files) for every `stageN` variable of the justfile.
fn stages() -> Vec<(u32, Vec<PathBuf>)> {
    static NAME: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?m)^stage(\d+)\s*:=").expect("valid regex"));
    let mut stages: Vec<(u32, Vec<PathBuf>)> = NAME
        .captures_iter(&just_evaluate(None))
        .map(|found| {
            let number: u32 = found[1].parse().expect("a number");
            let value = just_evaluate(Some(&format!("stage{number}")));
            let words: Vec<&str> = value.split_whitespace().collect();
            let files = words
                .windows(2)
                .filter(|pair| pair[0] == "-f")
                .map(|pair| workspace_root().join(pair[1]))
                .collect();
            (number, files)
        })
        .collect();
    stages.sort();
    assert!(
        !stages.is_empty(),
        "the justfile defines no stageN variables"
    );
    stages
}

fn services(files: &[PathBuf]) -> BTreeSet<String> {
    let mut services = BTreeSet::new();
    for file in files {
        let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let doc: Yaml =
            serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if let Some(defined) = doc.get("services").and_then(Yaml::as_mapping) {
            services.extend(defined.keys().filter_map(Yaml::as_str).map(str::to_owned));
        }
    }
    services
}

fn lab_page(stage: u32) -> PathBuf {
    let labs = workspace_root().join("labs");
    let prefix = format!("lab-{stage}-");
    fs::read_dir(&labs)
        .expect("labs/")
        .filter_map(|entry| entry.ok())
        .find(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .map(|entry| entry.path().join("README.md"))
        .unwrap_or_else(|| panic!("stage {stage} has no labs/{prefix}*/ folder"))
}

// ---- mermaid in markdown ----------------------------------------------------------------

/// The mermaid blocks of a page, and whether the page opens with one (the first thing
/// after its title).
fn mermaid_blocks(markdown: &str) -> (Vec<String>, bool) {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    let mut opens_with_one = false;
    let mut seen_title = false;
    let mut first_after_title = true;
    for event in Parser::new(markdown) {
        match event {
            Event::Start(Tag::Heading {
                level: HeadingLevel::H1,
                ..
            }) if !seen_title => {}
            Event::End(TagEnd::Heading(HeadingLevel::H1)) if !seen_title => seen_title = true,
            Event::Start(tag) => {
                let is_mermaid = matches!(&tag, Tag::CodeBlock(CodeBlockKind::Fenced(lang)) if lang.trim() == "mermaid");
                if seen_title && first_after_title {
                    opens_with_one = is_mermaid;
                    first_after_title = false;
                }
                if is_mermaid {
                    current = Some(String::new());
                }
            }
            Event::Text(text) => {
                if let Some(block) = current.as_mut() {
                    block.push_str(&text);
                }
            }
            Event::End(TagEnd::CodeBlock) => blocks.extend(current.take()),
            _ => {}
        }
    }
    (blocks, opens_with_one)
}

static ARROW: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\s*(?:<?-->|<?-\.->|<?==>|---)\s*").expect("valid regex"));
static EDGE_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\|[^|]*\|").expect("valid regex"));
static NODE: LazyLock<Regex> = LazyLock::new(|| {
    // id, then an optional shape: ["label"], [("label")], (["label"]), ("label") ...
    Regex::new(r#"^([A-Za-z][A-Za-z0-9_]*)\s*(?:[\[({]+(?:"([^"]*)"|([^\])}"]*))[\])}]+)?$"#)
        .expect("valid regex")
});

/// The nodes of a flowchart: id -> label (empty when it has none). Mermaid has no parser
/// among the kept Rust crates, so this reads the subset the lab's diagrams use -
/// `flowchart`, `subgraph ID["label"] ... end`, nodes with a bracketed label, and
/// `-->`, `-.->`, `==>`, `---` edges with `|labels|` and `&` - and refuses other lines
/// rather than guess at them.
fn flowchart_nodes(code: &str) -> Result<BTreeMap<String, String>, String> {
    let mut lines = code
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("%%"));
    match lines.next() {
        Some(header) if header.starts_with("flowchart") || header.starts_with("graph") => {}
        other => {
            return Err(format!(
                "a diagram starts with `flowchart LR` (or TD), not {other:?}"
            ));
        }
    }
    let mut nodes: BTreeMap<String, String> = BTreeMap::new();
    let add = |text: &str, nodes: &mut BTreeMap<String, String>| -> Result<(), String> {
        let found = NODE
            .captures(text.trim())
            .ok_or_else(|| format!("cannot read the node `{}`", text.trim()))?;
        let label = found
            .get(2)
            .or_else(|| found.get(3))
            .map(|m| m.as_str().trim().to_owned())
            .unwrap_or_default();
        let entry = nodes.entry(found[1].to_owned()).or_default();
        if !label.is_empty() {
            *entry = label;
        }
        Ok(())
    };
    for line in lines {
        if line == "end"
            || ["direction ", "classDef ", "class ", "style ", "linkStyle "]
                .iter()
                .any(|k| line.starts_with(k))
        {
            continue;
        }
        if let Some(subgraph) = line.strip_prefix("subgraph ") {
            add(subgraph, &mut nodes)?;
            continue;
        }
        let without_labels = EDGE_LABEL.replace_all(line, " ");
        for part in ARROW.split(&without_labels) {
            for node in part.split('&') {
                add(node, &mut nodes)?;
            }
        }
    }
    Ok(nodes)
}

/// What is out of step between a diagram and the services it must show.
fn diagram_problems(shown: &str, code: &str, services: &BTreeSet<String>) -> Vec<String> {
    let nodes = match flowchart_nodes(code) {
        Ok(nodes) => nodes,
        Err(error) => return vec![format!("{shown}: {error}")],
    };
    let mut problems = Vec::new();
    for service in services {
        match nodes.get(service) {
            None => problems.push(format!("{shown}: the diagram has no node `{service}`, a service of this stage")),
            Some(label) if !label.is_empty() && !label.contains(service.as_str()) => problems.push(format!(
                "{shown}: node `{service}` is labelled \"{label}\"; the label must name the service"
            )),
            Some(_) => {}
        }
    }
    for id in nodes.keys() {
        let part_of_a_service = id
            .split_once('_')
            .is_some_and(|(owner, _)| services.contains(owner));
        if !(services.contains(id) || part_of_a_service || PARTICIPANTS.contains(&id.as_str())) {
            problems.push(format!(
                "{shown}: node `{id}` is not a compose service of this stage ({}), a part of one (`service_part`), or one of {PARTICIPANTS:?}",
                services.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    problems
}

fn page_problems(path: &Path, services: &BTreeSet<String>, must_open_with_it: bool) -> Vec<String> {
    let shown = path
        .strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string();
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{shown}: {e}"));
    let (blocks, opens_with_one) = mermaid_blocks(&text);
    let Some(first) = blocks.first() else {
        return vec![format!("{shown}: no mermaid diagram")];
    };
    let mut problems = diagram_problems(&shown, first, services);
    if must_open_with_it && !opens_with_one {
        problems.push(format!(
            "{shown}: the page must open with its diagram, right under the title"
        ));
    }
    problems
}

// ---- the checks ----------------------------------------------------------------------------

#[test]
fn every_lab_page_opens_with_the_diagram_of_its_stage() {
    let problems: Vec<String> = stages()
        .into_iter()
        .flat_map(|(stage, files)| page_problems(&lab_page(stage), &services(&files), true))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_readme_shows_the_whole_pipeline() {
    let all: BTreeSet<String> = stages()
        .iter()
        .flat_map(|(_, files)| services(files))
        .collect();
    let problems = page_problems(&workspace_root().join("README.md"), &all, false);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_diagram_check_rejects_what_it_should() {
    let services: BTreeSet<String> = ["app", "postgres", "lgtm"].map(String::from).into();
    let good = "flowchart LR\n  you[\"you\"] -->|HTTP| app[\"app (todo-api)\"]\n  app --> postgres[(\"postgres\")]\n  subgraph lgtm[\"lgtm (grafana/otel-lgtm)\"]\n    lgtm_otelcol[\"collector\"] --> lgtm_tempo[\"Tempo\"] & lgtm_loki[\"Loki\"]\n  end\n  app -.->|\"OTLP\"| lgtm_otelcol\n";
    assert_eq!(diagram_problems("p", good, &services), Vec::<String>::new());

    let missing = good.replace("  app --> postgres[(\"postgres\")]\n", "");
    assert_eq!(
        diagram_problems("p", &missing, &services),
        ["p: the diagram has no node `postgres`, a service of this stage"]
    );

    let stranger = format!("{good}  app --> jaeger[\"jaeger\"]\n");
    let problems = diagram_problems("p", &stranger, &services);
    assert!(
        problems.len() == 1 && problems[0].contains("node `jaeger` is not a compose service"),
        "{problems:?}"
    );

    let mislabelled = good.replace("app[\"app (todo-api)\"]", "app[\"todo-api\"]");
    let problems = diagram_problems("p", &mislabelled, &services);
    assert!(
        problems.len() == 1 && problems[0].contains("the label must name the service"),
        "{problems:?}"
    );

    let sequence = "sequenceDiagram\n  app->>postgres: SELECT\n";
    assert!(diagram_problems("p", sequence, &services)[0].contains("starts with `flowchart LR`"));
    let odd = format!("{good}  app ~~~ postgres\n");
    assert!(diagram_problems("p", &odd, &services)[0].contains("cannot read the node"));
}

#[test]
fn a_page_must_open_with_its_diagram() {
    let dir = tempfile::tempdir().expect("temp dir");
    let services: BTreeSet<String> = ["app"].map(String::from).into();
    let page = dir.path().join("README.md");
    fs::write(
        &page,
        "# Lab\n\n```mermaid\nflowchart LR\n  app[\"app\"]\n```\n\n## Goal\n",
    )
    .unwrap();
    assert_eq!(page_problems(&page, &services, true), Vec::<String>::new());
    fs::write(
        &page,
        "# Lab\n\nSome words first.\n\n```mermaid\nflowchart LR\n  app[\"app\"]\n```\n",
    )
    .unwrap();
    assert!(page_problems(&page, &services, true)[0].contains("must open with its diagram"));
    fs::write(&page, "# Lab\n\n```sh\njust lab-1\n```\n").unwrap();
    assert!(page_problems(&page, &services, true)[0].contains("no mermaid diagram"));
}
