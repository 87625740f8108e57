//! Topic names: parsed once at the edge, trusted afterwards.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// The longest topic name accepted. Long enough for UUIDs and composite keys,
/// short enough that a name never dominates a topic's memory.
pub const MAX_NAME_LEN: usize = 128;

/// A valid topic name: 1–128 characters of `A-Z a-z 0-9 _ -`.
///
/// The restricted alphabet means a name never needs escaping anywhere it is
/// written back (a URL, a header, JSON, XML, a Prometheus label, a log line),
/// which is what makes header injection through a name impossible.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Arc<str>);

/// Why a string is not a topic name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty (`/topics/` or `/topics/.json`).
    #[error("topic name is empty: a topic name is 1-128 characters of A-Z a-z 0-9 _ -")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("topic name is too long: a topic name is 1-128 characters of A-Z a-z 0-9 _ -")]
    TooLong,
    /// The name holds a character outside the alphabet.
    #[error("topic name has a character that is not allowed: a topic name is 1-128 characters of A-Z a-z 0-9 _ -")]
    BadChar,
}

impl TopicName {
    /// Parses `name`, allocating only when it is valid.
    pub fn parse(name: &str) -> Result<TopicName, NameError> {
        validate(name)?;
        Ok(TopicName(Arc::from(name)))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks `name` against the rule without allocating, so a lookup of an
/// existing topic costs no allocation.
pub(crate) fn validate(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(NameError::BadChar);
    }
    Ok(())
}

impl Borrow<str> for TopicName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TopicName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_the_allowed_alphabet_are_accepted() {
        for name in ["chat", "a", "A-Z_09", &"x".repeat(128)] {
            assert_eq!(
                TopicName::parse(name).map(|n| n.to_string()),
                Ok(name.to_string())
            );
        }
    }

    #[test]
    fn names_outside_the_rule_are_refused_with_the_rule() {
        assert_eq!(TopicName::parse(""), Err(NameError::Empty));
        assert_eq!(TopicName::parse(&"x".repeat(129)), Err(NameError::TooLong));
        for bad in ["..", ".", "a b", "a/b", "%2F", "é", "a.b", "a\nb", "a:b"] {
            assert_eq!(TopicName::parse(bad), Err(NameError::BadChar), "{bad:?}");
        }
        let message = NameError::TooLong.to_string();
        assert!(
            message.contains("128") && message.contains("A-Z"),
            "{message}"
        );
    }
}
