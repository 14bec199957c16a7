//! Partition health: how the calls the index makes to each partition fare, so that placement
//! and moves stop choosing a partition that does not answer (stopped for good, out of cycles)
//! or that fails every import (trapping on `begin_import` / `import_chunk`).
//!
//! Every reply to a call made to a partition — creates, deletes, stats, every move call,
//! reclaims — is noted against it ([`Index::note_call`], from `Index::on_reply`); calls to the
//! management canister (jobs, status, top-ups) are not: it answers for stopped canisters too.
//! Two counters, persisted in the partition's record ([`HealthRecord`]):
//!
//! - `failures`: consecutive failed calls (rejected, trapped, reply lost), imports aside. At
//!   [`UNREACHABLE_AFTER_FAILURES`] the partition is *unreachable*. Any answer — its periodic
//!   `stats` call, for one — ends that at once.
//! - `import_failures`: consecutive failed import calls. At [`IMPORT_FAILURES_LIMIT`] the
//!   partition *refuses imports* for [`IMPORT_REFUSAL_MIN_NS`], twice as long each time it is
//!   found so again (up to [`IMPORT_REFUSAL_MAX_NS`]); an answered import call ends that.
//!   Other calls answering do not: a partition that traps on every import still answers
//!   `stats`. An answer ending an unreachable spell clears the import failures too (they
//!   were the same outage).
//!
//! An unhealthy partition (either) is chosen neither for new SubDBs nor as a move's target
//! (`registry.rs`), nor promoted from the spares; a move waiting at begin-import on a target
//! found unhealthy is retargeted (`moves.rs`). A partition refusing imports is tried again
//! once its refusal ends: the next failures renew it, for longer.

use crate::calls::CallResult;
use crate::records::{HealthRecord, MoveStep, PartitionRecord, Purpose};
use crate::{Env, Index};
use candid::Principal;
use flotilla_types::index::PartitionHealth;
use flotilla_types::limits::MAX_MOVE_FAILURES;
use ic_stable_structures::Memory;

/// Consecutive failed calls (imports aside) after which a partition is unreachable.
pub const UNREACHABLE_AFTER_FAILURES: u32 = 5;
/// Consecutive failed import calls after which a partition refuses imports.
pub const IMPORT_FAILURES_LIMIT: u32 = 5;
/// How long a partition found refusing imports is passed over, the first time ...
pub const IMPORT_REFUSAL_MIN_NS: u64 = 60_000_000_000;
/// ... doubling each time it is found so again, up to this.
pub const IMPORT_REFUSAL_MAX_NS: u64 = 3_600_000_000_000;

// A move waiting at begin-import on a target that refuses imports is retargeted before its
// failure budget is spent.
const _: () = assert!(IMPORT_FAILURES_LIMIT < MAX_MOVE_FAILURES);
const _: () = assert!(IMPORT_REFUSAL_MIN_NS <= IMPORT_REFUSAL_MAX_NS);

/// How long the `n`-th refusal in a row (from 0) lasts.
pub fn refusal_ns(n: u32) -> u64 {
    IMPORT_REFUSAL_MIN_NS
        .saturating_mul(1u64 << n.min(32))
        .min(IMPORT_REFUSAL_MAX_NS)
}

/// Whether a partition may take new SubDBs and moves at `now`.
pub fn is_healthy(rec: &PartitionRecord, now: u64) -> bool {
    rec.health.as_ref().is_none_or(|h| {
        h.unreachable_since.is_none() && h.imports_refused_until.is_none_or(|t| now >= t)
    })
}

/// What `stats` shows of a partition's health.
pub fn health_info(rec: &PartitionRecord) -> PartitionHealth {
    let h = rec.health.clone().unwrap_or_default();
    PartitionHealth {
        failed_calls: h.failures,
        failed_imports: h.import_failures,
        unreachable_since: h.unreachable_since,
        imports_refused_until: h.imports_refused_until,
    }
}

/// `h` after a call to its partition failed or was answered.
fn noted(mut h: HealthRecord, now: u64, import: bool, answered: bool) -> HealthRecord {
    match (import, answered) {
        (false, false) => {
            h.failures = h.failures.saturating_add(1);
            if h.failures >= UNREACHABLE_AFTER_FAILURES && h.unreachable_since.is_none() {
                h.unreachable_since = Some(now);
            }
        }
        (true, false) => {
            h.import_failures = h.import_failures.saturating_add(1);
            if h.import_failures >= IMPORT_FAILURES_LIMIT {
                h.imports_refused_until = Some(now.saturating_add(refusal_ns(h.refusals)));
                h.refusals = h.refusals.saturating_add(1);
                h.import_failures = 0;
            }
        }
        (false, true) => {
            if h.unreachable_since.is_some() {
                // Back from an outage: its import failures were the outage.
                h.import_failures = 0;
                h.imports_refused_until = None;
                h.refusals = 0;
            }
            h.failures = 0;
            h.unreachable_since = None;
        }
        (true, true) => h = HealthRecord::default(),
    }
    h
}

impl<M: Memory> Index<M> {
    /// The partition a call for `purpose` went to, and whether it was an import call
    /// (`begin_import`, `import_chunk`); none for calls to the management canister. Asked
    /// before the reply is handled (which may forget the move or the reclaim).
    pub(crate) fn callee(&self, purpose: &Purpose) -> Option<(Principal, bool)> {
        match purpose {
            Purpose::Create { outer_key } | Purpose::Delete { outer_key } => {
                self.directory.get(outer_key).map(|e| (e.partition, false))
            }
            Purpose::Stats { partition } => Some((*partition, false)),
            Purpose::Move { outer_key, step } => {
                let m = self.moves.get(outer_key)?;
                Some(match step {
                    MoveStep::BeginImport | MoveStep::Import => (m.target, true),
                    MoveStep::Abort | MoveStep::Activate => (m.target, false),
                    MoveStep::BeginExport
                    | MoveStep::Export
                    | MoveStep::Release
                    | MoveStep::Unwind => (m.source.partition, false),
                })
            }
            Purpose::Reclaim { op_id } => self
                .reclaims
                .get(&op_id.to_vec())
                .map(|r| (r.target, r.subdb.is_none())),
            Purpose::Job { .. }
            | Purpose::Status { .. }
            | Purpose::TopUp { .. }
            | Purpose::Upgrade { .. }
            | Purpose::Restart { .. } => None,
        }
    }

    /// Notes how a call to `partition` fared (see the module doc). Writes the record only when
    /// its health changes.
    pub(crate) fn note_call(
        &mut self,
        env: &Env,
        partition: Principal,
        import: bool,
        result: &CallResult,
    ) {
        let Some(mut rec) = self.registry.get(&partition) else {
            return;
        };
        let before = rec.health.clone().unwrap_or_default();
        let after = noted(before.clone(), env.now, import, result.is_ok());
        if after != before {
            rec.health = Some(after);
            self.put_partition(partition, rec);
        }
    }

    /// Whether `partition` may take new SubDBs and moves now (unknown ones may not).
    pub(crate) fn healthy(&self, partition: &Principal, now: u64) -> bool {
        self.registry
            .get(partition)
            .is_some_and(|r| is_healthy(&r, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(h: HealthRecord, now: u64, import: bool) -> HealthRecord {
        noted(h, now, import, false)
    }

    fn rec(h: HealthRecord) -> PartitionRecord {
        PartitionRecord {
            state: flotilla_types::index::PartitionState::Active,
            seq: 0,
            bytes: 0,
            items: 0,
            subdbs: 0,
            stable_memory_bytes: 0,
            stats_at: 0,
            created_at: 0,
            cycles: None,
            cycles_at: None,
            cycles_asked_at: None,
            topped_up: None,
            burn_per_period: None,
            burn_base: None,
            module: None,
            health: Some(h),
        }
    }

    #[test]
    fn failed_calls_make_a_partition_unreachable_until_any_answer() {
        let mut h = HealthRecord::default();
        for i in 0..UNREACHABLE_AFTER_FAILURES {
            assert!(is_healthy(&rec(h.clone()), 10), "after {i} failures");
            h = fail(h, 10 + i as u64, false);
        }
        let t = 10 + UNREACHABLE_AFTER_FAILURES as u64 - 1;
        assert_eq!(h.unreachable_since, Some(t));
        assert!(!is_healthy(&rec(h.clone()), u64::MAX));
        // More failures keep the first time.
        h = fail(h, 99, false);
        assert_eq!(h.unreachable_since, Some(t));
        // Any answer (a stats reply) ends it.
        h = noted(h, 100, false, true);
        assert!(is_healthy(&rec(h.clone()), 100));
        assert_eq!(h, HealthRecord::default());
        // A failure in between does not add up across an answer.
        for _ in 0..UNREACHABLE_AFTER_FAILURES - 1 {
            h = fail(h, 1, false);
        }
        h = noted(h, 2, false, true);
        h = fail(h, 3, false);
        assert!(is_healthy(&rec(h), 3));
    }

    #[test]
    fn failed_imports_refuse_imports_for_longer_each_time_despite_other_answers() {
        let mut h = HealthRecord::default();
        for _ in 0..IMPORT_FAILURES_LIMIT - 1 {
            h = fail(h, 0, true);
            // Its stats answer meanwhile: that does not excuse failing imports.
            h = noted(h, 0, false, true);
        }
        assert!(is_healthy(&rec(h.clone()), 0));
        h = fail(h, 1_000, true);
        let until = 1_000 + IMPORT_REFUSAL_MIN_NS;
        assert_eq!(h.imports_refused_until, Some(until));
        assert!(!is_healthy(&rec(h.clone()), until - 1));
        h = noted(h, until - 1, false, true);
        assert!(
            !is_healthy(&rec(h.clone()), until - 1),
            "stats do not heal it"
        );
        // Tried again once the refusal ended; failing again refuses it twice as long.
        assert!(is_healthy(&rec(h.clone()), until));
        for _ in 0..IMPORT_FAILURES_LIMIT {
            h = fail(h, until, true);
        }
        assert_eq!(
            h.imports_refused_until,
            Some(until + 2 * IMPORT_REFUSAL_MIN_NS)
        );
        // An answered import ends it all.
        h = noted(h, until, true, true);
        assert_eq!(h, HealthRecord::default());
        assert_eq!(refusal_ns(0), IMPORT_REFUSAL_MIN_NS);
        assert_eq!(refusal_ns(200), IMPORT_REFUSAL_MAX_NS);
    }

    #[test]
    fn an_outage_that_failed_imports_too_ends_with_the_first_answer() {
        let mut h = HealthRecord::default();
        for _ in 0..IMPORT_FAILURES_LIMIT {
            h = fail(h, 5, true);
        }
        for _ in 0..UNREACHABLE_AFTER_FAILURES {
            h = fail(h, 6, false);
        }
        assert!(h.imports_refused_until.is_some() && h.unreachable_since.is_some());
        h = noted(h, 7, false, true);
        assert!(is_healthy(&rec(h.clone()), 7));
        assert_eq!(h, HealthRecord::default());
    }
}
