//! What a client remembers between requests: which member leads, and where the rotation
//! stands when no leader is known.

use super::Answer;

/// A client's knowledge of the group, kept across its requests (drivers share one behind a
/// lock between the requests in flight). Members are indexes into the client's own list of
/// coordinator addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderMemory {
    members: usize,
    leader: Option<usize>,
    /// Where a request starts when no leader is known; moves past a member that fails, so
    /// later requests do not start at a dead member again.
    cursor: usize,
}

impl LeaderMemory {
    /// A memory of `members` coordinators that knows no leader yet and starts its rotation
    /// at `start` (taken modulo `members`; drivers draw it from the entropy seam).
    pub fn new(members: usize, start: usize) -> Self {
        assert!(members > 0, "a client needs at least one coordinator");
        LeaderMemory {
            members,
            leader: None,
            cursor: start % members,
        }
    }

    /// How many coordinators the client knows.
    pub fn members(&self) -> usize {
        self.members
    }

    /// The member last known to lead.
    pub fn leader(&self) -> Option<usize> {
        self.leader
    }

    /// The member a new request tries first: the leader if known, else the rotation's.
    pub fn first(&self) -> usize {
        self.leader.unwrap_or(self.cursor)
    }

    /// Learns from `member`'s answer.
    pub fn observe(&mut self, member: usize, answer: &Answer) {
        debug_assert!(member < self.members, "member {member} out of range");
        match *answer {
            Answer::Served { leader } => {
                if let Some(leader) = leader.filter(|l| *l < self.members) {
                    self.leader = Some(leader);
                }
            }
            Answer::NotLeader { leader } => {
                let named = leader.filter(|l| *l < self.members && *l != member);
                if named.is_some() || self.leader == Some(member) {
                    self.leader = named;
                }
                self.move_past(member);
            }
            Answer::Unreachable | Answer::NoAnswer | Answer::Unavailable => {
                if self.leader == Some(member) {
                    self.leader = None;
                }
                self.move_past(member);
            }
            // Shedding load says nothing about leadership.
            Answer::TooManyRequests { .. } => {}
        }
    }

    fn move_past(&mut self, member: usize) {
        if self.cursor == member {
            self.cursor = (member + 1) % self.members;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_the_rotation_and_sticks_to_a_named_leader() {
        let mut m = LeaderMemory::new(3, 4);
        assert_eq!(
            (m.first(), m.leader()),
            (1, None),
            "start taken modulo the size"
        );
        m.observe(1, &Answer::Served { leader: Some(2) });
        assert_eq!((m.first(), m.leader()), (2, Some(2)));
        // A served answer that names no leader changes nothing.
        m.observe(2, &Answer::Served { leader: None });
        assert_eq!(m.first(), 2);
        // A hint outside the list is ignored.
        m.observe(2, &Answer::Served { leader: Some(7) });
        assert_eq!(m.first(), 2);
    }

    #[test]
    fn forgets_a_leader_that_fails_and_moves_the_rotation_on() {
        for failure in [Answer::Unreachable, Answer::NoAnswer, Answer::Unavailable] {
            let mut m = LeaderMemory::new(3, 0);
            m.observe(0, &Answer::Served { leader: Some(0) });
            m.observe(0, &failure);
            assert_eq!(m.leader(), None, "{failure:?}");
            assert_eq!(
                m.first(),
                1,
                "{failure:?}: the rotation moved past the dead member"
            );
        }
        // A failing follower leaves the known leader alone.
        let mut m = LeaderMemory::new(3, 0);
        m.observe(0, &Answer::Served { leader: Some(2) });
        m.observe(1, &Answer::Unreachable);
        assert_eq!(m.first(), 2);
    }

    #[test]
    fn a_not_leader_answer_names_the_new_leader_or_clears_the_old() {
        let mut m = LeaderMemory::new(3, 0);
        m.observe(0, &Answer::NotLeader { leader: Some(1) });
        assert_eq!(m.leader(), Some(1));
        // The remembered leader says it no longer leads and knows no other.
        m.observe(1, &Answer::NotLeader { leader: None });
        assert_eq!(m.leader(), None);
        // A member naming itself is no hint.
        m.observe(2, &Answer::NotLeader { leader: Some(2) });
        assert_eq!(m.leader(), None);
        // A follower that knows no leader does not clear one learned elsewhere.
        m.observe(0, &Answer::Served { leader: Some(1) });
        m.observe(2, &Answer::NotLeader { leader: None });
        assert_eq!(m.leader(), Some(1));
    }

    #[test]
    fn shedding_load_says_nothing_about_leadership() {
        let mut m = LeaderMemory::new(2, 0);
        m.observe(0, &Answer::Served { leader: Some(0) });
        m.observe(
            0,
            &Answer::TooManyRequests {
                retry_after_ms: Some(1_000),
            },
        );
        assert_eq!((m.first(), m.leader()), (0, Some(0)));
    }
}
