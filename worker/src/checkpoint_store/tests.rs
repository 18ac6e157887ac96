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
    store.prune(j, p, 60, &[]).await.unwrap();
    assert_eq!(store.get(j, p, 10).await.unwrap(), None, "pruned");
    assert_eq!(store.get(j, p, 20).await.unwrap(), None, "pruned");
    for offset in [30, 40, 50, 60] {
        assert!(
            store.get(j, p, offset).await.unwrap().is_some(),
            "kept {offset}"
        );
    }
    // A pinned snapshot outlives any number of newer ones, and does not count toward the
    // ones kept; once unpinned it goes like any other.
    for offset in [70, 80, 90, 100] {
        store.put(j, p, offset, b"newer").await.unwrap();
        store.prune(j, p, offset, &[30]).await.unwrap();
    }
    assert!(store.get(j, p, 30).await.unwrap().is_some(), "pinned");
    for offset in [40, 50, 60] {
        assert_eq!(store.get(j, p, offset).await.unwrap(), None, "{offset}");
    }
    for offset in [70, 80, 90, 100] {
        assert!(store.get(j, p, offset).await.unwrap().is_some(), "{offset}");
    }
    store.prune(j, p, 100, &[]).await.unwrap();
    assert_eq!(store.get(j, p, 30).await.unwrap(), None, "unpinned");
    assert_eq!(store.newest_offset(j, p).await.unwrap(), Some(100));
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
    let (j, p) = (JobId(1), PartitionId(1));
    let remote = MemoryCheckpointStore::new();
    let disk = tempfile::tempdir().unwrap();
    let store = LocalFirst::open(disk.path(), remote.clone()).unwrap();
    let full = changes(true, "h", vec![entry(0, "a", Some("1"))]);
    put_changes(&store, 1, 100, None, &full).await.unwrap();
    assert_eq!(
        remote.get(j, p, 100).await.unwrap().as_deref(),
        Some(&b"snapshot@100"[..]),
        "durable remotely too"
    );
    drop(store);
    // The same machine after a restart: served from its disk even if the remote is gone.
    let reopened = LocalFirst::open(disk.path(), MemoryCheckpointStore::new()).unwrap();
    let local = reopened.get_local(j, p, 100).await.unwrap().unwrap();
    assert_eq!(keys_of(&local), [(0, "a", "1")]);
    // A new machine (empty disk): no local copy; the snapshot from the checkpoint store.
    let fresh = tempfile::tempdir().unwrap();
    let elsewhere = LocalFirst::open(fresh.path(), remote).unwrap();
    assert_eq!(elsewhere.get_local(j, p, 100).await.unwrap(), None);
    assert_eq!(
        elsewhere.get(j, p, 100).await.unwrap().as_deref(),
        Some(&b"snapshot@100"[..])
    );
}

fn entry(section: u32, key: &str, value: Option<&str>) -> StateEntry {
    StateEntry {
        section,
        key: key.to_string(),
        value: value.map(|v| v.as_bytes().to_vec()),
    }
}

fn changes(full: bool, header: &str, entries: Vec<StateEntry>) -> StateChanges {
    StateChanges {
        full,
        header: header.as_bytes().to_vec(),
        entries,
    }
}

async fn put_changes<S: CheckpointStore>(
    store: &S,
    partition: u32,
    offset: i64,
    base_offset: Option<i64>,
    changes: &StateChanges,
) -> Result<String, StoreError> {
    let snapshot = format!("snapshot@{offset}");
    store
        .put_checkpoint(
            JobId(1),
            PartitionId(partition),
            Checkpoint {
                checkpoint: offset as u64 / 10,
                offset,
                snapshot: snapshot.as_bytes(),
                changes: changes.clone(),
                base_offset,
            },
        )
        .await
}

fn keys_of(state: &LocalState) -> Vec<(u32, &str, &str)> {
    state
        .entries
        .iter()
        .map(|e| {
            (
                e.section,
                e.key.as_str(),
                std::str::from_utf8(e.value.as_deref().unwrap_or_default()).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_local_copy_follows_changes_key_by_key() {
    use crate::operators::WINDOWS_SECTION as W;
    let dir = tempfile::tempdir().unwrap();
    let remote = MemoryCheckpointStore::new();
    let store = LocalFirst::open(dir.path(), remote.clone()).unwrap();
    let (j, p0) = (JobId(1), PartitionId(0));
    assert_eq!(store.get_local(j, p0, 10).await.unwrap(), None);

    let first = changes(
        true,
        "h1",
        vec![entry(0, "a", Some("1")), entry(W, "k", Some("w1"))],
    );
    put_changes(&store, 0, 10, None, &first).await.unwrap();
    let at_10 = store.get_local(j, p0, 10).await.unwrap().unwrap();
    assert_eq!(at_10.checkpoint, 1);
    assert_eq!(at_10.header, b"h1");
    assert_eq!(keys_of(&at_10), [(0, "a", "1"), (W, "k", "w1")]);
    assert_eq!(
        store.get_local(j, p0, 9).await.unwrap(),
        None,
        "another offset"
    );

    // Another partition's full write leaves partition 0 alone.
    let other = changes(true, "h", vec![entry(0, "z", Some("9"))]);
    put_changes(&store, 1, 5, None, &other).await.unwrap();

    let second = changes(
        false,
        "h2",
        vec![entry(0, "a", None), entry(0, "b", Some("2"))],
    );
    put_changes(&store, 0, 20, Some(10), &second).await.unwrap();
    let at_20 = store.get_local(j, p0, 20).await.unwrap().unwrap();
    assert_eq!(at_20.header, b"h2");
    assert_eq!(keys_of(&at_20), [(0, "b", "2"), (W, "k", "w1")]);
    assert_eq!(store.get_local(j, p0, 10).await.unwrap(), None, "moved on");

    // Changes that do not start where the copy is change nothing locally; the checkpoint
    // still goes to the checkpoint store (the local copy is a shortcut, not durability),
    // and the stale copy is never restored at the new offset.
    let stray = changes(false, "hx", vec![entry(0, "c", Some("3"))]);
    put_changes(&store, 0, 30, Some(10), &stray).await.unwrap();
    put_changes(&store, 1, 30, None, &stray).await.unwrap();
    assert_eq!(
        keys_of(&store.get_local(j, p0, 20).await.unwrap().unwrap()),
        [(0, "b", "2"), (W, "k", "w1")]
    );
    assert_eq!(
        store.get_local(j, p0, 30).await.unwrap(),
        None,
        "never restored at 30"
    );
    assert_eq!(
        remote.get(j, p0, 30).await.unwrap().as_deref(),
        Some(&b"snapshot@30"[..])
    );

    // The snapshots went to the checkpoint store as well.
    assert_eq!(
        remote.get(j, p0, 20).await.unwrap().as_deref(),
        Some(&b"snapshot@20"[..])
    );

    // A full write replaces whatever was there; the copy survives reopening.
    let third = changes(true, "h3", vec![entry(W, "m", Some("w2"))]);
    put_changes(&store, 0, 30, Some(20), &third).await.unwrap();
    drop(store);
    let reopened = LocalFirst::open(dir.path(), remote).unwrap();
    let at_30 = reopened.get_local(j, p0, 30).await.unwrap().unwrap();
    assert_eq!(keys_of(&at_30), [(W, "m", "w2")]);
    let p1 = reopened
        .get_local(j, PartitionId(1), 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(keys_of(&p1), [(0, "z", "9")]);
}

#[tokio::test]
async fn stores_without_a_local_copy_take_the_snapshot_alone() {
    let store = MemoryCheckpointStore::new();
    let full = changes(true, "h", vec![entry(0, "a", Some("1"))]);
    put_changes(&store, 0, 10, None, &full).await.unwrap();
    assert_eq!(
        store
            .get(JobId(1), PartitionId(0), 10)
            .await
            .unwrap()
            .as_deref(),
        Some(&b"snapshot@10"[..])
    );
    assert_eq!(
        store.get_local(JobId(1), PartitionId(0), 10).await.unwrap(),
        None
    );
}

#[test]
fn writers_of_one_offset_at_once_leave_a_whole_snapshot() {
    // A fenced owner finishing its last checkpoint and the new owner can write the same
    // offset at the same time; with one shared temporary file, one truncated or appended
    // to the other's just before the rename, and the snapshot failed its checksum.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_string();
    let (j, p) = (JobId(1), PartitionId(0));
    let writers: Vec<_> = [b'a', b'b']
        .into_iter()
        .map(|fill| {
            let store = DirCheckpointStore::new(&root).unwrap();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let snapshot = vec![fill; 256 * 1024];
                for _ in 0..40 {
                    runtime.block_on(store.put(j, p, 7, &snapshot)).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let store = DirCheckpointStore::new(&root).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let snapshot = runtime.block_on(store.get(j, p, 7)).unwrap().unwrap();
    assert_eq!(snapshot.len(), 256 * 1024);
    assert!(
        snapshot.iter().all(|b| *b == snapshot[0]),
        "one writer's whole snapshot"
    );
}

#[tokio::test]
async fn pruning_removes_what_dead_writes_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirCheckpointStore::new(dir.path().to_str().unwrap()).unwrap();
    let (j, p) = (JobId(1), PartitionId(0));
    for offset in [10, 20, 30, 40, 50] {
        store.put(j, p, offset, b"state").await.unwrap();
    }
    let partition_dir = dir.path().join("1").join("0");
    let stale = partition_dir.join(format!("{:020}.999-1.tmp", 15));
    let fresh = partition_dir.join(format!("{:020}.999-2.tmp", 60));
    std::fs::write(&stale, b"half a snapshot").unwrap();
    std::fs::write(&fresh, b"being written").unwrap();
    store.prune(j, p, 50, &[]).await.unwrap();
    assert!(!stale.exists(), "older than every snapshot kept");
    assert!(fresh.exists(), "a write that may still be under way");
    assert!(store.get(j, p, 50).await.unwrap().is_some());
}

/// The stored snapshot format, pinned: the bytes, a CRC-32C (little-endian) and the
/// format's trailer `WSN\x01` (CRC-32C of "state" is 0x66db68df, computed apart from
/// the crate). A change here changes what older files read as.
#[test]
fn the_snapshot_file_format_is_pinned() {
    let file = [&b"state"[..], &super::snapshot_trailer(b"state")].concat();
    assert_eq!(
        file,
        [b's', b't', b'a', b't', b'e', 0xdf, 0x68, 0xdb, 0x66, b'W', b'S', b'N', 1]
    );
    assert_eq!(
        super::snapshot_from_file(file.clone()).as_deref(),
        Some(&b"state"[..])
    );
    let mut flipped = file.clone();
    flipped[1] ^= 1;
    assert_eq!(super::snapshot_from_file(flipped), None);
    let mut other_version = file;
    other_version[12] = 2;
    assert_eq!(super::snapshot_from_file(other_version), None);
    assert_eq!(super::snapshot_from_file(b"short".to_vec()), None);
}

/// A disk that can fill up: every write and sync fails while `full` is set.
#[derive(Debug)]
struct FillingDisk {
    inner: redb::backends::InMemoryBackend,
    full: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FillingDisk {
    fn check(&self) -> std::io::Result<()> {
        if self.full.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(std::io::Error::other("No space left on device"));
        }
        Ok(())
    }
}

impl redb::StorageBackend for FillingDisk {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.check()?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.check()?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.check()?;
        self.inner.write(offset, data)
    }
}

/// Found by the soak run (seed 1): a worker's data directory full for 16 s made redb refuse
/// every later write of the local copy ("Previous I/O error occurred"), every checkpoint of
/// its partitions failed, and the failure limit failed the job for good. The local copy is
/// a shortcut; the checkpoint store is what makes a checkpoint durable.
#[tokio::test]
async fn a_full_local_disk_leaves_checkpoints_to_the_checkpoint_store() {
    let full = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let disk = FillingDisk {
        inner: redb::backends::InMemoryBackend::new(),
        full: full.clone(),
    };
    let remote = MemoryCheckpointStore::new();
    let store = LocalFirst::with_backend(disk, remote.clone()).unwrap();
    let (j, p0) = (JobId(1), PartitionId(0));
    let first = changes(true, "h1", vec![entry(0, "a", Some("1"))]);
    put_changes(&store, 0, 10, None, &first).await.unwrap();
    full.store(true, std::sync::atomic::Ordering::Relaxed);
    let second = changes(false, "h2", vec![entry(0, "b", Some("2"))]);
    put_changes(&store, 0, 20, Some(10), &second)
        .await
        .expect("a checkpoint while the local disk is full");
    full.store(false, std::sync::atomic::Ordering::Relaxed);
    let third = changes(false, "h3", vec![entry(0, "c", Some("3"))]);
    put_changes(&store, 0, 30, Some(20), &third)
        .await
        .expect("a checkpoint after the disk was freed");
    // Durable in the checkpoint store; the stale local copy is never restored there.
    assert_eq!(
        remote.get(j, p0, 30).await.unwrap().as_deref(),
        Some(&b"snapshot@30"[..])
    );
    assert_eq!(store.get_local(j, p0, 30).await.unwrap(), None);
}

#[tokio::test]
async fn the_local_copy_keeps_a_bounded_part_of_its_pages_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalFirst::open(dir.path(), MemoryCheckpointStore::new()).unwrap();
    // Four partitions' state of 1 MiB each, as a worker that ran them all for a while and
    // handed some back: the local copy keeps their keys, not their pages in memory.
    let value = "v".repeat(1024);
    let keys = |partition: u32| -> Vec<StateEntry> {
        (0..1_024)
            .map(|i| entry(0, &format!("p{partition}-k{i:05}"), Some(&value)))
            .collect()
    };
    for partition in 0..4 {
        put_changes(
            &store,
            partition,
            100,
            None,
            &changes(true, "h", keys(partition)),
        )
        .await
        .unwrap();
    }
    let cached = store.cached_bytes();
    assert!(cached > 0, "redb counts its cache in tests");
    assert!(
        cached <= local_first::LOCAL_COPY_CACHE_BYTES,
        "{cached} bytes cached, above {}",
        local_first::LOCAL_COPY_CACHE_BYTES
    );
    // Pages left out of the cache are read from the file again.
    for partition in 0..4 {
        let local = store
            .get_local(JobId(1), PartitionId(partition), 100)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(local.entries.len(), 1_024);
    }
    assert!(store.cached_bytes() <= local_first::LOCAL_COPY_CACHE_BYTES);
}
