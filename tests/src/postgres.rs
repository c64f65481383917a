//! A throwaway Postgres cluster for the tests (zero2prod style: a fresh database per
//! test), or the server `DATABASE_URL` points at.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use crate::process::Server;

/// The cluster shared by the tests of one test binary.
pub struct Cluster {
    /// `postgres://user@127.0.0.1:port` (no database).
    base_url: String,
    _server: Option<Server>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

impl Cluster {
    /// Starts the cluster on first use: initdb into a temporary directory, a random
    /// port on 127.0.0.1, trust authentication. With `DATABASE_URL` set, that server is
    /// used instead.
    pub fn shared() -> &'static Cluster {
        CLUSTER.get_or_init(|| {
            Self::start().unwrap_or_else(|error| panic!("test Postgres: {error:#}"))
        })
    }

    fn start() -> anyhow::Result<Self> {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            // Tests create their own databases next to the one named in the URL.
            let without_query = url.split('?').next().unwrap_or(&url);
            let authority_start = without_query.find("://").map_or(0, |i| i + 3);
            let base_url = match without_query[authority_start..].find('/') {
                Some(slash) => without_query[..authority_start + slash].to_owned(),
                None => without_query.to_owned(),
            };
            return Ok(Self {
                base_url,
                _server: None,
            });
        }
        let cluster = ClusterDir::init("otel-lab-pg")?;
        let port = free_port()?;
        let mut command = cluster.server_command(port);
        command.env("LAB_CLEANUP_DIR", &cluster.dir);
        let (server, ()) = Server::start(&mut command, |line| {
            line.contains("ready to accept connections").then_some(())
        })?;
        Ok(Self {
            base_url: format!("postgres://postgres@127.0.0.1:{port}"),
            _server: Some(server),
        })
    }

    /// Creates an empty database and returns its URL.
    pub fn fresh_database(&self) -> String {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let admin = format!("{}/postgres", self.base_url);
        let status = Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-d", &admin, "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .status()
            .expect("psql runs");
        assert!(status.success(), "CREATE DATABASE {name} failed");
        format!("{}/{name}", self.base_url)
    }

    /// The server's base URL, without a database.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The server's `host:port`.
    pub fn address(&self) -> &str {
        let authority = self.base_url.split("://").nth(1).unwrap_or(&self.base_url);
        authority.rsplit('@').next().unwrap_or(authority)
    }
}

/// A new cluster in a temporary directory: `initdb` with trust authentication, owned by
/// the `postgres` user when the tests run as root (Postgres refuses to run as root).
pub(crate) struct ClusterDir {
    /// Holds `data/` and the server's Unix socket.
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub as_root: bool,
}

impl ClusterDir {
    pub(crate) fn init(prefix: &str) -> anyhow::Result<Self> {
        let bin = server_bin_dir()?;
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let as_root = is_root();
        if as_root {
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
        Ok(Self { dir, bin, as_root })
    }

    /// The server on 127.0.0.1:`port`, tuned for tests (no fsync).
    pub(crate) fn server_command(&self, port: u16) -> Command {
        let mut command = as_postgres(self.as_root, &self.bin.join("postgres"));
        command
            .arg("-D")
            .arg(self.dir.join("data"))
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=300",
            ])
            .args(["-p", &port.to_string(), "-k"])
            .arg(&self.dir);
        command
    }

    /// `pg_ctl` of this cluster.
    pub(crate) fn pg_ctl(&self) -> Command {
        let mut command = as_postgres(self.as_root, &self.bin.join("pg_ctl"));
        command.arg("-D").arg(self.dir.join("data"));
        command
    }
}

/// Where `initdb` and `postgres` live: `PG_BIN`, then PATH, then Debian's layout.
fn server_bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Ok(dir.into());
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .filter(|dir| dir.join("initdb").exists())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no Postgres server found: install `postgresql` or set PG_BIN / DATABASE_URL"
            )
        })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}

fn as_postgres(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

pub(crate) fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command.output()?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

pub use crate::free_port;
