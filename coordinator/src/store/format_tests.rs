//! The store's formats, pinned: golden files under `coordinator/tests/golden/` hold the
//! exact bytes of log entries (every `Command`), the vote and hints, and a snapshot with its
//! metadata, as the store writes them. A changed encoding fails here until the files are
//! regenerated on purpose (`WEIR_UPDATE_GOLDEN=1 cargo test -p weir-coordinator --lib
//! format_tests`) with the version bumped where old data would no longer read. Also: what
//! a store or snapshot without a version reads as, and what a newer one is refused with.

use super::format::{self, STORE_FORMAT_VERSION};
use super::snapshot_format::{self, SnapshotFormatError, SNAPSHOT_FORMAT_VERSION};
use super::state_machine::AppliedState;
use super::{open_in_dir, open_stores, OpenError, DAMAGED_MARKER_FILE, LOG, META, SNAPSHOT};
use crate::raft_types::{Entry, LogId, SnapshotMeta, StoredMembership};
use crate::state::lifecycle::JobRequest;
use crate::state::{Command, ControlState, Move};
use openraft::storage::RaftLogReader;
use openraft::{BasicNode, CommittedLeaderId, EntryPayload, Membership, Vote};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use weir_core::ids::{CheckpointId, Epoch, JobId, PartitionId, SavepointId, TenantName, WorkerId};
use weir_core::wire::{CheckpointPhase, CheckpointReport, WorkerReport};

/// Checks `bytes` against the golden file `name` of this crate (see `weir_core::golden`)
/// and returns the file's bytes, for the decoding half of the test.
fn golden(name: &str, bytes: &[u8]) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    weir_core::golden::check(&dir, name, bytes)
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn spec() -> serde_json::Value {
    serde_json::json!({
        "name": "velocity",
        "source": {"topic": "payments", "format": "json"},
        "pipeline": [{"filter": "amount > 0"}],
        "sink": {"topic": "alerts", "format": "json"},
    })
}

fn prepared(job: u64, partition: u32, checkpoint: u64) -> CheckpointReport {
    CheckpointReport {
        job: JobId(job),
        partition: PartitionId(partition),
        epoch: Epoch(1),
        checkpoint: CheckpointId(checkpoint),
        phase: CheckpointPhase::Prepared,
        offset: 100,
        snapshot: "/checkpoints/1/0/00000000000000000100.snap".into(),
    }
}

/// Every kind of command, in an order that also builds a state worth snapshotting.
fn every_command() -> Vec<Command> {
    let acme = TenantName::from("acme");
    let w1 = WorkerId::from("w1");
    let submit = |name: &str| Command::SubmitJob {
        tenant: acme.clone(),
        name: name.into(),
        spec: spec(),
        at_ms: 2,
    };
    vec![
        Command::CreateTenant {
            name: acme.clone(),
            token_hash: "h1-acme".into(),
            at_ms: 1,
        },
        Command::RotateTenantToken {
            name: acme.clone(),
            token_hash: "h2-acme".into(),
        },
        submit("velocity"),
        Command::RegisterWorker {
            worker: w1.clone(),
            addr: "10.0.1.1:7100".into(),
            at_ms: 3,
        },
        Command::SetPartitionCount {
            job: JobId(1),
            partition_count: 1,
        },
        Command::Place {
            moves: vec![Move {
                job: JobId(1),
                partition: PartitionId(0),
                worker: Some(w1.clone()),
                epoch: Epoch(1),
            }],
        },
        Command::Checkpoint {
            worker: w1.clone(),
            reports: vec![prepared(1, 0, 1)],
            at_ms: 10,
        },
        Command::WorkerReport {
            worker: w1.clone(),
            report: WorkerReport::PartitionProblem {
                job: JobId(1),
                partition: PartitionId(0),
                epoch: Epoch(1),
                problem: Some("checkpoint store unavailable".into()),
                fail: false,
            },
        },
        Command::Noop,
        Command::MembersSeen {
            members: vec![1, 2, 3],
        },
        Command::Idempotent {
            key: "key-1".into(),
            command: Box::new(submit("copy")),
            digest: Some("9f86d081884c7d659a2feaa0c55ad015".into()),
        },
        Command::Batch(vec![
            Command::CancelJob {
                job: JobId(2),
                tenant: Some(acme.clone()),
            },
            Command::FinishCancel { job: JobId(2) },
        ]),
        Command::FailJob {
            job: JobId(3),
            reason: "no such job: refused, and still a command".into(),
        },
        Command::RemoveWorker {
            worker: WorkerId::from("w9"),
            reason: "lease expired".into(),
        },
        Command::ChangeJobState {
            job: JobId(1),
            tenant: Some(acme.clone()),
            request: JobRequest::Pause,
        },
        Command::WorkerReport {
            worker: w1.clone(),
            report: WorkerReport::Paused {
                job: JobId(1),
                partition: PartitionId(0),
                epoch: Epoch(1),
            },
        },
        Command::ChangeJobState {
            job: JobId(1),
            tenant: None,
            request: JobRequest::Stop,
        },
        Command::FinishStop { job: JobId(1) },
        Command::TakeSavepoint {
            job: JobId(1),
            tenant: None,
            at_ms: 1_700_000_000_100,
        },
        Command::StopWithSavepoint {
            job: JobId(1),
            tenant: Some(acme.clone()),
            at_ms: 1_700_000_000_200,
        },
        Command::StartFromSavepoint {
            job: JobId(1),
            tenant: Some(acme.clone()),
            savepoint: SavepointId(1),
        },
        Command::DeleteSavepoint {
            job: JobId(1),
            tenant: None,
            savepoint: SavepointId(2),
        },
        Command::UpgradeJob {
            job: JobId(1),
            tenant: Some(acme.clone()),
            spec: spec(),
            savepoint: Some(SavepointId(1)),
            allow_state_drop: vec!["window#0".into()],
            at_ms: 1_700_000_000_300,
        },
        Command::RescaleJob {
            job: JobId(1),
            tenant: None,
            parallelism: 6,
            at_ms: 1_700_000_000_400,
        },
    ]
}

fn membership() -> Membership<u64, BasicNode> {
    let nodes: BTreeMap<u64, BasicNode> = (1..=3)
        .map(|id| (id, BasicNode::new(format!("10.0.0.{id}:7000"))))
        .collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
}

/// A blank entry, a membership entry, then one entry per command.
fn every_entry() -> Vec<Entry> {
    let mut entries = vec![
        Entry {
            log_id: log_id(1, 1),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(1, 2),
            payload: EntryPayload::Membership(membership()),
        },
    ];
    for (i, command) in every_command().into_iter().enumerate() {
        entries.push(Entry {
            log_id: log_id(2, 3 + i as u64),
            payload: EntryPayload::Normal(command),
        });
    }
    entries
}

/// The state after applying every entry, as a snapshot holds it.
fn applied() -> AppliedState {
    let entries = every_entry();
    let mut control = ControlState::default();
    for entry in &entries {
        if let EntryPayload::Normal(command) = &entry.payload {
            control.apply(command);
        }
    }
    AppliedState {
        last_applied: entries.last().map(|e| e.log_id),
        membership: StoredMembership::new(Some(log_id(1, 2)), membership()),
        control,
    }
}

/// Log entries, one a line, each exactly as `LogStore::append` stores it.
#[test]
fn the_log_entry_format_is_pinned() {
    let mut lines = Vec::new();
    for entry in every_entry() {
        lines.extend(serde_json::to_vec(&entry).unwrap());
        lines.push(b'\n');
    }
    let file = golden("raft_log_entries.jsonl", &lines);
    let read: Vec<Entry> = file
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).unwrap())
        .collect();
    assert_eq!(read, every_entry());
}

/// The `raft_meta` records: the vote, the committed hint, the last purged log id.
#[test]
fn the_vote_and_hint_formats_are_pinned() {
    let vote = Vote::new_committed(2, 1);
    let committed = Some(log_id(2, 16));
    let purged = Some(log_id(1, 2));
    let mut lines = Vec::new();
    for (key, value) in [
        ("vote", serde_json::to_vec(&vote).unwrap()),
        ("committed", serde_json::to_vec(&committed).unwrap()),
        ("last_purged", serde_json::to_vec(&purged).unwrap()),
    ] {
        lines.extend(key.as_bytes());
        lines.push(b'\t');
        lines.extend(value);
        lines.push(b'\n');
    }
    let file = String::from_utf8(golden("raft_meta.tsv", &lines)).unwrap();
    let values: BTreeMap<&str, &str> = file
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .collect();
    assert_eq!(
        serde_json::from_str::<Vote<u64>>(values["vote"]).unwrap(),
        vote
    );
    assert_eq!(
        serde_json::from_str::<Option<LogId>>(values["committed"]).unwrap(),
        committed
    );
    assert_eq!(
        serde_json::from_str::<Option<LogId>>(values["last_purged"]).unwrap(),
        purged
    );
}

/// A snapshot's data (with its version) and metadata, as stored and as sent to members.
#[test]
fn the_snapshot_format_is_pinned() {
    let applied = applied();
    assert!(
        applied.control.jobs.len() >= 2 && !applied.control.answered.is_empty(),
        "a state worth pinning: {applied:?}"
    );
    let data = snapshot_format::encode(&applied).unwrap();
    let file = golden("raft_snapshot.json", &data);
    assert_eq!(snapshot_format::decode(&file).unwrap(), applied);
    let meta = SnapshotMeta {
        last_log_id: applied.last_applied,
        last_membership: applied.membership.clone(),
        snapshot_id: "2-16-1".into(),
    };
    let file = golden(
        "raft_snapshot_meta.json",
        &serde_json::to_vec(&meta).unwrap(),
    );
    assert_eq!(serde_json::from_slice::<SnapshotMeta>(&file).unwrap(), meta);
}

/// Snapshots written before versions existed had no `format_version`: they are version 1.
/// `AppliedState`'s own serde encoding is that older format.
#[test]
fn a_snapshot_without_a_version_reads_as_version_1() {
    let applied = applied();
    // What the code before versions wrote: the applied state's own encoding.
    let before = serde_json::to_vec(&applied).unwrap();
    // The versioned encoding is that plus the version.
    let mut versioned: serde_json::Value =
        serde_json::from_slice(&snapshot_format::encode(&applied).unwrap()).unwrap();
    assert_eq!(
        versioned.as_object_mut().unwrap().remove("format_version"),
        Some(serde_json::json!(SNAPSHOT_FORMAT_VERSION))
    );
    assert_eq!(
        versioned,
        serde_json::from_slice::<serde_json::Value>(&before).unwrap()
    );
    assert_eq!(snapshot_format::decode(&before).unwrap(), applied);
}

#[test]
fn a_snapshot_of_a_newer_version_is_refused_naming_both_versions() {
    let mut newer: serde_json::Value =
        serde_json::from_slice(&snapshot_format::encode(&applied()).unwrap()).unwrap();
    newer["format_version"] = serde_json::json!(SNAPSHOT_FORMAT_VERSION + 1);
    let err = snapshot_format::decode(&serde_json::to_vec(&newer).unwrap()).unwrap_err();
    assert!(
        matches!(err, SnapshotFormatError::Newer { found, supported }
        if found == SNAPSHOT_FORMAT_VERSION + 1 && supported == SNAPSHOT_FORMAT_VERSION)
    );
    let message = err.to_string();
    assert!(
        message.contains("format version 2") && message.contains("up to 1"),
        "{message}"
    );
}

/// A store as the code before versions left it: a log entry, a vote and a snapshot, and no
/// format record.
fn write_unversioned_store(dir: &std::path::Path) {
    let db = open_in_dir(dir).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut log = txn.open_table(LOG).unwrap();
        let entry = &every_entry()[2];
        let bytes = serde_json::to_vec(entry).unwrap();
        log.insert(entry.log_id.index, bytes.as_slice()).unwrap();
        let mut meta = txn.open_table(META).unwrap();
        let vote = serde_json::to_vec(&Vote::new(2, 1)).unwrap();
        meta.insert("vote", vote.as_slice()).unwrap();
        let mut snapshot = txn.open_table(SNAPSHOT).unwrap();
        let applied = AppliedState::default();
        let meta = SnapshotMeta::default();
        let data = serde_json::to_vec(&serde_json::json!({
            "last_applied": applied.last_applied,
            "membership": applied.membership,
            "control": applied.control,
        }))
        .unwrap();
        snapshot
            .insert("meta", serde_json::to_vec(&meta).unwrap().as_slice())
            .unwrap();
        snapshot.insert("data", data.as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

#[tokio::test]
async fn a_store_without_a_version_reads_as_version_1_and_gets_it_recorded() {
    let dir = tempfile::tempdir().unwrap();
    write_unversioned_store(dir.path());
    let db = open_in_dir(dir.path()).expect("an unversioned store opens");
    assert_eq!(format::stored_version(&db).unwrap(), 1);
    let (mut log, _sm) = open_stores(db.clone()).unwrap();
    let entries = log.try_get_log_entries(3..4).await.unwrap();
    assert_eq!(entries, vec![every_entry()[2].clone()]);
    let txn = redb::ReadableDatabase::begin_read(&*db).unwrap();
    let recorded = txn.open_table(format::FORMAT).unwrap();
    assert_eq!(
        recorded.get("version").unwrap().map(|v| v.value()),
        Some(STORE_FORMAT_VERSION)
    );
}

#[test]
fn a_store_of_a_newer_format_is_refused_naming_the_file_and_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open_in_dir(dir.path()).unwrap();
        open_stores(db.clone()).unwrap();
        format::record(&db, STORE_FORMAT_VERSION + 1);
    }
    for _ in 0..2 {
        let err = open_in_dir(dir.path()).map(|_| ()).unwrap_err();
        let OpenError::NewerFormat {
            path,
            found,
            supported,
        } = &err
        else {
            panic!("refused as a newer format, not {err}");
        };
        assert!(path.ends_with(super::STORE_FILE), "{path}");
        assert_eq!(
            (*found, *supported),
            (STORE_FORMAT_VERSION + 1, STORE_FORMAT_VERSION)
        );
        let message = err.to_string();
        assert!(
            message.contains("coordinator.redb")
                && message.contains("version 2")
                && message.contains("up to 1"),
            "{message}"
        );
        // Not damage: nothing marks the file, and a newer weir may open it again.
        assert!(!dir.path().join(DAMAGED_MARKER_FILE).exists());
    }
}
