//! The test kit: real servers on loopback for the workspace's tests.
//!
//! - [`postgres`]: a throwaway Postgres cluster (or `DATABASE_URL`), one fresh database
//!   per test;
//! - [`app`]: the real `todo-api` binary as a child process on a random port;
//! - [`otlp`]: an OTLP receiver (gRPC and HTTP/protobuf) that records what it gets;
//! - [`native`]: the native Prometheus, sink and lab collector, started through
//!   `stack/native/run.sh` on free loopback ports;
//! - [`process`]: child processes that die with the test process;
//! - [`proxy`]: a TCP proxy a test can cut, to take a dependency away;
//! - [`restartable_postgres`]: a cluster of one test's own, to stop and start again;
//! - [`lab_collector`]: the lab collector alone, to kill and start again;
//! - [`load`]: bounded concurrent load, latency percentiles, a process's resident memory.

pub mod app;
pub mod lab_collector;
pub mod load;
pub mod native;
pub mod otlp;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod restartable_postgres;

use std::path::PathBuf;

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}
