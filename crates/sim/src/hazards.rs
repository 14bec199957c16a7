//! Hazards: the faults and actors a run may add beyond message faults — a partition stopped
//! for good, a partition that traps on every import, owners changing access lists during
//! moves, owners asking partitions directly to delete a SubDB, values so large that move
//! chunks fill toward the 2 MiB message limit, and an admin re-uploading the partition wasm
//! while creation jobs run.
//!
//! Like [`Faults`](crate::faults::Faults), the knobs are drawn per seed by
//! [`SimConfig::from_seed`](crate::config::SimConfig::from_seed) (from the knob stream,
//! after every older knob, so those keep their values), can be overridden, and are printed in
//! the run header. Each per-round decision draws the same values whatever the knobs.

use crate::rng::SimRng;
use std::fmt;

/// Rounds a dead partition stays stopped, at least and at most: far past every move's
/// failure budget (`MAX_MOVE_FAILURES` failed calls, one per tick) and yet within a client's
/// write budget (`max_write_attempts` attempts of at least two rounds each), so writers wait
/// and are not stuck. The end phase starts it again at the latest.
pub const DEAD_ROUNDS_MIN: u64 = 150;
pub const DEAD_ROUNDS_MAX: u64 = 500;
/// Values of the large puts are at least this long (and at most `MAX_VALUE_BYTES`).
pub const BIG_VALUE_MIN_BYTES: usize = 256 * 1024;
/// A seed with large values gets a move cap of this many bytes at least and at most
/// (log-uniform), so its partitions still shed SubDBs of several chunks.
pub const BIG_MOVE_CAP_MIN: u64 = 2_000_000;
pub const BIG_MOVE_CAP_MAX: u64 = 8_000_000;
/// Re-uploads of the partition wasm per run, at most.
pub const MAX_REUPLOADS: u32 = 3;
/// Module sizes of a re-upload: inline (one install message) or chunked (2..=5 chunk-store
/// chunks of 1 MiB), so the chunk count differs from the module the jobs pinned.
pub const REUPLOAD_INLINE_BYTES: (u64, u64) = (1_000, 300_000);
pub const REUPLOAD_CHUNKED_BYTES: (u64, u64) = (1_900_001, 5_000_000);

/// Hazard knobs of one run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hazards {
    /// Per round of the running phase: a random partition stops for good (for
    /// `dead_rounds`). At most one per run.
    pub dead_partition: f64,
    /// How long the dead partition stays stopped (`DEAD_ROUNDS_MIN..=DEAD_ROUNDS_MAX`).
    pub dead_rounds: u64,
    /// Per round of the running phase: a random partition starts trapping on every
    /// `begin_import` and `import_chunk`, until the end phase. At most one per run.
    pub import_trap: f64,
    /// Weight of an owner's `set_access` (new reader list) in the operation mix (the other
    /// weights sum to 95); when one of the owner's SubDBs is moving, that one is chosen.
    pub set_access: u64,
    /// Per round: a random owner asks the partition holding one of its SubDBs to delete it
    /// directly (only the index may: it must be refused).
    pub direct_delete: f64,
    /// Share of puts whose value is `BIG_VALUE_MIN_BYTES..=MAX_VALUE_BYTES` long.
    pub big_values: f64,
    /// Per round while a partition-creation job runs: the admin starts re-uploading a
    /// partition wasm of another size (at most `MAX_REUPLOADS` per run).
    pub reupload: f64,
}

impl Hazards {
    /// No hazards at all.
    pub const NONE: Hazards = Hazards {
        dead_partition: 0.0,
        dead_rounds: DEAD_ROUNDS_MIN,
        import_trap: 0.0,
        set_access: 0,
        direct_delete: 0.0,
        big_values: 0.0,
        reupload: 0.0,
    };

    /// Knobs drawn from a seed's knob generator: each hazard is on for a share of the seeds
    /// (dead partition 25 %, import traps 25 %, access changes 75 %, direct deletes 75 %,
    /// large values 12 %, re-uploads 40 %).
    pub fn random(r: &mut SimRng) -> Hazards {
        let mut on = |share: f64, lo: f64, hi: f64| {
            let yes = r.chance(share);
            let v = lo + r.unit() * (hi - lo);
            if yes {
                v
            } else {
                0.0
            }
        };
        let dead_partition = on(0.25, 0.002, 0.01);
        let import_trap = on(0.25, 0.002, 0.01);
        let direct_delete = on(0.75, 0.005, 0.05);
        let big_values = on(0.12, 0.02, 0.1);
        let reupload = on(0.4, 0.01, 0.05);
        let set_access_on = r.chance(0.75);
        let set_access = r.range(1, 6);
        let dead_rounds = r.range(DEAD_ROUNDS_MIN, DEAD_ROUNDS_MAX);
        Hazards {
            dead_partition,
            dead_rounds,
            import_trap,
            set_access: if set_access_on { set_access } else { 0 },
            direct_delete,
            big_values,
            reupload,
        }
    }
}

impl fmt::Display for Hazards {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dead_partition={:.4} dead_rounds={} import_trap={:.4} set_access={} \
             direct_delete={:.3} big_values={:.3} reupload={:.3}",
            self.dead_partition,
            self.dead_rounds,
            self.import_trap,
            self.set_access,
            self.direct_delete,
            self.big_values,
            self.reupload
        )
    }
}

/// What the hazards did in a run, and how its moves ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HazardCounts {
    /// Partitions stopped for good.
    pub dead_partitions: u64,
    /// Partitions that trapped on every import, and the import calls they trapped.
    pub import_trap_partitions: u64,
    pub import_traps: u64,
    /// `set_access` acknowledged, and of those, started while the SubDB was moving.
    pub access_changes: u64,
    pub access_changes_during_moves: u64,
    /// Direct `delete_subdb` calls owners sent to partitions, and the refusals answered.
    pub direct_deletes: u64,
    pub direct_deletes_refused: u64,
    /// Acknowledged puts of a large value.
    pub big_puts: u64,
    /// Re-uploads of the partition wasm the admin completed.
    pub reuploads: u64,
    /// Moves that ended: completed (the source released), called off (unwind and abort, or
    /// abort), and given up before anything was exported (at begin-import, with no other
    /// target to go to; the partition's next stats pick a target afresh); and moves that
    /// went on to another target at begin-import (their target found unhealthy), counted
    /// once per target left.
    pub moves_completed: u64,
    pub moves_called_off: u64,
    pub moves_given_up_at_begin: u64,
    pub moves_retargeted: u64,
    /// The most rounds any move took, start to end.
    pub longest_move_rounds: u64,
    /// Partial imports left open at the end on the partition that was stopped for good, that
    /// no reclaim of the index covers (with reclaims, none is expected: other partitions'
    /// are violations).
    pub leaked_imports: u64,
    /// Reclaims the index recorded (called-off moves whose `abort_import` the target did not
    /// answer, or moves given up at begin-import), and those still pending at the end, with
    /// the open imports they cover (the end phase starts every partition again, so the
    /// index waits for them before it is quiet: none is expected).
    pub reclaims: u64,
    pub reclaims_pending_at_end: u64,
    pub imports_awaiting_reclaim: u64,
    /// Reads that gave up on a SubDB living on the partition stopped for good (not counted
    /// as failed reads).
    pub reads_failed_on_dead: u64,
    /// The longest write pause of a move that touched no broken partition, in rounds, as
    /// observed each round (from the round the index confirmed the freeze).
    pub longest_unbroken_move_pause: u64,
}

impl HazardCounts {
    pub fn add(&mut self, o: &HazardCounts) {
        self.dead_partitions += o.dead_partitions;
        self.import_trap_partitions += o.import_trap_partitions;
        self.import_traps += o.import_traps;
        self.access_changes += o.access_changes;
        self.access_changes_during_moves += o.access_changes_during_moves;
        self.direct_deletes += o.direct_deletes;
        self.direct_deletes_refused += o.direct_deletes_refused;
        self.big_puts += o.big_puts;
        self.reuploads += o.reuploads;
        self.moves_completed += o.moves_completed;
        self.moves_called_off += o.moves_called_off;
        self.moves_given_up_at_begin += o.moves_given_up_at_begin;
        self.moves_retargeted += o.moves_retargeted;
        self.reclaims += o.reclaims;
        self.reclaims_pending_at_end += o.reclaims_pending_at_end;
        self.imports_awaiting_reclaim += o.imports_awaiting_reclaim;
        self.longest_move_rounds = self.longest_move_rounds.max(o.longest_move_rounds);
        self.leaked_imports += o.leaked_imports;
        self.reads_failed_on_dead += o.reads_failed_on_dead;
        self.longest_unbroken_move_pause = self
            .longest_unbroken_move_pause
            .max(o.longest_unbroken_move_pause);
    }
}

impl fmt::Display for HazardCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dead_partitions={} import_trap_partitions={} import_traps={} access_changes={} \
             (during moves: {}) direct_deletes={} (refused: {}) big_puts={} reuploads={} reads_failed_on_dead={}\n\
             moves ended: completed={} called_off={} given_up_at_begin={} retargeted={} \
             longest_move_rounds={} leaked_imports={} reclaims={} (pending at the end: {}, \
             covering {} open imports) longest_unbroken_move_pause={}",
            self.dead_partitions,
            self.import_trap_partitions,
            self.import_traps,
            self.access_changes,
            self.access_changes_during_moves,
            self.direct_deletes,
            self.direct_deletes_refused,
            self.big_puts,
            self.reuploads,
            self.reads_failed_on_dead,
            self.moves_completed,
            self.moves_called_off,
            self.moves_given_up_at_begin,
            self.moves_retargeted,
            self.longest_move_rounds,
            self.leaked_imports,
            self.reclaims,
            self.reclaims_pending_at_end,
            self.imports_awaiting_reclaim,
            self.longest_unbroken_move_pause
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_are_per_seed_bounded_and_mixed() {
        assert_eq!(
            Hazards::random(&mut SimRng::new(4)),
            Hazards::random(&mut SimRng::new(4))
        );
        let (mut dead, mut big, mut none_dead) = (0, 0, 0);
        for s in 0..400 {
            let h = Hazards::random(&mut SimRng::new(s));
            assert!((DEAD_ROUNDS_MIN..=DEAD_ROUNDS_MAX).contains(&h.dead_rounds));
            assert!(h.dead_partition < 0.011 && h.import_trap < 0.011);
            assert!(h.set_access <= 6 && h.direct_delete < 0.051 && h.reupload < 0.051);
            assert!(h.big_values < 0.11);
            dead += u32::from(h.dead_partition > 0.0);
            none_dead += u32::from(h.dead_partition == 0.0);
            big += u32::from(h.big_values > 0.0);
        }
        assert!(
            dead > 50 && none_dead > 200 && big > 20,
            "{dead} {none_dead} {big}"
        );
    }
}
