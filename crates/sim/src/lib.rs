//! Flotilla's deterministic simulator: one process, many canisters, the real logic.
//!
//! A [`World`] runs the IO-free index logic (`flotilla_index::Index`) and partition logic
//! (`flotilla_partition::Partition`) over per-canister `VectorMemory`s, performs every call the
//! index asks for (management canister included), and drives them with simulated clients —
//! all under IC message semantics (atomic messages, traps roll back, rejects and lost replies,
//! stopped and upgraded canisters, cycles and memory counted), with one seeded PRNG deciding
//! everything random, so a seed reproduces its run exactly.
//!
//! Invariant checkers run after every round (see [`check`](crate::check) in the source and
//! `docs/sim.md`); a run returns a [`Report`] whose violations are typed records.
//!
//! ```no_run
//! let report = flotilla_sim::run_seed(7, 500);
//! assert!(report.ok(), "{}", report.failure_text(20));
//! let summary = flotilla_sim::run_swarm(0..200, 500);
//! println!("{summary}");
//! ```

pub mod canister;
mod check;
mod check_hazards;
mod client;
pub mod config;
pub mod faults;
pub mod hazards;
pub mod model;
pub mod queue;
pub mod report;
pub mod requests;
pub mod rng;
pub mod rolling;
pub mod transport;
pub mod world;

pub use config::{Bug, OpMix, PlantedBugs, SimConfig};
pub use faults::{FaultCounts, Faults};
pub use hazards::{HazardCounts, Hazards};
pub use report::{Report, Summary, Violation, ViolationKind};
pub use requests::{RequestRecord, Requester, Role};
pub use world::{Phase, Snapshot, World};

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Runs one configured scenario to the end.
pub fn run(cfg: SimConfig) -> Report {
    let mut w = World::new(cfg);
    w.run_to_end();
    w.report()
}

/// Runs `seed` with its own knobs for `ops` client operations.
pub fn run_seed(seed: u64, ops: u64) -> Report {
    run(SimConfig::from_seed(seed, ops))
}

/// How a swarm runs.
#[derive(Clone, Debug, Default)]
pub struct SwarmOptions {
    /// Worker threads (0: one per available core).
    pub threads: usize,
    pub bugs: PlantedBugs,
    /// [`SimConfig::throttle_moves`] for every seed.
    pub throttle_moves: Option<u64>,
    /// [`SimConfig::with_scale`] for every seed.
    pub scale: bool,
    /// Every seed runs without hazards ([`Hazards::NONE`]): message faults only.
    pub no_hazards: bool,
    /// [`SimConfig::with_rolling_upgrades`] for every seed.
    pub rolling_upgrades: bool,
    /// Called with each finished report, from the worker thread, in completion order.
    pub on_report: Option<fn(&Report)>,
}

/// Runs every seed of `seeds` for `ops` operations, in parallel, and totals the reports.
pub fn run_swarm(seeds: Range<u64>, ops: usize) -> Summary {
    run_swarm_with(seeds, ops, &SwarmOptions::default())
}

pub fn run_swarm_with(seeds: Range<u64>, ops: usize, opts: &SwarmOptions) -> Summary {
    let started = Instant::now();
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    }
    .max(1)
    .min((seeds.end.saturating_sub(seeds.start)).max(1) as usize);
    let next = AtomicU64::new(seeds.start);
    let reports = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds.end {
                    return;
                }
                let mut cfg = SimConfig::from_seed(seed, ops as u64)
                    .with_bugs(opts.bugs)
                    .with_throttle_moves(opts.throttle_moves)
                    .with_scale(opts.scale)
                    .with_rolling_upgrades(opts.rolling_upgrades);
                if opts.no_hazards {
                    cfg = cfg.with_hazards(Hazards::NONE);
                }
                let r = run(cfg);
                if let Some(f) = opts.on_report {
                    f(&r);
                }
                reports
                    .lock()
                    .expect("no worker panics holding the lock")
                    .push(r);
            });
        }
    });
    let mut reports = reports.into_inner().expect("workers done");
    reports.sort_by_key(|r| r.seed);
    let mut summary = Summary::default();
    for r in &reports {
        summary.add(r);
    }
    summary.elapsed_ms = started.elapsed().as_millis();
    summary
}
