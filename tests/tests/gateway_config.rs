//! Lab 6's collector files, read statically: the agent computes the span metrics exactly
//! as the lab collector of labs 3-5 does, and before anything leaves it; traces leave by
//! trace id; the gateways take nothing without TLS and the token and sample whole traces.
//! (The native tests run these files; this says why a change breaks them, in one line.)

use serde_norway::Value as Yaml;

fn read(path: &str) -> Yaml {
    let path = lab_tests::workspace_root().join(path);
    serde_norway::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strings(value: &Yaml) -> Vec<&str> {
    value
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Yaml::as_str)
        .collect()
}

fn problems(agent: &Yaml, gateway: &Yaml, lab_collector: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    if agent["connectors"]["span_metrics"] != lab_collector["connectors"]["span_metrics"] {
        problems.push("agent.yaml: span_metrics differs from config.yaml's (the RED numbers of labs 4-5 would change)".into());
    }
    let traces = &agent["service"]["pipelines"]["traces"];
    let exporters = strings(&traces["exporters"]);
    if !exporters.contains(&"span_metrics") {
        problems.push("agent.yaml: the traces pipeline does not feed span_metrics".into());
    }
    if strings(&traces["processors"])
        .iter()
        .any(|p| p.starts_with("tail_sampling") || p.starts_with("probabilistic"))
    {
        problems.push("agent.yaml: the agent samples: span_metrics must see every span".into());
    }
    for exporter in exporters.iter().filter(|e| e.starts_with("load_balancing")) {
        if agent["exporters"][*exporter]["routing_key"].as_str() != Some("traceID") {
            problems.push(format!(
                "agent.yaml: {exporter} does not route traces by traceID"
            ));
        }
    }
    if !exporters.iter().any(|e| e.starts_with("load_balancing")) {
        problems.push("agent.yaml: traces do not go through load_balancing".into());
    }
    for protocol in ["grpc", "http"] {
        let receiver = &gateway["receivers"]["otlp"]["protocols"][protocol];
        if receiver["tls"]["cert_file"].as_str().is_none() {
            problems.push(format!(
                "gateway.yaml: the OTLP {protocol} receiver does not require TLS"
            ));
        }
        if receiver["auth"]["authenticator"].as_str().is_none() {
            problems.push(format!(
                "gateway.yaml: the OTLP {protocol} receiver has no authenticator"
            ));
        }
    }
    if !strings(&gateway["service"]["pipelines"]["traces"]["processors"]).contains(&"tail_sampling")
    {
        problems.push("gateway.yaml: the traces pipeline has no tail_sampling".into());
    }
    problems
}

#[test]
fn agent_and_gateway_files_keep_the_lab_6_design() {
    let found = problems(
        &read("stack/collector/agent.yaml"),
        &read("stack/collector/gateway.yaml"),
        &read("stack/collector/config.yaml"),
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_design_check_rejects_what_it_should() {
    let agent = read("stack/collector/agent.yaml");
    let gateway = read("stack/collector/gateway.yaml");
    let lab = read("stack/collector/config.yaml");
    let edit = |doc: &Yaml, change: &dyn Fn(&mut Yaml)| {
        let mut copy = doc.clone();
        change(&mut copy);
        copy
    };
    let cases: [(Yaml, Yaml, &str); 5] = [
        (
            edit(&agent, &|a| {
                a["connectors"]["span_metrics"]["metrics_flush_interval"] = "60s".into()
            }),
            gateway.clone(),
            "span_metrics differs",
        ),
        (
            edit(&agent, &|a| {
                a["exporters"]["load_balancing"]["routing_key"] = "service".into()
            }),
            gateway.clone(),
            "does not route traces by traceID",
        ),
        (
            edit(&agent, &|a| {
                a["service"]["pipelines"]["traces"]["processors"] =
                    serde_norway::from_str("[memory_limiter, tail_sampling, batch]").unwrap()
            }),
            gateway.clone(),
            "the agent samples",
        ),
        (
            agent.clone(),
            edit(&gateway, &|g| {
                g["receivers"]["otlp"]["protocols"]["http"]["tls"] = Yaml::Null
            }),
            "OTLP http receiver does not require TLS",
        ),
        (
            agent.clone(),
            edit(&gateway, &|g| {
                g["receivers"]["otlp"]["protocols"]["grpc"]["auth"] = Yaml::Null
            }),
            "OTLP grpc receiver has no authenticator",
        ),
    ];
    for (agent, gateway, expected) in cases {
        let found = problems(&agent, &gateway, &lab);
        assert!(
            found.len() == 1 && found[0].contains(expected),
            "{expected}: {found:?}"
        );
    }
}
