//! Echoed request values (volume ids, paths, names) are cut to a fixed length
//! before they reach a status message or a log line: a caller can send
//! megabytes in one field, and neither its own client (whose default limits
//! would refuse the reply) nor our logs should have to carry them back.

/// Bytes of an echoed value kept before the cut.
pub const ECHO_LIMIT: usize = 256;

/// `value` itself when short, else its first `ECHO_LIMIT` bytes (cut on a
/// character boundary), an ellipsis and the full length.
pub fn bounded(value: &str) -> String {
    cut(value, ECHO_LIMIT)
}

pub use lvmpin_api::text::cut;

/// The same for a path given as a string by the caller.
pub fn bounded_path(path: &std::path::Path) -> String {
    bounded(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_stay_whole_and_long_ones_are_cut_on_a_char_boundary() {
        assert_eq!(bounded("vg/lv"), "vg/lv");
        let exact = "a".repeat(ECHO_LIMIT);
        assert_eq!(bounded(&exact), exact);
        let long = "x".repeat(1 << 20);
        let cut = bounded(&long);
        assert!(cut.len() < ECHO_LIMIT + 32, "{}", cut.len());
        assert!(cut.ends_with("…(1048576 bytes)"), "{cut}");
        // 'é' is two bytes: a cut at 256 would split the one at 255..257.
        let multibyte = format!("{}{}", "a".repeat(ECHO_LIMIT - 1), "é".repeat(10));
        let cut = bounded(&multibyte);
        assert!(cut.starts_with(&"a".repeat(ECHO_LIMIT - 1)));
        assert!(cut.contains('…'));
    }
}
