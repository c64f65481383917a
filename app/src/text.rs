//! A string field that accepts only JSON strings, and no NUL character.
//!
//! poem-openapi's `String` also accepts numbers and booleans (`{"title": 5}` would store
//! the title "5"); the API promises a 400 for a value of the wrong type. Postgres `text`
//! cannot store U+0000: the type refuses it as a 400 (and its schema says so with a
//! `pattern`) instead of a 500 from the database. The rule lives in the type rather than
//! in a `validator(pattern = ..)` attribute because poem-openapi's pattern validator
//! compiles its regex again on every check: that was nine tenths of a POST's
//! instructions.

use std::borrow::Cow;

use poem_openapi::{
    registry::{MetaSchema, MetaSchemaRef},
    types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type},
};
use serde_json::Value;

/// The pattern the type's schema carries: any string without U+0000.
pub const NO_NUL_PATTERN: &str = r"^[^\x00]*$";
/// What a field with a NUL character is told.
pub const NO_NUL_MESSAGE: &str = "must not contain NUL characters (U+0000)";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl Type for Text {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            pattern: Some(NO_NUL_PATTERN.to_owned()),
            ..MetaSchema::new("string")
        }))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(&self.0))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl ParseFromJSON for Text {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::String(text) if text.contains('\0') => Err(ParseError::custom(NO_NUL_MESSAGE)),
            Value::String(text) => Ok(Self(text)),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl ToJSON for Text {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

impl From<Text> for String {
    fn from(text: Text) -> Self {
        text.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_strings_only() {
        assert_eq!(
            Text::parse_from_json(Some(Value::from("a"))).unwrap(),
            Text("a".into())
        );
        assert!(Text::parse_from_json(Some(Value::from(5))).is_err());
        assert!(Text::parse_from_json(Some(Value::from(true))).is_err());
        assert!(Text::parse_from_json(None).is_err());
        assert!(Text::parse_from_json(Some(Value::from("a\u{0}b"))).is_err());
    }

    #[test]
    fn the_schema_declares_what_parsing_refuses() {
        let MetaSchemaRef::Inline(schema) = Text::schema_ref() else {
            panic!("an inline schema");
        };
        let pattern = regex::Regex::new(schema.pattern.as_deref().unwrap()).unwrap();
        for text in ["", "plain", "tab\tand é"] {
            assert!(pattern.is_match(text));
            assert!(Text::parse_from_json(Some(Value::from(text))).is_ok());
        }
        assert!(!pattern.is_match("a\u{0}b"));
    }
}
