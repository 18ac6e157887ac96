//! `weir sim`: runs the `weir-sim` binary beside this `weir` with the same arguments. The
//! simulation lives in a binary of its own (the `weir-simulation` crate) so that the
//! deployed `weir` holds neither its paused clock nor a way to plant bugs; scripts and the
//! README keep saying `weir sim`.

use anyhow::{bail, Context};
use clap::Args;
use std::path::PathBuf;

/// The environment variable naming the simulation binary, when it is not beside `weir`.
pub const SIM_BIN_ENV: &str = "WEIR_SIM_BIN";

/// Every argument after `weir sim`, handed to `weir-sim` unchanged (`--help` included).
#[derive(Debug, Clone, Args)]
#[command(disable_help_flag = true)]
pub struct SimPassthrough {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Where `weir-sim` is: `$WEIR_SIM_BIN`, else beside the running `weir`.
fn sim_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(SIM_BIN_ENV) {
        return Ok(PathBuf::from(path));
    }
    let weir = std::env::current_exe().context("cannot find the running weir binary")?;
    let beside = weir.with_file_name(format!("weir-sim{}", std::env::consts::EXE_SUFFIX));
    if !beside.exists() {
        bail!(
            "weir sim runs the simulation binary weir-sim, which is not beside {} (build it \
             with `cargo build --release -p weir-simulation --bin weir-sim`, or name it in \
             {SIM_BIN_ENV})",
            weir.display()
        );
    }
    Ok(beside)
}

/// Runs `weir-sim` with `args` and returns its exit code.
pub fn run(args: SimPassthrough) -> anyhow::Result<i32> {
    let bin = sim_binary()?;
    let status = std::process::Command::new(&bin)
        .args(&args.args)
        .status()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    Ok(status.code().unwrap_or(1))
}
