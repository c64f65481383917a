//! Route resolution: which route template (`/api/v1/todos/{todo_id}`) a request path
//! belongs to, found once per request by [`ResolveRoute`] and stored in the request's
//! extensions for every middleware that needs it (telemetry, the fault switch, the
//! problem documents and their `Allow` header).
//!
//! poem-openapi registers `/todos/{todo_id}` internally as `/todos/:param0`, so the
//! router's matched pattern is not the template a learner sees in Swagger UI. The
//! templates are taken from the OpenAPI document itself, which is the contract, and
//! matched with `matchit`, which reads the same `{parameter}` syntax.

use std::sync::Arc;

use anyhow::Context as _;
use poem::{Endpoint, Middleware, Request, Result};

/// The route a request matched, stored in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchedRoute {
    /// The template, e.g. `/api/v1/todos/{todo_id}` (the `http.route` attribute).
    pub template: &'static str,
    /// The methods the route serves, as an `Allow` header value.
    pub allow: &'static str,
}

#[derive(Debug, Clone)]
pub struct RouteTable {
    router: matchit::Router<MatchedRoute>,
    templates: Vec<&'static str>,
}

impl RouteTable {
    /// Builds the table from the OpenAPI document's `paths` plus routes served outside it.
    pub fn new(openapi_json: &str, extra_routes: &[&str]) -> anyhow::Result<Self> {
        let document: serde_json::Value = serde_json::from_str(openapi_json)?;
        let paths = document["paths"]
            .as_object()
            .ok_or_else(|| anyhow::anyhow!("the OpenAPI document has no paths"))?;
        let documented = paths.iter().map(|(template, operations)| {
            let methods = operations.as_object().map(|ops| {
                ops.keys()
                    .map(|method| method.to_uppercase())
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            (template.clone(), methods.unwrap_or_default())
        });
        let extra = extra_routes
            .iter()
            .map(|route| ((*route).to_owned(), "GET".to_owned()));
        let mut table = Self {
            router: matchit::Router::new(),
            templates: Vec::new(),
        };
        for (template, allow) in documented.chain(extra) {
            // Leaked once at start-up so that spans and metrics can borrow the names.
            let route = MatchedRoute {
                template: Box::leak(template.into_boxed_str()),
                allow: Box::leak(allow.into_boxed_str()),
            };
            // matchit prefers static segments over parameters: `/todos/stats` before
            // `/todos/{todo_id}`, whatever the order of insertion.
            table
                .router
                .insert(route.template, route)
                .with_context(|| format!("route template {}", route.template))?;
            table.templates.push(route.template);
        }
        Ok(table)
    }

    /// The template that `path` matches, if any. Empty segments and a trailing slash are
    /// ignored, as the router ignores them.
    pub fn find(&self, path: &str) -> Option<MatchedRoute> {
        let normalized;
        let path = if path.len() > 1 && (path.ends_with('/') || path.contains("//")) {
            let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            normalized = format!("/{}", segments.join("/"));
            normalized.as_str()
        } else {
            path
        };
        self.router.at(path).ok().map(|matched| *matched.value)
    }

    /// Whether `template` is one of the service's route templates.
    pub fn has_template(&self, template: &str) -> bool {
        self.templates.contains(&template)
    }

    /// Every route template, in the order of the OpenAPI document.
    pub fn templates(&self) -> &[&'static str] {
        &self.templates
    }
}

/// Resolves the route of every request and stores it as a [`MatchedRoute`] extension
/// (none for a path that matches no route). It runs outermost, so that every other
/// middleware sees the route whichever of them are present.
pub struct ResolveRoute {
    routes: Arc<RouteTable>,
}

impl ResolveRoute {
    pub fn new(routes: RouteTable) -> Self {
        Self {
            routes: Arc::new(routes),
        }
    }
}

impl<E: Endpoint> Middleware<E> for ResolveRoute {
    type Output = ResolveRouteEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        ResolveRouteEndpoint {
            inner,
            routes: self.routes.clone(),
        }
    }
}

pub struct ResolveRouteEndpoint<E> {
    inner: E,
    routes: Arc<RouteTable>,
}

impl<E: Endpoint> Endpoint for ResolveRouteEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, mut req: Request) -> Result<Self::Output> {
        if let Some(route) = self.routes.find(req.uri().path()) {
            req.extensions_mut().insert(route);
        }
        self.inner.call(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let spec = r#"{"paths": {"/": {"get": {}}, "/health": {"get": {}},
            "/api/v1/todos": {"get": {}, "post": {}},
            "/api/v1/todos/{todo_id}": {"get": {}, "put": {}, "delete": {}},
            "/api/v1/todos/stats": {"get": {}}}}"#;
        RouteTable::new(spec, &["/docs"]).unwrap()
    }

    fn template(table: &RouteTable, path: &str) -> Option<&'static str> {
        table.find(path).map(|route| route.template)
    }

    #[test]
    fn matches_templates_with_and_without_trailing_slash() {
        let table = table();
        assert_eq!(template(&table, "/api/v1/todos"), Some("/api/v1/todos"));
        assert_eq!(template(&table, "/api/v1/todos/"), Some("/api/v1/todos"));
        assert_eq!(template(&table, "/api//v1/todos"), Some("/api/v1/todos"));
        assert_eq!(
            template(&table, "/api/v1/todos/8c1f5a4e-0000-4000-8000-000000000000"),
            Some("/api/v1/todos/{todo_id}")
        );
        assert_eq!(template(&table, "/"), Some("/"));
        assert_eq!(template(&table, "/docs"), Some("/docs"));
    }

    #[test]
    fn knows_the_methods_of_each_route() {
        let table = table();
        assert_eq!(table.find("/api/v1/todos").unwrap().allow, "GET, POST");
        assert_eq!(table.find("/docs").unwrap().allow, "GET");
    }

    #[test]
    fn static_segments_win_over_parameters() {
        assert_eq!(
            template(&table(), "/api/v1/todos/stats"),
            Some("/api/v1/todos/stats")
        );
    }

    #[test]
    fn unknown_paths_have_no_route() {
        let table = table();
        assert_eq!(template(&table, "/api/v1/todos/a/b"), None);
        assert_eq!(template(&table, "/nope"), None);
        assert_eq!(template(&table, ""), None);
    }

    #[test]
    fn knows_its_templates() {
        let table = table();
        assert!(table.has_template("/api/v1/todos/{todo_id}"));
        assert!(!table.has_template("/api/v1/todos/:todo_id"));
    }
}
