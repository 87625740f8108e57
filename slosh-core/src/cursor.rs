//! Cursors: what a client has already seen.

use std::fmt;

use crate::epoch::Epoch;

/// The id of the newest message a client has seen on a topic (0: none).
///
/// Message ids are 1, 2, 3 … per topic, so a cursor `c` means "send me every
/// message with an id above `c`".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cursor(pub u64);

/// Why a cursor value from the wire was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a cursor must be a plain decimal number from 0 to 18446744073709551615 with no sign, padding or leading zero, optionally followed by @ and the topic's epoch (8 characters)")]
pub struct CursorError;

impl Cursor {
    /// Parses a plain decimal u64: `0`, `7`, `18446744073709551615`.
    ///
    /// Empty, signed, fractional, hex, exponent, padded (spaces or leading
    /// zeros) and overflowing values are refused: a cursor is a message id we
    /// handed out, so anything we would never have written is a client bug
    /// worth reporting rather than guessing at.
    pub fn parse(text: &str) -> Result<Cursor, CursorError> {
        let bytes = text.as_bytes();
        match bytes {
            [] => return Err(CursorError),
            [b'0', _, ..] => return Err(CursorError),
            _ => {}
        }
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(CursorError);
        }
        text.parse::<u64>().map(Cursor).map_err(|_| CursorError)
    }

    /// The cursor as the message id it names.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// A resume point from the wire (`n`, `Last-Event-ID`): a cursor, and the
/// epoch it belongs to when the client said (`57@k3fq9a2x`). A bare cursor
/// is taken in the topic's current epoch, as before epochs existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The id the client has seen.
    pub cursor: Cursor,
    /// The epoch that id is from, if the client said.
    pub epoch: Option<Epoch>,
}

impl Resume {
    /// Parses `N` or `N@EPOCH`, `N` as [`Cursor::parse`] and the epoch as
    /// [`Epoch::parse`]; anything else is refused.
    pub fn parse(text: &str) -> Result<Resume, CursorError> {
        let (number, epoch) = match text.split_once('@') {
            Some((number, epoch)) => (number, Some(Epoch::parse(epoch).ok_or(CursorError)?)),
            None => (text, None),
        };
        Ok(Resume {
            cursor: Cursor::parse(number)?,
            epoch,
        })
    }

    /// Where this resume point is in a topic whose epoch is `current`: the
    /// cursor, or 0 with `true` (reset) when it is from another epoch.
    pub fn within(self, current: Epoch) -> (Cursor, bool) {
        match self.epoch {
            Some(epoch) if epoch != current => (Cursor(0), true),
            _ => (self.cursor, false),
        }
    }

    /// Whether the client named `current` as its cursor's epoch: such a
    /// cursor is a place in this life even above this server's `max` (a
    /// server sharing a store, a moment behind the one the client came
    /// from), and is waited for rather than counted as 0.
    pub fn confirmed_in(self, current: Epoch) -> bool {
        self.epoch == Some(current)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_decimals_parse() {
        assert_eq!(Cursor::parse("0"), Ok(Cursor(0)));
        assert_eq!(Cursor::parse("42"), Ok(Cursor(42)));
        assert_eq!(Cursor::parse("18446744073709551615"), Ok(Cursor(u64::MAX)));
    }

    #[test]
    fn anything_we_would_never_write_is_refused() {
        for bad in [
            "",
            "-1",
            "+1",
            "1.0",
            "0x10",
            "1e3",
            " 1",
            "1 ",
            "01",
            "00",
            "18446744073709551616",
            "99999999999999999999999",
            "１",
            "a",
        ] {
            assert_eq!(Cursor::parse(bad), Err(CursorError), "{bad:?}");
            assert_eq!(Resume::parse(bad), Err(CursorError), "{bad:?}");
        }
    }

    #[test]
    fn a_resume_point_may_carry_its_epoch() {
        let epoch = Epoch::from_bits(7);
        assert_eq!(
            Resume::parse("42"),
            Ok(Resume {
                cursor: Cursor(42),
                epoch: None
            })
        );
        let tagged = Resume::parse(&format!("42@{epoch}")).unwrap();
        assert_eq!(tagged.epoch, Some(epoch));
        assert_eq!(tagged.within(epoch), (Cursor(42), false));
        assert_eq!(tagged.within(Epoch::from_bits(8)), (Cursor(0), true));
        assert_eq!(
            Resume::parse("42").unwrap().within(epoch),
            (Cursor(42), false)
        );
        for bad in [
            "42@",
            "@aaaaaaaa",
            "42@aaaa",
            "42@aaaaaaaa@aaaaaaaa",
            "01@aaaaaaaa",
            "42@AAAAAAAA",
        ] {
            assert_eq!(Resume::parse(bad), Err(CursorError), "{bad:?}");
        }
    }
}
