//! The same behaviour from both stores.

use super::*;

async fn behaves<S: CheckpointStore>(store: S) {
    let (j, p) = (JobId(1), PartitionId(0));
    assert_eq!(store.get(j, p, 10).await.unwrap(), None);
    for offset in [10, 20, 30, 40, 50, 60] {
        store
            .put(j, p, offset, format!("state@{offset}").as_bytes())
            .await
            .unwrap();
    }
    assert_eq!(
        store.get(j, p, 30).await.unwrap().as_deref(),
        Some(&b"state@30"[..])
    );
    assert_eq!(store.get(j, PartitionId(1), 30).await.unwrap(), None);
    store.prune(j, p, 60).await.unwrap();
    assert_eq!(store.get(j, p, 10).await.unwrap(), None, "pruned");
    assert_eq!(store.get(j, p, 20).await.unwrap(), None, "pruned");
    for offset in [30, 40, 50, 60] {
        assert!(
            store.get(j, p, offset).await.unwrap().is_some(),
            "kept {offset}"
        );
    }
}

#[tokio::test]
async fn the_directory_store_keeps_and_prunes() {
    let dir = tempfile::tempdir().unwrap();
    behaves(DirCheckpointStore::new(dir.path().to_str().unwrap()).unwrap()).await;
}

#[tokio::test]
async fn the_memory_store_keeps_and_prunes() {
    behaves(MemoryCheckpointStore::new()).await;
}

#[tokio::test]
async fn a_corrupt_snapshot_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirCheckpointStore::new(dir.path().to_str().unwrap()).unwrap();
    let location = store
        .put(JobId(1), PartitionId(0), 5, b"hello")
        .await
        .unwrap();
    let path = location.strip_prefix("file://").unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
    assert!(matches!(
        store.get(JobId(1), PartitionId(0), 5).await,
        Err(StoreError::Corrupt(_))
    ));
}

#[tokio::test]
async fn the_local_first_store_keeps_and_prunes() {
    let dir = tempfile::tempdir().unwrap();
    behaves(LocalFirst::open(dir.path(), MemoryCheckpointStore::new()).unwrap()).await;
}

#[tokio::test]
async fn the_local_copy_serves_recovery_and_the_remote_one_a_new_machine() {
    let (j, p) = (JobId(3), PartitionId(1));
    let remote = MemoryCheckpointStore::new();
    let disk = tempfile::tempdir().unwrap();
    let store = LocalFirst::open(disk.path(), remote.clone()).unwrap();
    store.put(j, p, 100, b"state").await.unwrap();
    assert_eq!(
        remote.get(j, p, 100).await.unwrap().as_deref(),
        Some(&b"state"[..]),
        "durable remotely too"
    );
    drop(store);
    // The same machine after a restart: served from its disk even if the remote is gone.
    let reopened = LocalFirst::open(disk.path(), MemoryCheckpointStore::new()).unwrap();
    assert_eq!(
        reopened.get(j, p, 100).await.unwrap().as_deref(),
        Some(&b"state"[..])
    );
    // A new machine (empty disk): served from the checkpoint store.
    let fresh = tempfile::tempdir().unwrap();
    let elsewhere = LocalFirst::open(fresh.path(), remote).unwrap();
    assert_eq!(
        elsewhere.get(j, p, 100).await.unwrap().as_deref(),
        Some(&b"state"[..])
    );
}
