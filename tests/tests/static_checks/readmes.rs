//! The READMEs: their relative links, and the `just` commands they tell a learner to type.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;

use lab_tests::workspace_root;
use regex::Regex;
use serde_json::Value as Json;

use crate::{assert_no_problems, assert_reported, read};

fn readmes() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let entries =
            fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("readable directory entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if path.is_dir() {
                if !(name.starts_with('.')
                    || name == "target"
                    || name == "node_modules"
                    || name.starts_with("result"))
                {
                    walk(&path, found);
                }
            } else if name == "README.md" {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&workspace_root(), &mut found);
    found.sort();
    found
}

/// A Markdown file split into prose (for links) and code (fenced blocks and inline code
/// spans, where commands are).
struct Markdown {
    prose: String,
    code: Vec<String>,
}

static INLINE_CODE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"`([^`]+)`").expect("valid regex"));

fn split_markdown(text: &str) -> Markdown {
    let mut prose = String::new();
    let mut code = Vec::new();
    let mut fence: Option<&str> = None;
    let mut block = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        match fence {
            Some(marker) if trimmed.starts_with(marker) => {
                code.push(std::mem::take(&mut block));
                fence = None;
            }
            Some(_) => {
                block.push_str(line);
                block.push('\n');
            }
            None if trimmed.starts_with("```") || trimmed.starts_with("~~~") => {
                fence = Some(&trimmed[..3])
            }
            None => {
                code.extend(INLINE_CODE.captures_iter(line).map(|c| c[1].to_owned()));
                prose.push_str(&INLINE_CODE.replace_all(line, ""));
                prose.push('\n');
            }
        }
    }
    Markdown { prose, code }
}

static INLINE_LINK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)"#).expect("valid regex")
});
static REFERENCE_LINK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)").expect("valid regex")
});

fn link_problems(readme: &Path, repository: &Path, prose: &str) -> Vec<String> {
    let dir = readme.parent().expect("a README sits in a folder");
    let shown = readme
        .strip_prefix(repository)
        .unwrap_or(readme)
        .display()
        .to_string();
    let targets = INLINE_LINK
        .captures_iter(prose)
        .chain(REFERENCE_LINK.captures_iter(prose))
        .map(|c| c[1].to_owned());
    let mut problems = Vec::new();
    for target in targets {
        if target.contains("://") || target.starts_with("mailto:") || target.starts_with('#') {
            continue;
        }
        let path = target
            .split(['#', '?'])
            .next()
            .unwrap_or_default()
            .replace("%20", " ");
        let joined = match path.strip_prefix('/') {
            Some(from_root) => repository.join(from_root),
            None => dir.join(&path),
        };
        // Resolved by hand: canonicalize would fail on exactly the missing files we look for.
        let mut resolved = PathBuf::new();
        for component in joined.components() {
            match component {
                Component::ParentDir => {
                    resolved.pop();
                }
                Component::CurDir => {}
                other => resolved.push(other),
            }
        }
        if !resolved.starts_with(repository) {
            problems.push(format!(
                "{shown}: link {target} points outside the repository"
            ));
        } else if !resolved.exists() {
            problems.push(format!(
                "{shown}: link {target} points to a file that does not exist"
            ));
        }
    }
    problems
}

/// How many positional arguments a recipe takes; `None` as maximum for variadic ones.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Arity {
    min: usize,
    max: Option<usize>,
    /// Recipes with `--option` parameters take values that look like positional words.
    options: bool,
}

/// The recipes of the repository's justfile, from `just --dump --dump-format json`.
fn recipes() -> BTreeMap<String, Arity> {
    let output = Command::new("just")
        .args(["--dump", "--dump-format", "json"])
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `just` (is it installed? `.ci/run` installs it): {e}")
        });
    assert!(
        output.status.success(),
        "`just --dump` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dump: Json = serde_json::from_slice(&output.stdout)
        .expect("`just --dump --dump-format json` prints JSON");
    let mut recipes = BTreeMap::new();
    for (name, recipe) in dump["recipes"].as_object().into_iter().flatten() {
        let mut arity = Arity {
            min: 0,
            max: Some(0),
            options: false,
        };
        for parameter in recipe["parameters"].as_array().into_iter().flatten() {
            if parameter["long"].is_string()
                || parameter["short"].is_string()
                || parameter["flag"] == true
            {
                arity.options = true;
                continue;
            }
            let required = parameter["default"].is_null();
            match parameter["kind"].as_str() {
                Some("singular") => {
                    arity.min += usize::from(required);
                    arity.max = arity.max.map(|m| m + 1);
                }
                Some("plus") => {
                    arity.min += 1;
                    arity.max = None;
                }
                _ => arity.max = None,
            }
        }
        recipes.insert(name.clone(), arity);
    }
    for (alias, definition) in dump["aliases"].as_object().into_iter().flatten() {
        if let Some(arity) = definition["target"]
            .as_str()
            .and_then(|target| recipes.get(target))
            .copied()
        {
            recipes.insert(alias.clone(), arity);
        }
    }
    recipes
}

/// `just` invocations in a piece of code: (recipe, the words after it). Words that look
/// like `--options` count too: a recipe without parameters refuses them.
fn just_calls(code: &str) -> Vec<(String, Vec<String>)> {
    const SEPARATORS: [&str; 6] = ["&&", "||", ";", "|", ">", "2>&1"];
    let mut calls = Vec::new();
    for line in code.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for (i, word) in words.iter().enumerate() {
            if *word != "just" {
                continue;
            }
            let Some(recipe) = words.get(i + 1).filter(|w| !w.starts_with('-')) else {
                continue;
            };
            let args = words[i + 2..]
                .iter()
                .take_while(|w| !SEPARATORS.contains(w) && !w.starts_with('#'))
                .filter(|w| **w != "\\")
                .map(|w| w.trim_end_matches(';').to_owned())
                .collect();
            calls.push((recipe.trim_end_matches(';').to_owned(), args));
        }
    }
    calls
}

fn just_problems(shown: &str, code: &[String], recipes: &BTreeMap<String, Arity>) -> Vec<String> {
    let mut problems = Vec::new();
    for (recipe, args) in code.iter().flat_map(|c| just_calls(c)) {
        let command = format!("just {recipe} {}", args.join(" "))
            .trim_end()
            .to_owned();
        match recipes.get(&recipe) {
            None => problems.push(format!(
                "{shown}: `{command}`: the justfile has no recipe {recipe}"
            )),
            Some(arity) if arity.options => {}
            Some(arity)
                if args.len() < arity.min || arity.max.is_some_and(|max| args.len() > max) =>
            {
                let takes = match arity.max {
                    Some(max) if max == arity.min => format!("{max}"),
                    Some(max) => format!("{} to {max}", arity.min),
                    None => format!("at least {}", arity.min),
                };
                problems.push(format!(
                    "{shown}: `{command}`: {recipe} takes {takes} arguments, not {}",
                    args.len()
                ))
            }
            Some(_) => {}
        }
    }
    problems
}

#[test]
fn readme_links_in_the_repository() {
    let repository = workspace_root();
    let problems: Vec<String> = readmes()
        .iter()
        .flat_map(|readme| link_problems(readme, &repository, &split_markdown(&read(readme)).prose))
        .collect();
    assert_no_problems("README links", &problems);
}

#[test]
fn readme_just_commands_exist() {
    let recipes = recipes();
    let repository = workspace_root();
    let problems: Vec<String> = readmes()
        .iter()
        .flat_map(|readme| {
            let shown = readme
                .strip_prefix(&repository)
                .unwrap_or(readme)
                .display()
                .to_string();
            just_problems(&shown, &split_markdown(&read(readme)).code, &recipes)
        })
        .collect();
    assert_no_problems("`just` commands in READMEs", &problems);
}

#[test]
fn every_lab_has_a_readme() {
    let labs = workspace_root().join("labs");
    let expected = [
        "lab-1-app",
        "lab-2-lgtm",
        "lab-3-collector",
        "lab-4-dashboard",
        "lab-5-verify",
    ];
    let missing: Vec<String> = expected
        .iter()
        .filter(|lab| !labs.join(lab).join("README.md").is_file())
        .map(|lab| format!("labs/{lab}/README.md is missing"))
        .collect();
    assert_no_problems("lab folders", &missing);
}

#[test]
fn readme_checks_reject_what_they_should() {
    let repository = workspace_root();
    let readme = repository.join("labs/lab-1-app/README.md");
    let text = "\
See [the stack](../../stack/README.md), [gone](missing.md), [out](../../../elsewhere.md),
[web](https://grafana.com), [anchor](#goal) and `[in code](nowhere.md)`.

[ref]: ./also-missing.md

Run `just lab-9`, then:

```sh
just check 1 && just lab-2 container extra
just --list
just status --all   # a recipe without parameters refuses options too
```
";
    let markdown = split_markdown(text);
    let links = link_problems(&readme, &repository, &markdown.prose);
    assert_reported(&links, &["link missing.md", "does not exist"]);
    assert_reported(&links, &["link ./also-missing.md", "does not exist"]);
    assert_reported(&links, &["../../../elsewhere.md", "outside the repository"]);
    assert!(
        !links.iter().any(|p| p.contains("stack/README.md")),
        "{links:?}"
    );
    assert!(
        !links
            .iter()
            .any(|p| p.contains("nowhere.md") || p.contains("grafana.com") || p.contains("#goal"))
    );

    let recipes = BTreeMap::from([
        (
            "check".to_owned(),
            Arity {
                min: 1,
                max: Some(1),
                options: false,
            },
        ),
        (
            "lab-2".to_owned(),
            Arity {
                min: 0,
                max: Some(1),
                options: false,
            },
        ),
        (
            "status".to_owned(),
            Arity {
                min: 0,
                max: Some(0),
                options: false,
            },
        ),
    ]);
    let problems = just_problems("README.md", &markdown.code, &recipes);
    assert_reported(&problems, &["`just lab-9`", "no recipe lab-9"]);
    assert_reported(
        &problems,
        &[
            "`just lab-2 container extra`",
            "takes 0 to 1 arguments, not 2",
        ],
    );
    assert_reported(
        &problems,
        &["`just status --all`", "takes 0 arguments, not 1"],
    );
    assert!(
        !problems.iter().any(|p| p.contains("just check")),
        "{problems:?}"
    );
    assert_eq!(problems.len(), 3, "{problems:?}");
}
