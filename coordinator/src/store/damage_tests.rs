//! What a damaged store does at start: refused with a sentence naming the file, never a
//! panic, never a silent fresh start (hostile testing: 32 KiB of random bytes at a quarter
//! of `coordinator.redb` panicked inside redb on the first log read; a zero-length file
//! started as a new member with its vote forgotten).

use super::{open_in_dir, OpenError, LOG, META, STORE_FILE};
use crate::raft_types::{Entry, LogId};
use openraft::{CommittedLeaderId, EntryPayload, Vote};
use rand::{Rng, SeedableRng};
use redb::{ReadableDatabase, ReadableTable};
use std::path::Path;

/// Entries written before damaging the file: enough that the log spans most of it.
const ENTRIES: u64 = 3_000;

fn entry(index: u64) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(3, 1), index),
        payload: EntryPayload::Blank,
    }
}

/// Writes a store, closes it, and returns its file.
///
/// A file left by kill -9 is repaired on open, and redb's repair goes back to the commit
/// before the newest when the newest fails its checksum, which is also how it recovers
/// from an ordinary crash: damage to the newest commit of such a file can lose its writes
/// unseen (docs/ARCHITECTURE.md, "Damaged stores"). This test covers a closed file.
fn write_store(dir: &Path) -> Vec<u8> {
    let db = open_in_dir(dir).expect("a new store opens");
    let txn = db.begin_write().unwrap();
    {
        let mut log = txn.open_table(LOG).unwrap();
        for i in 1..=ENTRIES {
            let bytes = serde_json::to_vec(&entry(i)).unwrap();
            log.insert(i, bytes.as_slice()).unwrap();
        }
        let mut meta = txn.open_table(META).unwrap();
        let vote = serde_json::to_vec(&Vote::new(3, 1)).unwrap();
        meta.insert("vote", vote.as_slice()).unwrap();
    }
    txn.commit().unwrap();
    drop(db);
    std::fs::read(dir.join(STORE_FILE)).unwrap()
}

fn log_indexes(dir: &Path) -> Vec<u64> {
    let db = open_in_dir(dir).unwrap();
    log_indexes_of(&db)
}

fn log_indexes_of(db: &redb::Database) -> Vec<u64> {
    let txn = db.begin_read().unwrap();
    match txn.open_table(LOG) {
        Ok(table) => table
            .iter()
            .unwrap()
            .map(|r| r.unwrap().0.value())
            .collect(),
        // A store gone back to before the table existed has lost the whole log.
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_zero_length_store_is_refused_not_taken_for_a_new_member() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(STORE_FILE), b"").unwrap();
    let err = open_in_dir(dir.path()).expect_err("an emptied store must be refused");
    assert!(matches!(err, OpenError::Emptied { .. }), "{err}");
    assert!(err.to_string().contains("coordinator.redb"), "{err}");
    // The file is left as it was, for the operator to look at.
    assert_eq!(
        std::fs::metadata(dir.path().join(STORE_FILE))
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn random_bytes_in_the_store_are_refused_or_harmless_never_a_panic() {
    let original = tempfile::tempdir().unwrap();
    let bytes = write_store(original.path());
    let expected = log_indexes(original.path());
    assert_eq!(expected.len() as u64, ENTRIES);
    let mut refused = 0;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    // 32 KiB of random bytes at a quarter of the file (the reported case), and at other
    // places: whatever is hit, the store is refused or reads back exactly.
    for eighth in 1..8 {
        let at = bytes.len() * eighth / 8;
        let mut damaged = bytes.clone();
        let end = (at + 32 * 1024).min(damaged.len());
        rng.fill(&mut damaged[at..end]);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STORE_FILE), &damaged).unwrap();
        match open_in_dir(dir.path()) {
            Err(OpenError::Damaged { path, detail }) => {
                assert!(path.ends_with(STORE_FILE));
                assert!(!detail.is_empty());
                refused += 1;
            }
            Err(other) => panic!("damage at {at} gave an unexpected error: {other}"),
            Ok(db) => {
                drop(db);
                assert_eq!(
                    log_indexes(dir.path()),
                    expected,
                    "damage at {at} changed the log"
                );
            }
        }
    }
    // The log spans the file, so most of these land on it.
    assert!(
        refused >= 4,
        "only {refused} of 7 damaged files were refused"
    );
}
