//! Rolling upgrades during the workload (`flotilla sim --rolling-upgrades`): the admin uploads
//! a new partition wasm and calls the index's `upgrade_partitions`, waits for the fleet
//! upgrade to end, and starts another after a gap, while the clients keep working and every
//! fault and hazard stays on. In some seeds the new module traps in `post_upgrade` on one
//! partition (as a module that cannot read that partition's data would), so the index must
//! report it and start it again on its old module. The world's driver is in
//! `world/rolling.rs`.

use crate::rng::SimRng;
use std::fmt;

/// Rounds between the end of one fleet upgrade and the admin's next upload.
pub const ROLLING_GAP_ROUNDS: u64 = 150;
/// Round of the first upload.
pub const ROLLING_FIRST_ROUND: u64 = 30;
/// Module sizes the admin uploads: inline (one install message) or chunked (installed
/// through each partition's chunk store), as re-uploads are.
pub const ROLLING_MODULE_BYTES: (u64, u64) = (1_000, 200_000);
pub const ROLLING_CHUNKED_MODULE_BYTES: (u64, u64) = (1_900_001, 2_500_000);

/// The rolling-upgrade knobs of one seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RollingUpgrades {
    /// Partitions the index upgrades at once (`UpgradePartitionsArgs::batch`).
    pub batch: u32,
    /// Whether each new module traps in `post_upgrade` on one partition (the first the index
    /// stops in that fleet upgrade).
    pub trap_one: bool,
    /// Whether the modules are large enough to go through the chunk store.
    pub chunked: bool,
}

impl RollingUpgrades {
    /// Knobs drawn from a seed's own generator: a batch of 1 to 4, a trapping module in a
    /// third of the seeds, chunked modules in a quarter.
    pub fn for_seed(seed: u64) -> Self {
        let mut r = SimRng::new(seed ^ 0x9011_1ec0_de5a_fe00);
        RollingUpgrades {
            batch: r.range(1, 4) as u32,
            trap_one: r.chance(1.0 / 3.0),
            chunked: r.chance(0.25),
        }
    }
}

impl fmt::Display for RollingUpgrades {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rolling upgrades: batch {}, {} modules{}",
            self.batch,
            if self.chunked { "chunked" } else { "inline" },
            if self.trap_one {
                ", each trapping in post_upgrade on one partition"
            } else {
                ""
            }
        )
    }
}

/// What the rolling upgrades did in a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpgradeCounts {
    /// Fleet upgrades the admin started, and those that ended.
    pub started: u64,
    pub completed: u64,
    /// Partitions the ended fleet upgrades upgraded, and those they reported failed.
    pub partitions_upgraded: u64,
    pub partitions_failed: u64,
    /// Installs the world refused because the new module trapped in `post_upgrade`.
    pub post_upgrade_traps: u64,
    /// The most rounds a fleet upgrade took, from `upgrade_partitions` to its end.
    pub longest_rounds: u64,
    /// Seeds (in a summary) with at least one fleet upgrade ended.
    pub seeds_completed: u64,
}

impl UpgradeCounts {
    /// Adds one run's counts (a summary counts the seeds with one completed).
    pub fn add(&mut self, o: &UpgradeCounts) {
        self.started += o.started;
        self.completed += o.completed;
        self.partitions_upgraded += o.partitions_upgraded;
        self.partitions_failed += o.partitions_failed;
        self.post_upgrade_traps += o.post_upgrade_traps;
        self.longest_rounds = self.longest_rounds.max(o.longest_rounds);
        self.seeds_completed += u64::from(o.completed > 0);
    }
}

impl fmt::Display for UpgradeCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fleet_upgrades started={} completed={} (seeds with one completed: {}) \
             partitions_upgraded={} partitions_failed={} post_upgrade_traps={} \
             longest_upgrade_rounds={}",
            self.started,
            self.completed,
            self.seeds_completed,
            self.partitions_upgraded,
            self.partitions_failed,
            self.post_upgrade_traps,
            self.longest_rounds
        )
    }
}
