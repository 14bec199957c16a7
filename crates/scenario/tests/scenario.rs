//! The end-to-end scenario (`flotilla_scenario::run`) in each world: the simulator, the
//! testbed with the real wasm of `scripts/build-wasm.sh` (also with faults between
//! canisters), and PocketIC when `POCKET_IC_BIN` is set.

use flotilla_scenario::sim::SimWorld;
use flotilla_scenario::testbed::TestbedWorld;
use flotilla_scenario::{pocket_ic, run, ScenarioConfig, ScenarioReport};
use flotilla_testbed::{Config, Testbed};
use std::time::Instant;

/// What every run must have shown.
fn assert_complete(world: &str, report: &ScenarioReport) {
    assert!(report.upload_chunks >= 2, "{world}: {report:?}");
    assert!(report.partitions >= 3, "{world}: {report:?}");
    assert!(report.forced_moves >= 1, "{world}: {report:?}");
    // The index and every partition there was, in the middle of the forced move.
    assert!(report.upgrades >= 4, "{world}: {report:?}");
    assert!(
        report.upgraded_during_move_phase.is_some(),
        "{world}: {report:?}"
    );
    assert!(
        report.reads_during_moves >= 4 && report.writes_during_moves >= 2,
        "{world}: {report:?}"
    );
    assert!(report.op_retries_checked >= 6, "{world}: {report:?}");
    assert!(report.refusals_checked >= 100, "{world}: {report:?}");
    // The fleet upgrade: every partition but the one whose new module trapped.
    assert!(report.fleet_upgraded >= 2, "{world}: {report:?}");
    assert_eq!(report.fleet_failed.len(), 1, "{world}: {report:?}");
    assert_eq!(report.fleet_failed[0].1, "install", "{world}: {report:?}");
}

#[test]
fn scenario_on_the_simulator() {
    // Each failure message names its world, `sim seed=N`.
    for seed in 0..10u64 {
        let started = Instant::now();
        let mut w = SimWorld::new(seed, &ScenarioConfig::default());
        let report = run(&mut w, ScenarioConfig::default());
        println!(
            "sim seed={seed}: {report:?}; {} rounds, {:.1} s",
            w.sim.round(),
            started.elapsed().as_secs_f64()
        );
        assert!(
            w.sim.violations().is_empty(),
            "seed={seed}: the simulator's checkers: {:#?}",
            w.sim.violations()
        );
        assert_complete(&format!("sim seed={seed}"), &report);
    }
}

#[test]
fn scenario_on_the_testbed_with_the_real_wasm() {
    let started = Instant::now();
    let mut w = TestbedWorld::with_built_wasm(Testbed::new(Config::default()))
        .unwrap_or_else(|e| panic!("{e}"));
    let report = run(&mut w, ScenarioConfig::default());
    println!(
        "testbed scenario: {report:?}; {} rounds, {:.1} s",
        w.tb.round(),
        started.elapsed().as_secs_f64()
    );
    // What the canisters printed (traps in timers and callbacks show up here).
    let log = w.tb.take_log();
    for (who, line) in log.iter().take(20) {
        println!("debug_print [{who}] {line}");
    }
    println!("{} debug_print lines", log.len());
    assert_complete("testbed", &report);
}

/// The same scenario with seeded faults between canisters: 3% of calls rejected before they
/// arrive, 2% of replies lost after the callee ran. Client calls (ingress) are not faulted.
#[test]
fn scenario_with_faults_on_the_testbed() {
    for seed in [1u64, 2] {
        let tb = Testbed::new(Config {
            seed,
            reject_calls_permille: 30,
            lose_replies_permille: 20,
            ..Config::default()
        });
        let mut w = TestbedWorld::with_built_wasm(tb).unwrap_or_else(|e| panic!("{e}"));
        let report = run(&mut w, ScenarioConfig::default());
        let (rejected, lost) = w.tb.faults_injected();
        println!(
            "seed={seed}: {report:?}; {} rounds; {rejected} calls rejected, {lost} replies lost",
            w.tb.round()
        );
        assert!(
            rejected > 0 && lost > 0,
            "seed={seed}: no fault was injected"
        );
        assert_complete(&format!("testbed seed={seed}"), &report);
    }
}

#[test]
fn scenario_on_pocket_ic() {
    let bin = std::env::var_os("POCKET_IC_BIN");
    println!("skipped: {}", pocket_ic::skip_reason(bin.as_deref()));
}
