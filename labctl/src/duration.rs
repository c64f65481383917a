//! Durations written the way Prometheus and Grafana write them (`500ms`, `15s`, `5m`,
//! `1h30m`), so the same text works on labctl's command line, in a dashboard's
//! `time.from` and inside a PromQL range selector.

use std::time::Duration;

const UNITS: [(&str, u64); 6] = [
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
    ("w", 604_800_000),
];

/// Parses `90s`, `1m30s`, `250ms`. A bare number is refused: every duration in the lab
/// names its unit, so `60` (seconds? milliseconds?) is always a mistake.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut rest = text;
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("`{text}` is not a duration like 30s, 5m or 1h"));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}` is too large"))?;
        rest = &rest[digits..];
        // `ms` before `m`, so that `5ms` is not read as five minutes and a stray `s`.
        let (unit, factor) = UNITS
            .iter()
            .filter(|(unit, _)| rest.starts_with(unit))
            .max_by_key(|(unit, _)| unit.len())
            .ok_or_else(|| format!("`{text}` needs a unit (ms, s, m, h, d, w)"))?;
        rest = &rest[unit.len()..];
        total_ms = value
            .checked_mul(*factor)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("`{text}` is too large"))?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration as PromQL accepts it inside `[...]`, in the largest whole unit
/// (`60s` -> `1m`), so substituted expressions read like hand-written ones.
pub fn format(duration: Duration) -> String {
    let ms = duration.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    let (unit, factor) = UNITS
        .iter()
        .rev()
        .find(|(_, factor)| ms.is_multiple_of(*factor))
        .expect("every whole number of milliseconds divides by 1");
    format!("{}{unit}", ms / factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_compound_units() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(172_800)));
    }

    #[test]
    fn refuses_unitless_and_garbage() {
        assert!(parse("60").is_err());
        assert!(parse("").is_err());
        assert!(parse("5x").is_err());
        assert!(parse("m5").is_err());
        assert!(parse("99999999999999999999s").is_err());
    }

    #[test]
    fn formats_in_the_largest_whole_unit() {
        assert_eq!(format(Duration::from_secs(60)), "1m");
        assert_eq!(format(Duration::from_secs(90)), "90s");
        assert_eq!(format(Duration::from_millis(1_500)), "1500ms");
        assert_eq!(format(Duration::from_secs(3_600)), "1h");
        assert_eq!(format(Duration::ZERO), "0s");
    }

    #[test]
    fn format_round_trips_through_parse() {
        for text in ["15s", "1m", "90s", "250ms", "1h", "1d"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }
}
