//! Tempo in the pinned otel-lgtm ends every search `query_end_cutoff` (30 s) before now
//! (labctl::tempo::QUERY_END_CUTOFF says where that comes from). A dashboard panel that
//! searches Tempo up to "now" would show an empty last half minute without saying why,
//! so every Tempo panel of the overview dashboard shifts its range back by at least the
//! cutoff - Grafana then prints "timeshift -30s" on the panel - and its description
//! tells the reader.

use std::fs;

use lab_tests::workspace_root;
use labctl::duration;
use labctl::tempo::QUERY_END_CUTOFF;
use serde_json::Value as Json;

fn tempo_panel_problems(dashboard: &Json) -> Vec<String> {
    let mut panels: Vec<&Json> = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        panels.push(panel);
        panels.extend(panel["panels"].as_array().into_iter().flatten());
    }
    let mut problems = Vec::new();
    // A service map does not search Tempo: Grafana reads the generator's series from
    // Prometheus, which has no such cutoff.
    let searches = |panel: &&Json| {
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        targets.is_empty()
            || !targets
                .iter()
                .all(|target| target["queryType"] == "serviceMap")
    };
    for panel in panels
        .into_iter()
        .filter(|p| p["datasource"]["type"] == "tempo")
        .filter(searches)
    {
        let title = panel["title"].as_str().unwrap_or("?");
        match panel["timeShift"].as_str().map(duration::parse) {
            Some(Ok(shift)) if shift >= QUERY_END_CUTOFF => {}
            Some(Ok(shift)) => problems.push(format!(
                "panel \"{title}\": timeShift {shift:?} is shorter than Tempo's query_end_cutoff ({QUERY_END_CUTOFF:?})"
            )),
            Some(Err(error)) => problems.push(format!("panel \"{title}\": timeShift: {error}")),
            None => problems.push(format!(
                "panel \"{title}\" searches Tempo up to now, but Tempo answers only up to {QUERY_END_CUTOFF:?} \
                 before now: set \"timeShift\": \"{}\"",
                duration::format(QUERY_END_CUTOFF)
            )),
        }
        let description = panel["description"].as_str().unwrap_or_default();
        if !description.contains("query_end_cutoff") {
            problems.push(format!(
                "panel \"{title}\": its description should say why it lags (query_end_cutoff)"
            ));
        }
    }
    problems
}

#[test]
fn the_tempo_panels_account_for_the_cutoff() {
    let path = workspace_root().join("dashboards/todo-api-overview.json");
    let dashboard: Json = serde_json::from_str(&fs::read_to_string(&path).expect("dashboard"))
        .expect("dashboard JSON");
    let problems = tempo_panel_problems(&dashboard);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let tempo_panels = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|p| p["datasource"]["type"] == "tempo")
        .count();
    assert!(tempo_panels > 0, "the dashboard lost its Tempo panels");
}

#[test]
fn the_cutoff_check_rejects_what_it_should() {
    let panel = |extra: Json| {
        let mut panel = serde_json::json!({
            "title": "Recent requests",
            "datasource": {"type": "tempo", "uid": "tempo"},
            "description": "shifted: Tempo's query_end_cutoff",
        });
        panel
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::json!({ "panels": [panel] })
    };
    assert_eq!(
        tempo_panel_problems(&panel(serde_json::json!({"timeShift": "30s"}))),
        Vec::<String>::new()
    );
    assert_eq!(
        tempo_panel_problems(&panel(serde_json::json!({"timeShift": "1m"}))),
        Vec::<String>::new()
    );

    let unshifted = tempo_panel_problems(&panel(serde_json::json!({})));
    assert!(
        unshifted.len() == 1 && unshifted[0].contains("searches Tempo up to now"),
        "{unshifted:?}"
    );
    let short = tempo_panel_problems(&panel(serde_json::json!({"timeShift": "10s"})));
    assert!(
        short.len() == 1 && short[0].contains("shorter than Tempo's query_end_cutoff"),
        "{short:?}"
    );
    let silent = tempo_panel_problems(&panel(
        serde_json::json!({"timeShift": "30s", "description": "recent traces"}),
    ));
    assert!(
        silent.len() == 1 && silent[0].contains("should say why"),
        "{silent:?}"
    );
    // A service map reads Prometheus, not Tempo's search.
    let service_map = panel(serde_json::json!({"targets": [{"queryType": "serviceMap"}]}));
    assert!(tempo_panel_problems(&service_map).is_empty());
    let mixed = panel(
        serde_json::json!({"targets": [{"queryType": "serviceMap"}, {"queryType": "traceql"}]}),
    );
    assert_eq!(tempo_panel_problems(&mixed).len(), 1);
    // Only Tempo panels are held to it.
    let prometheus =
        serde_json::json!({"panels": [{"title": "rate", "datasource": {"type": "prometheus"}}]});
    assert!(tempo_panel_problems(&prometheus).is_empty());
}
