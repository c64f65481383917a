//! A Postgres cluster of one test's own, which the test can stop and start again on the
//! same port with its data kept - a database restart, which the shared cluster of
//! [`crate::postgres`] must never see.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::Context as _;

use crate::{
    postgres::{as_postgres, free_port, is_root, run, server_bin_dir},
    process::Server,
};

pub struct RestartablePostgres {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub url: String,
    port: u16,
    bin: PathBuf,
    /// Holds the data directory and the socket; removed on drop.
    dir: PathBuf,
    as_root: bool,
    server: Option<Server>,
}

impl RestartablePostgres {
    /// initdb into a temporary directory, then start the server on a free loopback port.
    pub fn start() -> anyhow::Result<Self> {
        let bin = server_bin_dir()?;
        let dir = std::env::temp_dir().join(format!("otel-lab-pg-own-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let as_root = is_root();
        if as_root {
            // Postgres refuses to run as root.
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(&dir))?;
        }
        run(as_postgres(as_root, &bin.join("initdb"))
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(dir.join("data")))?;
        let port = free_port()?;
        let mut cluster = Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            bin,
            dir,
            as_root,
            server: None,
        };
        cluster.start_again()?;
        Ok(cluster)
    }

    /// Starts the stopped server again, on the same port and data directory.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.server.is_none(), "the server is already running");
        let mut command = as_postgres(self.as_root, &self.bin.join("postgres"));
        command
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir);
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
        run(as_postgres(self.as_root, &self.bin.join("pg_ctl"))
            .args(["stop", "-m", "fast", "-w", "-t", "30", "-D"])
            .arg(self.dir.join("data")))
        .context("pg_ctl stop")?;
        // The wrapper shell has exited with the server; dropping it reaps it.
        self.server = None;
        Ok(started.elapsed())
    }
}

impl Drop for RestartablePostgres {
    fn drop(&mut self) {
        if self.server.is_some() {
            let _ = run(as_postgres(self.as_root, &self.bin.join("pg_ctl"))
                .args(["stop", "-m", "immediate", "-w", "-D"])
                .arg(self.dir.join("data")));
        }
        self.server = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
