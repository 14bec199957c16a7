//! Reclaiming the partial imports of called-off moves whose target did not answer.
//!
//! A move called off after its `begin_import` reclaims the target's partial import with
//! `abort_import`. When the target does not answer that within the move's failure budget
//! (stopped for good, out of cycles), or the move is given up at begin-import (the import may
//! have opened without its answer reaching the index), the move is forgotten and a
//! [`ReclaimRecord`] stays in `RECLAIMS`, keyed by the move's op id: the target, and the
//! import's local id if known. `tick` retries the due records, at most
//! [`MAX_RECLAIM_CALLS_PER_TICK`], each with backoff ([`RECLAIM_BACKOFF_MIN_NS`] doubling to
//! [`RECLAIM_BACKOFF_MAX_NS`]), until the target answers:
//!
//! - without a local id: `begin_import` with the move's op id, which answers the import it
//!   opened for that op id (or opens an empty one), then `abort_import` of that id;
//! - `abort_import(id)`: `Ok` or `UnknownImport` (reclaimed already) ends the record; so does
//!   any other answer (`AlreadyFinished` is a live SubDB whose writes resumed: not a partial
//!   import, never touched).
//!
//! A late `abort_import` cannot hurt a later import of the same SubDB on that target: every
//! move has its own op id and the partition gives every import its own local id, never
//! reused, so an abort names only the called-off move's import.
//!
//! The list holds at most [`MAX_RECLAIMS`] records. A move called off with the list full
//! leaves its partial import on the target, as before reclaims existed: invisible, never
//! routed, its bytes counted in the target's stats; `reclaims_dropped` in `stats` counts them.
//!
//! The due order is a heap index (`due`), derived from the records at upgrade.

use crate::calls::{Call, CallResult, Request, Response};
use crate::records::{Purpose, ReclaimRecord};
use crate::{Env, Index};
use candid::Principal;
use flotilla_types::partition::BeginImportArgs;
use flotilla_types::{OpId, SubDbId};
use ic_stable_structures::Memory;
use serde_bytes::ByteBuf;
use std::collections::BTreeSet;

/// Pending reclaims kept at most.
pub const MAX_RECLAIMS: u64 = 10_000;
/// Reclaim calls one `tick` makes at most (most overdue first).
pub const MAX_RECLAIM_CALLS_PER_TICK: usize = 20;
/// A reclaim is first retried this long after its move was called off, then twice as long
/// after each call, up to [`RECLAIM_BACKOFF_MAX_NS`].
pub const RECLAIM_BACKOFF_MIN_NS: u64 = 5_000_000_000;
pub const RECLAIM_BACKOFF_MAX_NS: u64 = 120_000_000_000;
const _: () = assert!(RECLAIM_BACKOFF_MIN_NS <= RECLAIM_BACKOFF_MAX_NS);

/// The wait after the `n`-th call (from 0) of a reclaim.
pub fn reclaim_backoff_ns(n: u32) -> u64 {
    RECLAIM_BACKOFF_MIN_NS
        .saturating_mul(1u64 << n.min(32))
        .min(RECLAIM_BACKOFF_MAX_NS)
}

/// `(next_at, op id)` of every pending reclaim.
#[derive(Default)]
pub(crate) struct ReclaimsDue {
    due: BTreeSet<(u64, Vec<u8>)>,
}

impl<M: Memory> Index<M> {
    /// Derives the due order from the records (install and upgrade).
    pub(crate) fn build_reclaims_due(&mut self) {
        self.reclaims_due.due = self
            .reclaims
            .iter()
            .map(|e| {
                let (k, r) = e.into_pair();
                (r.next_at, k)
            })
            .collect();
    }

    fn put_reclaim(&mut self, rec: ReclaimRecord) {
        let key = rec.op_id.to_vec();
        if let Some(old) = self.reclaims.insert(key.clone(), rec.clone()) {
            self.reclaims_due.due.remove(&(old.next_at, key.clone()));
        }
        self.reclaims_due.due.insert((rec.next_at, key));
    }

    fn remove_reclaim(&mut self, key: &[u8]) {
        if let Some(old) = self.reclaims.remove(&key.to_vec()) {
            self.reclaims_due.due.remove(&(old.next_at, key.to_vec()));
        }
    }

    /// A called-off move's partial import on `target` awaits reclaiming: keep a record, unless
    /// the list is full (then count it dropped).
    pub(crate) fn record_reclaim(
        &mut self,
        env: &Env,
        outer_key: &str,
        target: Principal,
        op_id: &ByteBuf,
        subdb: Option<SubDbId>,
    ) {
        let key = op_id.to_vec();
        if !self.reclaims.contains_key(&key) && self.reclaims.len() >= MAX_RECLAIMS {
            self.update_cfg(|c| c.reclaims_dropped = c.reclaims_dropped.saturating_add(1));
            return;
        }
        self.put_reclaim(ReclaimRecord {
            target,
            op_id: op_id.clone(),
            subdb,
            outer_key: outer_key.to_string(),
            since: env.now,
            attempts: 0,
            next_at: env.now.saturating_add(RECLAIM_BACKOFF_MIN_NS),
        });
    }

    /// The calls of the reclaims due at `env.now` (at most `MAX_RECLAIM_CALLS_PER_TICK`, most
    /// overdue first), each rescheduled by its backoff as it is sent; one whose call is still
    /// in flight waits for it.
    pub(crate) fn drive_reclaims(&mut self, env: &Env) -> Vec<Call> {
        let due: Vec<Vec<u8>> = self
            .reclaims_due
            .due
            .iter()
            .take_while(|(t, _)| *t <= env.now)
            .take(MAX_RECLAIM_CALLS_PER_TICK)
            .map(|(_, k)| k.clone())
            .collect();
        due.into_iter()
            .filter_map(|k| self.reclaim_call(env, &k))
            .collect()
    }

    /// The next call of reclaim `key`, rescheduling it; none while one is in flight.
    fn reclaim_call(&mut self, env: &Env, key: &[u8]) -> Option<Call> {
        let mut rec = self.reclaims.get(&key.to_vec())?;
        let purpose = Purpose::Reclaim {
            op_id: rec.op_id.clone(),
        };
        if self.in_flight(&purpose) {
            return None;
        }
        let request = match rec.subdb {
            Some(id) => Request::AbortImport(id),
            None => Request::BeginImport(BeginImportArgs {
                op_id: OpId(rec.op_id.clone()),
            }),
        };
        rec.next_at = env.now.saturating_add(reclaim_backoff_ns(rec.attempts));
        rec.attempts = rec.attempts.saturating_add(1);
        let target = rec.target;
        self.put_reclaim(rec);
        Some(self.next_call(target, request, purpose))
    }

    /// A reclaim's call came back.
    pub(crate) fn reclaim_reply(
        &mut self,
        env: &Env,
        op_id: &ByteBuf,
        result: CallResult,
    ) -> Vec<Call> {
        let key = op_id.to_vec();
        let Some(mut rec) = self.reclaims.get(&key) else {
            return vec![];
        };
        match result {
            Ok(Response::ImportBegun(Ok(id))) => {
                // Learnt the import's id: abort it now.
                rec.subdb = Some(id);
                self.put_reclaim(rec);
                self.reclaim_call(env, &key).into_iter().collect()
            }
            // Any other answer ends it: reclaimed (or nothing to reclaim), or a refusal that a
            // retry would meet again.
            Ok(_) => {
                self.remove_reclaim(&key);
                vec![]
            }
            // Failed: retried when due (rescheduled as it was sent).
            Err(_) => vec![],
        }
    }

    /// Pending reclaims.
    pub fn reclaims_pending(&self) -> u64 {
        self.reclaims.len()
    }

    /// Pending reclaims, by op id (for the simulator and tests).
    pub fn reclaims(&self) -> Vec<ReclaimRecord> {
        self.reclaims.iter().map(|e| e.into_pair().1).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(reclaim_backoff_ns(0), RECLAIM_BACKOFF_MIN_NS);
        assert_eq!(reclaim_backoff_ns(1), 2 * RECLAIM_BACKOFF_MIN_NS);
        assert_eq!(reclaim_backoff_ns(64), RECLAIM_BACKOFF_MAX_NS);
        assert!((0..100).all(|n| reclaim_backoff_ns(n) <= reclaim_backoff_ns(n + 1)));
    }
}
