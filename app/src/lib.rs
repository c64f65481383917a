//! The otel-lab Todo service: a poem-openapi API on Postgres, observed with
//! OpenTelemetry from one place (`telemetry`) without telemetry code in the handlers.

pub mod api;
pub mod body_limit;
pub mod config;
pub mod faults;
pub mod head_timeout;
pub mod json_body;
pub mod problem;
pub mod routes;
pub mod startup;
pub mod telemetry;
pub mod text;
pub mod todos;
