//! The coordinator client's policy, shared by every client of the group: the `weir` CLI
//! and the Rust API client, the worker's control plane, the benchmarks' helpers and the
//! simulation's twin of the worker's control plane. It decides which member a request goes
//! to and when; the drivers only send, wait and classify what came back.
//!
//! It is a plain state machine, after quinn-proto and openraft's engine: no I/O, no clock
//! and no randomness of its own. A driver tells it the time and each attempt's [`Answer`]
//! and does what the returned [`Step`] says. Jitter comes from a seed the driver draws from
//! the entropy seam, so the simulation replays a seed exactly.
//!
//! The rules, per request:
//! - The first attempt goes to the member last known to lead ([`LeaderMemory`]), else to
//!   the member the rotation has reached (drivers start it at a random member, so a fleet
//!   does not pile onto the first address).
//! - A "not the leader, the leader is X" answer is followed at once, with no wait.
//! - A member that cannot be reached, does not answer in time, or cannot serve now (no
//!   leader, leadership changing) is left for the next member at once; once every member
//!   has failed in a row, the next attempt waits a jittered exponential backoff (backon's
//!   `ExponentialBuilder`, factor 2, a wait in `[d, 2d)` for a base `d` that doubles from
//!   `backoff_min_ms` up to `backoff_max_ms`).
//! - A 429 waits as long as its `Retry-After` asks (bounded), on the same member, at most
//!   `too_many_requests_max` times; the next 429 is the caller's answer.
//! - Every request is bounded by `attempts_max` sends and by `deadline_ms`: no attempt or
//!   wait starts past the deadline.
//!
//! Leader knowledge outlives a request: a served answer naming the leader makes it the
//! first member every later request tries; a leader that fails is forgotten.

mod memory;
mod retry;

pub use memory::LeaderMemory;
pub use retry::{Exhausted, Retry, RetryPolicy, Step};

/// What one attempt came to, as the policy needs to know it. Drivers classify: production
/// from HTTP statuses, errors and the `x-weir-leader` header, the simulation from the
/// coordinator's own answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The member gave a final answer, success or refusal: the caller gets it. `leader`
    /// names the member that leads, when the answer says so.
    Served { leader: Option<usize> },
    /// The member does not lead and did not serve the request; `leader` names the member
    /// that does, when it knows one.
    NotLeader { leader: Option<usize> },
    /// The member could not be reached (refused or timed-out connection): nothing was sent.
    Unreachable,
    /// The request was sent but no answer came back in time, or it broke off: its outcome
    /// is unknown (writes carry an idempotency key for this reason).
    NoAnswer,
    /// The member answered that it cannot serve now (503: no leader, leadership changing,
    /// the leader did not answer it).
    Unavailable,
    /// The member sheds load (429) and asks to be tried again after `retry_after_ms`
    /// (`None` when the answer gave no usable `Retry-After`).
    TooManyRequests { retry_after_ms: Option<u64> },
}
