//! Static checks of the lab's configuration: the compose stages, the collector config
//! against the components the tests build, the dashboard JSON, and the READMEs' links and
//! `just` commands. Nothing here starts a container; these checks catch, before a learner
//! does, the mistakes that otherwise only show up as an empty panel or a dead link.
//!
//! One module a kind of file. Each check is a function returning the problems it finds,
//! one sentence each. The `*_in_the_repository` tests run them on the real files; the
//! tests below those feed them small broken inputs, so every check is shown to fail when
//! it should. The helpers here are the ones every module uses.

mod collector;
mod compose;
mod dashboard_json;
mod flake;
mod readmes;

use std::fs;
use std::path::Path;

use serde_norway::Value as Yaml;

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn parse_yaml(name: &str, text: &str) -> Yaml {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"))
}

fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}:\n  - {}",
        problems.join("\n  - ")
    );
}

/// Asserts that some problem mentions every one of `needles`.
fn assert_reported(problems: &[String], needles: &[&str]) {
    assert!(
        problems
            .iter()
            .any(|p| needles.iter().all(|n| p.contains(n))),
        "expected a problem mentioning {needles:?}, got:\n  - {}",
        problems.join("\n  - ")
    );
}

fn str_of(value: Option<&Yaml>) -> Option<&str> {
    value.and_then(Yaml::as_str)
}
