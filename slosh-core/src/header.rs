//! The one reading of a comma-separated header list (`Connection`,
//! `Upgrade`, `Transfer-Encoding`) that core and every frontend share, so
//! no two of them disagree on whether a request said a token.

/// Whether the header value `value` lists `token`: split on commas, each
/// item trimmed of spaces and tabs and compared without regard to ASCII
/// case (RFC 9110 section 5.6.1). `Connection: keep-alive, Upgrade` lists
/// `upgrade`.
pub fn lists(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|item| item.trim_matches([' ', '\t']).eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::lists;

    #[test]
    fn a_token_is_found_anywhere_in_the_list_in_any_case() {
        assert!(lists("Upgrade", "upgrade"));
        assert!(lists("keep-alive, Upgrade", "upgrade"));
        assert!(lists("keep-alive,\tUPGRADE ", "upgrade"));
        assert!(lists("h2c, websocket", "websocket"));
        assert!(!lists("keep-alive", "upgrade"));
        assert!(!lists("upgrades", "upgrade"));
        assert!(!lists("", "close"));
        assert!(!lists("up grade", "upgrade"));
    }
}
