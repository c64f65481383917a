//! A Postgres cluster of one test's own, which the test can stop and start again on the
//! same port with its data kept - a database restart, which the shared cluster of
//! [`crate::postgres`] must never see.

use std::time::Duration;

use anyhow::Context as _;

use crate::{
    postgres::{ClusterDir, free_port, run},
    process::Server,
};

pub struct RestartablePostgres {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub url: String,
    port: u16,
    /// Holds the data directory and the socket; removed on drop.
    cluster: ClusterDir,
    server: Option<Server>,
}

impl RestartablePostgres {
    /// initdb into a temporary directory, then start the server on a free loopback port.
    pub fn start() -> anyhow::Result<Self> {
        let cluster = ClusterDir::init("otel-lab-pg-own")?;
        let port = free_port()?;
        let mut cluster = Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            cluster,
            server: None,
        };
        cluster.start_again()?;
        Ok(cluster)
    }

    /// Starts the stopped server again, on the same port and data directory.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.server.is_none(), "the server is already running");
        let mut command = self.cluster.server_command(self.port);
        let (server, ()) = Server::start(&mut command, |line| {
            line.contains("ready to accept connections").then_some(())
        })?;
        self.server = Some(server);
        Ok(())
    }

    /// A fast shutdown (`pg_ctl stop -m fast`): open sessions are terminated, the last
    /// checkpoint is written, and the call returns once the server is gone.
    pub fn stop(&mut self) -> anyhow::Result<Duration> {
        let started = std::time::Instant::now();
        run(self
            .cluster
            .pg_ctl()
            .args(["stop", "-m", "fast", "-w", "-t", "30"]))
        .context("pg_ctl stop")?;
        // The wrapper shell has exited with the server; dropping it reaps it.
        self.server = None;
        Ok(started.elapsed())
    }
}

impl Drop for RestartablePostgres {
    fn drop(&mut self) {
        if self.server.is_some() {
            let _ = run(self
                .cluster
                .pg_ctl()
                .args(["stop", "-m", "immediate", "-w"]));
        }
        self.server = None;
        let _ = std::fs::remove_dir_all(&self.cluster.dir);
    }
}
