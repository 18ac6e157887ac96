//! The worker's stored formats, pinned: golden files under `worker/tests/golden/` hold the
//! exact bytes of a pipeline snapshot (`WEIRPIPE`, version 1), of a snapshot file as the
//! checkpoint store keeps it (checkpoint id, pipeline snapshot, CRC-32C, `WSN\x01`), and of
//! a local-copy meta value. A changed encoding fails here until the files are regenerated on
//! purpose (`WEIR_UPDATE_GOLDEN=1 cargo test -p weir-worker --lib format_tests`) with the
//! version bumped where old data would no longer read. Also: what a local copy without a
//! version reads as, and what a newer one is refused with.

use super::local_first::{
    Meta, FORMAT, LOCAL_COPY_FILE, LOCAL_COPY_FORMAT_VERSION, STATE_KEYS, STATE_META,
};
use super::{snapshot_from_file, snapshot_trailer, CheckpointStore, LocalFirst};
use super::{MemoryCheckpointStore, StoreError};
use crate::operators::{Outputs, Pipeline, SourceRecord};
use std::path::PathBuf;
use weir_core::ids::{CheckpointId, JobId, PartitionId};
use weir_core::spec::{parse_job_spec, JobSpec};

/// Checks `bytes` against the golden file `name` of this crate (see `weir_core::golden`)
/// and returns the file's bytes, for the decoding half of the test.
fn golden(name: &str, bytes: &[u8]) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    weir_core::golden::check(&dir, name, bytes)
}

/// A job with every kind of state: a dedupe stage and windows with every accumulator.
fn spec() -> JobSpec {
    parse_job_spec(
        br#"
name: pinned
source: { topic: events, format: json, event_time: ts, max_out_of_orderness: 1s }
pipeline:
  - dedupe: { key: "id", ttl: 10s }
  - key_by: "card"
  - window: { tumbling: 10s }
  - aggregate: { n: "count()", total: "sum(amount)", mean: "avg(amount)", low: "min(amount)", high: "max(amount)" }
sink: { topic: results, format: json }
"#,
    )
    .unwrap()
}

fn pipeline() -> Pipeline {
    let events = [
        (1_000, "e1", "a", "1.5"),
        (2_000, "e2", "b", "20"),
        (2_500, "e3", "a", "-3"),
        (12_000, "e4", "a", "7"),
    ];
    let records: Vec<SourceRecord> = events
        .iter()
        .enumerate()
        .map(|(i, (ts, id, card, amount))| SourceRecord {
            topic: "events".into(),
            partition: 0,
            offset: i as i64,
            timestamp_ms: Some(*ts),
            key: None,
            value: Some(
                format!(r#"{{"ts":{ts},"id":"{id}","card":"{card}","amount":{amount}}}"#)
                    .into_bytes(),
            ),
        })
        .collect();
    let mut pipeline = Pipeline::compile(&spec()).unwrap();
    pipeline
        .process_batch(&records, &mut Outputs::new())
        .unwrap();
    pipeline
}

#[test]
fn the_pipeline_snapshot_format_is_pinned() {
    let snapshot = pipeline().snapshot();
    let file = golden("pipeline_snapshot.bin", &snapshot);
    let restored = Pipeline::restore(&spec(), &file).unwrap();
    assert_eq!(restored.snapshot(), snapshot, "restores to the same state");
}

/// What `DirCheckpointStore` writes for a checkpoint: the runner's snapshot (checkpoint id,
/// then the pipeline snapshot) and the file trailer.
#[test]
fn the_checkpoint_snapshot_file_format_is_pinned() {
    let pipeline_bytes = pipeline().snapshot();
    let snapshot =
        crate::exactly_once::snapshot_codec::encode_snapshot(CheckpointId(41), &pipeline_bytes);
    let file = [&snapshot[..], &snapshot_trailer(&snapshot)].concat();
    let golden_file = golden("checkpoint_snapshot_file.bin", &file);
    let read = snapshot_from_file(golden_file).expect("the trailer holds");
    let (checkpoint, pipeline_read) =
        crate::exactly_once::snapshot_codec::decode_snapshot(&read).unwrap();
    assert_eq!(checkpoint, CheckpointId(41));
    assert_eq!(pipeline_read, &pipeline_bytes[..]);
}

#[test]
fn the_local_copy_meta_format_is_pinned() {
    let meta = Meta {
        offset: 1_200,
        checkpoint: 41,
        header: b"pipeline header".to_vec(),
    };
    let file = golden("local_copy_meta.bin", &meta.encode());
    let read = Meta::decode(&file).unwrap();
    assert_eq!(
        (read.offset, read.checkpoint, read.header),
        (meta.offset, meta.checkpoint, meta.header)
    );
}

/// A local copy as the code before versions left it: a partition's meta and one key.
fn write_unversioned_copy(dir: &std::path::Path) {
    let db = redb::Database::create(dir.join(LOCAL_COPY_FILE)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(STATE_META).unwrap();
        let value = Meta {
            offset: 10,
            checkpoint: 3,
            header: b"header".to_vec(),
        };
        meta.insert((1, 0), value.encode().as_slice()).unwrap();
        let mut keys = txn.open_table(STATE_KEYS).unwrap();
        keys.insert((1, 0, 0, "a"), &b"1"[..]).unwrap();
    }
    txn.commit().unwrap();
}

fn recorded_version(dir: &std::path::Path) -> Option<u64> {
    use redb::ReadableDatabase;
    let db = redb::Database::create(dir.join(LOCAL_COPY_FILE)).unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(FORMAT).ok()?;
    let version = table.get("version").unwrap().map(|v| v.value());
    version
}

#[tokio::test]
async fn a_local_copy_without_a_version_reads_as_version_1_and_gets_it_recorded() {
    let dir = tempfile::tempdir().unwrap();
    write_unversioned_copy(dir.path());
    assert_eq!(recorded_version(dir.path()), None);
    let store = LocalFirst::open(dir.path(), MemoryCheckpointStore::new()).unwrap();
    let state = store
        .get_local(JobId(1), PartitionId(0), 10)
        .await
        .unwrap()
        .expect("the old copy reads");
    assert_eq!((state.checkpoint, &state.header[..]), (3, &b"header"[..]));
    assert_eq!(state.entries.len(), 1);
    drop(store);
    assert_eq!(
        recorded_version(dir.path()),
        Some(LOCAL_COPY_FORMAT_VERSION)
    );
}

#[test]
fn a_local_copy_of_a_newer_format_is_refused_naming_the_file_and_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    drop(LocalFirst::open(dir.path(), MemoryCheckpointStore::new()).unwrap());
    {
        let db = redb::Database::create(dir.path().join(LOCAL_COPY_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(FORMAT)
            .unwrap()
            .insert("version", LOCAL_COPY_FORMAT_VERSION + 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = LocalFirst::open(dir.path(), MemoryCheckpointStore::new()).unwrap_err();
    let StoreError::NewerFormat {
        path,
        found,
        supported,
    } = &err
    else {
        panic!("refused as a newer format, not {err}");
    };
    assert!(path.ends_with(LOCAL_COPY_FILE), "{path}");
    assert_eq!(
        (*found, *supported),
        (LOCAL_COPY_FORMAT_VERSION + 1, LOCAL_COPY_FORMAT_VERSION)
    );
    let message = err.to_string();
    assert!(
        message.contains("state.redb")
            && message.contains("version 2")
            && message.contains("up to 1"),
        "{message}"
    );
}
