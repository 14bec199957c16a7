//! What a run returns: its figures and every invariant violation, typed.

use crate::config::SimConfig;
use crate::faults::FaultCounts;
use crate::hazards::HazardCounts;
use crate::rolling::UpgradeCounts;
use flotilla_types::InnerKey;
use std::fmt;

/// An inner key as `partition-text#local-id`.
pub fn ik(k: &InnerKey) -> String {
    format!("{}#{}", k.partition, k.subdb)
}

/// Which invariant broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// Checker 1: an acknowledged write is not readable (missing or an older value).
    LostWrite,
    /// Checker 1: a key that was never written, or was deleted, is readable.
    Resurrected,
    /// Checker 1: a read returned a value the model cannot explain, a scan page repeated or
    /// misordered keys.
    WrongValue,
    /// Checker 1: a deleted SubDB is routable or live again.
    ResurrectedSubDb,
    /// Checker 1: a live SubDB cannot be found by its outer key.
    LostSubDb,
    /// Checker 2: an acknowledged result shows an op applied twice (a retry re-applied it).
    DoubleApply,
    /// Checker 3: an outer key has more than one writable live home (two routes to one
    /// SubDB, a frozen SubDB outside a move, a writable source once the target may be live).
    TwoHomes,
    /// Checker 3: a live, writable SubDB that no route leads to and no create or move in
    /// progress explains: leaked, and a second home if its outer key is live elsewhere.
    Orphan,
    /// Checker 4: a partition's byte totals disagree with its SubDBs.
    ByteAccounting,
    /// Checker 5: after quiescence a partition is over the move cap by more than its largest
    /// SubDB.
    OverMoveCap,
    /// A request or reply between canisters exceeds the IC's 2 MiB message limit.
    MessageTooLarge,
    /// A client or the world got an answer no correct system gives here.
    UnexpectedReply,
    /// A write was still unacknowledged after `max_write_attempts` attempts.
    Stuck,
    /// The logic panicked (a trap the logic did not intend); the run stops here.
    LogicPanic,
    /// The end phase never reached quiescence.
    NoQuiescence,
    /// Checker 6: a SubDB's access lists at its home are not the last ones its owner set
    /// (owner, readers, writers), or a reader was granted or refused against them.
    AccessWrong,
    /// Checker 7: a partition did not refuse an owner's direct `delete_subdb` with
    /// `NotAuthorized` (only the index may delete there).
    DirectDelete,
    /// Checker 8: a move whose target broke (stopped for good, trapping on imports) did not
    /// end (complete, called off or given up) within the bound of its failure budget.
    MoveNeverEnds,
    /// Checker 9: after quiescence the spare pool is short of its target or a
    /// partition-creation job is still open (after wasm re-uploads, too).
    SparePool,
    /// Cycles checker: a partition ran out of cycles while the index could pay for a top-up.
    OutOfCycles,
    /// Cycles checker: the index attached cycles that took it under its reserve.
    UnderReserve,
    /// Checker 12: a put was refused `QuotaExceeded` although it fit its SubDB's byte quota
    /// (or named another quota than the SubDB was created with), or was acknowledged although
    /// it took the SubDB past its quota.
    QuotaWrong,
    /// Checker 13, as a fleet upgrade ends (`--rolling-upgrades`): a partition it did not
    /// report failed runs another module or was left stopped, or the partition the module
    /// trapped on went unreported; after quiescence, a canister is still stopped by the index.
    FleetUpgrade,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub round: u64,
    pub kind: ViolationKind,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "round {}: {:?}: {}", self.round, self.kind, self.message)
    }
}

/// The outcome of one seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub seed: u64,
    pub config: SimConfig,
    /// Client operations completed (acknowledged or abandoned).
    pub ops: u64,
    /// Key and value bytes of acknowledged puts.
    pub put_bytes: u64,
    pub rounds: u64,
    /// Messages delivered (calls, replies, ingress, queries, answers).
    pub messages: u64,
    /// Completed moves: distinct SubDBs released at their source after a copy.
    pub moves: u64,
    /// Imports made live (`import_chunk` with `finish` acknowledged), distinct.
    pub imports_finished: u64,
    pub faults: FaultCounts,
    /// What the hazards did, and how moves ended.
    pub hazards: HazardCounts,
    /// What the rolling upgrades did (`--rolling-upgrades`).
    pub upgrades: UpgradeCounts,
    /// `import_chunk` calls sent, and their total and largest Candid-encoded size.
    pub chunk_messages: u64,
    pub chunk_bytes: u64,
    /// Largest move-chunk message: `import_chunk` request, `export_chunk` or `export_delta`
    /// reply, Candid-encoded.
    pub max_chunk_message_bytes: u64,
    /// Largest partition-bound request or reply of any kind, Candid-encoded.
    pub max_message_bytes: u64,
    /// Rounds in which some client got `WritesPaused`.
    pub write_pause_rounds: u64,
    /// The longest a single write waited on a paused SubDB, in rounds (first `WritesPaused`
    /// to its answer): a move's freeze, or its throttle, plus the client's backoff.
    pub longest_write_pause: u64,
    /// The longest write pause of any move as the index measured it, in rounds: from the
    /// answer confirming the source's freeze to the one confirming writes resumed
    /// (`IndexStats::longest_write_pause_ns`).
    pub longest_move_pause: u64,
    /// Client reads and writes executed at partitions, and the inter-canister calls they
    /// caused.
    pub partition_reads: u64,
    pub partition_writes: u64,
    pub calls_by_partition_reads: u64,
    pub calls_by_partition_writes: u64,
    /// Rounds from start to answer of completed reads and writes: p50 and p99.
    pub read_latency: (u64, u64),
    pub write_latency: (u64, u64),
    /// Reads that ended in an error the client could not resolve.
    pub failed_reads: u64,
    /// Why the first few failed.
    pub failed_read_samples: Vec<String>,
    pub partitions: u64,
    pub subdbs_created: u64,
    pub cycles_spent: u128,
    /// Cycles care: top-ups executed and their cycles, creates refused because the index was
    /// low on cycles, and partition-rounds in which a partition could not pay.
    pub top_ups: u64,
    pub topped_up: u128,
    pub creates_refused_low_cycles: u64,
    pub partition_dry_rounds: u64,
    /// Creates refused because the owner had its quota of SubDBs.
    pub creates_refused_quota: u64,
    /// Puts refused because they would take their SubDB past its byte quota.
    pub puts_refused_quota: u64,
    /// Times the world's operator topped up an index low on cycles.
    pub operator_top_ups: u64,
    /// Raw stable memory of every canister at the end.
    pub memory_bytes: u64,
    /// Hash of the event trace: equal for equal runs.
    pub trace_hash: u64,
    pub violations: Vec<Violation>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn rerun_command(&self) -> String {
        self.config.rerun_command()
    }

    /// A failure description that always names the seed and how to rerun it.
    pub fn failure_text(&self, max_violations: usize) -> String {
        let mut s = format!(
            "seed={} failed with {} violation(s); rerun: {}\n{}\n",
            self.seed,
            self.violations.len(),
            self.rerun_command(),
            self.config
        );
        for v in self.violations.iter().take(max_violations) {
            s.push_str(&format!("  seed={} {v}\n", self.seed));
        }
        for f in &self.failed_read_samples {
            s.push_str(&format!("  seed={} failed read: {f}\n", self.seed));
        }
        if self.violations.len() > max_violations {
            s.push_str(&format!(
                "  ... {} more\n",
                self.violations.len() - max_violations
            ));
        }
        s
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed={} ops={} put_bytes={} rounds={} partitions={} subdbs={} moves={} \
             chunk_messages={} max_chunk_bytes={} write_pause_rounds={} longest_write_pause={} \
             longest_move_pause={} failed_reads={} top_ups={} violations={} trace={:016x}",
            self.seed,
            self.ops,
            self.put_bytes,
            self.rounds,
            self.partitions,
            self.subdbs_created,
            self.moves,
            self.chunk_messages,
            self.max_chunk_message_bytes,
            self.write_pause_rounds,
            self.longest_write_pause,
            self.longest_move_pause,
            self.failed_reads,
            self.top_ups,
            self.violations.len(),
            self.trace_hash
        )
    }
}

/// Totals over a swarm of seeds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub seeds: u64,
    pub ops: u64,
    pub put_bytes: u64,
    pub rounds: u64,
    pub moves: u64,
    pub imports_finished: u64,
    pub faults: FaultCounts,
    pub hazards: HazardCounts,
    pub upgrades: UpgradeCounts,
    pub chunk_messages: u64,
    pub max_chunk_message_bytes: u64,
    pub max_message_bytes: u64,
    pub write_pause_rounds: u64,
    /// The longest single write pause of any seed, in rounds.
    pub longest_write_pause: u64,
    /// The longest write pause of a move of any seed as its index measured it, in rounds.
    pub longest_move_pause: u64,
    pub failed_reads: u64,
    pub partitions: u64,
    pub top_ups: u64,
    /// Seeds with at least one top-up.
    pub seeds_with_top_ups: u64,
    pub creates_refused_low_cycles: u64,
    pub partition_dry_rounds: u64,
    pub operator_top_ups: u64,
    pub creates_refused_quota: u64,
    pub puts_refused_quota: u64,
    pub violations: u64,
    /// Seeds with at least one move.
    pub seeds_with_moves: u64,
    /// Failing seeds' reports, by seed.
    pub failures: Vec<Report>,
    pub elapsed_ms: u128,
}

impl Summary {
    pub fn add(&mut self, r: &Report) {
        self.seeds += 1;
        self.ops += r.ops;
        self.put_bytes += r.put_bytes;
        self.rounds += r.rounds;
        self.moves += r.moves;
        self.imports_finished += r.imports_finished;
        self.faults.add(&r.faults);
        self.hazards.add(&r.hazards);
        self.upgrades.add(&r.upgrades);
        self.chunk_messages += r.chunk_messages;
        self.max_chunk_message_bytes = self.max_chunk_message_bytes.max(r.max_chunk_message_bytes);
        self.max_message_bytes = self.max_message_bytes.max(r.max_message_bytes);
        self.write_pause_rounds += r.write_pause_rounds;
        self.longest_write_pause = self.longest_write_pause.max(r.longest_write_pause);
        self.longest_move_pause = self.longest_move_pause.max(r.longest_move_pause);
        self.failed_reads += r.failed_reads;
        self.partitions += r.partitions;
        self.top_ups += r.top_ups;
        self.seeds_with_top_ups += u64::from(r.top_ups > 0);
        self.creates_refused_low_cycles += r.creates_refused_low_cycles;
        self.partition_dry_rounds += r.partition_dry_rounds;
        self.operator_top_ups += r.operator_top_ups;
        self.creates_refused_quota += r.creates_refused_quota;
        self.puts_refused_quota += r.puts_refused_quota;
        self.violations += r.violations.len() as u64;
        self.seeds_with_moves += u64::from(r.moves > 0);
        if !r.ok() {
            self.failures.push(r.clone());
        }
    }

    pub fn failing_seeds(&self) -> Vec<u64> {
        self.failures.iter().map(|r| r.seed).collect()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seeds={} ops={} put_bytes={} rounds={} partitions={} moves={} (seeds with moves: \
             {}) imports_finished={}",
            self.seeds,
            self.ops,
            self.put_bytes,
            self.rounds,
            self.partitions,
            self.moves,
            self.seeds_with_moves,
            self.imports_finished
        )?;
        writeln!(f, "faults injected: {}", self.faults)?;
        writeln!(f, "hazards: {}", self.hazards)?;
        if self.upgrades != UpgradeCounts::default() {
            writeln!(f, "{}", self.upgrades)?;
        }
        writeln!(
            f,
            "chunk_messages={} max_chunk_bytes={} max_message_bytes={} write_pause_rounds={} \
             longest_write_pause={} longest_move_pause={} failed_reads={}",
            self.chunk_messages,
            self.max_chunk_message_bytes,
            self.max_message_bytes,
            self.write_pause_rounds,
            self.longest_write_pause,
            self.longest_move_pause,
            self.failed_reads
        )?;
        writeln!(
            f,
            "top_ups={} (seeds with top-ups: {}) creates_refused_low_cycles={} \
             partition_dry_rounds={} operator_top_ups={} creates_refused_quota={} \
             puts_refused_quota={}",
            self.top_ups,
            self.seeds_with_top_ups,
            self.creates_refused_low_cycles,
            self.partition_dry_rounds,
            self.operator_top_ups,
            self.creates_refused_quota,
            self.puts_refused_quota
        )?;
        write!(
            f,
            "violations={} failing seeds={:?} elapsed={:.1}s",
            self.violations,
            self.failing_seeds(),
            self.elapsed_ms as f64 / 1000.0
        )
    }
}
