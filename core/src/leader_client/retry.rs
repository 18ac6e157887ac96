//! One request's retries: where each attempt goes and how long to wait before it.

use super::{Answer, LeaderMemory};
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use std::time::Duration;

/// The bounds and waits of one kind of request. Each client names its own as a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Sends per request, over all members, the first included.
    pub attempts_max: u32,
    /// No attempt and no wait starts later than this after the first attempt (an attempt
    /// under way may still run on for its own timeout).
    pub deadline_ms: u64,
    /// The backoff's first base wait, after the first round in which every member failed.
    pub backoff_min_ms: u64,
    /// The backoff's largest base wait; with jitter a wait is below twice this.
    pub backoff_max_ms: u64,
    /// 429 answers a request waits out; the next one is the caller's answer. Zero makes
    /// every 429 final.
    pub too_many_requests_max: u32,
    /// The wait after a 429 without a usable `Retry-After`.
    pub retry_after_default_ms: u64,
    /// The longest wait a `Retry-After` may ask for; a longer one is cut to this.
    pub retry_after_max_ms: u64,
}

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Wait `delay_ms` (0: not at all), then send the request to `member`.
    Send { member: usize, delay_ms: u64 },
    /// The last answer is final: hand it to the caller.
    Finish,
    /// Stop without a final answer: the bound named was reached.
    GiveUp(Exhausted),
}

/// Which bound ended a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// [`RetryPolicy::attempts_max`] sends were made.
    Attempts,
    /// The next attempt would have started past [`RetryPolicy::deadline_ms`].
    Deadline,
}

/// The retry state of one request.
#[derive(Debug)]
pub struct Retry {
    policy: RetryPolicy,
    started_ms: u64,
    attempts: u32,
    too_many: u32,
    /// Members that failed since the last backoff wait: the next attempt avoids them, and
    /// once all have failed the request waits.
    failed: Vec<bool>,
    backoff: ExponentialBackoff,
}

impl Retry {
    /// Starts a request at `now_ms`; the first attempt goes to the returned member, at once.
    /// `jitter_seed` seeds the backoff's jitter (from the entropy seam).
    pub fn start(
        policy: RetryPolicy,
        memory: &LeaderMemory,
        now_ms: u64,
        jitter_seed: u64,
    ) -> (Retry, usize) {
        assert!(
            policy.attempts_max > 0,
            "a request makes at least one attempt"
        );
        assert!(policy.backoff_min_ms <= policy.backoff_max_ms);
        let backoff = ExponentialBuilder::new()
            .with_factor(2.0)
            .with_min_delay(Duration::from_millis(policy.backoff_min_ms))
            .with_max_delay(Duration::from_millis(policy.backoff_max_ms))
            .without_max_times()
            .with_jitter()
            .with_jitter_seed(jitter_seed)
            .build();
        let retry = Retry {
            policy,
            started_ms: now_ms,
            attempts: 1,
            too_many: 0,
            failed: vec![false; memory.members()],
            backoff,
        };
        (retry, memory.first())
    }

    /// Sends made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// `member` answered `answer` at `now_ms`: `memory` learns from it, and the request
    /// finishes, gives up, or goes on as the step says.
    pub fn on_answer(
        &mut self,
        now_ms: u64,
        member: usize,
        answer: &Answer,
        memory: &mut LeaderMemory,
    ) -> Step {
        assert_eq!(memory.members(), self.failed.len(), "one memory per client");
        memory.observe(member, answer);
        match *answer {
            Answer::Served { .. } => Step::Finish,
            Answer::TooManyRequests { retry_after_ms } => {
                if self.too_many >= self.policy.too_many_requests_max {
                    return Step::Finish;
                }
                self.too_many += 1;
                let wait_ms = retry_after_ms
                    .unwrap_or(self.policy.retry_after_default_ms)
                    .min(self.policy.retry_after_max_ms);
                self.attempt(now_ms, member, wait_ms)
            }
            // The memory now holds the leader a "not the leader" answer named, which is
            // followed at once unless it failed already in this round (two members naming
            // each other end up waiting like any failed round); after other failures, a
            // leader another request learned meanwhile is tried first.
            Answer::NotLeader { .. }
            | Answer::Unreachable
            | Answer::NoAnswer
            | Answer::Unavailable => self.after_failure(now_ms, member, memory.leader()),
        }
    }

    /// After `member` could not serve: `preferred` (a named or remembered leader) if it has
    /// not failed in this round, else the next member in the rotation that has not, at once;
    /// when every member has failed, a backoff wait and a new round.
    fn after_failure(&mut self, now_ms: u64, member: usize, preferred: Option<usize>) -> Step {
        let n = self.failed.len();
        self.failed[member] = true;
        let untried = preferred
            .filter(|p| *p < n && !self.failed[*p])
            .or_else(|| (1..n).map(|i| (member + i) % n).find(|m| !self.failed[*m]));
        match untried {
            Some(next) => self.attempt(now_ms, next, 0),
            None => {
                self.failed.fill(false);
                let wait_ms = self.backoff.next().map_or(self.policy.backoff_max_ms, |d| {
                    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
                });
                let next = preferred.filter(|p| *p < n).unwrap_or((member + 1) % n);
                self.attempt(now_ms, next, wait_ms)
            }
        }
    }

    /// One more send to `member` after `delay_ms`, if the bounds allow it.
    fn attempt(&mut self, now_ms: u64, member: usize, delay_ms: u64) -> Step {
        if self.attempts >= self.policy.attempts_max {
            return Step::GiveUp(Exhausted::Attempts);
        }
        let deadline_ms = self.started_ms.saturating_add(self.policy.deadline_ms);
        if now_ms.saturating_add(delay_ms) > deadline_ms {
            return Step::GiveUp(Exhausted::Deadline);
        }
        self.attempts += 1;
        Step::Send { member, delay_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        attempts_max: 10,
        deadline_ms: 60_000,
        backoff_min_ms: 100,
        backoff_max_ms: 1_000,
        too_many_requests_max: 2,
        retry_after_default_ms: 1_000,
        retry_after_max_ms: 5_000,
    };

    fn send(member: usize) -> Step {
        Step::Send {
            member,
            delay_ms: 0,
        }
    }

    fn started(policy: RetryPolicy, memory: &LeaderMemory) -> Retry {
        Retry::start(policy, memory, 0, 7).0
    }

    #[test]
    fn the_first_attempt_goes_to_the_known_leader() {
        let mut memory = LeaderMemory::new(3, 1);
        assert_eq!(Retry::start(POLICY, &memory, 0, 7).1, 1);
        memory.observe(1, &Answer::Served { leader: Some(2) });
        assert_eq!(Retry::start(POLICY, &memory, 0, 7).1, 2);
    }

    #[test]
    fn a_served_answer_finishes_and_is_remembered() {
        let mut memory = LeaderMemory::new(3, 0);
        let mut r = started(POLICY, &memory);
        let served = Answer::Served { leader: Some(1) };
        assert_eq!(r.on_answer(5, 0, &served, &mut memory), Step::Finish);
        assert_eq!(memory.first(), 1, "the next request starts at the leader");
    }

    #[test]
    fn not_leader_is_followed_at_once() {
        let mut memory = LeaderMemory::new(3, 0);
        let mut r = started(POLICY, &memory);
        let not_leader = Answer::NotLeader { leader: Some(2) };
        assert_eq!(r.on_answer(5, 0, &not_leader, &mut memory), send(2));
        assert_eq!(memory.leader(), Some(2));
        // Without a hint: the next member in the rotation, still at once.
        let mut memory = LeaderMemory::new(3, 0);
        let mut r = started(POLICY, &memory);
        let unknown = Answer::NotLeader { leader: None };
        assert_eq!(r.on_answer(5, 0, &unknown, &mut memory), send(1));
    }

    #[test]
    fn two_members_naming_each_other_end_in_a_backoff() {
        let mut memory = LeaderMemory::new(2, 0);
        let mut r = started(POLICY, &memory);
        let to = |l| Answer::NotLeader { leader: Some(l) };
        assert_eq!(r.on_answer(1, 0, &to(1), &mut memory), send(1));
        match r.on_answer(2, 1, &to(0), &mut memory) {
            Step::Send {
                member: 0,
                delay_ms,
            } => assert!((100..200).contains(&delay_ms)),
            other => panic!("expected a backoff, got {other:?}"),
        }
    }

    #[test]
    fn failures_rotate_at_once_then_back_off_exponentially_with_jitter() {
        for failure in [Answer::Unreachable, Answer::NoAnswer, Answer::Unavailable] {
            let mut memory = LeaderMemory::new(3, 0);
            let mut r = started(POLICY, &memory);
            let mut member = 0;
            let mut waits = Vec::new();
            for _ in 0..9 {
                match r.on_answer(0, member, &failure, &mut memory) {
                    Step::Send {
                        member: m,
                        delay_ms,
                    } => {
                        assert_eq!(m, (member + 1) % 3, "{failure:?}: rotation order");
                        member = m;
                        waits.push(delay_ms);
                    }
                    other => panic!("{failure:?}: {other:?}"),
                }
            }
            // Every third attempt waits: base 100, 200, 400 ms, each plus up to as much again.
            assert_eq!(waits.iter().filter(|w| **w == 0).count(), 6, "{waits:?}");
            for (wait, base) in [(waits[2], 100), (waits[5], 200), (waits[8], 400)] {
                assert!((base..2 * base).contains(&wait), "{failure:?}: {waits:?}");
            }
            assert_eq!(
                r.on_answer(0, member, &failure, &mut memory),
                Step::GiveUp(Exhausted::Attempts)
            );
            assert_eq!(r.attempts(), 10);
        }
    }

    #[test]
    fn the_backoff_is_capped() {
        let policy = RetryPolicy {
            attempts_max: 100,
            deadline_ms: u64::MAX,
            ..POLICY
        };
        let mut memory = LeaderMemory::new(1, 0);
        let mut r = started(policy, &memory);
        let waits: Vec<u64> = (0..20)
            .map(
                |_| match r.on_answer(0, 0, &Answer::Unreachable, &mut memory) {
                    Step::Send { delay_ms, .. } => delay_ms,
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        assert!(waits.iter().all(|w| (100..2_000).contains(w)), "{waits:?}");
        assert!(waits[10..].iter().all(|w| *w >= 1_000), "{waits:?}");
    }

    #[test]
    fn the_same_seed_draws_the_same_waits_and_another_seed_others() {
        let waits = |seed| {
            let mut memory = LeaderMemory::new(1, 0);
            let (mut r, _) = Retry::start(POLICY, &memory, 0, seed);
            (0..5)
                .map(|_| r.on_answer(0, 0, &Answer::NoAnswer, &mut memory))
                .collect::<Vec<_>>()
        };
        assert_eq!(waits(1), waits(1));
        assert_ne!(waits(1), waits(2));
    }

    #[test]
    fn a_failed_leader_is_left_and_a_leader_learned_meanwhile_is_tried_first() {
        let mut memory = LeaderMemory::new(3, 0);
        memory.observe(0, &Answer::Served { leader: Some(0) });
        let mut r = started(POLICY, &memory);
        assert_eq!(
            r.on_answer(1, 0, &Answer::Unreachable, &mut memory),
            send(1)
        );
        assert_eq!(memory.leader(), None);
        // Another request learned that member 2 leads while this one was out.
        memory.observe(1, &Answer::Served { leader: Some(2) });
        assert_eq!(
            r.on_answer(2, 1, &Answer::Unavailable, &mut memory),
            send(2)
        );
    }

    #[test]
    fn too_many_requests_waits_as_asked_on_the_same_member_then_is_final() {
        let mut memory = LeaderMemory::new(3, 0);
        let mut r = started(POLICY, &memory);
        let shed = |ms| Answer::TooManyRequests { retry_after_ms: ms };
        let wait = |member, delay_ms| Step::Send { member, delay_ms };
        assert_eq!(
            r.on_answer(0, 0, &shed(Some(2_000)), &mut memory),
            wait(0, 2_000)
        );
        assert_eq!(
            r.on_answer(0, 0, &shed(Some(3_600_000)), &mut memory),
            wait(0, 5_000),
            "bounded by retry_after_max_ms"
        );
        assert_eq!(r.on_answer(0, 0, &shed(None), &mut memory), Step::Finish);
        // Without a Retry-After: the default wait; a policy of zero makes the first final.
        let mut r = started(POLICY, &memory);
        assert_eq!(r.on_answer(0, 1, &shed(None), &mut memory), wait(1, 1_000));
        let never = RetryPolicy {
            too_many_requests_max: 0,
            ..POLICY
        };
        let mut r = started(never, &memory);
        assert_eq!(
            r.on_answer(0, 0, &shed(Some(1_000)), &mut memory),
            Step::Finish
        );
    }

    #[test]
    fn no_attempt_or_wait_starts_past_the_deadline() {
        let policy = RetryPolicy {
            deadline_ms: 1_000,
            ..POLICY
        };
        let mut memory = LeaderMemory::new(2, 0);
        let (mut r, _) = Retry::start(policy, &memory, 10_000, 7);
        assert_eq!(
            r.on_answer(10_900, 0, &Answer::NoAnswer, &mut memory),
            send(1)
        );
        // The round is over: a backoff of at least 100 ms would end past 11_000.
        assert_eq!(
            r.on_answer(10_950, 1, &Answer::NoAnswer, &mut memory),
            Step::GiveUp(Exhausted::Deadline)
        );
        let mut r = Retry::start(policy, &memory, 10_000, 7).0;
        assert_eq!(
            r.on_answer(11_001, 0, &Answer::Unreachable, &mut memory),
            Step::GiveUp(Exhausted::Deadline)
        );
    }

    #[test]
    fn one_attempt_allowed_gives_up_after_it() {
        let policy = RetryPolicy {
            attempts_max: 1,
            ..POLICY
        };
        let mut memory = LeaderMemory::new(3, 0);
        let mut r = started(policy, &memory);
        let not_leader = Answer::NotLeader { leader: Some(1) };
        assert_eq!(
            r.on_answer(0, 0, &not_leader, &mut memory),
            Step::GiveUp(Exhausted::Attempts)
        );
        assert_eq!(memory.leader(), Some(1), "still learned");
    }
}
