//! The knobs of one run. [`SimConfig::from_seed`] draws them from the seed; every field can
//! be overridden afterwards (the CLI demo and tests do), and the run header prints them all.

use crate::faults::Faults;
use crate::hazards::{Hazards, BIG_MOVE_CAP_MAX, BIG_MOVE_CAP_MIN};
use crate::rng::SimRng;
use crate::rolling::RollingUpgrades;
use flotilla_types::index::CreatePolicy;
use std::fmt;
use std::str::FromStr;

/// Bugs the simulator can plant in its own world (never in production code) to prove the
/// checkers catch them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlantedBugs {
    /// Clients retry mutations with a NEW op id, so a retry after a lost reply applies twice
    /// (caught by the exactly-once checker).
    pub fresh_op_id_on_retry: bool,
    /// The world deletes the `puts` of every `export_delta` reply in transit, so writes made
    /// during a move's copy are lost at the new home (caught by the content checker).
    pub drop_delta_puts: bool,
    /// The management canister takes a top-up's cycles from the index but never credits the
    /// partition, so partitions run dry while the index is rich (caught by the cycles
    /// checker).
    pub lost_deposits: bool,
    /// The world tells the index its balance is 10 T higher than it is, so it spends into its
    /// reserve (caught by the reserve checker).
    pub inflated_balance: bool,
    /// The world replaces the access lists in a move's final (frozen) delta with those of its
    /// first chunk, as if the cutover did not carry the header: an access change made during
    /// the copy is lost at the new home (caught by the access checker).
    pub stale_access_on_cutover: bool,
    /// Partitions run an owner's direct `delete_subdb` as if the index had asked (the
    /// index-only guard missing): the SubDB vanishes behind the directory's back (caught by the
    /// direct-delete checker).
    pub partition_deletes_for_owners: bool,
    /// The world sends each move chunk's items twice in the `import_chunk` request (a chunk
    /// assembled without its budget): with large values the request passes 2 MiB (caught by
    /// the message-size checker).
    pub double_import_chunks: bool,
    /// The world never answers a call to a broken partition (dead, or trapping on imports): the
    /// index's call stays in flight and its move never ends (caught by the moves-end checker).
    pub swallow_broken_calls: bool,
    /// The management canister refuses to install any module but the first one uploaded: after
    /// an admin's re-upload no partition can be created (caught by the spare-pool checker).
    pub install_first_module_only: bool,
    /// The management canister answers `start_canister` without starting the canister: a
    /// fleet upgrade leaves its partitions stopped (caught by the fleet-upgrade checker).
    pub ignore_start_canister: bool,
    /// The world installs the index with another byte quota than the one the clients hold
    /// their SubDBs to: twice it (`lax`: puts past the quota are acknowledged) or half
    /// (`strict`: puts within it are refused). Caught by the quota checker (12).
    pub lax_byte_quota: bool,
    pub strict_byte_quota: bool,
}

/// A planted bug by name (CLI `--plant`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    FreshOpIdOnRetry,
    DropDeltaPuts,
    LostDeposits,
    InflatedBalance,
    StaleAccessOnCutover,
    PartitionDeletesForOwners,
    DoubleImportChunks,
    SwallowBrokenCalls,
    InstallFirstModuleOnly,
    IgnoreStartCanister,
    LaxByteQuota,
    StrictByteQuota,
}

impl Bug {
    pub const ALL: [Bug; 12] = [
        Bug::FreshOpIdOnRetry,
        Bug::DropDeltaPuts,
        Bug::LostDeposits,
        Bug::InflatedBalance,
        Bug::StaleAccessOnCutover,
        Bug::PartitionDeletesForOwners,
        Bug::DoubleImportChunks,
        Bug::SwallowBrokenCalls,
        Bug::InstallFirstModuleOnly,
        Bug::IgnoreStartCanister,
        Bug::LaxByteQuota,
        Bug::StrictByteQuota,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::FreshOpIdOnRetry => "fresh-op-id-on-retry",
            Bug::DropDeltaPuts => "drop-delta-puts",
            Bug::LostDeposits => "lost-deposits",
            Bug::InflatedBalance => "inflated-balance",
            Bug::StaleAccessOnCutover => "stale-access-on-cutover",
            Bug::PartitionDeletesForOwners => "partition-deletes-for-owners",
            Bug::DoubleImportChunks => "double-import-chunks",
            Bug::SwallowBrokenCalls => "swallow-broken-calls",
            Bug::InstallFirstModuleOnly => "install-first-module-only",
            Bug::IgnoreStartCanister => "ignore-start-canister",
            Bug::LaxByteQuota => "lax-byte-quota",
            Bug::StrictByteQuota => "strict-byte-quota",
        }
    }

    fn flag(self, bugs: &mut PlantedBugs) -> &mut bool {
        match self {
            Bug::FreshOpIdOnRetry => &mut bugs.fresh_op_id_on_retry,
            Bug::DropDeltaPuts => &mut bugs.drop_delta_puts,
            Bug::LostDeposits => &mut bugs.lost_deposits,
            Bug::InflatedBalance => &mut bugs.inflated_balance,
            Bug::StaleAccessOnCutover => &mut bugs.stale_access_on_cutover,
            Bug::PartitionDeletesForOwners => &mut bugs.partition_deletes_for_owners,
            Bug::DoubleImportChunks => &mut bugs.double_import_chunks,
            Bug::SwallowBrokenCalls => &mut bugs.swallow_broken_calls,
            Bug::InstallFirstModuleOnly => &mut bugs.install_first_module_only,
            Bug::IgnoreStartCanister => &mut bugs.ignore_start_canister,
            Bug::LaxByteQuota => &mut bugs.lax_byte_quota,
            Bug::StrictByteQuota => &mut bugs.strict_byte_quota,
        }
    }

    pub fn plant(self, bugs: &mut PlantedBugs) {
        *self.flag(bugs) = true;
    }

    /// Whether this bug is planted in `bugs`.
    pub fn planted(self, bugs: &PlantedBugs) -> bool {
        let mut b = *bugs;
        *self.flag(&mut b)
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown bug {0:?}; known: {known}", known = Bug::ALL.map(Bug::name).join(", "))]
pub struct UnknownBug(pub String);

impl FromStr for Bug {
    type Err = UnknownBug;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Bug::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| UnknownBug(s.to_string()))
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the index is told of cycles (its `IndexInit`), and how fast the world burns them.
/// Partitions start with 0.5 to 1 T cycles, as on the IC, and burn storage at about five
/// million times the IC's rate (127,000 cycles per GiB per second, with one round a second), so
/// that within a short run they fall below the threshold and the index must top them up. The
/// check period is short enough that a partition of up to about 25 MiB cannot burn through the
/// threshold between two checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CyclesKnobs {
    /// Cycles the index attaches to a partition's creation: the creation fee and what the
    /// partition starts with.
    pub partition_cycles: u128,
    /// The index tops up a partition below this ...
    pub threshold: u128,
    /// ... to this.
    pub target: u128,
    /// The index keeps this much.
    pub reserve: u128,
    /// How often the index checks a partition's balance, in rounds.
    pub check_period_rounds: u64,
    /// Cycles each canister burns per round for each MiB of stable memory.
    pub storage_per_mib_round: u128,
}

impl CyclesKnobs {
    fn random(r: &mut SimRng) -> CyclesKnobs {
        // What a partition starts with, once the creation fee is paid.
        let start = r.range(500, 1_000) as u128 * 1_000_000_000;
        CyclesKnobs {
            partition_cycles: crate::world::CREATION_FEE + start,
            threshold: start / 2,
            target: start,
            reserve: 1_000_000_000_000,
            check_period_rounds: r.range(5, 10),
            storage_per_mib_round: r.range(300_000_000, 900_000_000) as u128,
        }
    }

    /// What a new partition takes from the index.
    pub fn partition_cost(&self) -> u128 {
        self.partition_cycles
    }
}

/// Relative weights of the operations a client picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpMix {
    pub create_subdb: u64,
    pub delete_subdb: u64,
    pub put: u64,
    pub delete: u64,
    pub get: u64,
    pub scan: u64,
}

impl Default for OpMix {
    fn default() -> Self {
        OpMix {
            create_subdb: 4,
            delete_subdb: 1,
            put: 45,
            delete: 8,
            get: 25,
            scan: 12,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    pub seed: u64,
    /// Client operations to complete before the end phase (drain, quiescence, final checks).
    pub ops: u64,
    pub clients: usize,
    /// Inter-canister calls and their replies each take `1..=latency_max` rounds.
    pub latency_max: u64,
    /// Ingress messages, queries and their answers each take `1..=ingress_latency_max` rounds.
    pub ingress_latency_max: u64,
    /// The index's timer (`tick`) runs every this many rounds (1 round = 1 s).
    pub tick_every: u64,
    /// Each partition's purge timer (`housekeep`) runs every this many rounds.
    pub housekeep_every: u64,
    pub spare_pool_target: u32,
    /// `IndexInit.move_cap_bytes`: small, so partitions fill and moves happen.
    pub move_cap_bytes: u64,
    /// Values are `0..=max_value_bytes` long.
    pub max_value_bytes: usize,
    /// Keys are 1..=`key_max_len` letters from the first `key_letters` of `a..z`, so
    /// overwrites and deletes of existing keys are common.
    pub key_letters: u8,
    pub key_max_len: usize,
    /// Size of the (fake) partition module uploaded to the index; above 1.9 MB the index
    /// installs through the chunk store.
    pub wasm_bytes: usize,
    pub op_mix: OpMix,
    /// Scans ask for `1..=scan_limit_max` items per page (or the default, 100).
    pub scan_limit_max: u32,
    /// Full-content checks run every this many rounds (and at the end).
    pub full_check_every: u64,
    /// A read gives up (and counts as failed) after this many attempts.
    pub max_read_attempts: u32,
    /// A write still unacknowledged after this many attempts is a violation (stuck).
    pub max_write_attempts: u32,
    /// Largest backoff between retries, in rounds.
    pub max_backoff: u64,
    /// The running phase ends after `ops × max_rounds_per_op + 2,000` rounds even if not all
    /// operations completed (a `NoQuiescence` violation): a wedged world stops early.
    pub max_rounds_per_op: u64,
    /// Rounds without any index work but stats (and no purging) that count as quiescent.
    pub quiet_rounds: u64,
    /// Rounds the end phase may take before the run reports that it never quiesced.
    pub end_phase_max_rounds: u64,
    /// The run stops (without its final checks) once this many violations are recorded: a
    /// broken world only repeats itself.
    pub halt_after_violations: usize,
    /// The index's starting cycles balance.
    pub index_cycles: u128,
    /// The index's cycles care and the world's burn.
    pub cycles: CyclesKnobs,
    /// `IndexInit.create_policy`: with `AllowList` the admin puts every client on the list.
    pub create_policy: CreatePolicy,
    /// `IndexInit.max_subdbs_per_owner`.
    pub max_subdbs_per_owner: u64,
    /// `IndexInit.max_bytes_per_subdb`: every SubDB's byte quota, enforced by its partition.
    pub max_bytes_per_subdb: u64,
    pub faults: Faults,
    pub bugs: PlantedBugs,
    /// A scenario of writers outpacing moves: every move throttles its SubDB's writers from
    /// its first delta round on, to this many bytes of changes per delta round (the index's
    /// `MoveTuning` with `max_delta_rounds` 0). `None` (every seed's default): the index's own
    /// tuning, which throttles only moves whose deltas do not converge.
    pub throttle_moves: Option<u64>,
    /// The fleet at scale ([`SimConfig::with_scale`]): many clients creating many small
    /// SubDBs under a small move cap, so a run grows to thousands of SubDBs on hundreds of
    /// partitions.
    pub scale: bool,
    /// Hazards beyond message faults (`hazards.rs`): dead and import-trapping partitions,
    /// access changes, direct deletes, large values, wasm re-uploads.
    pub hazards: Hazards,
    /// The admin's rolling upgrades during the workload (`rolling.rs`); none by default.
    pub rolling: Option<RollingUpgrades>,
}

impl SimConfig {
    /// Knobs drawn from the seed (from a stream of their own, so overriding a knob does not
    /// change the rest of the run's decisions).
    pub fn from_seed(seed: u64, ops: u64) -> SimConfig {
        Self::drawn(seed, ops).0
    }

    /// The seed's knobs, and its move cap without large values.
    fn drawn(seed: u64, ops: u64) -> (SimConfig, u64) {
        let mut r = SimRng::new(seed ^ 0x6b6e_6f62_735f_7631); // "knobs_v1"
        let clients = r.range(2, 6) as usize;
        let latency_max = r.range(1, 3);
        let ingress_latency_max = r.range(1, 2);
        let tick_every = r.range(2, 5);
        let spare_pool_target = r.range(1, 2) as u32;
        // Log-uniform 16 KB ..= 96 KB: small, so partitions pass it within a short run.
        let move_cap_bytes = (16_000.0 * 6f64.powf(r.unit())) as u64;
        let max_value_bytes = r.range(1_000, 3_000) as usize;
        let key_letters = r.range(3, 6) as u8;
        let key_max_len = r.range(1, 3) as usize;
        let wasm_bytes = if r.chance(0.2) {
            r.range(1_900_001, 2_300_000) as usize
        } else {
            r.range(1_000, 300_000) as usize
        };
        let faults = Faults::random(&mut r);
        let cycles = CyclesKnobs::random(&mut r);
        // Most seeds' index is rich; one in five holds its reserve, the price of one to three
        // partitions and half a top-up, so it runs low during the run.
        let index_cycles = if r.chance(0.2) {
            cycles.reserve + r.range(1, 3) as u128 * cycles.partition_cost() + cycles.target / 2
        } else {
            100_000_000_000_000_000
        };
        // Half the seeds run an allow-list (with every client on it) and a quota of 3 to 12
        // SubDBs per owner, which busy clients reach.
        let (create_policy, max_subdbs_per_owner) = if r.chance(0.5) {
            (CreatePolicy::AllowList, r.range(3, 12))
        } else {
            (
                CreatePolicy::Open,
                flotilla_index::quotas::DEFAULT_MAX_SUBDBS_PER_OWNER,
            )
        };
        // Drawn after every older knob, so those keep their values.
        let hazards = Hazards::random(&mut r);
        let big_cap = BIG_MOVE_CAP_MIN as f64
            * (BIG_MOVE_CAP_MAX as f64 / BIG_MOVE_CAP_MIN as f64).powf(r.unit());
        let small_cap = move_cap_bytes;
        let move_cap_bytes = if hazards.big_values > 0.0 {
            big_cap as u64
        } else {
            move_cap_bytes
        };
        // Drawn last, so every older knob keeps its value: one seed in three gives each SubDB
        // a byte quota of 4 to 20 of its largest values, which busy clients reach.
        let max_bytes_per_subdb = if r.chance(1.0 / 3.0) {
            r.range(4, 20) * max_value_bytes as u64
        } else {
            flotilla_index::quotas::DEFAULT_MAX_BYTES_PER_SUBDB
        };
        let cfg = SimConfig {
            seed,
            ops,
            clients,
            latency_max,
            ingress_latency_max,
            tick_every,
            housekeep_every: 5,
            spare_pool_target,
            move_cap_bytes,
            max_value_bytes,
            key_letters,
            key_max_len,
            wasm_bytes,
            op_mix: OpMix::default(),
            scan_limit_max: 8,
            full_check_every: 25,
            max_read_attempts: 60,
            max_write_attempts: 200,
            max_backoff: 8,
            max_rounds_per_op: 10,
            quiet_rounds: 40,
            end_phase_max_rounds: 1_500,
            halt_after_violations: 25,
            index_cycles,
            cycles,
            create_policy,
            max_subdbs_per_owner,
            max_bytes_per_subdb,
            faults,
            bugs: PlantedBugs::default(),
            throttle_moves: None,
            scale: false,
            hazards,
            rolling: None,
        };
        (cfg, small_cap)
    }

    /// Overrides the hazards; `Hazards::NONE` also restores the seed's own move cap (large
    /// values raise it).
    pub fn with_hazards(mut self, hazards: Hazards) -> Self {
        if hazards.big_values == 0.0 && self.hazards.big_values > 0.0 {
            self.move_cap_bytes = Self::drawn(self.seed, self.ops).1;
        }
        self.hazards = hazards;
        self
    }

    /// Creates open to everyone, at the default quota: for worlds whose users come from
    /// outside (tests, the demo, benchmarks), whom the admin cannot put on an allow-list.
    pub fn with_open_creates(mut self) -> Self {
        self.create_policy = CreatePolicy::Open;
        self.max_subdbs_per_owner = flotilla_index::quotas::DEFAULT_MAX_SUBDBS_PER_OWNER;
        self.max_bytes_per_subdb = flotilla_index::quotas::DEFAULT_MAX_BYTES_PER_SUBDB;
        self
    }

    /// Gives every SubDB this byte quota.
    pub fn with_byte_quota(mut self, max_bytes_per_subdb: u64) -> Self {
        self.max_bytes_per_subdb = max_bytes_per_subdb;
        self
    }

    pub fn with_bugs(mut self, bugs: PlantedBugs) -> Self {
        self.bugs = bugs;
        self
    }

    /// Sets the message faults. `Faults::NONE` asks for a fault-free world: it switches the
    /// hazards off too (set them again with [`SimConfig::with_hazards`] after it to keep
    /// them).
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        if faults == Faults::NONE {
            self = self.with_hazards(Hazards::NONE);
        }
        self
    }

    pub fn with_throttle_moves(mut self, bytes: Option<u64>) -> Self {
        self.throttle_moves = bytes;
        self
    }

    /// With `scale`, the fleet at scale: 16 clients, creates a third of the operations, values
    /// of at most 400 bytes, a 3 KB move cap and a spare pool of 4, creates open to all. (The
    /// seed's other knobs, faults included, stay.)
    pub fn with_scale(mut self, scale: bool) -> Self {
        if scale {
            self.scale = true;
            self.clients = 16;
            self.op_mix = OpMix {
                create_subdb: 30,
                delete_subdb: 2,
                put: 40,
                delete: 3,
                get: 20,
                scan: 5,
            };
            self.max_value_bytes = 400;
            self.move_cap_bytes = 3_000;
            self.spare_pool_target = 4;
            // Many small SubDBs: no large values (the seed's other hazards stay).
            self.hazards.big_values = 0.0;
            self = self.with_open_creates();
        }
        self
    }

    /// With `on`, the admin rolls new partition wasms out during the run, with the seed's
    /// rolling-upgrade knobs ([`RollingUpgrades::for_seed`]).
    pub fn with_rolling_upgrades(mut self, on: bool) -> Self {
        self.rolling = on.then(|| RollingUpgrades::for_seed(self.seed));
        self
    }

    /// How to rerun this seed from the command line.
    pub fn rerun_command(&self) -> String {
        let mut s = format!(
            "cargo run --release -p flotilla-cli -- sim --seeds {}..{} --ops {}",
            self.seed,
            self.seed + 1,
            self.ops
        );
        for bug in Bug::ALL {
            if bug.planted(&self.bugs) {
                s.push_str(&format!(" --plant {bug}"));
            }
        }
        if let Some(b) = self.throttle_moves {
            s.push_str(&format!(" --throttle-moves {b}"));
        }
        if self.scale {
            s.push_str(" --scale");
        }
        if self.rolling.is_some() {
            s.push_str(" --rolling-upgrades");
        }
        let no_hazards = self.hazards == Hazards::NONE;
        if no_hazards {
            s.push_str(" --no-hazards");
        }
        s.push_str(" --trace");
        let mut reproduced = SimConfig::from_seed(self.seed, self.ops)
            .with_bugs(self.bugs)
            .with_throttle_moves(self.throttle_moves)
            .with_scale(self.scale)
            .with_rolling_upgrades(self.rolling.is_some());
        if no_hazards {
            reproduced = reproduced.with_hazards(Hazards::NONE);
        }
        if *self != reproduced {
            s = format!(
                "run the same SimConfig again (its knobs differ from the seed's defaults, so \
                 `{s}` alone does not reproduce it)"
            );
        }
        s
    }
}

impl fmt::Display for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed={} ops={} clients={} latency_max={} ingress_latency_max={} tick_every={} \
             spare_pool_target={} move_cap_bytes={} max_value_bytes={} keys={}x{} wasm_bytes={}",
            self.seed,
            self.ops,
            self.clients,
            self.latency_max,
            self.ingress_latency_max,
            self.tick_every,
            self.spare_pool_target,
            self.move_cap_bytes,
            self.max_value_bytes,
            self.key_letters,
            self.key_max_len,
            self.wasm_bytes
        )?;
        writeln!(
            f,
            "  cycles: index={} partition={} threshold={} target={} reserve={} \
             check_every={} storage_per_mib_round={}",
            self.index_cycles,
            self.cycles.partition_cycles,
            self.cycles.threshold,
            self.cycles.target,
            self.cycles.reserve,
            self.cycles.check_period_rounds,
            self.cycles.storage_per_mib_round
        )?;
        writeln!(
            f,
            "  creates: {:?}, at most {} SubDBs per owner, {} bytes per SubDB",
            self.create_policy, self.max_subdbs_per_owner, self.max_bytes_per_subdb
        )?;
        writeln!(f, "  faults: {}", self.faults)?;
        write!(f, "  hazards: {}", self.hazards)?;
        if self.bugs != PlantedBugs::default() {
            write!(f, "\n  planted bugs: {:?}", self.bugs)?;
        }
        if self.scale {
            write!(
                f,
                "\n  at scale: 16 clients, many small SubDBs, 3 KB move cap"
            )?;
        }
        if let Some(b) = self.throttle_moves {
            write!(
                f,
                "\n  moves throttle writers from their first delta to {b} B a round"
            )?;
        }
        if let Some(r) = self.rolling {
            write!(f, "\n  {r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_are_per_seed() {
        assert_eq!(SimConfig::from_seed(5, 100), SimConfig::from_seed(5, 100));
        assert_ne!(SimConfig::from_seed(5, 100), SimConfig::from_seed(6, 100));
        for s in 0..100 {
            let c = SimConfig::from_seed(s, 10);
            assert!(c.latency_max >= 1 && c.ingress_latency_max >= 1);
            if c.hazards.big_values > 0.0 {
                assert!((BIG_MOVE_CAP_MIN..=BIG_MOVE_CAP_MAX).contains(&c.move_cap_bytes));
                let plain = c.clone().with_hazards(Hazards::NONE);
                assert!((16_000..=96_000).contains(&plain.move_cap_bytes));
            } else {
                assert!((16_000..=96_000).contains(&c.move_cap_bytes));
            }
            assert!(c.spare_pool_target >= 1);
        }
    }

    #[test]
    fn every_bug_plants_its_own_flag_and_reruns_by_name() {
        for b in Bug::ALL {
            let mut bugs = PlantedBugs::default();
            b.plant(&mut bugs);
            assert!(b.planted(&bugs));
            assert_eq!(Bug::ALL.iter().filter(|o| o.planted(&bugs)).count(), 1);
            let c = SimConfig::from_seed(9, 20).with_bugs(bugs);
            assert!(c.rerun_command().contains(&format!("--plant {b} --trace")));
        }
        let c = SimConfig::from_seed(9, 20).with_hazards(Hazards::NONE);
        assert!(
            c.rerun_command().contains("--no-hazards --trace"),
            "{}",
            c.rerun_command()
        );
    }

    #[test]
    fn bugs_parse_by_name() {
        for b in Bug::ALL {
            assert_eq!(b.name().parse::<Bug>(), Ok(b));
        }
        assert!("nope".parse::<Bug>().is_err());
        let c = SimConfig::from_seed(3, 50).with_bugs(PlantedBugs {
            drop_delta_puts: true,
            ..Default::default()
        });
        assert!(c
            .rerun_command()
            .contains("--seeds 3..4 --ops 50 --plant drop-delta-puts --trace"));
        let c = SimConfig::from_seed(3, 50).with_throttle_moves(Some(4096));
        assert!(c
            .rerun_command()
            .contains("--seeds 3..4 --ops 50 --throttle-moves 4096 --trace"));
    }
}
