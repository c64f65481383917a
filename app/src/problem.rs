//! Every error the service answers is an RFC 9457 problem document
//! (`application/problem+json`) carrying the request's trace id, so a learner can paste
//! it into Tempo. Internal details (database messages, panics) are logged, never sent.

use poem::{
    Endpoint, IntoResponse, Middleware, Request, Response, Result,
    error::{MethodNotAllowedError, NotFoundError},
    http::{StatusCode, header},
};
use poem_openapi::{
    ApiResponse, Object,
    error::{ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError},
    payload::Json,
};

use crate::routes::MatchedRoute;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// A problem details document (RFC 9457).
#[derive(Debug, Clone, Object)]
pub struct Problem {
    /// A URI reference naming the problem type, e.g. `/problems/validation-error`.
    #[oai(rename = "type")]
    pub kind: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// The trace id of this request: search for it in Tempo. (No `default`: it would be
    /// `null`, which OpenAPI 3.0 forbids for a non-nullable string.)
    #[oai(skip_serializing_if_is_none)]
    pub trace_id: Option<String>,
    /// One entry per invalid field.
    #[oai(default, skip_serializing_if_is_empty)]
    pub errors: Vec<FieldError>,
}

/// An invalid field of a request (body property, query or path parameter).
#[derive(Debug, Clone, PartialEq, Object)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The error responses of the API, as declared in the OpenAPI document.
#[derive(Debug, ApiResponse)]
pub enum ProblemResponse {
    /// The request is malformed or fails validation.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// No such resource.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The request body is larger than the service accepts.
    #[oai(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Json<Problem>),
    /// The request body is not JSON.
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Problem>),
    /// An unexpected server error (the lab's fault switch answers with this too).
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
    /// The database is unreachable.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>),
}

/// What went wrong, in the service's own terms.
#[derive(Debug)]
pub enum ApiError {
    /// The body is not JSON at all (serde_json refused it).
    MalformedJson(String),
    Validation {
        detail: String,
        errors: Vec<FieldError>,
    },
    TodoNotFound(uuid::Uuid),
    DatabaseUnavailable,
    InjectedFault,
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn invalid_field(field: &str, message: &str) -> Self {
        Self::Validation {
            detail: format!("`{field}` {message}"),
            errors: vec![FieldError::new(field, message)],
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if is_unavailable(&error) {
            tracing::error!(exception.message = %error, "database unavailable");
            Self::DatabaseUnavailable
        } else {
            Self::Internal(error.into())
        }
    }
}

/// Errors that mean "the database cannot be reached right now" (answered 503, the client
/// may retry) rather than a bug (500).
fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Class 08 (connection exception), 57P01..57P03 (shutdown, crash, starting up).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

impl From<ApiError> for ProblemResponse {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::MalformedJson(detail) => {
                tracing::warn!("malformed JSON body");
                Self::BadRequest(Json(problem(
                    StatusCode::BAD_REQUEST,
                    "malformed-json",
                    detail,
                )))
            }
            ApiError::Validation { detail, errors } => {
                Self::BadRequest(Json(validation_problem(errors, detail)))
            }
            ApiError::TodoNotFound(id) => {
                tracing::info!(todo.id = %id, "todo not found");
                Self::NotFound(Json(problem(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    format!("There is no todo with id {id}."),
                )))
            }
            ApiError::DatabaseUnavailable => Self::Unavailable(Json(problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "database-unavailable",
                "The database is unreachable; try again shortly.".into(),
            ))),
            ApiError::InjectedFault => {
                tracing::error!("injected fault (LAB_FAULT_ERROR_RATE)");
                Self::Internal(Json(problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "injected-fault",
                    "The lab's fault switch failed this request on purpose.".into(),
                )))
            }
            ApiError::Internal(error) => {
                tracing::error!(exception.message = %error, "internal error");
                Self::Internal(Json(internal_problem()))
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        ProblemResponse::from(self).into_response()
    }
}

fn internal_problem() -> Problem {
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal-error",
        "The service failed to handle this request.".into(),
    )
}

fn problem(status: StatusCode, slug: &str, detail: String) -> Problem {
    Problem {
        kind: format!("/problems/{slug}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        trace_id: crate::telemetry::current_trace_id(),
        errors: Vec::new(),
    }
}

fn problem_response(problem: Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body =
        serde_json::to_vec(&poem_openapi::types::ToJSON::to_json(&problem)).unwrap_or_default();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, PROBLEM_CONTENT_TYPE)
        .body(body)
}

/// Turns the errors raised outside the handlers (router, extractors, body limits) into
/// problem documents. Errors the handlers returned already are problem documents.
pub struct Problems;

impl<E: Endpoint> Middleware<E> for Problems {
    type Output = ProblemsEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        ProblemsEndpoint { inner }
    }
}

pub struct ProblemsEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for ProblemsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        let route = req.extensions().get::<MatchedRoute>().copied();
        Ok(match self.inner.call(req).await {
            Ok(response) => response.into_response(),
            Err(error) if error.is_from_response() => error.into_response(),
            Err(error) => {
                let mut response = problem_response(problem_for(&error, route));
                if response.status() == StatusCode::METHOD_NOT_ALLOWED
                    && let Some(route) = route
                    && let Ok(allow) = route.allow.parse()
                {
                    response.headers_mut().insert(header::ALLOW, allow);
                }
                response
            }
        })
    }
}

fn problem_for(error: &poem::Error, route: Option<MatchedRoute>) -> Problem {
    if error.is::<ParseRequestPayloadError>() {
        // Bodies are read by `JsonBody`, which answers its own problems; a payload error
        // of poem-openapi's means a body type outside it.
        return validation_problem(Vec::new(), "Invalid request body.".to_owned());
    }
    if let Some(error) = error.downcast_ref::<ParseParamError>() {
        let message = humanize(&error.reason);
        return validation_problem(
            vec![FieldError::new(error.name, &message)],
            format!("Invalid query parameter `{}`: {message}", error.name),
        );
    }
    if let Some(error) = error.downcast_ref::<ParsePathError>() {
        let name = route.and_then(|route| path_parameter(route.template, error.name));
        let name = name.unwrap_or(error.name);
        let message = "must be a UUID";
        return validation_problem(
            vec![FieldError::new(name, message)],
            format!("Invalid path parameter `{name}`: {message}"),
        );
    }
    if error.is::<ContentTypeError>() {
        tracing::warn!("unsupported content type");
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Send the body as JSON with `Content-Type: application/json`.".into(),
        );
    }
    if error.is::<NotFoundError>() {
        return problem(
            StatusCode::NOT_FOUND,
            "not-found",
            "No route matches this path.".into(),
        );
    }
    if error.is::<MethodNotAllowedError>() || error.status() == StatusCode::METHOD_NOT_ALLOWED {
        return problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "This route does not support this method; see the Allow header.".into(),
        );
    }
    let status = error.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        tracing::warn!("request body too large");
        return problem(status, "payload-too-large", error.to_string());
    }
    if status.is_client_error() {
        tracing::warn!(http.response.status_code = status.as_u16(), "bad request");
        return problem(
            status,
            "bad-request",
            "The request could not be processed.".into(),
        );
    }
    tracing::error!(exception.message = %error, "unhandled error");
    internal_problem()
}

/// A 400 naming the invalid fields, whether the handler or poem-openapi's parsing found them.
fn validation_problem(errors: Vec<FieldError>, detail: String) -> Problem {
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    tracing::warn!(todo.invalid_fields = ?fields, "validation failed");
    let mut problem = problem(StatusCode::BAD_REQUEST, "validation-error", detail);
    problem.errors = errors;
    problem
}

/// poem-openapi names path parameters `param0`, `param1`...; the route template has the
/// names the client sees in the OpenAPI document.
fn path_parameter(template: &'static str, internal: &str) -> Option<&'static str> {
    let index: usize = internal.strip_prefix("param")?.parse().ok()?;
    template
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .nth(index)
}

/// Turns a validator name such as `maxLength(200)` into a sentence.
fn humanize(reason: &str) -> String {
    let reason = reason
        .rsplit("verification failed. ")
        .next()
        .unwrap_or(reason)
        .trim();
    // e.g. `maximum(1000, exclusive: false)`
    let number = |prefix: &str| {
        let inner = reason.strip_prefix(prefix)?.strip_suffix(')')?;
        Some(inner.split(',').next().unwrap_or(inner).trim().to_owned())
    };
    if reason == "minLength(1)" {
        "must not be empty".to_owned()
    } else if reason.starts_with("pattern(") {
        "must not contain NUL characters (U+0000)".to_owned()
    } else if let Some(n) = number("maxLength(") {
        format!("must be at most {n} characters")
    } else if let Some(n) = number("minLength(") {
        format!("must be at least {n} characters")
    } else if let Some(n) = number("maximum(") {
        format!("must be at most {n}")
    } else if let Some(n) = number("minimum(") {
        format!("must be at least {n}")
    } else {
        reason.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_path_parameters_as_the_template_does() {
        assert_eq!(
            path_parameter("/api/v1/todos/{todo_id}", "param0"),
            Some("todo_id")
        );
        assert_eq!(path_parameter("/api/v1/todos/{todo_id}", "param1"), None);
    }

    #[test]
    fn humanizes_known_validators_and_keeps_the_rest() {
        assert_eq!(
            humanize("verification failed. minimum(0)"),
            "must be at least 0"
        );
        assert_eq!(
            humanize("maximum(1000, exclusive: false)"),
            "must be at most 1000"
        );
        assert_eq!(humanize("minLength(1)"), "must not be empty");
        assert_eq!(humanize("some other reason"), "some other reason");
    }
}
