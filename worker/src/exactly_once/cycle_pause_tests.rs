//! Pause and resume in the exactly-once cycle: every event in the paused phase, a pause
//! from each phase of a checkpoint, and the offset a resume reads on from.

use super::*;

const CONFIG: CycleConfig = CycleConfig {
    checkpoint_interval_ms: 1_000,
    offsets_refresh_interval_ms: 3_600_000,
    commit_before_snapshot: false,
};

fn pending(location: &str) -> Pending {
    Pending {
        checkpoint: CheckpointId(4),
        offset: 25,
        location: location.into(),
    }
}

/// A cycle that processed records up to offset 25 and has not committed them.
fn dirty() -> Cycle {
    let mut c = Cycle::recovered(CONFIG, 10, CheckpointId(4), true, 0);
    c.handle(Event::BatchProcessed { next_offset: 25 });
    c
}

/// A cycle paused at offset 25 after committing checkpoint 4.
fn paused() -> Cycle {
    let mut c = dirty();
    c.handle(Event::PauseRequested { now_ms: 1 });
    c.handle(Event::SnapshotStored {
        location: "s".into(),
    });
    c.handle(Event::PreparedAnswered(PrepareAnswer::Accepted));
    c.handle(Event::TransactionCommitted { now_ms: 2 });
    assert!(c.is_paused());
    c
}

#[test]
fn a_pause_commits_what_was_processed_and_opens_no_transaction() {
    let mut c = dirty();
    assert_eq!(
        c.handle(Event::PauseRequested { now_ms: 1 }),
        vec![Action::StoreSnapshot {
            checkpoint: CheckpointId(4),
            offset: 25,
            base_offset: None
        }],
        "at once, not an interval later"
    );
    assert_eq!(
        c.handle(Event::SnapshotStored {
            location: "s".into()
        }),
        vec![Action::ReportPrepared(pending("s"))]
    );
    assert_eq!(
        c.handle(Event::PreparedAnswered(PrepareAnswer::Accepted)),
        vec![Action::Commit { offset: 25 }]
    );
    assert_eq!(
        c.handle(Event::TransactionCommitted { now_ms: 2 }),
        vec![
            Action::ReportCommitted(pending("s")),
            Action::Prune { offset: 25 }
        ],
        "no Begin"
    );
    assert_eq!(c.phase(), &Phase::Paused);
    assert_eq!(c.next_offset(), 25);
    assert_eq!(c.checkpoints(), 1);
}

#[test]
fn a_pause_with_nothing_uncommitted_aborts_the_empty_transaction() {
    let mut c = Cycle::recovered(CONFIG, 10, CheckpointId(4), true, 0);
    assert_eq!(
        c.handle(Event::PauseRequested { now_ms: 1 }),
        vec![Action::Abort]
    );
    assert!(c.is_paused());
    assert_eq!(c.next_offset(), 10);
}

#[test]
fn a_paused_cycle_waits_and_a_resume_reads_on_from_the_same_offset() {
    let mut c = paused();
    for event in [
        Event::Tick { now_ms: 10_000_000 },
        Event::CheckpointNow { now_ms: 10_000_001 },
        Event::PauseRequested { now_ms: 10_000_002 },
    ] {
        assert_eq!(c.handle(event.clone()), vec![], "{event:?}");
        assert!(c.is_paused(), "{event:?}");
    }
    assert_eq!(c.handle(Event::ResumeRequested), vec![Action::Begin]);
    assert!(c.is_open());
    assert_eq!(c.next_offset(), 25, "no record skipped or repeated");
    // The next checkpoint takes the next id and commits as usual, opening a transaction.
    c.handle(Event::BatchProcessed { next_offset: 30 });
    assert_eq!(
        c.handle(Event::Tick { now_ms: 10_000_003 }),
        vec![Action::StoreSnapshot {
            checkpoint: CheckpointId(5),
            offset: 30,
            base_offset: Some(25)
        }]
    );
    c.handle(Event::SnapshotStored {
        location: "t".into(),
    });
    c.handle(Event::PreparedAnswered(PrepareAnswer::Accepted));
    let actions = c.handle(Event::TransactionCommitted { now_ms: 10_000_004 });
    assert!(actions.contains(&Action::Begin), "{actions:?}");
}

#[test]
fn a_postponed_pause_keeps_the_transaction_open_until_asked_again_or_resumed() {
    let mut c = dirty();
    c.handle(Event::PauseRequested { now_ms: 1 });
    c.handle(Event::SnapshotStored {
        location: "s".into(),
    });
    assert_eq!(
        c.handle(Event::PreparedAnswered(PrepareAnswer::Unavailable)),
        vec![]
    );
    assert!(c.is_open(), "the records stay in the open transaction");
    // Asked again: another try at once.
    assert!(matches!(
        c.handle(Event::PauseRequested { now_ms: 2 })[..],
        [Action::StoreSnapshot { offset: 25, .. }]
    ));
    c.handle(Event::SnapshotStored {
        location: "s".into(),
    });
    c.handle(Event::PreparedAnswered(PrepareAnswer::Unavailable));
    // Resumed before it paused: the next commit opens a transaction again.
    assert_eq!(c.handle(Event::ResumeRequested), vec![]);
    c.handle(Event::CheckpointNow { now_ms: 3 });
    c.handle(Event::SnapshotStored {
        location: "s".into(),
    });
    c.handle(Event::PreparedAnswered(PrepareAnswer::Accepted));
    let actions = c.handle(Event::TransactionCommitted { now_ms: 4 });
    assert!(actions.contains(&Action::Begin), "{actions:?}");
    assert!(c.is_open());
}

#[test]
fn a_pause_mid_checkpoint_ends_that_checkpoint_paused() {
    for steps in 1..=3 {
        let mut c = dirty();
        c.handle(Event::Tick { now_ms: 1 });
        let answers = [
            Event::SnapshotStored {
                location: "s".into(),
            },
            Event::PreparedAnswered(PrepareAnswer::Accepted),
            Event::TransactionCommitted { now_ms: 2 },
        ];
        for (i, answer) in answers.into_iter().enumerate() {
            if i + 1 == steps {
                assert_eq!(c.handle(Event::PauseRequested { now_ms: 1 }), vec![]);
            }
            c.handle(answer);
        }
        assert!(c.is_paused(), "pause asked before answer {steps}");
    }
}

#[test]
fn an_idle_refresh_under_way_ends_paused() {
    let mut c = Cycle::recovered(CONFIG, 10, CheckpointId(4), true, 0);
    assert_eq!(
        c.handle(Event::Tick { now_ms: 3_600_000 }),
        vec![Action::Commit { offset: 10 }]
    );
    c.handle(Event::PauseRequested { now_ms: 3_600_001 });
    assert_eq!(
        c.handle(Event::TransactionCommitted { now_ms: 3_600_002 }),
        vec![]
    );
    assert!(c.is_paused());
}

#[test]
fn a_paused_cycle_stops_without_an_abort() {
    let mut c = paused();
    assert_eq!(c.handle(Event::StopRequested), vec![]);
    assert_eq!(c.phase(), &Phase::Stopped(StopReason::Requested));
    assert_eq!(
        c.handle(Event::ResumeRequested),
        vec![],
        "stopped stays stopped"
    );
}

#[test]
#[should_panic(expected = "cannot happen")]
fn a_batch_while_paused_is_a_driver_bug() {
    let mut c = paused();
    c.handle(Event::BatchProcessed { next_offset: 26 });
}
