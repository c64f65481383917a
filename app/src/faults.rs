//! The lab's fault switch: extra latency and injected 5xx answers on chosen routes, so
//! that learners can watch the error-rate and p99 panels move. It is configured only from
//! the environment at start-up; no request can turn it on.

use std::time::Duration;

use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

use crate::{
    config::{in_range, parsed, var},
    problem::ApiError,
    routes::{MatchedRoute, RouteTable},
};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultSettings {
    /// Share (0.0..=1.0) of matching requests answered with an injected 500.
    pub error_rate: f64,
    /// Delay added before matching requests are handled.
    pub latency: Duration,
    /// Route templates the faults apply to; empty means every `/api/v1` route.
    pub routes: Vec<String>,
}

impl FaultSettings {
    pub fn from_env() -> anyhow::Result<Self> {
        let error_rate = parsed::<f64>("LAB_FAULT_ERROR_RATE")?.unwrap_or(0.0);
        Ok(Self {
            error_rate: in_range("LAB_FAULT_ERROR_RATE", error_rate, 0.0, 1.0)?,
            latency: Duration::from_millis(parsed("LAB_FAULT_LATENCY_MS")?.unwrap_or(0)),
            routes: var("LAB_FAULT_ROUTES")
                .map(|list| {
                    list.split(',')
                        .map(|route| route.trim().to_owned())
                        .filter(|route| !route.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// Refuses a `LAB_FAULT_ROUTES` entry that is not one of the service's route
    /// templates: a typo (`/todos/:id`) would otherwise leave the switch silently off.
    pub fn check_routes(&self, table: &RouteTable) -> anyhow::Result<()> {
        match self.routes.iter().find(|route| !table.has_template(route)) {
            None => Ok(()),
            Some(unknown) => anyhow::bail!(
                "LAB_FAULT_ROUTES: {unknown:?} is not a route of this service (routes: {})",
                table.templates().join(", ")
            ),
        }
    }

    pub fn is_active(&self) -> bool {
        self.error_rate > 0.0 || !self.latency.is_zero()
    }

    fn applies_to(&self, route: &str) -> bool {
        if self.routes.is_empty() {
            route.starts_with("/api/v1/")
        } else {
            self.routes.iter().any(|chosen| chosen == route)
        }
    }
}

pub struct Faults(pub FaultSettings);

impl<E: Endpoint> Middleware<E> for Faults {
    type Output = FaultsEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        FaultsEndpoint {
            inner,
            settings: self.0.clone(),
        }
    }
}

pub struct FaultsEndpoint<E> {
    inner: E,
    settings: FaultSettings,
}

impl<E: Endpoint> Endpoint for FaultsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        let selected = req
            .extensions()
            .get::<MatchedRoute>()
            .is_some_and(|route| self.settings.applies_to(route.template));
        if selected {
            if !self.settings.latency.is_zero() {
                tokio::time::sleep(self.settings.latency).await;
            }
            if self.settings.error_rate > 0.0 && rand::random::<f64>() < self.settings.error_rate {
                return Ok(ApiError::InjectedFault.into_response());
            }
        }
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_route_list_means_every_api_route() {
        let settings = FaultSettings {
            error_rate: 1.0,
            ..Default::default()
        };
        assert!(settings.applies_to("/api/v1/todos/{todo_id}"));
        assert!(settings.applies_to("/api/v1/todos"));
        assert!(!settings.applies_to("/health"));
    }

    #[test]
    fn explicit_routes_are_matched_exactly() {
        let settings = FaultSettings {
            error_rate: 1.0,
            routes: vec!["/api/v1/todos/{todo_id}".into()],
            ..Default::default()
        };
        assert!(settings.applies_to("/api/v1/todos/{todo_id}"));
        assert!(!settings.applies_to("/api/v1/todos"));
    }

    #[test]
    fn unknown_routes_are_refused_naming_the_variable() {
        let table = RouteTable::new(r#"{"paths": {"/api/v1/todos": {"get": {}}}}"#, &[]).unwrap();
        let settings = |route: &str| FaultSettings {
            routes: vec![route.into()],
            ..Default::default()
        };
        assert!(settings("/api/v1/todos").check_routes(&table).is_ok());
        let error = settings("/api/v1/todos/:id")
            .check_routes(&table)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("LAB_FAULT_ROUTES: \"/api/v1/todos/:id\""),
            "{error}"
        );
        assert!(!error.contains('\n'), "one line: {error}");
    }
}
