//! Context propagation: which propagators read the request headers (`OTEL_PROPAGATORS`),
//! and the baggage-to-span pattern - the W3C `baggage` entries the service is configured
//! to trust become attributes of its spans, so that every span of one traffic run can be
//! found by that run's id.
//!
//! Only named keys are copied: baggage is whatever the caller put in a header, and
//! copying all of it would let any client write attributes (and cardinality) into the
//! service's telemetry.

use std::sync::OnceLock;

use anyhow::bail;
use opentelemetry::{
    Context, KeyValue,
    baggage::BaggageExt,
    propagation::{TextMapCompositePropagator, TextMapPropagator},
};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

use crate::config::var;

/// The variable naming the baggage keys copied onto spans (comma-separated, `none` for
/// none).
pub const KEYS_VARIABLE: &str = "BAGGAGE_TO_SPAN_KEYS";
/// What the lab's traffic (`labctl traffic`) sets: the id of its run.
pub const DEFAULT_KEYS: &str = "lab.run.id";
/// More keys than this is a configuration mistake, not a use case.
const MAX_KEYS: usize = 16;
/// Longest copied value, in characters: the caller chooses it.
const MAX_VALUE_CHARS: usize = 256;

static ALLOWED: OnceLock<Vec<String>> = OnceLock::new();

/// Reads `BAGGAGE_TO_SPAN_KEYS` once, at start-up.
pub(super) fn init() -> anyhow::Result<()> {
    let keys = allowed_keys(var(KEYS_VARIABLE).as_deref())?;
    let _ = ALLOWED.set(keys);
    Ok(())
}

/// The allow-list from the variable's value (`None`: unset, the default).
fn allowed_keys(value: Option<&str>) -> anyhow::Result<Vec<String>> {
    let value = value.unwrap_or(DEFAULT_KEYS).trim();
    if value.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut keys: Vec<String> = Vec::new();
    for key in value.split(',').map(str::trim) {
        let valid = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            bail!(
                "{KEYS_VARIABLE}={value:?}: `{key}` is not a baggage key (letters, digits, `.`, `_`, `-`; \
                 comma-separated, or `none`)"
            );
        }
        if !keys.iter().any(|known| known == key) {
            keys.push(key.to_owned());
        }
    }
    if keys.len() > MAX_KEYS {
        bail!(
            "{KEYS_VARIABLE} names {} keys; at most {MAX_KEYS} are copied",
            keys.len()
        );
    }
    Ok(keys)
}

/// The allow-listed baggage entries of `context`, as span attributes under their own key.
pub fn span_attributes(context: &Context) -> Vec<KeyValue> {
    copy_allowed(
        context,
        ALLOWED.get().map(Vec::as_slice).unwrap_or_default(),
    )
}

fn copy_allowed(context: &Context, allowed: &[String]) -> Vec<KeyValue> {
    let baggage = context.baggage();
    if baggage.is_empty() {
        return Vec::new();
    }
    allowed
        .iter()
        .filter_map(|key| {
            let value = baggage.get(key.as_str())?.as_str();
            let value = match value.char_indices().nth(MAX_VALUE_CHARS) {
                Some((cut, _)) => &value[..cut],
                None => value,
            };
            Some(KeyValue::new(key.clone(), value.to_owned()))
        })
        .collect()
}

/// The propagators `OTEL_PROPAGATORS` names (default `tracecontext,baggage`, as the
/// specification says); `none` reads no context at all.
pub(super) fn propagator() -> anyhow::Result<TextMapCompositePropagator> {
    let value = var("OTEL_PROPAGATORS");
    let names = value.as_deref().unwrap_or("tracecontext,baggage");
    let mut propagators: Vec<Box<dyn TextMapPropagator + Send + Sync>> = Vec::new();
    for name in names.split(',').map(str::trim) {
        match name {
            "tracecontext" => propagators.push(Box::new(TraceContextPropagator::new())),
            "baggage" => propagators.push(Box::new(BaggagePropagator::new())),
            "none" => propagators.clear(),
            other => bail!(
                "OTEL_PROPAGATORS={names:?}: `{other}` is not supported (use tracecontext, baggage or none)"
            ),
        }
    }
    Ok(TextMapCompositePropagator::new(propagators))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn context_from(baggage_header: &str) -> Context {
        let headers = HashMap::from([("baggage".to_owned(), baggage_header.to_owned())]);
        BaggagePropagator::new().extract(&headers)
    }

    fn copied(header: &str, allowed: &[&str]) -> Vec<(String, String)> {
        let allowed: Vec<String> = allowed.iter().map(|k| (*k).to_owned()).collect();
        copy_allowed(&context_from(header), &allowed)
            .into_iter()
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect()
    }

    #[test]
    fn the_default_allow_list_is_the_run_id() {
        assert_eq!(allowed_keys(None).unwrap(), ["lab.run.id"]);
    }

    #[test]
    fn only_allow_listed_entries_are_copied() {
        assert_eq!(
            copied(
                "lab.run.id=r-42,user.email=a%40b.example,tenant=x",
                &["lab.run.id"]
            ),
            [("lab.run.id".to_owned(), "r-42".to_owned())]
        );
        assert!(copied("tenant=x", &["lab.run.id"]).is_empty());
        assert!(copied("lab.run.id=r-42", &[]).is_empty());
    }

    #[test]
    fn several_keys_and_none_are_read() {
        assert_eq!(
            allowed_keys(Some(" lab.run.id , tenant,lab.run.id")).unwrap(),
            ["lab.run.id", "tenant"]
        );
        assert!(allowed_keys(Some("none")).unwrap().is_empty());
    }

    #[test]
    fn a_bad_list_names_the_variable() {
        for bad in ["lab.run.id,", "a b", "*"] {
            let error = allowed_keys(Some(bad)).unwrap_err().to_string();
            assert!(error.contains(KEYS_VARIABLE), "{bad}: {error}");
        }
        let many: Vec<String> = (0..=MAX_KEYS).map(|i| format!("k{i}")).collect();
        assert!(allowed_keys(Some(&many.join(","))).is_err());
    }

    #[test]
    fn copied_values_are_capped() {
        let long = "x".repeat(MAX_VALUE_CHARS + 50);
        let values = copied(&format!("lab.run.id={long}"), &["lab.run.id"]);
        assert_eq!(values[0].1.len(), MAX_VALUE_CHARS);
    }
}
