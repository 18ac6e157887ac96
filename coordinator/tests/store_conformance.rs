//! The redb store passes openraft's storage conformance suite, the same suite every
//! openraft log and state-machine store is held to.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use openraft::testing::{StoreBuilder, Suite};
use weir_coordinator::raft_types::{StorageError, TypeConfig};
use weir_coordinator::store::{self, LogStore, StateMachineStore};

struct RedbStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for RedbStoreBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().map_err(store::write_err)?;
        let db = store::open_in_dir(dir.path()).map_err(store::write_err)?;
        let (log, sm) = store::open_stores(db).map_err(store::write_err)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn the_redb_store_passes_the_openraft_storage_suite() {
    Suite::test_all(RedbStoreBuilder).expect("storage suite");
}
