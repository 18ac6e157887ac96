//! The checker catches what it claims to: fabricated histories with one violation each are
//! flagged, and a clean history is not. Without these, a checker that never fires would
//! make every seed pass.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, ServerState, Vote};
use std::collections::BTreeMap;
use weir_coordinator::state::{Command, ControlState, Tenant};
use weir_core::ids::{NodeId, TenantName};
use weir_simulation::checker::{
    Attempt, AttemptOutcome, Checker, ElectionSafety, LogLookup, MetricsSample, NodeLogs,
    NodeStates, StoredLog,
};

fn log_id(term: u64, node: NodeId, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

fn sample(
    node: NodeId,
    term: u64,
    leader: Option<NodeId>,
    applied: Option<LogId<u64>>,
) -> MetricsSample {
    let is_leader = leader == Some(node);
    MetricsSample {
        node,
        process: 1,
        term,
        vote: if is_leader {
            Vote::new_committed(term, node)
        } else {
            Vote::new(term, leader.unwrap_or(node))
        },
        state: if is_leader {
            ServerState::Leader
        } else {
            ServerState::Follower
        },
        current_leader: leader,
        last_applied: applied,
    }
}

/// A log lookup for nodes whose logs hold everything asked for, with the right ids.
fn full_log(ids: Vec<LogId<u64>>) -> impl Fn(u64) -> LogLookup {
    move |index| {
        ids.iter()
            .find(|l| l.index == index)
            .map_or(LogLookup::Missing, |l| LogLookup::Present(*l))
    }
}

fn nothing(_: u64) -> LogLookup {
    LogLookup::Missing
}

fn create(name: &str, hash: &str) -> Command {
    Command::CreateTenant {
        name: TenantName(name.to_string()),
        token_hash: hash.to_string(),
        at_ms: 7,
    }
}

fn attempt(node: NodeId, hash: &str, outcome: AttemptOutcome) -> Attempt {
    Attempt {
        node,
        token_hash: hash.to_string(),
        outcome,
    }
}

fn state_with(tenants: &[(&str, &str)]) -> ControlState {
    let mut state = ControlState::default();
    for (name, hash) in tenants {
        let name = TenantName(name.to_string());
        state.tenants.insert(
            name.clone(),
            Tenant {
                name,
                token_hashes: vec![hash.to_string()],
                created_at_ms: 7,
            },
        );
    }
    state
}

fn stored(term: u64, node: NodeId, index: u64, command: Command) -> Vec<u8> {
    let entry: Entry<weir_coordinator::raft_types::TypeConfig> = Entry {
        log_id: log_id(term, node, index),
        payload: EntryPayload::Normal(command),
    };
    serde_json::to_vec(&entry).expect("entries encode")
}

fn one_log(entries: &[(u64, Command)]) -> StoredLog {
    entries
        .iter()
        .map(|(i, c)| (*i, stored(1, 1, *i, c.clone())))
        .collect()
}

/// A history that breaks nothing: elections in rising terms, agreeing applies, one
/// acknowledged write, one retried write that found itself applied, one unknown write.
fn clean_history(checker: &mut Checker) -> (NodeStates, NodeLogs) {
    let l1 = log_id(1, 1, 1);
    checker.observe(0, &sample(1, 1, Some(1), None), &nothing);
    checker.observe(1, &sample(2, 1, Some(1), Some(l1)), &nothing);
    checker.observe(2, &sample(1, 1, Some(1), Some(l1)), &nothing);
    checker.observe(9, &sample(2, 2, Some(2), Some(l1)), &full_log(vec![l1]));
    let name = |s: &str| TenantName(s.to_string());
    checker.record_attempt(3, &name("a"), 7, attempt(1, "ha", AttemptOutcome::Acked));
    checker.record_attempt(
        4,
        &name("b"),
        7,
        attempt(1, "hb1", AttemptOutcome::TimedOut),
    );
    checker.record_attempt(5, &name("b"), 7, attempt(2, "hb2", AttemptOutcome::Exists));
    checker.record_attempt(
        6,
        &name("c"),
        7,
        attempt(2, "hc", AttemptOutcome::NotLeader),
    );
    let state = state_with(&[("a", "ha"), ("b", "hb1")]);
    let log = one_log(&[
        (2, create("a", "ha")),
        (3, create("b", "hb1")),
        (4, create("b", "hb2")),
    ]);
    let states = BTreeMap::from([(1, state.clone()), (2, state)]);
    let logs = BTreeMap::from([(1, log.clone()), (2, log)]);
    (states, logs)
}

#[test]
fn a_clean_history_passes() {
    for safety in [
        ElectionSafety::OneLeaderPerTerm,
        ElectionSafety::OneLeaderPerLeaderId,
    ] {
        let mut checker = Checker::new(safety);
        let (states, logs) = clean_history(&mut checker);
        checker.check_final(10, &states, &logs);
        assert!(
            checker.violations().is_empty(),
            "{:?}",
            checker.violations()
        );
    }
}

#[test]
fn two_leaders_in_one_term_are_caught_under_standard_raft() {
    let mut checker = Checker::new(ElectionSafety::OneLeaderPerTerm);
    checker.observe(0, &sample(1, 5, Some(1), None), &nothing);
    checker.observe(1, &sample(2, 5, Some(2), None), &nothing);
    assert_eq!(checker.violations().len(), 1, "{:?}", checker.violations());
    assert!(checker.violations()[0].contains("two leaders in term 5"));

    // openraft's advanced mode allows it: (5, n2) outranks (5, n1).
    let mut checker = Checker::new(ElectionSafety::OneLeaderPerLeaderId);
    checker.observe(0, &sample(1, 5, Some(1), None), &nothing);
    checker.observe(1, &sample(2, 5, Some(2), None), &nothing);
    assert!(checker.violations().is_empty());
    assert_eq!(checker.election().terms_with_several_leaders(), 1);
}

#[test]
fn a_leader_without_a_committed_vote_for_itself_is_caught() {
    let mut checker = Checker::new(ElectionSafety::OneLeaderPerLeaderId);
    let mut s = sample(1, 3, Some(1), None);
    s.vote = Vote::new(3, 1);
    checker.observe(0, &s, &nothing);
    assert_eq!(checker.violations().len(), 1, "{:?}", checker.violations());
}

#[test]
fn a_term_going_back_is_caught() {
    let mut checker = Checker::new(ElectionSafety::OneLeaderPerLeaderId);
    checker.observe(0, &sample(1, 4, None, None), &nothing);
    checker.observe(1, &sample(1, 3, None, None), &nothing);
    assert_eq!(checker.violations().len(), 1, "{:?}", checker.violations());
    assert!(checker.violations()[0].contains("went back from 4 to 3"));
}

#[test]
fn different_entries_applied_at_one_index_are_caught() {
    let mut checker = Checker::new(ElectionSafety::OneLeaderPerLeaderId);
    checker.observe(0, &sample(1, 2, None, Some(log_id(1, 1, 5))), &nothing);
    checker.observe(1, &sample(2, 2, None, Some(log_id(2, 2, 5))), &nothing);
    assert_eq!(checker.violations().len(), 1, "{:?}", checker.violations());
}

#[test]
fn a_new_leader_missing_a_committed_entry_is_caught() {
    let l8 = log_id(1, 1, 8);
    let mut checker = Checker::new(ElectionSafety::OneLeaderPerLeaderId);
    checker.observe(0, &sample(1, 1, Some(1), Some(l8)), &full_log(vec![l8]));
    // n2 campaigns, then wins term 2 with a log that stops at index 7.
    checker.observe(1, &sample(2, 2, None, None), &nothing);
    checker.observe(1, &sample(2, 2, Some(2), None), &nothing);
    assert_eq!(checker.violations().len(), 1, "{:?}", checker.violations());
    assert!(checker.violations()[0].contains("lacks committed entry"));
    // A compacted entry counts as held.
    let mut checker = Checker::new(ElectionSafety::OneLeaderPerLeaderId);
    checker.observe(0, &sample(1, 1, Some(1), Some(l8)), &full_log(vec![l8]));
    checker.observe(1, &sample(2, 2, None, None), &nothing);
    checker.observe(1, &sample(2, 2, Some(2), None), &|_| LogLookup::Purged);
    assert!(
        checker.violations().is_empty(),
        "{:?}",
        checker.violations()
    );
}

#[test]
fn a_leadership_restored_at_startup_is_not_held_to_completeness() {
    // n1 won term 6 and died before anyone saw it; meanwhile n2 led term 7 and committed
    // index 9. n1's new process starts up as the (stale) leader of term 6.
    let l9 = log_id(7, 2, 9);
    let mut checker = Checker::new(ElectionSafety::OneLeaderPerLeaderId);
    checker.observe(0, &sample(2, 7, None, None), &nothing);
    checker.observe(1, &sample(2, 7, Some(2), Some(l9)), &full_log(vec![l9]));
    let mut restored = sample(1, 6, Some(1), None);
    restored.process = 2;
    let observed = checker.observe(2, &restored, &nothing);
    assert!(observed.new_leader && observed.restored);
    assert!(
        checker.violations().is_empty(),
        "{:?}",
        checker.violations()
    );
    // The same stale log in a leadership won while observed is a violation.
    let mut elected = sample(3, 8, None, None);
    checker.observe(3, &elected, &nothing);
    elected = sample(3, 8, Some(3), None);
    let observed = checker.observe(4, &elected, &nothing);
    assert!(observed.new_leader && !observed.restored);
    assert_eq!(checker.violations().len(), 1, "{:?}", checker.violations());
}

#[test]
fn a_lost_acknowledged_write_is_caught() {
    let mut checker = Checker::new(ElectionSafety::OneLeaderPerLeaderId);
    let (mut states, logs) = clean_history(&mut checker);
    for state in states.values_mut() {
        state.tenants.remove(&TenantName("a".to_string()));
    }
    checker.check_final(10, &states, &logs);
    let v = checker.violations();
    assert!(
        v.iter()
            .any(|v| v.contains("acknowledged write lost: tenant a")),
        "{v:?}"
    );
}

#[test]
fn a_write_applied_from_the_wrong_attempt_is_caught() {
    let mut checker = Checker::new(ElectionSafety::OneLeaderPerLeaderId);
    let (mut states, logs) = clean_history(&mut checker);
    // b was found existing on attempt 2, so attempt 1 must be the one applied.
    for state in states.values_mut() {
        state
            .tenants
            .get_mut(&TenantName("b".to_string()))
            .unwrap()
            .token_hashes = vec!["hb2".into()];
    }
    checker.check_final(10, &states, &logs);
    let v = checker.violations();
    assert!(
        v.iter()
            .any(|v| v.contains("tenant b was reported existing")),
        "{v:?}"
    );
}

#[test]
fn a_tenant_no_client_created_is_caught() {
    let mut checker = Checker::new(ElectionSafety::OneLeaderPerLeaderId);
    let (mut states, logs) = clean_history(&mut checker);
    for state in states.values_mut() {
        *state = state_with(&[("a", "ha"), ("b", "hb1"), ("ghost", "hg")]);
    }
    checker.check_final(10, &states, &logs);
    let v = checker.violations();
    assert!(
        v.iter()
            .any(|v| v.contains("tenant ghost exists but no client created it")),
        "{v:?}"
    );
}

#[test]
fn an_attempt_applied_twice_is_caught() {
    let mut checker = Checker::new(ElectionSafety::OneLeaderPerLeaderId);
    let (states, _) = clean_history(&mut checker);
    let log = one_log(&[
        (2, create("a", "ha")),
        (3, create("b", "hb1")),
        (4, create("a", "ha")),
    ]);
    let logs = BTreeMap::from([(1, log.clone()), (2, log)]);
    checker.check_final(10, &states, &logs);
    let v = checker.violations();
    assert!(
        v.iter()
            .any(|v| v.contains("applied one attempt for tenant a twice")),
        "{v:?}"
    );
}

#[test]
fn a_conflict_on_a_first_attempt_is_caught() {
    let mut checker = Checker::new(ElectionSafety::OneLeaderPerLeaderId);
    let name = TenantName("fresh".to_string());
    checker.record_attempt(0, &name, 7, attempt(1, "h", AttemptOutcome::Exists));
    assert_eq!(checker.violations().len(), 1, "{:?}", checker.violations());
}

#[test]
fn diverging_states_and_logs_are_caught() {
    let mut checker = Checker::new(ElectionSafety::OneLeaderPerLeaderId);
    let (mut states, mut logs) = clean_history(&mut checker);
    states.insert(3, state_with(&[("a", "ha")]));
    logs.insert(
        3,
        BTreeMap::from([(2, stored(1, 1, 2, create("b", "hb1")))]),
    );
    checker.check_final(10, &states, &logs);
    let v = checker.violations();
    assert!(v.iter().any(|v| v.contains("n3's state differs")), "{v:?}");
    assert!(
        v.iter()
            .any(|v| v.contains("committed different entries at index 2")),
        "{v:?}"
    );
}
