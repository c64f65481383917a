//! The collector config (stack/collector/config.yaml) against the components the
//! builder manifest (stack/native/builder-config.yaml) builds.

use std::collections::{BTreeMap, BTreeSet};

use lab_tests::workspace_root;
use serde_norway::Value as Yaml;

use crate::compose::compose_files;
use crate::{assert_no_problems, assert_reported, parse_yaml, read, str_of};

const COMPONENT_KINDS: [&str; 5] = [
    "receivers",
    "processors",
    "exporters",
    "connectors",
    "extensions",
];

/// Builder modules whose component type is not the module name minus its kind suffix,
/// with the deprecated aliases the collector still accepts for them.
const MODULE_TYPES: &[(&str, &[&str])] = &[
    ("memorylimiterprocessor", &["memory_limiter"]),
    ("healthcheckextension", &["health_check"]),
    ("otlpexporter", &["otlp_grpc", "otlp"]),
    ("otlphttpexporter", &["otlp_http", "otlphttp"]),
    ("spanmetricsconnector", &["span_metrics", "spanmetrics"]),
];

fn module_types(module: &str, kind: &str) -> Vec<String> {
    let name = module.rsplit('/').next().unwrap_or(module);
    if let Some((_, types)) = MODULE_TYPES.iter().find(|(m, _)| *m == name) {
        return types.iter().map(|t| (*t).to_owned()).collect();
    }
    let suffix = kind.trim_end_matches('s'); // "receivers" -> "receiver"
    vec![name.strip_suffix(suffix).unwrap_or(name).to_owned()]
}

/// `collector_image` is the collector image of the compose stack, if any.
fn collector_problems(config: &Yaml, builder: &Yaml, collector_image: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(version) = builder.get("dist").and_then(|d| str_of(d.get("version"))) else {
        return vec!["builder-config.yaml: no dist.version".into()];
    };
    let mut provided: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for kind in COMPONENT_KINDS {
        for entry in builder
            .get(kind)
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
        {
            let Some((module, module_version)) =
                str_of(entry.get("gomod")).and_then(|g| g.split_once(' '))
            else {
                problems.push(format!(
                    "builder-config.yaml {kind}: entry without `gomod: <module> <version>`"
                ));
                continue;
            };
            if module_version.trim() != format!("v{version}") {
                problems.push(format!(
                    "builder-config.yaml: {module} is at {module_version}, not v{version} like the rest of the build"
                ));
            }
            provided
                .entry(kind)
                .or_default()
                .extend(module_types(module, kind));
        }
    }

    let mut defined: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for kind in COMPONENT_KINDS {
        for id in config
            .get(kind)
            .and_then(Yaml::as_mapping)
            .into_iter()
            .flatten()
            .filter_map(|(k, _)| k.as_str())
        {
            defined.entry(kind).or_default().insert(id.to_owned());
            let component_type = id.split('/').next().unwrap_or(id);
            if !provided
                .get(kind)
                .is_some_and(|types| types.contains(component_type))
            {
                problems.push(format!(
                    "config.yaml {kind}.{id}: type {component_type} is not built by builder-config.yaml (collector {version}); \
                     add its module or use a component that is"
                ));
            }
        }
    }

    // Pipelines may only name components defined above; connectors are both ends.
    let names = |kinds: &[&str]| -> BTreeSet<String> {
        kinds
            .iter()
            .flat_map(|k| defined.get(k).cloned().unwrap_or_default())
            .collect()
    };
    let service = config.get("service");
    for extension in service
        .and_then(|s| s.get("extensions"))
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
    {
        let extension = extension.as_str().unwrap_or("?");
        if !names(&["extensions"]).contains(extension) {
            problems.push(format!(
                "config.yaml service.extensions: {extension} is not defined under extensions"
            ));
        }
    }
    let pipelines = service
        .and_then(|s| s.get("pipelines"))
        .and_then(Yaml::as_mapping);
    if pipelines.is_none_or(|p| p.is_empty()) {
        problems.push("config.yaml: no service.pipelines".into());
    }
    for (pipeline, body) in pipelines.into_iter().flatten() {
        let pipeline = pipeline.as_str().unwrap_or("?");
        for (role, kinds) in [
            ("receivers", &["receivers", "connectors"][..]),
            ("processors", &["processors"][..]),
            ("exporters", &["exporters", "connectors"][..]),
        ] {
            let known = names(kinds);
            for id in body
                .get(role)
                .and_then(Yaml::as_sequence)
                .into_iter()
                .flatten()
            {
                let id = id.as_str().unwrap_or("?");
                if !known.contains(id) {
                    problems.push(format!(
                        "config.yaml pipeline {pipeline}: {role} names {id}, which is not defined"
                    ));
                }
            }
        }
    }

    match collector_image.and_then(|image| image.rsplit_once(':')) {
        Some((_, tag)) if tag == version => {}
        Some((_, tag)) => problems.push(format!(
            "the compose collector image is {tag} but the native build is {version}: the tests would check another collector than the lab runs"
        )),
        None => problems.push("no otel/opentelemetry-collector-contrib image in the compose stack".into()),
    }
    problems
}

fn compose_collector_image(files: &[(String, Yaml)]) -> Option<String> {
    files
        .iter()
        .filter_map(|(_, doc)| doc.get("services").and_then(Yaml::as_mapping))
        .flat_map(|services| services.values())
        .filter_map(|service| str_of(service.get("image")))
        .find(|image| image.starts_with("otel/opentelemetry-collector-contrib:"))
        .map(str::to_owned)
}

#[test]
fn collector_config_in_the_repository() {
    let stack = workspace_root().join("stack");
    let config = parse_yaml(
        "stack/collector/config.yaml",
        &read(&stack.join("collector/config.yaml")),
    );
    let builder = parse_yaml(
        "stack/native/builder-config.yaml",
        &read(&stack.join("native/builder-config.yaml")),
    );
    let image = compose_collector_image(&compose_files());
    assert_no_problems(
        "stack/collector/config.yaml vs stack/native/builder-config.yaml",
        &collector_problems(&config, &builder, image.as_deref()),
    );
}

#[test]
fn collector_check_rejects_what_it_should() {
    let builder = parse_yaml(
        "fixture",
        r#"
dist: {version: 0.159.0}
receivers:
  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver v0.159.0
processors:
  - gomod: go.opentelemetry.io/collector/processor/batchprocessor v0.158.0
exporters:
  - gomod: go.opentelemetry.io/collector/exporter/otlphttpexporter v0.159.0
connectors:
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/connector/spanmetricsconnector v0.159.0
"#,
    );
    let config = parse_yaml(
        "fixture",
        r#"
receivers: {otlp: {}, zipkin: {}}
processors: {batch: {}}
exporters: {otlphttp/lgtm: {}}
connectors: {spanmetrics: {}}
extensions: {health_check: {}}
service:
  extensions: [health_check, pprof]
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [otlphttp/lgtm, spanmetrics, debug]}
    metrics: {receivers: [spanmetrics], exporters: [otlphttp/lgtm]}
"#,
    );
    let problems = collector_problems(
        &config,
        &builder,
        Some("otel/opentelemetry-collector-contrib:0.139.0"),
    );
    assert_reported(&problems, &["receivers.zipkin", "not built"]);
    assert_reported(&problems, &["extensions.health_check", "not built"]);
    assert_reported(&problems, &["batchprocessor is at v0.158.0"]);
    assert_reported(&problems, &["service.extensions: pprof"]);
    assert_reported(&problems, &["pipeline traces: exporters names debug"]);
    assert_reported(&problems, &["image is 0.139.0", "native build is 0.159.0"]);
    // The deprecated aliases (otlphttp, spanmetrics) are still accepted names.
    assert!(
        !problems
            .iter()
            .any(|p| p.contains("otlphttp/lgtm: type") || p.contains("connectors.spanmetrics"))
    );
}
