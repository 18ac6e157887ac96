//! `weir-sim` (`weir sim`) as scripts drive it (docs/CLI.md): one `seed=N result=ok|fail trace=<hex>`
//! line per seed in seed order whatever the thread count, the exit code, `--list-bugs`,
//! and one clear sentence for a bad flag.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use std::process::{Command, Output};

fn weir_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir-sim"))
        .args(args)
        .output()
        .expect("weir runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Short runs of the coordinator group alone: the CLI is under test, not the cluster.
const QUICK: [&str; 4] = ["--workers", "0", "--fault-phase-ms", "2000"];

#[test]
fn seeds_print_in_order_and_replay_the_same_on_any_thread_count() {
    let run = |threads: &str| {
        let mut args = vec!["--seeds", "3..7", "--threads", threads];
        args.extend(QUICK);
        weir_sim(&args)
    };
    let (one, two) = (run("1"), run("2"));
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    assert!(two.status.success());
    let lines = |out: &Output| -> Vec<String> {
        stdout(out)
            .lines()
            .filter(|l| l.starts_with("seed="))
            .map(str::to_string)
            .collect()
    };
    let (a, b) = (lines(&one), lines(&two));
    assert_eq!(a.len(), 4);
    assert_eq!(
        a, b,
        "the same seeds give the same traces on 1 and 2 threads"
    );
    for (line, seed) in a.iter().zip(3..) {
        let rest = line
            .strip_prefix(&format!("seed={seed} result=ok trace="))
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        assert_eq!(rest.len(), 64);
        assert!(rest.chars().all(|c| c.is_ascii_hexdigit()));
    }
    assert!(stdout(&two).contains("4 seeds, 0 failed"));
}

#[test]
fn a_planted_bug_fails_the_run() {
    let mut args = vec![
        "--seed",
        "0",
        "--plant-bug",
        "ack-before-sync",
        "--no-shrink",
    ];
    args.extend(QUICK);
    let mut failed = false;
    // With the whole fault phase the bug shows on half the seeds; with this short one on
    // fewer (the leader's panic on a follower's log reversion used to show it at once;
    // openraft now re-replicates instead, and the checkers see the lost writes).
    let seeds: Vec<String> = (0..32).map(|s| s.to_string()).collect();
    for seed in &seeds {
        args[1] = seed;
        let out = weir_sim(&args);
        if !out.status.success() {
            assert!(stdout(&out).contains("result=fail"));
            failed = true;
            break;
        }
    }
    assert!(failed, "ack-before-sync went unnoticed on every seed tried");
}

#[test]
fn list_bugs_names_each_bug_once() {
    let out = weir_sim(&["--list-bugs"]);
    assert!(out.status.success());
    let names: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(names.len(), weir_core::bugs::PlantedBug::ALL.len());
    assert!(names.iter().any(|n| n == "route-also-to-sink"));
    assert!(names.iter().any(|n| n == "commit-before-snapshot"));
    assert!(names.iter().any(|n| n == "savepoint-snapshots-pruned"));
}

#[test]
fn a_bad_flag_is_one_sentence_on_stderr() {
    for args in [
        &["--seeds", "5..2"][..],
        &["--seed", "1", "--threads", "0"],
        &["--seed", "1", "--faults", "crash,bogus"],
    ] {
        let out = weir_sim(args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stdout(&out).is_empty(), "{args:?}");
    }
}
