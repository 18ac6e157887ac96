//! `weir local` end to end in one process: the whole system on the in-memory broker, a
//! worker killed halfway and the coordinator leader after that, and the closing check; with
//! `--json` the last stdout line is the summary (docs/CLI.md).

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use std::process::Command;

#[test]
fn weir_local_commits_every_expected_output_once_and_ends_with_its_json_summary() {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["local", "--events", "4000", "--rate", "2000", "--json"])
        .output()
        .expect("weir runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    let summary: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the last line is not JSON ({e}): {last:?}"));
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(summary["missing"], 0);
    assert_eq!(summary["duplicated"], 0);
    assert_eq!(summary["events"], 4000);
    assert!(summary["outputs"].as_u64().unwrap_or(0) > 0, "{summary}");
    assert!(
        stdout.contains("killing"),
        "a worker and the leader are killed midway"
    );
}
