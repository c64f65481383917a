//! Bounded concurrent load for the fault tests: a few workers send requests back to back
//! until the load is stopped, its time is up or its request budget is spent - whichever
//! comes first - and every request's outcome and latency is kept. Plus the resident
//! memory of a process, read from `/proc`.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

/// Both bounds hold: a load never runs longer than `duration` nor sends more than
/// `max_requests`, whatever happens to the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub workers: usize,
    pub duration: Duration,
    pub max_requests: usize,
}

/// One request: when it started (since the load started), how long it took, what it gave.
#[derive(Debug, Clone)]
pub struct Sample<T> {
    pub started: Duration,
    pub latency: Duration,
    pub outcome: T,
}

/// A running load; [`Load::finish`] stops it and returns every sample.
pub struct Load<T> {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Sample<T>>>>,
}

impl<T: Send + 'static> Load<T> {
    /// Starts `limits.workers` workers; each calls `request(n)` (n counts requests across
    /// all workers) and awaits it before sending the next.
    pub fn start<F, Fut>(limits: Limits, request: F) -> Self
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = T> + Send,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let request = Arc::new(request);
        let begun = Instant::now();
        let deadline = begun + limits.duration;
        let tasks = (0..limits.workers)
            .map(|_| {
                let (stop, sent, request) = (stop.clone(), sent.clone(), request.clone());
                tokio::spawn(async move {
                    let mut samples = Vec::new();
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let n = sent.fetch_add(1, Ordering::Relaxed);
                        if n >= limits.max_requests {
                            break;
                        }
                        let started = Instant::now();
                        let outcome = request(n).await;
                        samples.push(Sample {
                            started: started - begun,
                            latency: started.elapsed(),
                            outcome,
                        });
                    }
                    samples
                })
            })
            .collect();
        Self { stop, tasks }
    }

    /// Runs a load for its whole `duration` (or budget) and returns its samples.
    pub async fn run<F, Fut>(limits: Limits, request: F) -> Vec<Sample<T>>
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = T> + Send,
    {
        Self::start(limits, request).join().await
    }

    /// Lets the requests in flight finish, sends no more, and returns every sample in
    /// start order.
    pub async fn finish(self) -> Vec<Sample<T>> {
        self.stop.store(true, Ordering::Relaxed);
        self.join().await
    }

    /// Waits for the load to reach one of its limits; returns every sample in start order.
    pub async fn join(self) -> Vec<Sample<T>> {
        let mut samples = Vec::new();
        for task in self.tasks {
            samples.extend(task.await.expect("load worker panicked"));
        }
        samples.sort_by_key(|sample| sample.started);
        samples
    }
}

/// The `p`-th percentile (0 < p <= 100, nearest rank) of the samples' latencies.
pub fn percentile<T>(samples: &[Sample<T>], p: f64) -> Duration {
    assert!(!samples.is_empty(), "no samples to take a percentile of");
    let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    latencies.sort();
    let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
    latencies[rank.clamp(1, latencies.len()) - 1]
}

/// Resident memory of a process in KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|error| panic!("reading /proc/{pid}/status: {error}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}
