//! The HTTP API as poem-openapi describes it: the OpenAPI document and Swagger UI come
//! from these declarations.

use poem_openapi::{
    ApiResponse, Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
    types::MaybeUndefined,
};
use uuid::Uuid;

use crate::{
    json_body::JsonBody,
    problem::{ApiError, ProblemResponse},
    telemetry,
    todos::{Page, Todo, TodoCreate, TodoStore, TodoUpdate},
};

#[derive(Tags)]
enum Tag {
    /// Service information and probes.
    Service,
    /// The todo list.
    Todos,
}

pub struct ServiceApi {
    pub store: TodoStore,
}

#[derive(Object)]
struct ServiceInfo {
    name: String,
    version: String,
    /// Swagger UI.
    docs: String,
    /// The OpenAPI document.
    openapi: String,
    health: String,
    ready: String,
    todos: String,
}

#[derive(Object)]
struct Health {
    status: String,
    service: String,
}

#[OpenApi(tag = "Tag::Service")]
impl ServiceApi {
    /// What this service is and where to go next.
    #[oai(path = "/", method = "get", operation_id = "getServiceInfo")]
    async fn index(&self) -> Json<ServiceInfo> {
        Json(ServiceInfo {
            name: telemetry::service_name().to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            docs: "/docs".to_owned(),
            openapi: "/openapi.json".to_owned(),
            health: "/health".to_owned(),
            ready: "/ready".to_owned(),
            todos: "/api/v1/todos".to_owned(),
        })
    }

    /// Liveness: the process is up (does not touch the database).
    #[oai(path = "/health", method = "get", operation_id = "getHealth")]
    async fn health(&self) -> Json<Health> {
        Json(Health {
            status: "healthy".to_owned(),
            service: telemetry::service_name().to_owned(),
        })
    }

    /// Readiness: the database answers.
    #[oai(path = "/ready", method = "get", operation_id = "getReadiness")]
    async fn ready(&self) -> Result<Json<Health>, ProblemResponse> {
        self.store.ping().await.map_err(|error| {
            tracing::warn!(exception.message = %error, "not ready: database unreachable");
            ApiError::DatabaseUnavailable
        })?;
        Ok(Json(Health {
            status: "ready".to_owned(),
            service: telemetry::service_name().to_owned(),
        }))
    }
}

pub struct TodosApi {
    pub store: TodoStore,
}

#[derive(ApiResponse)]
enum Created {
    /// The todo was created.
    #[oai(status = 201)]
    Todo(Json<Todo>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
enum Deleted {
    /// The todo was deleted.
    #[oai(status = 204)]
    Todo,
}

fn default_limit() -> i64 {
    100
}

/// The paging bounds of `GET /api/v1/todos`. The validator attributes below take
/// literals only: they repeat these numbers, and the API tests check the OpenAPI document
/// against these constants.
pub const SKIP_MAX: i64 = 1_000_000;
pub const LIMIT_MAX: i64 = 1000;

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Todos")]
impl TodosApi {
    /// List todos, newest first.
    #[oai(path = "/todos", method = "get", operation_id = "listTodos")]
    async fn list(
        &self,
        /// How many todos to skip.
        #[oai(default, validator(minimum(value = "0"), maximum(value = "1000000")))]
        skip: Query<i64>,
        /// How many todos to return (at most 1000).
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<i64>,
        /// Only completed (`true`) or open (`false`) todos.
        completed: Query<Option<bool>>,
    ) -> Result<Json<Vec<Todo>>, ProblemResponse> {
        let page = Page {
            skip: skip.0,
            limit: limit.0,
            completed: completed.0,
        };
        Ok(Json(self.store.list(page).await.map_err(ApiError::from)?))
    }

    /// Create a todo.
    #[oai(path = "/todos", method = "post", operation_id = "createTodo")]
    async fn create(&self, body: JsonBody<TodoCreate>) -> Result<Created, ProblemResponse> {
        let TodoCreate {
            title,
            description,
            completed,
        } = body.0;
        let completed = not_null("completed", completed)?.unwrap_or(false);
        let todo = self
            .store
            .create(title, description, completed)
            .await
            .map_err(ApiError::from)?;
        tracing::info!(todo.id = %todo.id, "todo created");
        let location = format!("/api/v1/todos/{}", todo.id);
        Ok(Created::Todo(Json(todo), location))
    }

    /// Get one todo.
    #[oai(path = "/todos/:todo_id", method = "get", operation_id = "getTodo")]
    async fn get(&self, todo_id: Path<Uuid>) -> Result<Json<Todo>, ProblemResponse> {
        match self.store.get(todo_id.0).await.map_err(ApiError::from)? {
            Some(todo) => Ok(Json(todo)),
            None => Err(ApiError::TodoNotFound(todo_id.0).into()),
        }
    }

    /// Change a todo: only the fields present in the body are changed.
    #[oai(path = "/todos/:todo_id", method = "put", operation_id = "updateTodo")]
    async fn update(
        &self,
        todo_id: Path<Uuid>,
        body: JsonBody<TodoUpdate>,
    ) -> Result<Json<Todo>, ProblemResponse> {
        let TodoUpdate {
            title,
            description,
            completed,
        } = body.0;
        let title = not_null("title", title)?;
        let completed = not_null("completed", completed)?;
        match self
            .store
            .update(todo_id.0, title, description, completed)
            .await
            .map_err(ApiError::from)?
        {
            Some(todo) => {
                tracing::info!(todo.id = %todo.id, "todo updated");
                Ok(Json(todo))
            }
            None => Err(ApiError::TodoNotFound(todo_id.0).into()),
        }
    }

    /// Delete a todo.
    #[oai(path = "/todos/:todo_id", method = "delete", operation_id = "deleteTodo")]
    async fn delete(&self, todo_id: Path<Uuid>) -> Result<Deleted, ProblemResponse> {
        if self.store.delete(todo_id.0).await.map_err(ApiError::from)? {
            tracing::info!(todo.id = %todo_id.0, "todo deleted");
            Ok(Deleted::Todo)
        } else {
            Err(ApiError::TodoNotFound(todo_id.0).into())
        }
    }
}

/// A field that may be omitted but not set to `null`.
fn not_null<T>(field: &str, value: MaybeUndefined<T>) -> Result<Option<T>, ApiError> {
    match value {
        MaybeUndefined::Null => Err(ApiError::invalid_field(field, "must not be null")),
        MaybeUndefined::Undefined => Ok(None),
        MaybeUndefined::Value(value) => Ok(Some(value)),
    }
}
