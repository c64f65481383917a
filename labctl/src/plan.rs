//! What `labctl traffic` sends, decided up front from a seed.
//!
//! The plan is a stream of units. A unit is one request, or a todo's whole life (create,
//! read, update, delete, read again) that one worker sends in order: requests that depend
//! on each other never race across workers, so every request's status is known before it
//! is sent (the `expect` field). The only thing not known in advance is the id the server
//! gives a created todo; requests about it say `Target::Created` and get the id at run time.
//! A response that differs from `expect` is either the fault switch or a bug, and the
//! summary lists it.
//!
//! The same seed gives the same plan with the same `rand` release (the lockfile pins it;
//! `StdRng`'s algorithm may change between major `rand` versions).

use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Route templates exactly as the service reports them in `http.route`.
pub const ROUTE_HEALTH: &str = "/health";
pub const ROUTE_TODOS: &str = "/api/v1/todos";
pub const ROUTE_TODO: &str = "/api/v1/todos/{todo_id}";

/// The service's title limit; one more character must be refused.
const TITLE_MAX: usize = 200;

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: &'static str,
    pub route: &'static str,
    pub target: Target,
    pub body: Option<Body>,
    /// The status the service answers when it works as specified and no fault is injected.
    pub expect: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A path (with query string) known when the plan is made.
    Path(String),
    /// `/api/v1/todos/{id}` of the todo created by the first request of the same unit.
    Created,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Json(Value),
    /// Sent as `application/json` although it is not JSON, to exercise the parser's 400.
    Malformed(&'static str),
}

/// Requests that one worker sends in order.
pub type Unit = Vec<Request>;

/// The kinds of unit and how often each is drawn. Successes dominate, as in real traffic;
/// every client-error path the service documents is represented.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Health,
    List,
    InvalidCreate,
    Lifecycle,
    UnknownTodo,
    BadUuid,
    WrongMethod,
}

const MIX: [(Kind, u32); 7] = [
    (Kind::Health, 14),
    (Kind::List, 20),
    (Kind::InvalidCreate, 10),
    (Kind::Lifecycle, 36),
    (Kind::UnknownTodo, 9),
    (Kind::BadUuid, 6),
    (Kind::WrongMethod, 5),
];

const WORDS: [&str; 12] = [
    "buy",
    "milk",
    "write",
    "report",
    "call",
    "plumber",
    "review",
    "dashboard",
    "water",
    "plants",
    "book",
    "flights",
];

/// An endless, deterministic stream of units.
pub struct Plan {
    rng: StdRng,
    weights: WeightedIndex<u32>,
    created: u64,
}

impl Plan {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            weights: WeightedIndex::new(MIX.iter().map(|(_, weight)| *weight))
                .expect("MIX has positive weights"),
            created: 0,
        }
    }

    /// At most `limit` requests in total (the last unit is cut short if needed).
    pub fn bounded(self, limit: Option<u64>) -> Bounded {
        Bounded {
            plan: self,
            remaining: limit,
        }
    }

    fn unit(&mut self) -> Unit {
        match MIX[self.weights.sample(&mut self.rng)].0 {
            Kind::Health => vec![get(ROUTE_HEALTH, ROUTE_HEALTH.into(), 200)],
            Kind::List => vec![self.list()],
            Kind::InvalidCreate => vec![self.invalid_create()],
            Kind::Lifecycle => self.lifecycle(),
            Kind::UnknownTodo => vec![self.unknown_todo()],
            Kind::BadUuid => {
                let path = [
                    "not-a-uuid",
                    "12345",
                    "0f0f0f0f-zzzz-4000-8000-000000000000",
                ]
                .choose(&mut self.rng)
                .expect("non-empty");
                vec![get(ROUTE_TODO, format!("{ROUTE_TODOS}/{path}"), 400)]
            }
            Kind::WrongMethod => vec![Request {
                method: "PATCH",
                route: ROUTE_TODOS,
                target: Target::Path(ROUTE_TODOS.into()),
                body: Some(Body::Json(json!({ "title": "patch is not supported" }))),
                expect: 405,
            }],
        }
    }

    fn list(&mut self) -> Request {
        // The trailing-slash form must land on the same route template as the plain one.
        let (query, expect) = *[
            ("", 200),
            ("/", 200),
            ("?completed=true", 200),
            ("?completed=false", 200),
            ("?skip=0&limit=10", 200),
            ("?skip=5&limit=5&completed=false", 200),
            ("?limit=0", 400),
            ("?skip=-1", 400),
        ]
        .choose(&mut self.rng)
        .expect("non-empty");
        get(ROUTE_TODOS, format!("{ROUTE_TODOS}{query}"), expect)
    }

    fn invalid_create(&mut self) -> Request {
        let body = match self.rng.random_range(0..4) {
            0 => Body::Json(json!({ "title": "" })),
            1 => Body::Json(json!({ "title": "x".repeat(TITLE_MAX + 1) })),
            2 => Body::Json(json!({ "title": 42, "completed": "yes" })),
            _ => Body::Malformed(r#"{"title": "unterminated"#),
        };
        create(body, 400)
    }

    fn unknown_todo(&mut self) -> Request {
        let path = format!("{ROUTE_TODOS}/{}", self.uuid());
        match self.rng.random_range(0..3) {
            0 => get(ROUTE_TODO, path, 404),
            1 => Request {
                method: "PUT",
                route: ROUTE_TODO,
                target: Target::Path(path),
                body: Some(Body::Json(json!({ "completed": true }))),
                expect: 404,
            },
            _ => Request {
                method: "DELETE",
                route: ROUTE_TODO,
                target: Target::Path(path),
                body: None,
                expect: 404,
            },
        }
    }

    /// create -> reads and updates -> maybe delete -> maybe read or delete again (404).
    /// Some todos are kept, so lists grow and the `completed` filter has both kinds.
    fn lifecycle(&mut self) -> Unit {
        self.created += 1;
        let mut title = format!("todo {}:", self.created);
        for _ in 0..self.rng.random_range(1..=3) {
            title.push(' ');
            title.push_str(WORDS.choose(&mut self.rng).expect("non-empty"));
        }
        let mut body = json!({ "title": title });
        if self.rng.random_bool(0.5) {
            body["description"] = json!(format!("planned by labctl, unit {}", self.created));
        }
        if self.rng.random_bool(0.2) {
            body["completed"] = json!(true);
        }
        let mut unit = vec![create(Body::Json(body), 201)];
        for _ in 0..self.rng.random_range(0..=2) {
            unit.push(on_created("GET", None, 200));
        }
        for _ in 0..self.rng.random_range(0..=2) {
            unit.push(self.update());
        }
        if self.rng.random_bool(0.6) {
            unit.push(on_created("DELETE", None, 204));
            if self.rng.random_bool(0.5) {
                let method = if self.rng.random_bool(0.7) {
                    "GET"
                } else {
                    "DELETE"
                };
                unit.push(on_created(method, None, 404));
            }
        }
        unit
    }

    fn update(&mut self) -> Request {
        let (body, expect) = match self.rng.random_range(0..10) {
            0..=2 => (json!({ "completed": true }), 200),
            3..=4 => (
                json!({ "title": format!("renamed {}", self.rng.random_range(0..1000)) }),
                200,
            ),
            5 => (json!({ "description": null }), 200),
            6 => (
                json!({ "description": "more detail", "completed": false }),
                200,
            ),
            7 => (json!({ "title": null }), 400),
            8 => (json!({ "title": "" }), 400),
            _ => (json!({ "title": "y".repeat(TITLE_MAX + 1) }), 400),
        };
        on_created("PUT", Some(Body::Json(body)), expect)
    }

    /// A well-formed id no todo has: drawn from the plan's own generator so that it is
    /// part of the deterministic plan.
    fn uuid(&mut self) -> uuid::Uuid {
        uuid::Builder::from_random_bytes(self.rng.random()).into_uuid()
    }
}

impl Iterator for Plan {
    type Item = Unit;

    fn next(&mut self) -> Option<Unit> {
        Some(self.unit())
    }
}

/// A plan cut after a number of requests.
pub struct Bounded {
    plan: Plan,
    remaining: Option<u64>,
}

impl Iterator for Bounded {
    type Item = Unit;

    fn next(&mut self) -> Option<Unit> {
        if self.remaining == Some(0) {
            return None;
        }
        let mut unit = self.plan.next()?;
        if let Some(remaining) = &mut self.remaining {
            unit.truncate(usize::try_from(*remaining).unwrap_or(usize::MAX));
            *remaining -= unit.len() as u64;
        }
        Some(unit)
    }
}

fn get(route: &'static str, path: String, expect: u16) -> Request {
    Request {
        method: "GET",
        route,
        target: Target::Path(path),
        body: None,
        expect,
    }
}

fn create(body: Body, expect: u16) -> Request {
    Request {
        method: "POST",
        route: ROUTE_TODOS,
        target: Target::Path(ROUTE_TODOS.into()),
        body: Some(body),
        expect,
    }
}

fn on_created(method: &'static str, body: Option<Body>, expect: u16) -> Request {
    Request {
        method,
        route: ROUTE_TODO,
        target: Target::Created,
        body,
        expect,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn same_seed_gives_the_same_plan() {
        let first: Vec<Unit> = Plan::new(42).take(300).collect();
        let second: Vec<Unit> = Plan::new(42).take(300).collect();
        assert_eq!(first, second);
    }

    #[test]
    fn different_seeds_give_different_plans() {
        let first: Vec<Unit> = Plan::new(1).take(50).collect();
        let second: Vec<Unit> = Plan::new(2).take(50).collect();
        assert_ne!(first, second);
    }

    #[test]
    fn the_mix_covers_every_route_and_documented_status() {
        let requests: Vec<Request> = Plan::new(7).take(500).flatten().collect();
        let seen: BTreeSet<(&str, &str, u16)> = requests
            .iter()
            .map(|r| (r.method, r.route, r.expect))
            .collect();
        for wanted in [
            ("GET", ROUTE_HEALTH, 200),
            ("GET", ROUTE_TODOS, 200),
            ("GET", ROUTE_TODOS, 400),
            ("POST", ROUTE_TODOS, 201),
            ("POST", ROUTE_TODOS, 400),
            ("PATCH", ROUTE_TODOS, 405),
            ("GET", ROUTE_TODO, 200),
            ("GET", ROUTE_TODO, 400),
            ("GET", ROUTE_TODO, 404),
            ("PUT", ROUTE_TODO, 200),
            ("PUT", ROUTE_TODO, 400),
            ("PUT", ROUTE_TODO, 404),
            ("DELETE", ROUTE_TODO, 204),
            ("DELETE", ROUTE_TODO, 404),
        ] {
            assert!(seen.contains(&wanted), "{wanted:?} never planned");
        }
        let trailing = requests
            .iter()
            .any(|r| r.target == Target::Path(format!("{ROUTE_TODOS}/")) && r.route == ROUTE_TODOS);
        assert!(trailing, "the trailing-slash list form is never planned");
        let malformed = requests
            .iter()
            .any(|r| matches!(r.body, Some(Body::Malformed(_))));
        assert!(malformed, "malformed JSON is never planned");
    }

    #[test]
    fn successes_outnumber_client_errors() {
        let requests: Vec<Request> = Plan::new(3).take(1_000).flatten().collect();
        let ok = requests.iter().filter(|r| r.expect < 400).count();
        assert!(
            ok * 2 > requests.len(),
            "{ok} of {} succeed",
            requests.len()
        );
    }

    #[test]
    fn created_todos_are_only_addressed_after_their_create() {
        for unit in Plan::new(11).take(500) {
            let first_created = unit.iter().position(|r| r.target == Target::Created);
            if let Some(index) = first_created {
                assert!(index > 0);
                assert_eq!((unit[0].method, unit[0].expect), ("POST", 201));
            }
        }
    }

    #[test]
    fn a_deleted_todo_answers_404_afterwards() {
        for unit in Plan::new(5).take(500) {
            if let Some(deleted) = unit
                .iter()
                .position(|r| r.method == "DELETE" && r.expect == 204)
            {
                assert!(unit[deleted + 1..].iter().all(|r| r.expect == 404));
            }
        }
    }

    #[test]
    fn bounded_plans_stop_at_the_exact_request_count() {
        for limit in [0, 1, 2, 7, 100] {
            let sent: usize = Plan::new(9)
                .bounded(Some(limit))
                .map(|unit| unit.len())
                .sum();
            assert_eq!(sent as u64, limit);
        }
        let unbounded_prefix: Vec<Unit> = Plan::new(9).take(20).collect();
        let bounded_prefix: Vec<Unit> = Plan::new(9).bounded(None).take(20).collect();
        assert_eq!(unbounded_prefix, bounded_prefix);
    }

    #[test]
    fn invalid_titles_are_one_past_the_limit() {
        let long = Plan::new(13)
            .take(2_000)
            .flatten()
            .filter_map(|r| match r.body {
                Some(Body::Json(body)) => body["title"].as_str().map(str::len),
                _ => None,
            })
            .max();
        assert_eq!(long, Some(TITLE_MAX + 1));
    }
}
