//! `weir sim` hands every argument to the `weir-sim` binary and keeps its exit code (the
//! simulation is a binary of its own, out of the deployed `weir`).

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn weir_sim_runs_the_simulation_binary_with_the_same_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("weir-sim");
    std::fs::write(&fake, "#!/bin/sh\necho \"args: $*\"\nexit 3\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["sim", "--seeds", "1..3", "--help"])
        .env("WEIR_SIM_BIN", &fake)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "args: --seeds 1..3 --help"
    );
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn a_missing_simulation_binary_is_one_sentence() {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["sim", "--seed", "1"])
        .env("WEIR_SIM_BIN", "/nonexistent/weir-sim")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("weir-sim"), "{stderr}");
}
