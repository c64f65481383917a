//! flake.nix: Nix cannot fetch nixpkgs here, so its syntax is what can be checked.

use std::fs;
use std::path::Path;
use std::process::Command;

use lab_tests::workspace_root;

use crate::{assert_no_problems, assert_reported};

/// `nix-instantiate --parse` (Debian's nix-bin) reads the flake without evaluating it. CI
/// installs it; on a machine without it the check says so instead of passing silently.
fn nix_parse_problems(file: &Path) -> Option<Vec<String>> {
    let output = Command::new("nix-instantiate")
        .arg("--parse")
        .arg(file)
        .output()
        .ok()?;
    Some(if output.status.success() {
        Vec::new()
    } else {
        vec![format!(
            "{} does not parse: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )]
    })
}

#[test]
fn flake_parses() {
    match nix_parse_problems(&workspace_root().join("flake.nix")) {
        Some(problems) => assert_no_problems("flake.nix", &problems),
        None if std::env::var_os("CI").is_some() => {
            panic!("nix-instantiate is missing (apt-get install nix-bin)")
        }
        None => eprintln!(
            "SKIP flake.nix syntax: nix-instantiate not installed (apt-get install nix-bin)"
        ),
    }
}

#[test]
fn flake_check_rejects_what_it_should() {
    let broken =
        std::env::temp_dir().join(format!("otel-lab-broken-flake-{}.nix", std::process::id()));
    fs::write(&broken, "{ outputs = { self }: { ; }").unwrap();
    let problems = nix_parse_problems(&broken);
    fs::remove_file(&broken).unwrap();
    if let Some(problems) = problems {
        assert_reported(&problems, &["does not parse"]);
    }
}
