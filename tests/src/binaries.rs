//! The workspace's binaries as cargo built them, for the tests that run them as child
//! processes (the end-to-end and fault tests, which cannot use `CARGO_BIN_EXE_*`: the
//! binaries belong to other packages).

use std::path::PathBuf;
use std::time::SystemTime;

use walkdir::WalkDir;

/// Cargo's target directory: `CARGO_TARGET_DIR`, else `target/` in the workspace root.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"))
}

/// The debug build of the workspace binary `name`; a missing one names the command
/// that builds it.
pub fn debug_binary(name: &str) -> PathBuf {
    let path = target_dir().join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p {name}` first",
        path.display()
    );
    path
}

/// [`debug_binary`], refused when older than any file under `sources` (paths relative to
/// the workspace root): a stale binary would test yesterday's code. `cargo test
/// --workspace` builds every binary first.
pub fn fresh_binary(name: &str, sources: &[&str]) -> PathBuf {
    let binary = debug_binary(name);
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    let root = crate::workspace_root();
    if let Some((modified, path)) = newest_file(sources.iter().map(|dir| root.join(dir))) {
        assert!(
            modified <= built,
            "{} is older than {}: run `cargo build -p {name}` (or `cargo test --workspace`)",
            binary.display(),
            path.display()
        );
    }
    binary
}

/// The most recently modified file below `dirs` (links followed, unreadable entries
/// skipped).
fn newest_file(dirs: impl Iterator<Item = PathBuf>) -> Option<(SystemTime, PathBuf)> {
    dirs.flat_map(|dir| WalkDir::new(dir).follow_links(true))
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_file())
        .filter_map(|entry| {
            let modified = entry.metadata().ok()?.modified().ok()?;
            Some((modified, entry.into_path()))
        })
        .max_by_key(|(modified, _)| *modified)
}

/// The arguments a seeded `labctl traffic` run starts with: `requests` requests at `rate`
/// per second against `base_url`, planned from `seed` (the kit cannot depend on labctl).
pub fn labctl_traffic_args(base_url: &str, seed: u64, requests: u64, rate: &str) -> Vec<String> {
    [
        "traffic",
        "--base-url",
        base_url,
        "--seed",
        &seed.to_string(),
        "--requests",
        &requests.to_string(),
        "--rate",
        rate,
    ]
    .map(str::to_owned)
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_file_is_found_in_nested_folders() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/old"), "").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.path().join("a/b/new"), "").unwrap();
        let (_, newest) = newest_file([dir.path().to_path_buf()].into_iter()).unwrap();
        assert_eq!(newest, dir.path().join("a/b/new"));
        assert!(newest_file([dir.path().join("missing")].into_iter()).is_none());
    }
}
