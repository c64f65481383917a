use std::process::ExitCode;

use todo_api::{config::Settings, startup, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One readable line (with its causes), not a panic trace.
            eprintln!("todo-api: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    // One process-wide rustls provider for any client that asks for the default (sqlx's
    // Postgres TLS); the exporters name theirs explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = Settings::from_env()?;
    // The gRPC exporter needs the Tokio runtime, so telemetry starts inside it.
    let telemetry = telemetry::init()?;
    startup::run(settings, telemetry).await
}
