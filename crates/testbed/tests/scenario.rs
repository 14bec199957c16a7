//! The end-to-end scenario (`flotilla_testbed::world`) with the real canister wasm built by
//! `scripts/build-wasm.sh`, on the testbed; and on PocketIC when `POCKET_IC_BIN` is set.

use flotilla_testbed::world::{run, ScenarioConfig};
use flotilla_testbed::{Config, Testbed};
use std::path::PathBuf;
use std::time::Instant;

fn wasm(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/wasm")
        .join(format!("{name}.wasm.gz"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Build the canister wasm first: scripts/build-wasm.sh",
            path.display()
        )
    })
}

#[test]
fn scenario_on_the_testbed_with_the_real_wasm() {
    let (index, partition) = (wasm("index"), wasm("partition"));
    let started = Instant::now();
    let mut tb = Testbed::new(Config::default());
    let report = run(&mut tb, &index, &partition, ScenarioConfig::default());
    println!(
        "testbed scenario: {report:?}; {} rounds, {:.1} s",
        tb.round(),
        started.elapsed().as_secs_f64()
    );
    // What the canisters printed (traps in timers and callbacks show up here).
    let log = tb.take_log();
    for (who, line) in log.iter().take(20) {
        println!("debug_print [{who}] {line}");
    }
    println!("{} debug_print lines", log.len());
    assert!(report.partitions >= 3, "{report:?}");
    assert!(report.moves_seen >= 1, "{report:?}");
    // The index and every partition there was, in the middle of a move.
    assert!(report.upgrades >= 3, "{report:?}");
    assert!(report.upgraded_during_move_phase.is_some(), "{report:?}");
    assert!(
        report.reads_during_move >= 10 && report.writes_during_move >= 10,
        "{report:?}"
    );
}

#[test]
fn scenario_on_pocket_ic() {
    match std::env::var_os("POCKET_IC_BIN") {
        None => println!(
            "skipped: POCKET_IC_BIN is not set (the PocketIC server is a download from outside \
             the package registries, so it cannot be installed here)"
        ),
        Some(bin) => println!(
            "skipped: POCKET_IC_BIN={} is set, but no PocketIC implementation of `World` exists \
             yet (the `pocket-ic` client crate is not a dependency); see docs/testbed.md",
            bin.to_string_lossy()
        ),
    }
}

/// The instruction benchmark on a small map: it runs, and its figures are sane. (The full
/// 100,000-item table: `cargo run -p flotilla-testbed --bin testbed-bench`.)
#[test]
fn bench_runs_on_a_small_map() {
    use flotilla_testbed::bench::{run, BenchConfig};
    let cfg = BenchConfig {
        items: 2000,
        samples: 10,
        chunks: 1,
        ..BenchConfig::default()
    };
    let t = run(&wasm("partition"), &wasm("bench-map"), cfg, false);
    println!("{}", t.markdown());
    for r in &t.rows {
        for f in [r.partition, r.bare].into_iter().flatten() {
            assert!(f.instructions > 1000.0, "{}: {f:?}", r.op);
        }
    }
    assert!(t.chunk_items >= 2000.0);
}

/// The same scenario with seeded faults between canisters: 3% of calls rejected before they
/// arrive, 2% of replies lost after the callee ran. Client calls (ingress) are not faulted.
#[test]
fn scenario_with_faults_on_the_testbed() {
    let (index, partition) = (wasm("index"), wasm("partition"));
    for seed in [1u64, 2] {
        let mut tb = Testbed::new(Config {
            seed,
            reject_calls_permille: 30,
            lose_replies_permille: 20,
            ..Config::default()
        });
        let report = run(&mut tb, &index, &partition, ScenarioConfig::default());
        let (rejected, lost) = tb.faults_injected();
        println!(
            "seed={seed}: {report:?}; {} rounds; {rejected} calls rejected, {lost} replies lost",
            tb.round()
        );
        assert!(
            rejected > 0 && lost > 0,
            "seed={seed}: no fault was injected"
        );
        assert!(
            report.partitions >= 3 && report.moves_seen >= 1,
            "seed={seed}: {report:?}"
        );
    }
}
