//! Settings read from the environment, with defaults that match the lab's stack.

use std::{env, time::Duration};

use anyhow::{Context, bail};

use crate::faults::FaultSettings;

pub const DEFAULT_DATABASE_URL: &str = "postgres://todouser:todopass@127.0.0.1:5432/tododb";

#[derive(Debug, Clone)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub database_url: String,
    pub database_max_connections: u32,
    /// How long start-up keeps retrying an unreachable database before giving up.
    pub database_connect_timeout: Duration,
    /// How long in-flight requests get to finish after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    pub faults: FaultSettings,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            host: var("APP_HOST").unwrap_or_else(|| "127.0.0.1".to_owned()),
            port: parsed("PORT")?.unwrap_or(8000),
            database_url: var("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
            database_max_connections: parsed("DATABASE_MAX_CONNECTIONS")?.unwrap_or(10),
            database_connect_timeout: Duration::from_secs(
                parsed("DATABASE_CONNECT_TIMEOUT_SECS")?.unwrap_or(30),
            ),
            shutdown_grace: Duration::from_secs(parsed("SHUTDOWN_GRACE_SECS")?.unwrap_or(10)),
            faults: FaultSettings::from_env()?,
        })
    }
}

/// An environment variable, treating an empty value like an absent one.
pub(crate) fn var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|value| !value.trim().is_empty())
}

pub(crate) fn parsed<T>(name: &str) -> anyhow::Result<Option<T>>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match var(name) {
        None => Ok(None),
        Some(raw) => raw
            .trim()
            .parse()
            .map(Some)
            .with_context(|| format!("{name}={raw:?} is not valid")),
    }
}

/// Rejects a value outside `range` with the variable's name in the message.
pub(crate) fn in_range<T: PartialOrd + std::fmt::Display>(
    name: &str,
    value: T,
    low: T,
    high: T,
) -> anyhow::Result<T> {
    if value < low || value > high {
        bail!("{name}={value} is out of range ({low}..={high})");
    }
    Ok(value)
}
