//! Text for the tables labctl and the tests print.

/// `text` cut to at most `max` characters (on a char boundary), ending in `...` when cut.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}...", text.chars().take(max - 3).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_shortened_on_a_char_boundary() {
        let long = "é".repeat(200);
        assert_eq!(shorten(&long, 123).chars().count(), 123);
        assert!(shorten(&long, 123).ends_with("é..."));
        assert_eq!(shorten("short", 123), "short");
    }
}
