//! The workspace's own binaries (`labctl`, `todo-api`) for tests of another package,
//! refused when older than their sources: a stale binary would test yesterday's code.
//! `cargo test --workspace` builds every binary first.

use std::{
    path::{Path, PathBuf},
    time::SystemTime,
};

/// `target/debug/<name>`, checked against the newest file under `sources` (directories
/// relative to the workspace root).
pub fn fresh(name: &str, sources: &[&str]) -> PathBuf {
    let root = crate::workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let binary = target.join("debug").join(name);
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run `cargo build -p {name}` first",
                binary.display()
            )
        });
    if let Some((modified, path)) = newest(&root, sources) {
        assert!(
            modified <= built,
            "{} is older than {}: run `cargo build -p {name}` (or `cargo test --workspace`)",
            binary.display(),
            path.display()
        );
    }
    binary
}

fn newest(root: &Path, sources: &[&str]) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut pending: Vec<PathBuf> = sources.iter().map(|dir| root.join(dir)).collect();
    while let Some(path) = pending.pop() {
        let Ok(metadata) = std::fs::metadata(&path) else {
            continue;
        };
        if metadata.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.filter_map(|entry| entry.ok().map(|e| e.path())));
            }
        } else if let Ok(modified) = metadata.modified()
            && newest.as_ref().is_none_or(|(time, _)| modified > *time)
        {
            newest = Some((modified, path));
        }
    }
    newest
}
