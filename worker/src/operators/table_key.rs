//! The key type of the engine's per-key tables. A lookup hashes the event's key and compares
//! it with the table's candidates; with the key's text behind a pointer (`Arc<str>`) each
//! comparison is one more cache miss per event once the table outgrows the cache. Keys are
//! mostly short (card numbers, user ids), so a key of up to [`INLINE_KEY_BYTES_MAX`] bytes
//! is held inline, in the table's own slot, and compared there.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The longest key held inline; longer keys share the text the engine keeps anyway.
pub(crate) const INLINE_KEY_BYTES_MAX: usize = 22;

/// A key as a table holds it. Looked up by the key's bytes (`Borrow<[u8]>`): hashing and
/// equality are those of the bytes, whichever way they are held.
#[derive(Debug, Clone)]
pub(crate) enum TableKey {
    Inline {
        len: u8,
        bytes: [u8; INLINE_KEY_BYTES_MAX],
    },
    Shared(Arc<str>),
}

impl TableKey {
    /// The table's key for `key`, inline when it is short enough.
    pub(crate) fn new(key: &Arc<str>) -> TableKey {
        let text = key.as_bytes();
        if text.len() > INLINE_KEY_BYTES_MAX {
            return TableKey::Shared(Arc::clone(key));
        }
        let mut bytes = [0u8; INLINE_KEY_BYTES_MAX];
        bytes[..text.len()].copy_from_slice(text);
        TableKey::Inline {
            len: text.len() as u8,
            bytes,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            TableKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            TableKey::Shared(text) => text.as_bytes(),
        }
    }
}

impl Borrow<[u8]> for TableKey {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for TableKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for TableKey {}

impl Hash for TableKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::hash::FxHashMap;

    #[test]
    fn short_and_long_keys_are_found_by_their_bytes() {
        let mut table: FxHashMap<TableKey, u32> = FxHashMap::default();
        let keys: Vec<Arc<str>> = ["", "4111", &"x".repeat(22), &"y".repeat(23), "é-card"]
            .iter()
            .map(|k| Arc::from(*k))
            .collect();
        for (i, key) in keys.iter().enumerate() {
            table.insert(TableKey::new(key), i as u32);
        }
        assert!(matches!(
            TableKey::new(&keys[2]),
            TableKey::Inline { len: 22, .. }
        ));
        assert!(matches!(TableKey::new(&keys[3]), TableKey::Shared(_)));
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(table.get(key.as_bytes()), Some(&(i as u32)), "{key:?}");
        }
        assert_eq!(table.get("4112".as_bytes()), None);
        assert_eq!(table.get("x".repeat(21).as_bytes()), None);
        assert_eq!(table.remove("4111".as_bytes()), Some(1));
        assert_eq!(table.len(), keys.len() - 1);
    }
}
