//! The newest log entries, kept decoded in memory so that replication and apply read them
//! without a redb transaction and a JSON decode each time (etcd keeps its unstable log the
//! same way). The cache only ever holds entries that are in the redb log as this process
//! sees it: appends enter it after their commit, and truncation and purging leave it with
//! the log. A restart starts with an empty cache.

use crate::raft_types::Entry;
use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};

/// Entries kept; older ones are read from redb again. A few seconds of writes at the
/// measured peak, and at most a few MiB of memory for control-plane commands.
pub const ENTRY_CACHE_MAX: usize = 4_096;
/// Bytes of entries kept, as encoded in the log: a count alone let large entries (a job
/// spec may be megabytes; an API flood submits jobs by the thousand) hold many times
/// what steady checkpoint traffic does, for as long as 4,096 newer entries took to come.
pub const ENTRY_CACHE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// A bounded, contiguous run of the newest log entries, by index.
#[derive(Debug, Default)]
pub struct EntryCache {
    /// Each entry with its encoded size in bytes.
    entries: BTreeMap<u64, (Entry, usize)>,
    /// The sum of the encoded sizes held.
    bytes: usize,
}

impl EntryCache {
    /// Records entries just made durable in the log, each with its encoded size in bytes.
    /// An entry that does not follow the cached run (a gap, as after a restart or snapshot
    /// install) starts a new run. The oldest entries leave once more than
    /// [`ENTRY_CACHE_MAX`] entries or [`ENTRY_CACHE_BYTES_MAX`] bytes are held.
    pub fn appended<'a>(&mut self, entries: impl IntoIterator<Item = (&'a Entry, usize)>) {
        for (entry, size) in entries {
            let index = entry.log_id.index;
            // Overwriting an index means the log was rewritten from there (openraft truncates
            // first, but keep the run consistent regardless).
            self.truncated(index);
            if let Some((&last, _)) = self.entries.last_key_value() {
                if last + 1 != index {
                    self.entries.clear();
                    self.bytes = 0;
                }
            }
            self.entries.insert(index, (entry.clone(), size));
            self.bytes += size;
        }
        while self.entries.len() > ENTRY_CACHE_MAX || self.bytes > ENTRY_CACHE_BYTES_MAX {
            match self.entries.pop_first() {
                Some((_, (_, size))) => self.bytes -= size,
                None => break,
            }
        }
        debug_assert!(self.is_contiguous());
        debug_assert_eq!(
            self.bytes,
            self.entries.values().map(|(_, n)| n).sum::<usize>()
        );
    }

    /// The log lost every entry from `index` on.
    pub fn truncated(&mut self, index: u64) {
        let removed = self.entries.split_off(&index);
        self.bytes -= removed.values().map(|(_, n)| n).sum::<usize>();
    }

    /// The log lost every entry up to and including `index`.
    pub fn purged(&mut self, index: u64) {
        let kept = self.entries.split_off(&(index.saturating_add(1)));
        let removed = std::mem::replace(&mut self.entries, kept);
        self.bytes -= removed.values().map(|(_, n)| n).sum::<usize>();
    }

    /// The entries of `range` if the cache holds every one of them; `None` sends the caller
    /// to redb. A range with an open end is never answered here: entries past the cache's
    /// end may exist only on disk.
    pub fn get<RB: RangeBounds<u64>>(&self, range: &RB) -> Option<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.checked_add(1)?,
            Bound::Unbounded => return None,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.checked_add(1)?,
            Bound::Excluded(&e) => e,
            Bound::Unbounded => return None,
        };
        if end <= start {
            return Some(Vec::new());
        }
        let (&first, _) = self.entries.first_key_value()?;
        let (&last, _) = self.entries.last_key_value()?;
        if start < first || end > last + 1 {
            return None;
        }
        Some(
            self.entries
                .range(start..end)
                .map(|(_, (e, _))| e.clone())
                .collect(),
        )
    }

    fn is_contiguous(&self) -> bool {
        match (
            self.entries.first_key_value(),
            self.entries.last_key_value(),
        ) {
            (Some((&first, _)), Some((&last, _))) => {
                (last - first + 1) as usize == self.entries.len()
            }
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn entries(range: std::ops::Range<u64>) -> Vec<Entry> {
        range.map(entry).collect()
    }

    /// Each entry with a nominal size of one byte.
    fn small(entries: &[Entry]) -> impl Iterator<Item = (&Entry, usize)> {
        entries.iter().map(|e| (e, 1))
    }

    fn indexes(got: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        got.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn answers_only_ranges_it_holds_whole() {
        let mut cache = EntryCache::default();
        cache.appended(small(&entries(5..10)));
        assert_eq!(indexes(cache.get(&(5..10))), Some(vec![5, 6, 7, 8, 9]));
        assert_eq!(indexes(cache.get(&(6..=7))), Some(vec![6, 7]));
        assert_eq!(cache.get(&(4..8)), None);
        assert_eq!(cache.get(&(8..11)), None);
        assert_eq!(cache.get(&(5..)), None);
        assert_eq!(indexes(cache.get(&(7..7))), Some(vec![]));
    }

    #[test]
    fn truncation_purging_and_gaps_keep_it_a_true_suffix() {
        let mut cache = EntryCache::default();
        cache.appended(small(&entries(1..10)));
        cache.truncated(7);
        assert_eq!(cache.get(&(6..8)), None);
        cache.appended(small(&entries(7..9)));
        assert_eq!(indexes(cache.get(&(5..9))), Some(vec![5, 6, 7, 8]));
        cache.purged(5);
        assert_eq!(cache.get(&(5..7)), None);
        assert_eq!(indexes(cache.get(&(6..7))), Some(vec![6]));
        // A gap (a snapshot installed past the log) starts a new run.
        cache.appended(small(&entries(20..22)));
        assert_eq!(cache.get(&(8..9)), None);
        assert_eq!(indexes(cache.get(&(20..22))), Some(vec![20, 21]));
        // Rewriting an index drops everything after it.
        cache.appended(small(&entries(20..21)));
        assert_eq!(cache.get(&(20..22)), None);
    }

    #[test]
    fn holds_at_most_its_bound() {
        let mut cache = EntryCache::default();
        let n = ENTRY_CACHE_MAX as u64 + 10;
        cache.appended(small(&entries(0..n)));
        assert_eq!(cache.get(&(0..1)), None);
        assert_eq!(cache.get(&(10..n)).map(|v| v.len()), Some(ENTRY_CACHE_MAX));
    }

    #[test]
    fn holds_at_most_its_bound_in_bytes_and_counts_them_through_every_change() {
        let mut cache = EntryCache::default();
        let big = ENTRY_CACHE_BYTES_MAX / 4;
        let run = entries(0..10);
        cache.appended(run.iter().map(|e| (e, big)));
        // Only the newest four fit: the oldest six left for their bytes, not their count.
        assert_eq!(cache.get(&(5..10)), None);
        assert_eq!(indexes(cache.get(&(6..10))), Some(vec![6, 7, 8, 9]));
        assert_eq!(cache.bytes, 4 * big);
        cache.truncated(9);
        assert_eq!(cache.bytes, 3 * big);
        cache.purged(6);
        assert_eq!(cache.bytes, 2 * big);
        // An entry larger than the whole bound is not kept at all; redb still has it.
        let huge = entries(9..10);
        cache.appended(huge.iter().map(|e| (e, ENTRY_CACHE_BYTES_MAX + 1)));
        assert_eq!(cache.get(&(9..10)), None);
        assert_eq!(cache.bytes, 0);
        cache.appended(small(&entries(10..12)));
        assert_eq!(indexes(cache.get(&(10..12))), Some(vec![10, 11]));
        assert_eq!(cache.bytes, 2);
    }
}
