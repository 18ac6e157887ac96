//! Placement, leases and checkpoint records, driven through the same registration,
//! heartbeat, assignment and checkpoint calls a worker makes (`weir_worker::control`).

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

mod common;

use common::{wait_for, Group, ADMIN};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weir_api::client::Client;
use weir_core::ids::{CheckpointId, Epoch, JobId, PartitionId, WorkerId};
use weir_core::wire::{CheckpointPhase, CheckpointReport, JobState};
use weir_worker::control::{ControlError, ControlPlane, HttpControlPlane};

const SPEC: &str = include_str!("../../docs/examples/card-velocity.yaml");

/// The example job with its source declared partitioned by card, so it runs as one stage:
/// one task per source partition, which is what this test counts.
fn one_stage_spec() -> String {
    let spec = SPEC.replace(
        "  max_out_of_orderness: 5s",
        "  max_out_of_orderness: 5s\n  partitioned_by: card_id",
    );
    assert!(spec.contains("partitioned_by"), "the example changed");
    spec
}
const LEASE_MS: u64 = 1_000;

/// Keeps a worker's lease alive until told to stop, as a worker's heartbeat loop does.
fn keep_alive(control: Arc<HttpControlPlane>, id: WorkerId) -> Arc<AtomicBool> {
    let alive = Arc::new(AtomicBool::new(true));
    let flag = alive.clone();
    tokio::spawn(async move {
        while flag.load(Ordering::SeqCst) {
            let _ = control.heartbeat(&id).await;
            tokio::time::sleep(Duration::from_millis(LEASE_MS / 5)).await;
        }
    });
    alive
}

/// Partition owners of a job: worker → [(partition, epoch)].
async fn owners(client: &Client, job: JobId) -> BTreeMap<String, Vec<(u32, u64)>> {
    let detail = client.get_job(job).await.unwrap();
    let mut out: BTreeMap<String, Vec<(u32, u64)>> = BTreeMap::new();
    for p in detail.partitions {
        out.entry(p.worker.map(|w| w.0).unwrap_or_else(|| "-".into()))
            .or_default()
            .push((p.partition.0, p.epoch.0));
    }
    out
}

fn report(
    job: JobId,
    partition: u32,
    epoch: u64,
    checkpoint: u64,
    phase: CheckpointPhase,
    offset: i64,
) -> CheckpointReport {
    CheckpointReport {
        job,
        partition: PartitionId(partition),
        epoch: Epoch(epoch),
        checkpoint: CheckpointId(checkpoint),
        phase,
        offset,
        snapshot: format!("file:///checkpoints/{job}/{partition}/{checkpoint}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_spreads_reassigns_and_fences_through_worker_calls() {
    let dir = tempfile::tempdir().unwrap();
    let mut group = Group::start(3, dir.path(), LEASE_MS).await;
    group.wait_for_leader().await;
    let admin = Client::new(group.addrs(), Some(ADMIN.into()));
    admin.create_tenant("pay").await.unwrap();
    let job = admin
        .submit_job(one_stage_spec().into_bytes(), Some("pay"))
        .await
        .unwrap()
        .id;
    let control = Arc::new(HttpControlPlane::new(group.addrs(), ADMIN.into()));

    let (w1, w2, w3) = (
        WorkerId::from("w1"),
        WorkerId::from("w2"),
        WorkerId::from("w3"),
    );
    let lease = control.register(&w1, "127.0.0.1:9001").await.unwrap();
    assert_eq!(lease.lease_timeout_ms, LEASE_MS);
    control.register(&w2, "127.0.0.1:9002").await.unwrap();
    let alive1 = keep_alive(control.clone(), w1.clone());
    let alive2 = keep_alive(control.clone(), w2.clone());

    // The job's partition count is unknown until a worker reports it.
    let a = control.assignments(&w1).await.unwrap();
    assert!(a.assignments.is_empty());
    assert_eq!(
        a.unknown_partition_counts,
        vec![(job, "payments".to_string())]
    );
    control.report_partitions(job, 4).await.unwrap();

    wait_for("the job to run", 5_000, || async {
        (admin.get_job(job).await.ok()?.state == JobState::Running).then_some(())
    })
    .await;
    let placed = owners(&admin, job).await;
    assert_eq!(placed["w1"].len(), 2, "{placed:?}");
    assert_eq!(placed["w2"].len(), 2, "{placed:?}");
    assert!(placed.values().flatten().all(|(_, e)| *e == 1));
    let mine = control.assignments(&w1).await.unwrap();
    assert_eq!(mine.assignments.len(), 2);
    assert_eq!(mine.assignments[0].spec["name"], "card-velocity");

    // Checkpoint records: the owner at its epoch may prepare and commit; others may not.
    let (p, e) = placed["w1"][0];
    let r = control
        .report_checkpoints(
            &w1,
            vec![
                report(job, p, e, 1, CheckpointPhase::Prepared, 100),
                report(job, p, e + 1, 2, CheckpointPhase::Prepared, 200),
            ],
        )
        .await
        .unwrap();
    assert!(r.results[0].is_ok());
    assert!(
        matches!(
            r.results[1],
            Err(weir_core::wire::CheckpointRefusal::StaleEpoch { .. })
        ),
        "{:?}",
        r.results
    );
    let r = control
        .report_checkpoints(
            &w2,
            vec![report(job, p, e, 3, CheckpointPhase::Prepared, 300)],
        )
        .await
        .unwrap();
    assert!(
        matches!(
            r.results[0],
            Err(weir_core::wire::CheckpointRefusal::NotOwner { .. })
        ),
        "{:?}",
        r.results
    );
    let r = control
        .report_checkpoints(
            &w1,
            vec![report(job, p, e, 1, CheckpointPhase::Committed, 100)],
        )
        .await
        .unwrap();
    assert!(r.results[0].is_ok(), "{:?}", r.results);
    let detail = admin.get_job(job).await.unwrap();
    let part = detail
        .partitions
        .iter()
        .find(|x| x.partition.0 == p)
        .unwrap();
    assert_eq!(
        (part.checkpoint, part.offset),
        (Some(CheckpointId(1)), Some(100))
    );
    let records = admin.checkpoints(job).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].phase, CheckpointPhase::Committed);

    // w2 stops heartbeating: its lease expires and its partitions move to w1 at epoch 2.
    alive2.store(false, Ordering::SeqCst);
    wait_for("w2's partitions to move", 10_000, || async {
        let o = owners(&admin, job).await;
        (o.get("w1").map(Vec::len) == Some(4)).then_some(())
    })
    .await;
    let o = owners(&admin, job).await;
    for (partition, epoch) in &o["w1"] {
        let was_w2 = placed["w2"].iter().any(|(p, _)| p == partition);
        assert_eq!(
            *epoch,
            if was_w2 { 2 } else { 1 },
            "partition {partition}: {o:?}"
        );
    }
    assert!(matches!(
        control.heartbeat(&w2).await,
        Err(ControlError::UnknownWorker(_))
    ));
    // The zombie's checkpoint writes carry the old epoch and are refused.
    let (zp, ze) = placed["w2"][0];
    let r = control
        .report_checkpoints(
            &w2,
            vec![report(job, zp, ze, 1, CheckpointPhase::Prepared, 5)],
        )
        .await
        .unwrap();
    assert!(r.results[0].is_err());

    // A new worker takes half, moving only what evens the load.
    control.register(&w3, "127.0.0.1:9003").await.unwrap();
    let alive3 = keep_alive(control.clone(), w3.clone());
    wait_for("w3 to take two partitions", 10_000, || async {
        let o = owners(&admin, job).await;
        (o.get("w3").map(Vec::len) == Some(2)).then_some(())
    })
    .await;
    let before_failover = owners(&admin, job).await;
    assert_eq!(before_failover["w1"].len(), 2);

    // A leader failover must not expire healthy workers: the new leader grants a grace
    // period, and the workers reach it through the other coordinators.
    let leader = group.leader().unwrap();
    group.nodes.remove(&leader).unwrap().stop().await;
    wait_for("a new leader", 10_000, || async {
        group.leader().filter(|l| *l != leader)
    })
    .await;
    let new_leader_addr = group.peers[&group.leader().unwrap()].clone();
    let survivors = Client::new(vec![new_leader_addr], Some(ADMIN.into()));
    // Three lease timeouts later, nothing moved.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(3 * LEASE_MS);
    while tokio::time::Instant::now() < deadline {
        assert_eq!(owners(&survivors, job).await, before_failover);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let workers = survivors.workers().await.unwrap();
    assert_eq!(
        workers.iter().map(|w| w.id.0.as_str()).collect::<Vec<_>>(),
        ["w1", "w3"]
    );
    assert!(workers
        .iter()
        .all(|w| w.lease_expires_at.is_some() && w.partitions.len() == 2));

    // A worker that leaves on purpose hands its partitions over at once, at epoch + 1.
    alive3.store(false, Ordering::SeqCst);
    control.deregister(&w3).await.unwrap();
    let o = owners(&survivors, job).await;
    assert_eq!(o.get("w3"), None, "{o:?}");
    wait_for("w1 to own everything", 5_000, || async {
        (owners(&survivors, job).await.get("w1").map(Vec::len) == Some(4)).then_some(())
    })
    .await;
    for (partition, epoch) in &owners(&survivors, job).await["w1"] {
        let was_w3 = before_failover["w3"].iter().find(|(p, _)| p == partition);
        if let Some((_, e3)) = was_w3 {
            assert_eq!(*epoch, e3 + 1);
        }
    }
    alive1.store(false, Ordering::SeqCst);
    group.stop_all().await;
}
