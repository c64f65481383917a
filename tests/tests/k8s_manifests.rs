//! Lab 6 beyond one machine, checked statically: the Kubernetes manifests of stack/k8s/
//! (applied with `kubectl apply -k stack/`, whose kustomization.yaml builds the
//! ConfigMaps) parse into typed Kubernetes objects, every image is pinned to the image
//! compose runs, the ConfigMaps are made from the same collector files compose mounts,
//! and the agent's k8s resolver points at the gateways' headless Service. No cluster
//! runs here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, PodSpec, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::Deserialize;
use serde_norway::Value as Yaml;

fn root() -> std::path::PathBuf {
    lab_tests::workspace_root()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One typed object of a manifest.
enum Object {
    Service(Box<Service>),
    /// Namespace, ServiceAccount, Role, RoleBinding: parsed, nothing more to check.
    Other,
    Deployment(Box<Deployment>),
    StatefulSet(Box<StatefulSet>),
    DaemonSet(Box<DaemonSet>),
}

impl Object {
    fn pod_spec(&self) -> Option<(&str, &PodSpec)> {
        let (name, template) = match self {
            Self::Deployment(d) => (&d.metadata.name, d.spec.as_ref().map(|s| &s.template)),
            Self::StatefulSet(s) => (&s.metadata.name, s.spec.as_ref().map(|s| &s.template)),
            Self::DaemonSet(d) => (&d.metadata.name, d.spec.as_ref().map(|s| &s.template)),
            _ => return None,
        };
        Some((name.as_deref().unwrap_or("?"), template?.spec.as_ref()?))
    }
}

/// Every document of a multi-document YAML text, as typed objects; an unknown kind or a
/// field the type does not know (a typo) is a problem.
fn parse_objects(file: &str, text: &str) -> Result<Vec<Object>, String> {
    let mut objects = Vec::new();
    for document in serde_norway::Deserializer::from_str(text) {
        let value = Yaml::deserialize(document).map_err(|e| format!("{file}: {e}"))?;
        if value.is_null() {
            continue;
        }
        let kind = value["kind"].as_str().unwrap_or_default().to_owned();
        fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(
            file: &str,
            value: Yaml,
        ) -> Result<Box<T>, String> {
            let object: T =
                serde_norway::from_value(value.clone()).map_err(|e| format!("{file}: {e}"))?;
            // The types skip fields they do not know: written back, such a field (a typo,
            // a field of another API version) is missing.
            let written = serde_norway::to_value(&object).map_err(|e| format!("{file}: {e}"))?;
            let mut unknown = Vec::new();
            unknown_fields(&value, &written, String::new(), &mut unknown);
            if unknown.is_empty() {
                Ok(Box::new(object))
            } else {
                Err(format!(
                    "{file}: fields the Kubernetes API does not have: {}",
                    unknown.join(", ")
                ))
            }
        }
        objects.push(match kind.as_str() {
            "Namespace" => typed::<Namespace>(file, value).map(|_| Object::Other)?,
            "Service" => Object::Service(typed(file, value)?),
            "ServiceAccount" => typed::<ServiceAccount>(file, value).map(|_| Object::Other)?,
            "Role" => typed::<Role>(file, value).map(|_| Object::Other)?,
            "RoleBinding" => typed::<RoleBinding>(file, value).map(|_| Object::Other)?,
            "Deployment" => Object::Deployment(typed(file, value)?),
            "StatefulSet" => Object::StatefulSet(typed(file, value)?),
            "DaemonSet" => Object::DaemonSet(typed(file, value)?),
            other => {
                return Err(format!(
                    "{file}: kind `{other}` is not one this check reads"
                ));
            }
        });
    }
    Ok(objects)
}

/// Paths of `original` that `written` (the typed object serialized again) lacks.
fn unknown_fields(original: &Yaml, written: &Yaml, path: String, found: &mut Vec<String>) {
    match (original, written) {
        (Yaml::Mapping(a), Yaml::Mapping(b)) => {
            for (key, value) in a {
                let name = format!("{path}.{}", key.as_str().unwrap_or("?"));
                match b.get(key) {
                    Some(other) => unknown_fields(value, other, name, found),
                    None => found.push(name),
                }
            }
        }
        (Yaml::Sequence(a), Yaml::Sequence(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                unknown_fields(x, y, format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

/// `name:tag`, with a tag that is a version: not missing, not `latest`.
fn image_problem(at: &str, image: &str, pinned: &BTreeSet<String>) -> Option<String> {
    let tag = image
        .rsplit_once(':')
        .map(|(_, tag)| tag)
        .filter(|t| !t.contains('/'));
    match tag {
        None => Some(format!("{at}: image `{image}` has no tag")),
        Some("latest") => Some(format!("{at}: image `{image}` is not pinned (latest)")),
        Some(_) if !pinned.contains(image) => Some(format!(
            "{at}: image `{image}` is not one compose runs ({pinned:?})"
        )),
        Some(_) => None,
    }
}

/// Images of the compose stages, pinned ones only (a locally built image has no place
/// in a cluster manifest).
fn compose_images() -> BTreeSet<String> {
    let mut images = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("stack")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("compose") && name.ends_with(".yaml") {
            let doc: Yaml = serde_norway::from_str(&read(&path)).unwrap();
            for service in doc["services"]
                .as_mapping()
                .into_iter()
                .flat_map(|m| m.values())
            {
                if let Some(image) = service["image"].as_str()
                    && !image.ends_with(":local")
                {
                    images.insert(image.to_owned());
                }
            }
        }
    }
    images
}

/// The problems of a set of manifests: typed parse, images, probes.
fn manifest_problems(
    files: &[(String, String)],
    pinned: &BTreeSet<String>,
) -> (Vec<Object>, Vec<String>) {
    let mut problems = Vec::new();
    let mut all = Vec::new();
    for (file, text) in files {
        match parse_objects(file, text) {
            Ok(objects) => all.extend(objects),
            Err(problem) => problems.push(problem),
        }
    }
    for (workload, spec) in all.iter().filter_map(Object::pod_spec) {
        for container in &spec.containers {
            let at = format!("{workload}/{}", container.name);
            match container.image.as_deref() {
                Some(image) => problems.extend(image_problem(&at, image, pinned)),
                None => problems.push(format!("{at}: no image")),
            }
            if container.readiness_probe.is_none() {
                problems.push(format!("{at}: no readinessProbe"));
            }
        }
    }
    (all, problems)
}

fn kustomization() -> Yaml {
    serde_norway::from_str(&read(&root().join("stack/kustomization.yaml"))).unwrap()
}

fn strings(value: &Yaml) -> Vec<String> {
    value
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn manifests_parse_into_typed_objects_with_pinned_images() {
    let resources = strings(&kustomization()["resources"]);
    assert!(
        !resources.is_empty(),
        "kustomization.yaml lists no resources"
    );
    let files: Vec<(String, String)> = resources
        .iter()
        .map(|r| (r.clone(), read(&root().join("stack").join(r))))
        .collect();
    let pinned = compose_images();
    let (objects, problems) = manifest_problems(&files, &pinned);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let kinds: BTreeSet<&str> = objects
        .iter()
        .map(|o| match o {
            Object::DaemonSet(_) => "DaemonSet",
            Object::StatefulSet(_) => "StatefulSet",
            Object::Service(_) => "Service",
            _ => "other",
        })
        .collect();
    assert!(
        ["DaemonSet", "StatefulSet", "Service"]
            .iter()
            .all(|k| kinds.contains(k)),
        "the agent DaemonSet, gateway StatefulSet and their Service: {kinds:?}"
    );
}

#[test]
fn configmaps_are_made_from_the_files_compose_mounts() {
    let generated: BTreeMap<String, Vec<String>> = kustomization()["configMapGenerator"]
        .as_sequence()
        .expect("a configMapGenerator")
        .iter()
        .map(|g| (g["name"].as_str().unwrap().to_owned(), strings(&g["files"])))
        .collect();
    let compose = read(&root().join("stack/compose.gateway.yaml"));
    for (config_map, file) in [
        ("lab-agent-config", "collector/agent.yaml"),
        ("lab-gateway-config", "collector/gateway.yaml"),
    ] {
        assert!(
            generated
                .get(config_map)
                .is_some_and(|files| files.iter().any(|f| f == file)),
            "ConfigMap {config_map} is made from stack/{file}: {generated:?}"
        );
        assert!(
            compose.contains(&format!("./{file}:/etc/otelcol-contrib/config.yaml")),
            "compose.gateway.yaml mounts the same stack/{file}"
        );
    }
    // Each workload loads the keys of its ConfigMap: the files' base names.
    let text = read(&root().join("stack/k8s/agent.yaml"));
    for key in &generated["lab-agent-config"] {
        let name = Path::new(key).file_name().unwrap().to_string_lossy();
        assert!(
            text.contains(&format!("--config=/conf/{name}")),
            "the agent loads {name}"
        );
    }
    let text = read(&root().join("stack/k8s/gateway.yaml"));
    assert!(
        text.contains("--config=/conf/gateway.yaml"),
        "the gateways load gateway.yaml"
    );
}

#[test]
fn the_agent_resolves_the_gateways_through_their_headless_service() {
    let (objects, _) = manifest_problems(
        &[(
            "k8s/gateway.yaml".into(),
            read(&root().join("stack/k8s/gateway.yaml")),
        )],
        &compose_images(),
    );
    let service = objects
        .iter()
        .find_map(|o| match o {
            Object::Service(s) => Some(s),
            _ => None,
        })
        .expect("the gateway Service");
    let spec = service.spec.as_ref().unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"), "headless");
    let grpc_port = spec
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("otlp-grpc"))
        .expect("an otlp-grpc port")
        .port;
    let statefulset = objects
        .iter()
        .find_map(|o| match o {
            Object::StatefulSet(s) => Some(s),
            _ => None,
        })
        .expect("the gateway StatefulSet");
    let set_spec = statefulset.spec.as_ref().unwrap();
    assert_eq!(set_spec.service_name, service.metadata.name);
    assert_eq!(set_spec.replicas, Some(2), "two gateways, as in compose");

    let overlay: Yaml =
        serde_norway::from_str(&read(&root().join("stack/k8s/agent-k8s.yaml"))).unwrap();
    let namespace = kustomization()["namespace"].as_str().unwrap().to_owned();
    let expected = format!("{}.{namespace}", service.metadata.name.as_deref().unwrap());
    for exporter in ["load_balancing", "load_balancing/metrics"] {
        let resolver = &overlay["exporters"][exporter]["resolver"];
        assert!(
            resolver["static"].is_null(),
            "{exporter}: the static list is switched off"
        );
        assert_eq!(
            resolver["k8s"]["service"].as_str(),
            Some(expected.as_str()),
            "{exporter}"
        );
        assert_eq!(
            resolver["k8s"]["ports"]
                .as_sequence()
                .map(|p| p.iter().filter_map(Yaml::as_i64).collect::<Vec<_>>()),
            Some(vec![i64::from(grpc_port)]),
            "{exporter}: the Service's gRPC port"
        );
    }
    // The pod names the resolver returns (return_hostnames) are in the certificate.
    let certs = read(&root().join("stack/collector/make-certs.sh"));
    assert!(
        certs.contains(&format!("DNS:*.{expected}")),
        "make-certs.sh covers *.{expected}"
    );
}

#[test]
fn the_manifest_check_rejects_what_it_should() {
    let pinned: BTreeSet<String> =
        ["otel/opentelemetry-collector-contrib:0.159.0".to_owned()].into();
    let good = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers:\n        - name: c\n          image: otel/opentelemetry-collector-contrib:0.159.0\n          readinessProbe: {httpGet: {path: /, port: 13133}}\n";
    let check = |text: &str| manifest_problems(&[("f.yaml".into(), text.into())], &pinned).1;
    assert_eq!(check(good), Vec::<String>::new());
    let latest = good.replace(":0.159.0", ":latest");
    assert!(
        check(&latest)[0].contains("not pinned"),
        "{:?}",
        check(&latest)
    );
    let untagged = good.replace(":0.159.0", "");
    assert!(check(&untagged)[0].contains("has no tag"));
    let other = good.replace("0.159.0", "0.150.0");
    assert!(check(&other)[0].contains("not one compose runs"));
    let no_probe = good.replace(
        "          readinessProbe: {httpGet: {path: /, port: 13133}}\n",
        "",
    );
    assert!(check(&no_probe)[0].contains("no readinessProbe"));
    let typo = good.replace("readinessProbe:", "readinesProbe:");
    assert!(
        check(&typo).iter().any(|p| p.contains("fields the Kubernetes API does not have: .spec.template.spec.containers[0].readinesProbe")),
        "{:?}",
        check(&typo)
    );
    let unknown = good.replace("kind: Deployment", "kind: CronTab");
    assert!(check(&unknown)[0].contains("not one this check reads"));
}

/// The real collector (built from the builder manifest) merges agent-k8s.yaml over
/// agent.yaml as the DaemonSet's two `--config` flags do: the static list is gone, the
/// k8s resolver is in, everything else is the compose agent's.
#[test]
fn the_collector_merges_the_kubernetes_overlay_as_intended() {
    let dir = tempfile::tempdir().unwrap();
    lab_tests::gateway::make_certs(dir.path()).unwrap();
    let certs = |file: &str| dir.path().join(file).display().to_string();
    let (ca, token) = (certs("ca.crt"), certs("token"));
    let environment = [
        ("LAB_GATEWAY_CA_FILE", ca.as_str()),
        ("LAB_GATEWAY_TOKEN_FILE", token.as_str()),
    ];
    let agent = root().join("stack/collector/agent.yaml");
    let overlay = root().join("stack/k8s/agent-k8s.yaml");
    let parse =
        |text: String| -> Yaml { serde_norway::from_str(&text).expect("print-config prints YAML") };
    let compose = parse(lab_tests::gateway::print_config(&[&agent], &environment).unwrap());
    let k8s = parse(lab_tests::gateway::print_config(&[&agent, &overlay], &environment).unwrap());
    for exporter in ["load_balancing", "load_balancing/metrics"] {
        let resolver = &k8s["exporters"][exporter]["resolver"];
        assert!(resolver["static"].is_null(), "{exporter}: {resolver:?}");
        assert_eq!(
            resolver["k8s"]["service"].as_str(),
            Some("lab-gateway.otel-lab")
        );
        assert!(compose["exporters"][exporter]["resolver"]["k8s"].is_null());
        // The OTLP settings to each gateway (TLS, auth, queue) are the compose agent's.
        assert_eq!(
            k8s["exporters"][exporter]["protocol"], compose["exporters"][exporter]["protocol"],
            "{exporter}"
        );
    }
    assert_eq!(
        k8s["service"], compose["service"],
        "the same pipelines and telemetry"
    );
    assert_eq!(k8s["receivers"], compose["receivers"]);
    assert_eq!(k8s["processors"], compose["processors"]);
}
