//! `flotilla demo`: the whole system in one process. An index, partitions it creates on
//! demand through the simulated management canister, and simulated users who create SubDBs,
//! write, read and scan, with a small move cap so that the fleet visibly grows and SubDBs
//! move while they are being read and written. The same seed gives the same report.

use crate::Failure;
use clap::Args;
use flotilla_sim::{Faults, Report, SimConfig, World};
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Seed of the run (same seed, same report).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated users.
    #[arg(long, default_value_t = 8)]
    pub users: usize,
    /// Operations the users complete.
    #[arg(long, default_value_t = 4_000)]
    pub ops: u64,
    /// A partition holding more than this many bytes sheds SubDBs.
    #[arg(long, default_value_t = 256 * 1024)]
    pub move_cap: u64,
    /// Inject the seed's faults (rejects, traps, lost replies, stops, upgrades).
    #[arg(long)]
    pub faults: bool,
    /// End after the report instead of keeping the deployment running.
    #[arg(long)]
    pub no_serve: bool,
    /// Where the IC HTTP interface listens after the report.
    #[arg(long, default_value = "127.0.0.1:4950")]
    pub listen: String,
    /// Real time per simulated round while serving, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub round_ms: u64,
    /// While serving, the simulated users start one operation every this many rounds (all
    /// users together); 0 stops them after the report.
    #[arg(long, default_value_t = 2)]
    pub live_pace: u64,
}

/// The demo's world configuration.
pub fn config(a: &DemoArgs) -> SimConfig {
    // Anyone may create notebooks in the demo (its notes app's users come from outside).
    let mut cfg = SimConfig::from_seed(a.seed, a.ops).with_open_creates();
    if !a.faults {
        cfg = cfg.with_faults(Faults::NONE);
    }
    cfg.clients = a.users.max(1);
    cfg.move_cap_bytes = a.move_cap.max(1);
    cfg.max_value_bytes = 2_048;
    cfg.spare_pool_target = 1;
    cfg
}

pub fn run(a: DemoArgs) -> Result<(), Failure> {
    let cfg = config(&a);
    let mut w = World::new(cfg);
    let bar = ProgressBar::new(a.ops);
    bar.set_style(
        ProgressStyle::with_template("{spinner} round {prefix} [{bar:30}] {pos}/{len} ops {msg}")
            .map_err(|e| Failure(format!("progress display: {e}")))?
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    while w.phase() != flotilla_sim::Phase::Done && !w.halted() {
        w.step();
        if w.round().is_multiple_of(20) {
            let s = w.snapshot();
            bar.set_prefix(s.round.to_string());
            bar.set_position(s.ops_completed.min(a.ops));
            bar.set_message(format!(
                "· {} partitions · {} SubDBs · {} moves done · {} in flight",
                s.partitions.len(),
                s.index.subdbs,
                s.moves_completed,
                s.moves.len()
            ));
        }
    }
    bar.finish_and_clear();
    let r = w.report();
    print!("{}", render(&a, &r));
    if !r.ok() {
        return Err(Failure(format!(
            "the run broke an invariant (seed={}); rerun: {}",
            r.seed,
            r.rerun_command()
        )));
    }
    if a.no_serve {
        return Ok(());
    }
    if a.live_pace == 0 {
        w.keep_serving();
    } else {
        w.keep_serving_live(a.live_pace);
    }
    crate::serve::serve(
        w,
        &a.listen,
        Duration::from_millis(a.round_ms.max(1)),
        a.seed,
    )
}

fn per(calls: u64, n: u64) -> String {
    if n == 0 {
        "n/a".into()
    } else {
        format!("{}", calls as f64 / n as f64)
    }
}

/// The report, as printed.
pub fn render(a: &DemoArgs, r: &Report) -> String {
    let mut s = String::new();
    let mut line = |k: &str, v: String| s.push_str(&format!("  {k:<34} {v}\n"));
    line(
        "run",
        format!(
            "seed {}, {} users, {} operations, move cap {} B{}",
            a.seed,
            a.users,
            a.ops,
            a.move_cap,
            if a.faults { ", faults on" } else { "" }
        ),
    );
    line("partitions created", r.partitions.to_string());
    line("SubDBs created", r.subdbs_created.to_string());
    line("moves completed", r.moves.to_string());
    line(
        "operations",
        format!(
            "{} ({} partition reads, {} partition writes)",
            r.ops, r.partition_reads, r.partition_writes
        ),
    );
    line(
        "inter-canister calls per read",
        per(r.calls_by_partition_reads, r.partition_reads),
    );
    line(
        "inter-canister calls per write",
        per(r.calls_by_partition_writes, r.partition_writes),
    );
    line("reads that failed", r.failed_reads.to_string());
    line(
        "longest write pause",
        format!(
            "{} rounds (a client's wait; the index measured {} for a move's freeze)",
            r.longest_write_pause, r.longest_move_pause
        ),
    );
    line(
        "read latency p50 / p99",
        format!("{} / {} rounds", r.read_latency.0, r.read_latency.1),
    );
    line(
        "write latency p50 / p99",
        format!("{} / {} rounds", r.write_latency.0, r.write_latency.1),
    );
    line(
        "partition top-ups",
        format!(
            "{} ({} cycles; partition-rounds out of cycles: {})",
            r.top_ups, r.topped_up, r.partition_dry_rounds
        ),
    );
    line("simulated rounds (1 round = 1 s)", r.rounds.to_string());
    line("invariant violations", r.violations.len().to_string());
    line("trace hash", format!("{:016x}", r.trace_hash));
    format!("Flotilla demo\n{s}")
}
