//! Epochs: which life of a topic's id sequence a cursor belongs to.
//!
//! Ids count 1, 2, 3 … per topic, and start again when the sequence does: a
//! memory store after a restart, a topic deleted (or expired) and made
//! again. A bare cursor `57` cannot tell those lives apart, so a client
//! resuming at 57 after a restart would silently skip everything until the
//! new life reached 58. Every topic life therefore has an epoch, a short
//! random token, and cursors may carry it: `57@k3fq9a2x`. A cursor from
//! another epoch is never taken as a place in this one; the client is told
//! its cursor was reset instead (docs/protocol.md, "Epochs").

use std::fmt;

/// How many characters an epoch has.
pub const EPOCH_LEN: usize = 8;

/// The characters of an epoch: lower-case letters and digits without the
/// easily confused `l`, `o`, `0`, `1`, 32 of them, so each carries 5 bits.
const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// A topic life's epoch: 8 characters of [`ALPHABET`], 40 random bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch([u8; EPOCH_LEN]);

impl Epoch {
    /// The epoch spelled by the low 40 bits of `bits`.
    pub fn from_bits(bits: u64) -> Epoch {
        let mut out = [b'a'; EPOCH_LEN];
        for (i, slot) in out.iter_mut().enumerate() {
            let shift = 5 * (EPOCH_LEN - 1 - i);
            // Five bits index a 32-entry table.
            *slot = ALPHABET
                .get(((bits >> shift) & 31) as usize)
                .copied()
                .unwrap_or(b'a');
        }
        Epoch(out)
    }

    /// A fresh epoch from `random` (the hub's random source); `None` when
    /// the source failed.
    pub(crate) fn random(random: &crate::session::RandomSource) -> Option<Epoch> {
        let mut bytes = [0u8; 8];
        random(&mut bytes).then(|| Epoch::from_bits(u64::from_le_bytes(bytes)))
    }

    /// Parses exactly [`EPOCH_LEN`] characters of the alphabet; anything
    /// else is no epoch of ours.
    pub fn parse(text: &str) -> Option<Epoch> {
        let bytes: [u8; EPOCH_LEN] = text.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| ALPHABET.contains(b))
            .then_some(Epoch(bytes))
    }

    /// The epoch as text.
    pub fn as_str(&self) -> &str {
        // Only ALPHABET's ASCII is ever stored.
        std::str::from_utf8(&self.0).unwrap_or("aaaaaaaa")
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Epoch({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_round_trips_through_its_text() {
        for bits in [0, 1, 31, 32, 0xFF_FFFF_FFFF, u64::MAX, 0x0012_3456_789A] {
            let epoch = Epoch::from_bits(bits);
            assert_eq!(epoch.as_str().len(), EPOCH_LEN);
            assert_eq!(Epoch::parse(epoch.as_str()), Some(epoch));
        }
        assert_eq!(Epoch::from_bits(0).as_str(), "aaaaaaaa");
        assert_ne!(Epoch::from_bits(1), Epoch::from_bits(2));
    }

    #[test]
    fn anything_else_is_no_epoch() {
        for bad in [
            "",
            "aaaaaaa",
            "aaaaaaaaa",
            "AAAAAAAA",
            "aaaaaaa0",
            "aaaaaaal",
            "aaaa aaa",
            "ééé",
        ] {
            assert_eq!(Epoch::parse(bad), None, "{bad:?}");
        }
    }
}
