//! The READMEs: their relative links, and the `just` commands they tell a learner to type.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use lab_tests::workspace_root;
use pulldown_cmark::{Event, Parser, Tag, TagEnd};
use serde_json::Value as Json;
use walkdir::WalkDir;

use crate::{assert_no_problems, assert_reported, read};

/// Every README.md of the repository (build output and hidden folders aside).
fn readmes() -> Vec<PathBuf> {
    let skipped = |name: &str| {
        name.starts_with('.')
            || name == "target"
            || name == "node_modules"
            || name.starts_with("result")
    };
    let mut found: Vec<PathBuf> = WalkDir::new(workspace_root())
        .into_iter()
        .filter_entry(|entry| {
            entry.depth() == 0
                || !(entry.file_type().is_dir() && skipped(&entry.file_name().to_string_lossy()))
        })
        .map(|entry| entry.expect("readable directory entry"))
        .filter(|entry| entry.file_type().is_file() && entry.file_name() == "README.md")
        .map(|entry| entry.into_path())
        .collect();
    found.sort();
    found
}

/// A Markdown file as pulldown-cmark reads it: the targets of its links (inline,
/// reference and autolinks, images, and every reference definition, used or not) and its
/// code (fenced and indented blocks, inline code spans), where commands are. Code is
/// never read for links.
struct Markdown {
    links: Vec<String>,
    code: Vec<String>,
}

fn read_markdown(text: &str) -> Markdown {
    let parser = Parser::new(text);
    let mut links: Vec<String> = parser
        .reference_definitions()
        .iter()
        .map(|(_, definition)| definition.dest.to_string())
        .collect();
    let mut code = Vec::new();
    let mut block: Option<String> = None;
    for event in parser {
        match event {
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                links.push(dest_url.to_string())
            }
            Event::Start(Tag::CodeBlock(_)) => block = Some(String::new()),
            Event::End(TagEnd::CodeBlock) => code.extend(block.take()),
            Event::Text(text) if block.is_some() => block.get_or_insert_default().push_str(&text),
            Event::Code(text) => code.push(text.to_string()),
            _ => {}
        }
    }
    links.sort();
    links.dedup();
    Markdown { links, code }
}

fn link_problems(readme: &Path, repository: &Path, links: &[String]) -> Vec<String> {
    let dir = readme.parent().expect("a README sits in a folder");
    let shown = readme
        .strip_prefix(repository)
        .unwrap_or(readme)
        .display()
        .to_string();
    let mut problems = Vec::new();
    for target in links {
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
    let dump: Json = serde_json::from_str(&lab_tests::just(&["--dump", "--dump-format", "json"]))
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
        .flat_map(|readme| link_problems(readme, &repository, &read_markdown(&read(readme)).links))
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
            just_problems(&shown, &read_markdown(&read(readme)).code, &recipes)
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
[web](https://grafana.com), [anchor](#goal) and `[in code](nowhere.md)`. An
![image](missing.png), a link [across
lines](wrapped-missing.md) and one by [reference][ref].

[ref]: ./also-missing.md
[unused]: <./unused missing.md>

Run `just lab-9`, then:

```sh
just check 1 && just lab-2 container extra
just --list
just status --all   # a recipe without parameters refuses options too
# [in a fence](fenced.md)
```
";
    let markdown = read_markdown(text);
    let links = link_problems(&readme, &repository, &markdown.links);
    assert_reported(&links, &["link missing.md", "does not exist"]);
    assert_reported(&links, &["link ./also-missing.md", "does not exist"]);
    assert_reported(&links, &["../../../elsewhere.md", "outside the repository"]);
    assert_reported(&links, &["link missing.png", "does not exist"]);
    assert_reported(&links, &["link wrapped-missing.md", "does not exist"]);
    assert_reported(&links, &["link ./unused missing.md", "does not exist"]);
    assert!(
        !links.iter().any(|p| p.contains("stack/README.md")),
        "{links:?}"
    );
    assert!(!links.iter().any(|p| p.contains("nowhere.md")
        || p.contains("fenced.md")
        || p.contains("grafana.com")
        || p.contains("#goal")));

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
