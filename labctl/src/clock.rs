//! The wall clock as the backends' APIs take it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in seconds since the Unix epoch (Prometheus' `time` parameter).
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}
