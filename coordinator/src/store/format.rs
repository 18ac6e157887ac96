//! The store's format version, kept in the store itself (table `weir_format`, key
//! `version`). It covers how every value in the store is encoded: log entries (JSON of
//! openraft's entry around a `Command`), the vote and hints (JSON), and the snapshot's
//! metadata (JSON) beside its data (which also carries a version of its own, see
//! `snapshot_format`). A store is checked at open: one of a newer format than this code
//! reads is refused with a sentence naming the file and both versions, never misread. A
//! store without the record was written before versions existed and is version 1; it gets
//! the record when the log store next opens it.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

/// The store's format version, under [`VERSION_KEY`].
pub(crate) const FORMAT: TableDefinition<&str, u64> = TableDefinition::new("weir_format");
/// The key of the format version in [`FORMAT`].
const VERSION_KEY: &str = "version";
/// The store format this code writes, and the newest it reads. Bump it (and regenerate
/// the golden files under `coordinator/tests/golden/`) when a stored encoding changes.
pub const STORE_FORMAT_VERSION: u64 = 1;
/// The version of a store written before the version was recorded.
const UNRECORDED_VERSION: u64 = 1;

/// The store's format version: the recorded one, or [`UNRECORDED_VERSION`] for a store
/// that has none. Errors are redb's, as a sentence.
pub fn stored_version(db: &Database) -> Result<u64, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    match txn.open_table(FORMAT) {
        Ok(table) => Ok(table
            .get(VERSION_KEY)
            .map_err(|e| e.to_string())?
            .map_or(UNRECORDED_VERSION, |v| v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(UNRECORDED_VERSION),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether this code reads a store of format `version`: any version up to its own.
pub fn readable(version: u64) -> bool {
    version <= STORE_FORMAT_VERSION
}

/// Records [`STORE_FORMAT_VERSION`] in a store that has no version yet, inside `txn`
/// (the transaction that creates the log tables, so that it costs no fsync of its own).
/// A store already at a version keeps it: [`stored_version`] refused a newer one at open.
pub(crate) fn record_if_missing(txn: &WriteTransaction) -> Result<(), redb::Error> {
    let mut table = txn.open_table(FORMAT)?;
    if table.get(VERSION_KEY)?.is_none() {
        table.insert(VERSION_KEY, STORE_FORMAT_VERSION)?;
    }
    Ok(())
}

/// Records `version` as the store's format: for tests that stand in for a newer weir.
#[cfg(test)]
pub(crate) fn record(db: &Database, version: u64) {
    let txn = db.begin_write().unwrap();
    txn.open_table(FORMAT)
        .unwrap()
        .insert(VERSION_KEY, version)
        .unwrap();
    txn.commit().unwrap();
}
