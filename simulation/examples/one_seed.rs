//! Runs one seed and prints its outcome and trace: `cargo run -p weir-simulation --example
//! one_seed -- <seed> [fault_phase_ms]`.

fn main() {
    let mut args = std::env::args().skip(1);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut options = weir_simulation::SimOptions::default();
    if let Some(ms) = args.next().and_then(|s| s.parse().ok()) {
        options.fault_phase_ms = ms;
    }
    #[allow(clippy::disallowed_methods)] // wall time of the whole run, for the report only
    let started = std::time::Instant::now();
    let outcome = weir_simulation::run_seed(seed, &options);
    let wall = started.elapsed();
    if std::env::var_os("WEIR_SIM_TRACE").is_some() {
        for line in &outcome.trace {
            println!("{line}");
        }
    }
    print!("{outcome}");
    println!(
        "wall {:.2}s, {:.1} simulated s per wall s, net {:?}",
        wall.as_secs_f64(),
        outcome.simulated_ms as f64 / 1000.0 / wall.as_secs_f64(),
        outcome.net
    );
}
