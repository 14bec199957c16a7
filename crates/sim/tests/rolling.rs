//! Rolling upgrades during the workload (`--rolling-upgrades`): the admin rolls new partition
//! wasms out again and again while clients work under every fault and hazard; in a third of
//! the seeds each new module traps in `post_upgrade` on one partition.

use flotilla_sim::report::Report;
use flotilla_sim::{run_swarm_with, SwarmOptions};

#[test]
fn fleet_upgrades_during_the_workload_end_with_every_partition_accounted_for() {
    let opts = SwarmOptions {
        rolling_upgrades: true,
        ..SwarmOptions::default()
    };
    let seeds = 0..24;
    let t = run_swarm_with(seeds.clone(), 600, &opts);
    let failed: Vec<String> = t
        .failures
        .iter()
        .map(|r: &Report| r.failure_text(8))
        .collect();
    assert_eq!(t.violations, 0, "\n{}\n{t}", failed.join("\n"));
    let u = t.upgrades;
    assert_eq!(
        u.seeds_completed,
        seeds.end - seeds.start,
        "a seed without a completed fleet upgrade:\n{t}"
    );
    assert_eq!(u.completed, u.started, "every fleet upgrade ends:\n{t}");
    assert!(u.partitions_upgraded > u.completed, "{t}");
    assert!(u.post_upgrade_traps > 0 && u.partitions_failed > 0, "{t}");
    println!("{t}");
}
