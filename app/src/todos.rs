//! The Todo resource: its API shapes and its Postgres store.

use chrono::{DateTime, Utc};
use poem_openapi::{Object, types::MaybeUndefined};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{text::Text, traced};

/// A todo item.
#[derive(Debug, Clone, Object)]
pub struct Todo {
    pub id: Uuid,
    pub title: String,
    /// `null` when the todo has no description.
    #[oai(nullable)]
    pub description: Option<String>,
    pub completed: bool,
    /// When the todo was created (RFC 3339, UTC).
    pub created_at: DateTime<Utc>,
    /// When the todo was last changed (RFC 3339, UTC).
    pub updated_at: DateTime<Utc>,
}

// The text fields are `Text`: JSON strings only, without U+0000 (see text.rs).

/// The most characters of a title and of a description. poem-openapi's validator
/// attributes below take literals only: they repeat these numbers, and the API tests
/// check the OpenAPI document against these constants.
pub const TITLE_MAX: usize = 200;
pub const DESCRIPTION_MAX: usize = 2000;

/// The body of `POST /api/v1/todos`.
#[derive(Debug, Object)]
pub struct TodoCreate {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub title: Text,
    #[oai(nullable, validator(max_length = 2000))]
    pub description: Option<Text>,
    /// Defaults to `false`; `null` is refused, as in PUT.
    pub completed: MaybeUndefined<bool>,
}

/// The body of `PUT /api/v1/todos/{todo_id}`: only the fields present are changed.
/// `description: null` clears the description; `title` and `completed` cannot be null.
#[derive(Debug, Object)]
pub struct TodoUpdate {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub title: MaybeUndefined<Text>,
    #[oai(nullable, validator(max_length = 2000))]
    pub description: MaybeUndefined<Text>,
    pub completed: MaybeUndefined<bool>,
}

/// Which page of todos to list, newest first.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub skip: i64,
    pub limit: i64,
    pub completed: Option<bool>,
}

/// The todos table. Every operation is a single statement: a failed request leaves
/// nothing half-written, and each costs one round trip.
#[derive(Clone)]
pub struct TodoStore {
    pool: PgPool,
}

impl TodoStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn create(
        &self,
        title: Text,
        description: Option<Text>,
        completed: bool,
    ) -> Result<Todo, sqlx::Error> {
        traced!(
            fetch_one(&self.pool),
            query_as!(
                Todo,
                "INSERT INTO todos (id, title, description, completed) VALUES ($1, $2, $3, $4) \
                 RETURNING id, title, description, completed, created_at, updated_at",
                Uuid::now_v7(),
                String::from(title),
                description.map(String::from),
                completed
            )
        )
        .await
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<Todo>, sqlx::Error> {
        traced!(
            fetch_optional(&self.pool),
            query_as!(
                Todo,
                "SELECT id, title, description, completed, created_at, updated_at \
                 FROM todos WHERE id = $1",
                id
            )
        )
        .await
    }

    pub async fn list(&self, page: Page) -> Result<Vec<Todo>, sqlx::Error> {
        traced!(
            fetch_all(&self.pool),
            query_as!(
                Todo,
                "SELECT id, title, description, completed, created_at, updated_at \
                 FROM todos WHERE ($3::boolean IS NULL OR completed = $3) \
                 ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT $2",
                page.skip,
                page.limit,
                page.completed
            )
        )
        .await
    }

    /// Applies the present fields; `None` when there is no such todo.
    pub async fn update(
        &self,
        id: Uuid,
        title: Option<Text>,
        description: MaybeUndefined<Text>,
        completed: Option<bool>,
    ) -> Result<Option<Todo>, sqlx::Error> {
        let set_description = !description.is_undefined();
        traced!(
            fetch_optional(&self.pool),
            query_as!(
                Todo,
                "UPDATE todos SET title = COALESCE($2, title), \
                 description = CASE WHEN $3 THEN $4 ELSE description END, \
                 completed = COALESCE($5, completed), updated_at = clock_timestamp() \
                 WHERE id = $1 \
                 RETURNING id, title, description, completed, created_at, updated_at",
                id,
                title.map(String::from),
                set_description,
                description.take().map(String::from),
                completed
            )
        )
        .await
    }

    /// `false` when there was no such todo.
    pub async fn delete(&self, id: Uuid) -> Result<bool, sqlx::Error> {
        let result = traced!(
            execute(&self.pool),
            query!("DELETE FROM todos WHERE id = $1", id)
        )
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Readiness: one round trip to the database.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        traced!(fetch_one(&self.pool), query!("SELECT 1 AS ok"))
            .await
            .map(|_| ())
    }
}
