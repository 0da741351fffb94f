//! Bounding user-supplied text before it reaches a message or a log line.

/// `value` itself when at most `limit` bytes long, else its first `limit`
/// bytes (cut on a character boundary), an ellipsis and the full length.
pub fn cut(value: &str, limit: usize) -> String {
    if value.len() <= limit {
        return value.to_string();
    }
    let mut end = limit;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({} bytes)", &value[..end], value.len())
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn short_values_stay_and_long_ones_are_cut_on_a_char_boundary() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "abc…(4 bytes)");
        // 'é' is two bytes: a cut at 2 would split it.
        assert_eq!(cut("aéb", 2), "a…(4 bytes)");
    }
}
