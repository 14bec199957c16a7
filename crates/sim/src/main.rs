//! `flotilla-sim`: runs a swarm of seeds and reports every failure with its seed.
//!
//! ```text
//! cargo run -p flotilla-sim --release -- --seeds 0..1000 --ops 2000
//! cargo run -p flotilla-sim --release -- --seeds 17..18 --ops 500 --verbose
//! cargo run -p flotilla-sim --release -- --seeds 0..50 --plant drop-delta-puts
//! ```
//!
//! Exit code 1 if any seed reports a violation.

use clap::Parser;
use flotilla_sim::{
    run_swarm_with, Bug, PlantedBugs, Report, SimConfig, Summary, SwarmOptions, World,
};
use std::ops::Range;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(
    name = "flotilla-sim",
    about = "Deterministic multi-canister simulation of Flotilla with fault injection and invariant checkers"
)]
struct Args {
    /// Seeds to run, as A..B (B exclusive).
    #[arg(long, default_value = "0..100", value_parser = parse_range)]
    seeds: Range<u64>,
    /// Client operations per seed.
    #[arg(long, default_value_t = 500)]
    ops: usize,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Plant a bug in the simulated world to see the checkers catch it (repeatable):
    /// fresh-op-id-on-retry, drop-delta-puts.
    #[arg(long)]
    plant: Vec<Bug>,
    /// Print every seed's run header (its knobs) and report line.
    #[arg(long)]
    verbose: bool,
    /// Print every event of every seed to stderr (runs the seeds one by one; for
    /// reproducing a single failing seed).
    #[arg(long)]
    trace: bool,
    /// Violations printed per failing seed.
    #[arg(long, default_value_t = 10)]
    max_violations: usize,
}

fn parse_range(s: &str) -> Result<Range<u64>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("expected A..B, got {s:?}"))?;
    let a: u64 = a.trim().parse().map_err(|e| format!("{a:?}: {e}"))?;
    let b: u64 = b.trim().parse().map_err(|e| format!("{b:?}: {e}"))?;
    if a >= b {
        return Err(format!("empty range {a}..{b}"));
    }
    Ok(a..b)
}

fn print_line(r: &Report) {
    println!("{}\n  {r}", r.config);
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut bugs = PlantedBugs::default();
    for b in &args.plant {
        b.plant(&mut bugs);
    }
    let opts = SwarmOptions {
        threads: args.threads,
        bugs,
        on_report: args.verbose.then_some(print_line as fn(&Report)),
    };
    println!(
        "flotilla-sim: seeds {}..{} ops {} planted {:?}",
        args.seeds.start, args.seeds.end, args.ops, args.plant
    );
    let summary = if args.trace {
        let started = Instant::now();
        let mut summary = Summary::default();
        for seed in args.seeds.clone() {
            let cfg = SimConfig::from_seed(seed, args.ops as u64).with_bugs(bugs);
            let mut w = World::new(cfg);
            w.set_verbose(true);
            w.run_to_end();
            let r = w.report();
            print_line(&r);
            summary.add(&r);
        }
        summary.elapsed_ms = started.elapsed().as_millis();
        summary
    } else {
        run_swarm_with(args.seeds, args.ops, &opts)
    };
    for r in &summary.failures {
        print!("{}", r.failure_text(args.max_violations));
    }
    println!("{summary}");
    if summary.violations > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
