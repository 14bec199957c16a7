//! The fleet at scale (`SimConfig::with_scale`): many clients creating many small SubDBs under
//! a small move cap, so the index runs hundreds of partitions and moves SubDBs between them all
//! the time, with the seed's faults. Bounded here; `flotilla sim --scale --ops 10000` for more.

use flotilla_sim::{run, SimConfig};

#[test]
fn a_fleet_of_many_partitions_stays_clean() {
    let seed = 0;
    let r = run(SimConfig::from_seed(seed, 4_000).with_scale(true));
    assert!(r.ok(), "{}", r.failure_text(12));
    assert!(r.partitions >= 60, "seed={seed}: too few partitions: {r}");
    assert!(
        r.subdbs_created >= 1_000,
        "seed={seed}: too few SubDBs: {r}"
    );
    assert!(r.moves >= 200, "seed={seed}: too few moves: {r}");
    assert!(
        r.config.rerun_command().contains("--scale"),
        "{}",
        r.config.rerun_command()
    );
    println!("{r}");
}
