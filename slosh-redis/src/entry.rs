//! The text of a message in Redis, and what a catch-up read returns.

use slosh_core::{Epoch, Json, Stamp};

/// One message as Redis keeps it: `ID STAMP END JSON`, its id, when it was
/// appended, the topic's running byte total after it, and its JSON text.
/// The JSON goes last, so spaces in it need no escaping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The message's id.
    pub id: u64,
    /// When it was appended ([`Stamp`]).
    pub stamp: Stamp,
    /// The topic's running byte total after it.
    pub end: u64,
    /// The message.
    pub json: Json,
}

impl Entry {
    /// Reads `ID STAMP END JSON`; `None` for anything else (a key that
    /// holds something not written by slosh).
    pub fn parse(text: &str) -> Option<Entry> {
        let mut fields = text.splitn(4, ' ');
        let id = fields.next()?.parse().ok()?;
        let stamp = fields.next()?.parse().ok()?;
        let end = fields.next()?.parse().ok()?;
        let json = fields.next()?;
        Some(Entry {
            id,
            stamp,
            end,
            json: Json::from_stored(json),
        })
    }

    /// The running byte total before this message.
    pub(crate) fn start(&self) -> u64 {
        self.end.saturating_sub(self.json.len() as u64)
    }
}

/// What Redis holds of a topic after some id: its epoch (`None` when it
/// holds nothing), its head, and the entries.
pub(crate) struct Snapshot {
    pub(crate) epoch: Option<Epoch>,
    pub(crate) max: u64,
    pub(crate) end: u64,
    pub(crate) entries: Vec<Entry>,
}

impl Snapshot {
    /// The sync script's reply; `None` when any part is not slosh's.
    pub(crate) fn read(reply: (String, u64, u64, Vec<String>)) -> Option<Snapshot> {
        let (epoch, max, end, entries) = reply;
        let epoch = if epoch.is_empty() {
            None
        } else {
            Some(Epoch::parse(&epoch)?)
        };
        let entries = entries
            .iter()
            .map(|text| Entry::parse(text))
            .collect::<Option<Vec<Entry>>>()?;
        Some(Snapshot {
            epoch,
            max,
            end,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_keeps_spaces_in_its_json_and_refuses_what_is_not_one() {
        let entry = Entry::parse(r#"7 1700000000000 40 {"a": "b c"}"#).unwrap();
        assert_eq!(
            (entry.id, entry.stamp, entry.end),
            (7, 1_700_000_000_000, 40)
        );
        assert_eq!(entry.json.as_str(), r#"{"a": "b c"}"#);
        assert_eq!(entry.start(), 28);
        for bad in ["", "7", "7 1 2", "x 1 2 {}", "7 -1 2 {}"] {
            assert_eq!(Entry::parse(bad), None, "{bad:?}");
        }
    }
}
