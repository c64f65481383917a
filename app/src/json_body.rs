//! The API's JSON request bodies. poem-openapi's `Json<T>` reports every failure as one
//! message string, so telling a syntax error from an invalid field meant reading that
//! text. `JsonBody<T>` keeps the two apart by construction: serde_json parses the bytes
//! (any error there is malformed JSON), then the value is checked against the schema
//! the OpenAPI document publishes for `T` (poem-openapi's typed registry), so each
//! invalid field is named by the schema and described from its typed constraints.

use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex},
};

use poem::{FromRequest, IntoResponse, Request, RequestBody};
use poem_openapi::{
    payload::{Json, ParsePayload, Payload},
    registry::{MetaSchema, MetaSchemaRef, Registry},
    types::{ParseFromJSON, Type},
};
use serde_json::{Value, error::Category};

use crate::{
    problem::{ApiError, FieldError},
    text::{NO_NUL_MESSAGE, NO_NUL_PATTERN},
};

/// A JSON request body, parsed and checked as described in the module documentation.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = <Json<T> as Payload>::CONTENT_TYPE;

    fn check_content_type(content_type: &str) -> bool {
        <Json<T> as Payload>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ParseFromJSON> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = T::IS_REQUIRED;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let data = Vec::<u8>::from_request(request, body).await?;
        let value = parse(&data).map_err(reject)?;
        check::<T>(&value).map_err(reject)?;
        // The schema check covers every constraint the schema states; this is the typed
        // conversion, and a failure here is a shape the schema does not describe.
        T::parse_from_json(Some(value)).map(Self).map_err(|_| {
            reject(ApiError::Validation {
                detail: "The request body does not match the schema.".to_owned(),
                errors: Vec::new(),
            })
        })
    }
}

poem_openapi::impl_apirequest_for_payload!(JsonBody<T>, T: ParseFromJSON);

/// Answered as the problem document it is, untouched by the `Problems` middleware.
fn reject(error: ApiError) -> poem::Error {
    poem::Error::from_response(error.into_response())
}

/// Parses the body; any failure of serde_json's is malformed JSON, described by its
/// category and position.
pub fn parse(data: &[u8]) -> Result<Value, ApiError> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedJson(
            "The request body is empty; send a JSON object.".to_owned(),
        ));
    }
    serde_json::from_slice(data).map_err(|error| {
        let what = match error.classify() {
            Category::Eof => "it ends early",
            Category::Syntax | Category::Data | Category::Io => "syntax error",
        };
        ApiError::MalformedJson(format!(
            "The request body is not valid JSON ({what} at line {}, column {}).",
            error.line(),
            error.column()
        ))
    })
}

/// Checks `value` against `T`'s published schema: an object, its required properties,
/// and each property's type, nullability, length, pattern and bounds.
pub fn check<T: Type>(value: &Value) -> Result<(), ApiError> {
    let mut registry = Registry::new();
    T::register(&mut registry);
    let root = T::schema_ref();
    let Some(schema) = resolve(&root, &registry) else {
        return Ok(());
    };
    let Value::Object(object) = value else {
        return Err(ApiError::Validation {
            detail: "The request body must be a JSON object.".to_owned(),
            errors: Vec::new(),
        });
    };
    let errors: Vec<FieldError> = schema
        .properties
        .iter()
        .filter_map(|(name, property)| {
            let message = match object.get(*name) {
                None => schema.required.contains(name).then(|| "is required".to_owned()),
                Some(value) => resolve(property, &registry).and_then(|s| property_error(value, s)),
            };
            message.map(|message| FieldError::new(*name, message))
        })
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    let detail = errors
        .iter()
        .map(|error| format!("`{}` {}", error.field, error.message))
        .collect::<Vec<_>>()
        .join("; ");
    Err(ApiError::Validation {
        detail: format!("Invalid request body: {detail}."),
        errors,
    })
}

fn resolve<'a>(schema: &'a MetaSchemaRef, registry: &'a Registry) -> Option<&'a MetaSchema> {
    match schema {
        MetaSchemaRef::Inline(schema) => Some(schema),
        MetaSchemaRef::Reference(name) => registry.schemas.get(name),
    }
}

fn property_error(value: &Value, schema: &MetaSchema) -> Option<String> {
    let message = match (schema.ty, value) {
        (_, Value::Null) if schema.nullable => return None,
        (_, Value::Null) => "must not be null".to_owned(),
        ("string", Value::String(text)) => return string_error(text, schema),
        ("string", _) => "must be a string".to_owned(),
        ("boolean", Value::Bool(_)) => return None,
        ("boolean", _) => "must be true or false".to_owned(),
        ("integer" | "number", Value::Number(number))
            if schema.ty == "number" || number.is_i64() || number.is_u64() =>
        {
            return number.as_f64().and_then(|number| bounds_error(number, schema));
        }
        ("integer", _) => "must be an integer".to_owned(),
        ("number", _) => "must be a number".to_owned(),
        // Nested objects and arrays: the API has none; the typed conversion checks them.
        _ => return None,
    };
    Some(message)
}

fn string_error(text: &str, schema: &MetaSchema) -> Option<String> {
    // Lengths in characters, as JSON Schema counts them.
    let length = text.chars().count();
    if let Some(min) = schema.min_length.filter(|&min| length < min) {
        return Some(if min == 1 {
            "must not be empty".to_owned()
        } else {
            format!("must be at least {min} characters")
        });
    }
    if let Some(max) = schema.max_length.filter(|&max| length > max) {
        return Some(format!("must be at most {max} characters"));
    }
    let pattern = schema.pattern.as_deref()?;
    if matches(pattern, text) {
        return None;
    }
    Some(if pattern == NO_NUL_PATTERN {
        NO_NUL_MESSAGE.to_owned()
    } else {
        format!("must match the pattern {pattern}")
    })
}

/// Whether `text` matches `pattern`; each pattern is compiled once.
fn matches(pattern: &str, text: &str) -> bool {
    static COMPILED: LazyLock<Mutex<HashMap<String, Option<regex::Regex>>>> =
        LazyLock::new(Mutex::default);
    let mut compiled = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
    // Looked up by `&str` first: the key is copied only the first time a pattern is seen.
    if !compiled.contains_key(pattern) {
        compiled.insert(pattern.to_owned(), regex::Regex::new(pattern).ok());
    }
    compiled[pattern]
        .as_ref()
        .is_none_or(|regex| regex.is_match(text))
}

fn bounds_error(number: f64, schema: &MetaSchema) -> Option<String> {
    if let Some(min) = schema.minimum.filter(|&min| number < min) {
        return Some(format!("must be at least {min}"));
    }
    if let Some(max) = schema.maximum.filter(|&max| number > max) {
        return Some(format!("must be at most {max}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::todos::{TodoCreate, TodoUpdate};

    fn field_errors<T: Type>(value: Value) -> Vec<(String, String)> {
        match check::<T>(&value) {
            Ok(()) => Vec::new(),
            Err(ApiError::Validation { errors, .. }) => errors
                .into_iter()
                .map(|error| (error.field, error.message))
                .collect(),
            Err(other) => panic!("not a validation error: {other:?}"),
        }
    }

    fn pair(field: &str, message: &str) -> (String, String) {
        (field.to_owned(), message.to_owned())
    }

    #[test]
    fn serde_syntax_errors_are_malformed_json() {
        for body in [
            &br#"{"title": "a""#[..],
            b"{\"title\":\"\xff\"}",
            b"{title: 1}",
            b"   ",
            &"[".repeat(1000).into_bytes(),
        ] {
            assert!(
                matches!(parse(body), Err(ApiError::MalformedJson(_))),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        let Err(ApiError::MalformedJson(detail)) = parse(br#"{"title": "a""#) else {
            unreachable!()
        };
        assert!(detail.contains("it ends early"), "{detail}");
    }

    #[test]
    fn well_formed_json_of_the_wrong_shape_is_a_validation_error() {
        let value = parse(b"[]").unwrap();
        assert!(matches!(
            check::<TodoCreate>(&value),
            Err(ApiError::Validation { errors, .. }) if errors.is_empty()
        ));
    }

    #[test]
    fn each_invalid_field_is_named_from_the_schema() {
        assert_eq!(field_errors::<TodoCreate>(json!({ "title": "ok" })), []);
        assert_eq!(
            field_errors::<TodoCreate>(json!({ "description": "no title" })),
            [pair("title", "is required")]
        );
        assert_eq!(
            field_errors::<TodoCreate>(json!({ "title": 5, "completed": "yes" })),
            [
                pair("title", "must be a string"),
                pair("completed", "must be true or false")
            ]
        );
        assert_eq!(
            field_errors::<TodoCreate>(json!({ "title": "", "description": "x".repeat(2001) })),
            [
                pair("title", "must not be empty"),
                pair("description", "must be at most 2000 characters")
            ]
        );
        assert_eq!(
            field_errors::<TodoCreate>(json!({ "title": "a\u{0}b" })),
            [pair("title", "must not contain NUL characters (U+0000)")]
        );
        assert_eq!(
            field_errors::<TodoUpdate>(json!({ "title": null, "description": null })),
            [pair("title", "must not be null")]
        );
        // Characters, not bytes.
        assert_eq!(field_errors::<TodoCreate>(json!({ "title": "é".repeat(200) })), []);
    }

    #[test]
    fn the_string_fields_carry_the_nul_pattern() {
        let mut registry = Registry::new();
        TodoCreate::register(&mut registry);
        let schema = &registry.schemas["TodoCreate"];
        for (name, property) in &schema.properties {
            let Some(property) = resolve(property, &registry) else {
                continue;
            };
            if property.ty == "string" {
                assert_eq!(property.pattern.as_deref(), Some(NO_NUL_PATTERN), "{name}");
            }
        }
    }
}
