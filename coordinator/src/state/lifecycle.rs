//! A job's life cycle as one pure decision: what a user's request or the fleet's progress
//! does to the job's [`JobState`], or why a request is refused in the state the job is in.
//! The control state applies these answers and nothing else changes a job's state, so the
//! allowed transitions are all in this file (and in its table test).
//!
//! ```text
//!            place all          pause            all paused
//!  pending ───────────▶ running ──────▶ pausing ───────────▶ paused
//!     ▲                  ▲  ▲              │ resume             │ resume
//!     │ start            │  └──────────────┴────────────────────┘
//!  stopped ◀─────────── stopping ◀──── stop (pending, running, pausing, paused)
//!     │    all released
//!     │ upgrade (the new version starts at once from the savepoint or last commit)
//!     ▼
//!  pending ◀─────────── upgrading ◀──── upgrade (pending, running, pausing, paused)
//!          all released (the new version starts from the stop's cut or the savepoint)
//!
//!  cancel (any state but cancelled or failed) ─▶ cancelling ─▶ cancelled (all released)
//!  a partition failing too often (any state but cancelled or failed) ─▶ failed
//! ```
//!
//! Savepoints are operations of their own, not job states, so they never block a pause or
//! a stop. `upgrading` releases the partitions exactly as `stopping` does; once all are
//! released and fenced the control state installs the new version and the job is
//! `pending` again (`state/versions.rs`).
//!
//! A request that asks for the state the job is already in or heading to (pausing a
//! paused job, stopping a stopping one) is accepted and changes nothing, so a client may
//! repeat it; any other request in a state that does not allow it is refused, naming the
//! current state.

use serde::{Deserialize, Serialize};
use weir_core::wire::JobState;

/// What a user asks of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobRequest {
    /// Stop consuming, commit, hold no transaction; keep the partitions and their state.
    Pause,
    /// Consume again where the pause left off.
    Resume,
    /// Commit and release every partition; the job can be started again.
    Stop,
    /// Run a stopped job again from its last committed checkpoint.
    Start,
    /// Release every partition for good.
    Cancel,
    /// Run a new version of the job, its state carried from the old one's cut.
    Upgrade,
}

impl JobRequest {
    /// Every request, for the table test and the docs.
    pub const ALL: [JobRequest; 6] = [
        JobRequest::Pause,
        JobRequest::Resume,
        JobRequest::Stop,
        JobRequest::Start,
        JobRequest::Cancel,
        JobRequest::Upgrade,
    ];

    /// The request's name, as in its HTTP path and CLI command.
    pub fn as_str(self) -> &'static str {
        match self {
            JobRequest::Pause => "pause",
            JobRequest::Resume => "resume",
            JobRequest::Stop => "stop",
            JobRequest::Start => "start",
            JobRequest::Cancel => "cancel",
            JobRequest::Upgrade => "upgrade",
        }
    }

    /// The states in which the request changes something, for the refusal's sentence.
    fn allowed_from(self) -> &'static str {
        match self {
            JobRequest::Pause => "a running job",
            JobRequest::Resume => "a pausing or paused job",
            JobRequest::Stop => "a pending, running, pausing or paused job",
            JobRequest::Start => "a stopped job",
            JobRequest::Cancel => "a job that is not cancelled or failed",
            JobRequest::Upgrade => "a pending, running, pausing, paused or stopped job",
        }
    }
}

/// What the fleet achieved, as the control state observes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobProgress {
    /// Every partition of the job has an owner.
    AllPlaced,
    /// Every partition's owner reported it paused (committed, no open transaction).
    AllPaused,
    /// No partition has an owner and none needs fencing.
    AllReleased,
    /// A partition kept failing past the failure-rate limit.
    Failed,
}

/// A request the job's current state does not allow; the answer is a 409 naming the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the job is {}; {} applies only to {}", state.as_str(), request.as_str(), request.allowed_from())]
pub struct WrongState {
    pub state: JobState,
    pub request: JobRequest,
}

/// The state after `request` in `state`, or why it is refused.
pub fn on_request(state: JobState, request: JobRequest) -> Result<JobState, WrongState> {
    use JobRequest as R;
    use JobState as S;
    let next = match (request, state) {
        (R::Pause, S::Running) => S::Pausing,
        (R::Pause, S::Pausing | S::Paused) => state,
        (R::Resume, S::Pausing | S::Paused | S::Running) => S::Running,
        (R::Stop, S::Pending | S::Running | S::Pausing | S::Paused) => S::Stopping,
        (R::Stop, S::Stopping | S::Stopped) => state,
        // Pending until every partition has an owner again, as after a submit.
        (R::Start, S::Stopped) => S::Pending,
        (R::Start, S::Pending | S::Running) => state,
        (R::Cancel, S::Cancelled | S::Failed | S::Cancelling) => state,
        (R::Cancel, _) => S::Cancelling,
        // A running job is released first, so its cut is the stop's; a stopped one
        // starts the new version at once.
        (R::Upgrade, S::Pending | S::Running | S::Pausing | S::Paused) => S::Upgrading,
        (R::Upgrade, S::Stopped) => S::Pending,
        _ => return Err(WrongState { state, request }),
    };
    Ok(next)
}

/// The state after `progress` in `state`; `None` when it changes nothing.
pub fn on_progress(state: JobState, progress: JobProgress) -> Option<JobState> {
    use JobProgress as P;
    use JobState as S;
    match (progress, state) {
        (P::AllPlaced, S::Pending) => Some(S::Running),
        (P::AllPaused, S::Pausing) => Some(S::Paused),
        (P::AllReleased, S::Stopping) => Some(S::Stopped),
        (P::AllReleased, S::Cancelling) => Some(S::Cancelled),
        // The new version is installed and starts as after a submit.
        (P::AllReleased, S::Upgrading) => Some(S::Pending),
        (P::Failed, S::Cancelled | S::Failed) => None,
        (P::Failed, _) => Some(S::Failed),
        _ => None,
    }
}

/// Whether the job's partitions should have owners (a stopping job keeps each until it
/// reported itself paused, see [`releases_when_paused`]).
pub fn wants_owners(state: JobState) -> bool {
    matches!(
        state,
        JobState::Pending
            | JobState::Running
            | JobState::Pausing
            | JobState::Paused
            | JobState::Stopping
            | JobState::Upgrading
    )
}

/// Whether owners of the job's partitions should stop consuming, commit and hold no
/// transaction.
pub fn wants_pause(state: JobState) -> bool {
    matches!(
        state,
        JobState::Pausing | JobState::Paused | JobState::Stopping | JobState::Upgrading
    )
}

/// Whether a partition that reported itself paused is released (the job is stopping),
/// and one without an owner is not placed again: what it committed is its restart point.
pub fn releases_when_paused(state: JobState) -> bool {
    matches!(state, JobState::Stopping | JobState::Upgrading)
}

/// Whether the job's partitions that have no owner need their transactional ids fenced:
/// the job runs nowhere any more (or is about to), so no new owner will fence them.
pub fn fences_released_partitions(state: JobState) -> bool {
    matches!(
        state,
        JobState::Stopping
            | JobState::Stopped
            | JobState::Upgrading
            | JobState::Cancelling
            | JobState::Cancelled
            | JobState::Failed
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobRequest as R;
    use JobState as S;

    /// The expected answer of every request in every state: `Some(next)` or refused.
    fn expected(request: JobRequest, state: JobState) -> Option<JobState> {
        let table: &[(JobRequest, JobState, Option<JobState>)] = &[
            (R::Pause, S::Pending, None),
            (R::Pause, S::Running, Some(S::Pausing)),
            (R::Pause, S::Pausing, Some(S::Pausing)),
            (R::Pause, S::Paused, Some(S::Paused)),
            (R::Pause, S::Stopping, None),
            (R::Pause, S::Stopped, None),
            (R::Pause, S::Upgrading, None),
            (R::Resume, S::Upgrading, None),
            (R::Stop, S::Upgrading, None),
            (R::Start, S::Upgrading, None),
            (R::Cancel, S::Upgrading, Some(S::Cancelling)),
            (R::Upgrade, S::Pending, Some(S::Upgrading)),
            (R::Upgrade, S::Running, Some(S::Upgrading)),
            (R::Upgrade, S::Pausing, Some(S::Upgrading)),
            (R::Upgrade, S::Paused, Some(S::Upgrading)),
            (R::Upgrade, S::Stopping, None),
            (R::Upgrade, S::Stopped, Some(S::Pending)),
            (R::Upgrade, S::Upgrading, None),
            (R::Upgrade, S::Cancelling, None),
            (R::Upgrade, S::Cancelled, None),
            (R::Upgrade, S::Failed, None),
            (R::Pause, S::Cancelling, None),
            (R::Pause, S::Cancelled, None),
            (R::Pause, S::Failed, None),
            (R::Resume, S::Pending, None),
            (R::Resume, S::Running, Some(S::Running)),
            (R::Resume, S::Pausing, Some(S::Running)),
            (R::Resume, S::Paused, Some(S::Running)),
            (R::Resume, S::Stopping, None),
            (R::Resume, S::Stopped, None),
            (R::Resume, S::Cancelling, None),
            (R::Resume, S::Cancelled, None),
            (R::Resume, S::Failed, None),
            (R::Stop, S::Pending, Some(S::Stopping)),
            (R::Stop, S::Running, Some(S::Stopping)),
            (R::Stop, S::Pausing, Some(S::Stopping)),
            (R::Stop, S::Paused, Some(S::Stopping)),
            (R::Stop, S::Stopping, Some(S::Stopping)),
            (R::Stop, S::Stopped, Some(S::Stopped)),
            (R::Stop, S::Cancelling, None),
            (R::Stop, S::Cancelled, None),
            (R::Stop, S::Failed, None),
            (R::Start, S::Pending, Some(S::Pending)),
            (R::Start, S::Running, Some(S::Running)),
            (R::Start, S::Pausing, None),
            (R::Start, S::Paused, None),
            (R::Start, S::Stopping, None),
            (R::Start, S::Stopped, Some(S::Pending)),
            (R::Start, S::Cancelling, None),
            (R::Start, S::Cancelled, None),
            (R::Start, S::Failed, None),
            (R::Cancel, S::Pending, Some(S::Cancelling)),
            (R::Cancel, S::Running, Some(S::Cancelling)),
            (R::Cancel, S::Pausing, Some(S::Cancelling)),
            (R::Cancel, S::Paused, Some(S::Cancelling)),
            (R::Cancel, S::Stopping, Some(S::Cancelling)),
            (R::Cancel, S::Stopped, Some(S::Cancelling)),
            (R::Cancel, S::Cancelling, Some(S::Cancelling)),
            (R::Cancel, S::Cancelled, Some(S::Cancelled)),
            (R::Cancel, S::Failed, Some(S::Failed)),
        ];
        let rows: Vec<_> = table
            .iter()
            .filter(|(r, s, _)| *r == request && *s == state)
            .collect();
        assert_eq!(rows.len(), 1, "one row for {request:?} in {state:?}");
        rows[0].2
    }

    #[test]
    fn every_request_in_every_state_is_decided_by_the_table() {
        for request in JobRequest::ALL {
            for state in JobState::ALL {
                let got = on_request(state, request);
                match expected(request, state) {
                    Some(next) => assert_eq!(got, Ok(next), "{request:?} in {state:?}"),
                    None => assert_eq!(
                        got,
                        Err(WrongState { state, request }),
                        "{request:?} in {state:?}"
                    ),
                }
            }
        }
    }

    #[test]
    fn a_refusal_names_the_current_state_and_what_the_request_needs() {
        let refused = on_request(S::Stopped, R::Pause).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "the job is stopped; pause applies only to a running job"
        );
        let refused = on_request(S::Paused, R::Start).unwrap_err();
        assert!(refused.to_string().contains("is paused"), "{refused}");
    }

    #[test]
    fn progress_moves_only_the_state_waiting_for_it() {
        use JobProgress as P;
        for state in JobState::ALL {
            let expect = |p| match (p, state) {
                (P::AllPlaced, S::Pending) => Some(S::Running),
                (P::AllPaused, S::Pausing) => Some(S::Paused),
                (P::AllReleased, S::Stopping) => Some(S::Stopped),
                (P::AllReleased, S::Cancelling) => Some(S::Cancelled),
                (P::AllReleased, S::Upgrading) => Some(S::Pending),
                (P::Failed, S::Cancelled | S::Failed) => None,
                (P::Failed, _) => Some(S::Failed),
                _ => None,
            };
            for p in [P::AllPlaced, P::AllPaused, P::AllReleased, P::Failed] {
                assert_eq!(on_progress(state, p), expect(p), "{p:?} in {state:?}");
            }
        }
    }

    #[test]
    fn a_paused_or_stopping_job_keeps_owners_that_hold_no_transaction() {
        for state in JobState::ALL {
            if wants_pause(state) {
                assert!(wants_owners(state), "{state:?}");
            }
            // Owners and fencing by others never overlap except while stopping, when a
            // partition is fenced only once released.
            if wants_owners(state) && fences_released_partitions(state) {
                assert!(matches!(state, S::Stopping | S::Upgrading), "{state:?}");
            }
        }
        assert!(releases_when_paused(S::Stopping));
        assert!(releases_when_paused(S::Upgrading));
        assert!(!releases_when_paused(S::Paused));
    }
}
