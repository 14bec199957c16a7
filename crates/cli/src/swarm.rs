//! `flotilla sim`: the simulator's fault swarm behind the CLI, with a progress bar and one
//! line per failing seed (with the command that reruns it).

use crate::Failure;
use clap::Args;
use flotilla_sim::{
    run_swarm_with, Bug, Hazards, PlantedBugs, Report, SimConfig, Summary, SwarmOptions, World,
};
use indicatif::{ProgressBar, ProgressStyle};
use std::ops::Range;
use std::sync::OnceLock;

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Seeds to run, as A..B (B exclusive).
    #[arg(long, default_value = "0..100", value_parser = parse_range)]
    seeds: Range<u64>,
    /// Client operations per seed.
    #[arg(long, default_value_t = 500)]
    ops: usize,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Plant a bug to see the checkers catch it (repeatable): fresh-op-id-on-retry,
    /// drop-delta-puts, lost-deposits, inflated-balance, stale-access-on-cutover,
    /// partition-deletes-for-owners, double-import-chunks, swallow-broken-calls,
    /// install-first-module-only, ignore-start-canister, lax-byte-quota, strict-byte-quota.
    #[arg(long)]
    plant: Vec<Bug>,
    /// A scenario of writers outpacing moves: every move throttles its SubDB's writers from
    /// its first delta round on, to this many bytes of changes per delta round.
    #[arg(long, value_name = "BYTES")]
    throttle_moves: Option<u64>,
    /// The fleet at scale: 16 clients creating many small SubDBs under a 3 KB move cap, so a
    /// run of ten thousand operations grows to thousands of SubDBs on hundreds of partitions.
    #[arg(long)]
    scale: bool,
    /// Rolling upgrades during the workload: the admin uploads a new partition wasm and calls
    /// `upgrade_partitions`, again and again; in some seeds the new module traps in
    /// `post_upgrade` on one partition.
    #[arg(long)]
    rolling_upgrades: bool,
    /// Run every seed without its hazards (dead and import-trapping partitions, access
    /// changes, direct deletes, large values, wasm re-uploads): message faults only.
    #[arg(long)]
    no_hazards: bool,
    /// Print every seed's run header (its knobs) and report line.
    #[arg(long)]
    verbose: bool,
    /// Print every event of every seed to stderr (runs the seeds one by one; for reproducing
    /// a single failing seed).
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

static BAR: OnceLock<ProgressBar> = OnceLock::new();
static VERBOSE: OnceLock<bool> = OnceLock::new();

/// Prints a line above the progress bar, or to stderr when the bar is hidden (stderr is not a
/// terminal: a log, CI, a pipe), where `ProgressBar::println` prints nothing.
fn say_line(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

fn on_report(r: &Report) {
    if let Some(bar) = BAR.get() {
        if VERBOSE.get() == Some(&true) {
            say_line(bar, format!("{}\n  {r}", r.config));
        }
        if !r.ok() {
            say_line(
                bar,
                format!(
                    "seed={} FAILED: {} violation(s), first: {}; rerun: {}",
                    r.seed,
                    r.violations.len(),
                    r.violations
                        .first()
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                    r.rerun_command()
                ),
            );
        }
        bar.inc(1);
    }
}

pub fn run(a: SimArgs) -> Result<(), Failure> {
    let mut bugs = PlantedBugs::default();
    for b in &a.plant {
        b.plant(&mut bugs);
    }
    let bar = ProgressBar::new(a.seeds.end - a.seeds.start);
    bar.set_style(
        ProgressStyle::with_template(
            "[{elapsed_precise}] [{bar:40}] {pos}/{len} seeds (eta {eta})",
        )
        .map_err(|e| Failure(format!("progress display: {e}")))?
        .progress_chars("=> "),
    );
    let _ = BAR.set(bar.clone());
    println!(
        "flotilla sim: seeds {}..{} ops {} planted {:?}{}{}{}",
        a.seeds.start,
        a.seeds.end,
        a.ops,
        a.plant,
        if a.no_hazards { " without hazards" } else { "" },
        if a.rolling_upgrades {
            " with rolling upgrades"
        } else {
            ""
        },
        match a.throttle_moves {
            Some(b) => format!(" moves throttle writers to {b} B a delta round"),
            None => String::new(),
        }
    );
    let _ = VERBOSE.set(a.verbose);
    let summary = if a.trace {
        let mut summary = Summary::default();
        let started = std::time::Instant::now();
        for seed in a.seeds.clone() {
            let mut cfg = SimConfig::from_seed(seed, a.ops as u64)
                .with_bugs(bugs)
                .with_throttle_moves(a.throttle_moves)
                .with_scale(a.scale)
                .with_rolling_upgrades(a.rolling_upgrades);
            if a.no_hazards {
                cfg = cfg.with_hazards(Hazards::NONE);
            }
            let mut w = World::new(cfg);
            w.set_verbose(true);
            w.run_to_end();
            let r = w.report();
            on_report(&r);
            summary.add(&r);
        }
        summary.elapsed_ms = started.elapsed().as_millis();
        summary
    } else {
        let opts = SwarmOptions {
            threads: a.threads,
            bugs,
            throttle_moves: a.throttle_moves,
            scale: a.scale,
            no_hazards: a.no_hazards,
            rolling_upgrades: a.rolling_upgrades,
            on_report: Some(on_report),
        };
        run_swarm_with(a.seeds, a.ops, &opts)
    };
    bar.finish_and_clear();
    for r in &summary.failures {
        print!("{}", r.failure_text(a.max_violations));
    }
    println!("{summary}");
    if summary.violations > 0 {
        return Err(Failure(format!(
            "{} violation(s) in seeds {:?}: rerun one with the command printed above",
            summary.violations,
            summary.failing_seeds()
        )));
    }
    Ok(())
}
