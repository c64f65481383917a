//! Route templates (`/api/v1/todos/{todo_id}`) for incoming paths.
//!
//! poem-openapi registers `/todos/{todo_id}` internally as `/todos/:param0`, so the
//! router's matched pattern is not the template a learner sees in Swagger UI. The
//! templates are taken from the OpenAPI document itself, which is the contract, and the
//! request path is matched against them once per request.

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
    /// Each route with its template split into segments; `None` marks a `{parameter}`.
    routes: Vec<(MatchedRoute, Vec<Option<String>>)>,
}

impl RouteTable {
    /// Builds the table from the OpenAPI document's `paths` plus routes served outside it.
    pub fn new(openapi_json: &str, extra_routes: &[&str]) -> anyhow::Result<Self> {
        let document: serde_json::Value = serde_json::from_str(openapi_json)?;
        let paths = document["paths"]
            .as_object()
            .ok_or_else(|| anyhow::anyhow!("the OpenAPI document has no paths"))?;
        let mut templates: Vec<(String, String)> = paths
            .iter()
            .map(|(template, operations)| {
                let methods = operations.as_object().map(|ops| {
                    ops.keys()
                        .map(|method| method.to_uppercase())
                        .collect::<Vec<_>>()
                        .join(", ")
                });
                (template.clone(), methods.unwrap_or_default())
            })
            .collect();
        templates.extend(
            extra_routes
                .iter()
                .map(|route| ((*route).to_owned(), "GET".to_owned())),
        );
        // Static segments win over parameters: `/todos/stats` before `/todos/{todo_id}`.
        templates.sort_by_key(|(template, _)| template.matches('{').count());
        let routes = templates
            .into_iter()
            .map(|(template, allow)| {
                let segments = segments(&template)
                    .map(|segment| (!segment.starts_with('{')).then(|| segment.to_owned()))
                    .collect();
                // Leaked once at start-up so that spans and metrics can borrow the names.
                let route = MatchedRoute {
                    template: Box::leak(template.into_boxed_str()),
                    allow: Box::leak(allow.into_boxed_str()),
                };
                (route, segments)
            })
            .collect();
        Ok(Self { routes })
    }

    /// The template that `path` matches, if any. A trailing slash is ignored, as the
    /// router ignores it.
    pub fn find(&self, path: &str) -> Option<MatchedRoute> {
        let wanted: Vec<&str> = segments(path).collect();
        self.routes
            .iter()
            .find(|(_, template)| {
                template.len() == wanted.len()
                    && template
                        .iter()
                        .zip(&wanted)
                        .all(|(expected, actual)| match expected {
                            Some(literal) => literal == actual,
                            None => !actual.is_empty(),
                        })
            })
            .map(|(route, _)| *route)
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|segment| !segment.is_empty())
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
    }
}
