//! Resume points as slosh writes them: `N`, or `N@EPOCH` where the epoch
//! names the life of the topic the id is from (docs/protocol.md,
//! "Epochs"). A client keeps the whole cursor and sends it back; the number
//! alone tells the order of messages within one epoch.

use std::fmt;

/// A message id and the epoch it belongs to, if the server said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor {
    /// The message id.
    pub id: u64,
    /// The epoch of the topic life the id is from; `None` for a bare id
    /// (a server without epochs, or a cursor a person typed).
    pub epoch: Option<String>,
}

impl Cursor {
    /// A cursor at `id` of `epoch`.
    pub fn new(id: u64, epoch: Option<&str>) -> Cursor {
        Cursor {
            id,
            epoch: epoch.map(str::to_string),
        }
    }

    /// Reads `N` or `N@EPOCH`; `None` for anything else. The epoch is
    /// checked only for being non-empty: it is the server's to judge.
    pub fn parse(text: &str) -> Option<Cursor> {
        let (number, epoch) = match text.split_once('@') {
            Some((_, "")) => return None,
            Some((number, epoch)) => (number, Some(epoch)),
            None => (text, None),
        };
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Cursor::new(number.parse().ok()?, epoch))
    }

    /// Whether `other` is from another life of the topic than this cursor
    /// (both name an epoch and they differ).
    pub fn other_life(&self, other: &Cursor) -> bool {
        matches!((&self.epoch, &other.epoch), (Some(a), Some(b)) if a != b)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.epoch {
            Some(epoch) => write!(f, "{}@{epoch}", self.id),
            None => write!(f, "{}", self.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_with_and_without_an_epoch() {
        for text in ["0", "57", "57@k3fq9a2x"] {
            assert_eq!(Cursor::parse(text).unwrap().to_string(), text);
        }
        let tagged = Cursor::parse("57@k3fq9a2x").unwrap();
        assert_eq!((tagged.id, tagged.epoch.as_deref()), (57, Some("k3fq9a2x")));
        for bad in ["", "@x", "57@", "x@y", "-1", "1.5"] {
            assert_eq!(Cursor::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn another_life_needs_two_epochs_that_differ() {
        let a = Cursor::new(5, Some("aaaaaaaa"));
        assert!(a.other_life(&Cursor::new(1, Some("bbbbbbbb"))));
        assert!(!a.other_life(&Cursor::new(9, Some("aaaaaaaa"))));
        assert!(!a.other_life(&Cursor::new(1, None)));
    }
}
