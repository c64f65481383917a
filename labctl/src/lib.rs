//! labctl: the lab's traffic generator (`traffic`), pipeline verifier (`verify`) and
//! checkpoints (`check N`). The library is what the binary runs and what the workspace's
//! end-to-end test calls directly: the dashboard reader in [`dashboard`], the traffic
//! run in [`traffic`], the verification in [`verify`].

pub mod checks;
pub mod clock;
pub mod dashboard;
pub mod duration;
pub mod http;
pub mod lab;
pub mod loki;
pub mod pipeline_health;
pub mod plan;
pub mod probe;
pub mod prom;
pub mod propagation;
pub mod summary;
pub mod telemetry;
pub mod tempo;
pub mod text;
pub mod traffic;
pub mod verify;
