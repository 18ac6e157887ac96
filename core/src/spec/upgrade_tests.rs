//! Every rule of the upgrade compatibility check, one test a rule.

use super::*;
use crate::spec::parse_job_spec;

/// A velocity job with a dedupe and a window, partitioned by its key (so no shuffle).
const BASE: &str = r#"
name: velocity
source: { topic: payments, event_time: ts, max_out_of_orderness: 5s, partitioned_by: card }
pipeline:
  - filter: "amount > 0"
  - dedupe: { key: "event_id", ttl: 1h }
  - key_by: "card"
  - window: { tumbling: 60s }
  - aggregate: { count: "count()", total: "sum(amount)" }
  - filter: "count >= 5"
sink: { topic: alerts }
"#;

fn spec(text: &str) -> JobSpec {
    let parsed = parse_job_spec(text.as_bytes()).unwrap();
    crate::spec::validate(&parsed).unwrap();
    parsed
}

/// BASE with `from` replaced by `to` (which must occur).
fn edited(from: &str, to: &str) -> JobSpec {
    assert!(BASE.contains(from), "{from}");
    spec(&BASE.replacen(from, to, 1))
}

fn check(new: &JobSpec, drop: &[&str]) -> Result<CarryPlan, UpgradeError> {
    let drop: Vec<String> = drop.iter().map(|d| d.to_string()).collect();
    check_upgrade(&spec(BASE), new, &drop)
}

/// The stage field a refusal names.
fn refused_at(new: &JobSpec) -> String {
    match check(new, &[]) {
        Err(UpgradeError::Incompatible { field, .. }) => field,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn carries_everything() -> CarryPlan {
    CarryPlan {
        dedupe: vec![Some(0)],
        window: Some(WindowCarry {
            aggregates: vec![Some(0), Some(1)],
        }),
        dropped: vec![],
    }
}

#[test]
fn the_same_spec_carries_every_stage() {
    assert_eq!(check(&spec(BASE), &[]), Ok(carries_everything()));
}

#[test]
fn stateless_edits_carry_every_stage() {
    let threshold = edited("count >= 5", "count >= 3");
    assert_eq!(check(&threshold, &[]), Ok(carries_everything()));
    let filter = edited("amount > 0", "amount > 10");
    assert_eq!(check(&filter, &[]), Ok(carries_everything()));
    let map = edited(
        "  - filter: \"count >= 5\"",
        "  - filter: \"count >= 5\"\n  - map: { card: key, n: count }",
    );
    assert_eq!(check(&map, &[]), Ok(carries_everything()));
    let sink = edited(
        "topic: alerts }",
        "topic: alerts-v2 }\nroutes: [ { when: \"count > 9\", topic: big } ]",
    );
    assert_eq!(check(&sink, &[]), Ok(carries_everything()));
    let lateness = edited("tumbling: 60s }", "tumbling: 60s, allowed_lateness: 2s }");
    assert_eq!(check(&lateness, &[]), Ok(carries_everything()));
}

#[test]
fn a_new_aggregate_output_starts_empty_and_the_others_keep_their_place() {
    let new = edited(
        "count: \"count()\",",
        "avg: \"avg(amount)\", count: \"count()\",",
    );
    let plan = check(&new, &[]).unwrap();
    assert_eq!(
        plan.window,
        Some(WindowCarry {
            aggregates: vec![None, Some(0), Some(1)]
        })
    );
}

#[test]
fn a_longer_ttl_carries_and_a_shorter_one_is_refused() {
    assert_eq!(
        check(&edited("ttl: 1h", "ttl: 2h"), &[]),
        Ok(carries_everything())
    );
    assert_eq!(
        refused_at(&edited("ttl: 1h", "ttl: 30m")),
        "pipeline[1].dedupe"
    );
}

#[test]
fn a_changed_dedupe_key_is_refused() {
    assert_eq!(
        refused_at(&edited("key: \"event_id\"", "key: \"id\"")),
        "pipeline[1].dedupe"
    );
}

#[test]
fn a_changed_window_is_refused_naming_it() {
    for (from, to) in [
        ("tumbling: 60s", "tumbling: 120s"),
        ("tumbling: 60s", "sliding: { size: 60s, slide: 30s }"),
        ("tumbling: 60s", "session: { gap: 60s }"),
    ] {
        assert_eq!(refused_at(&edited(from, to)), "pipeline[3].window", "{to}");
    }
    let err = check(&edited("tumbling: 60s", "tumbling: 120s"), &[]).unwrap_err();
    assert!(err.to_string().contains("window#0"), "{err}");
    assert!(err.to_string().contains("allow_state_drop"), "{err}");
}

#[test]
fn a_changed_window_key_is_refused() {
    let new = spec(
        &BASE
            .replace("key_by: \"card\"", "key_by: \"merchant\"")
            .replace("partitioned_by: card", "partitioned_by: merchant"),
    );
    assert_eq!(refused_at(&new), "pipeline[3].window");
}

#[test]
fn a_removed_or_changed_aggregate_is_refused() {
    let removed = edited(", total: \"sum(amount)\"", "");
    assert_eq!(refused_at(&removed), "pipeline[3].window");
    let changed = edited("sum(amount)", "max(amount)");
    assert_eq!(refused_at(&changed), "pipeline[3].window");
    let field = edited("sum(amount)", "sum(fee)");
    assert_eq!(refused_at(&field), "pipeline[3].window");
}

#[test]
fn changed_event_time_settings_are_refused() {
    assert_eq!(
        refused_at(&edited("event_time: ts", "event_time: at")),
        "pipeline[1].dedupe"
    );
    assert_eq!(
        refused_at(&edited(
            "max_out_of_orderness: 5s",
            "max_out_of_orderness: 6s"
        )),
        "pipeline[1].dedupe"
    );
}

#[test]
fn a_removed_stateful_stage_is_refused_unless_named() {
    let new = edited("  - dedupe: { key: \"event_id\", ttl: 1h }\n", "");
    assert_eq!(refused_at(&new), "pipeline[1].dedupe");
    let plan = check(&new, &["dedupe#0"]).unwrap();
    assert_eq!(plan.dedupe, Vec::<Option<usize>>::new());
    assert!(plan.window.is_some());
}

#[test]
fn a_named_stage_starts_empty_whatever_changed() {
    let plan = check(&edited("tumbling: 60s", "tumbling: 120s"), &["window#0"]).unwrap();
    assert_eq!(plan.window, None);
    assert_eq!(plan.dedupe, vec![Some(0)]);
    assert_eq!(plan.dropped, vec!["window#0".to_string()]);
    // Named without a change: dropped all the same.
    let plan = check(&spec(BASE), &["dedupe#0"]).unwrap();
    assert_eq!(plan.dedupe, vec![None]);
}

#[test]
fn a_new_stateful_stage_starts_empty() {
    let new = edited(
        "  - key_by",
        "  - dedupe: { key: \"card\", ttl: 1m }\n  - key_by",
    );
    let plan = check(&new, &[]).unwrap();
    assert_eq!(plan.dedupe, vec![Some(0), None]);
}

#[test]
fn a_dedupe_added_first_shifts_ordinals_but_ids_keep_identity() {
    let shifted = edited(
        "  - dedupe:",
        "  - dedupe: { key: \"card\", ttl: 1m }\n  - dedupe:",
    );
    assert_eq!(refused_at(&shifted), "pipeline[1].dedupe");
    let with_id = |text: &str| text.replace("ttl: 1h }", "ttl: 1h }\n    id: by-event");
    let old = spec(&with_id(BASE));
    let new = spec(&with_id(&BASE.replacen(
        "  - dedupe:",
        "  - dedupe: { key: \"card\", ttl: 1m }\n  - dedupe:",
        1,
    )));
    let plan = check_upgrade(&old, &new, &[]).unwrap();
    assert_eq!(plan.dedupe, vec![None, Some(0)]);
}

#[test]
fn unknown_names_and_job_level_changes_are_refused() {
    assert_eq!(
        check(&spec(BASE), &["nope"]),
        Err(UpgradeError::UnknownStage("nope".into()))
    );
    let topic = edited("topic: payments", "topic: refunds");
    assert_eq!(
        check(&topic, &[]).unwrap_err().to_spec_error().field,
        "source.topic"
    );
    let shuffles = edited(", partitioned_by: card", "");
    assert_eq!(
        check(&shuffles, &[]).unwrap_err().to_spec_error().field,
        "pipeline"
    );
}

#[test]
fn a_job_that_repartitions_may_change_what_follows_its_aggregate_but_not_its_state() {
    let shuffling = BASE.replacen(", partitioned_by: card", "", 1);
    let old = spec(&shuffling);
    let rescaled = spec(&format!("{shuffling}parallelism: 8\n").replacen(
        "topic: alerts",
        "topic: alerts-v2",
        1,
    ));
    let plan = check_upgrade(&old, &rescaled, &[]).expect("parallelism and sink may change");
    assert_eq!(plan, check_upgrade(&old, &old, &[]).unwrap());
    // A threshold after the aggregate may change; the window may not.
    let threshold = spec(&shuffling.replacen("count >= 5", "count >= 4", 1));
    assert!(check_upgrade(&old, &threshold, &[]).is_ok());
    assert!(same_stateful_stages(&old, &threshold));
    let window = spec(&shuffling.replacen("tumbling: 60s", "tumbling: 30s", 1));
    assert_eq!(
        check_upgrade(&old, &window, &[])
            .unwrap_err()
            .to_spec_error()
            .field,
        "pipeline"
    );
    let total = spec(&shuffling.replacen(
        "total: \"sum(amount)\" }",
        "total: \"sum(amount)\", top: \"max(amount)\" }",
        1,
    ));
    assert!(
        !same_stateful_stages(&old, &total),
        "a new aggregate output"
    );
}
