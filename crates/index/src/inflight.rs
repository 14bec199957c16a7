//! Calls in flight: by call id (what a reply is for) and by purpose (whether some work already
//! has a call out), so "is a call in flight for X" is a point lookup, not a pass that decodes
//! every in-flight record.
//!
//! Two regions hold them, kept in step by [`Index::track`] and [`Index::untrack`] only:
//! `INFLIGHT` (call id → [`Purpose`], Candid) and `INFLIGHT_BY_PURPOSE` (purpose key ++ call id
//! → nothing). A purpose key is a compact, prefix-free encoding of a purpose, so the calls of
//! one purpose are one contiguous key range, and the calls of one move (any step) too:
//!
//! ```text
//! Create  1, outer key length u16 BE, outer key
//! Delete  2, outer key length u16 BE, outer key
//! Job     3, job id u64 BE
//! Stats   4, principal length u8, principal
//! Move    5, outer key length u16 BE, outer key, step u8
//! Status  6, principal length u8, principal
//! TopUp   7, principal length u8, principal, amount u128 BE
//! Reclaim 8, op id length u16 BE, op id
//! Upgrade 9, principal length u8, principal
//! Restart 10, principal length u8, principal
//! then    call id u64 BE
//! ```
//!
//! Both are forgotten together at upgrade (`Index::open`): calls in flight before it are lost.

use crate::calls::CallId;
use crate::records::{MoveStep, Purpose};
use crate::Index;
use ic_stable_structures::Memory;

const TAG_CREATE: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_JOB: u8 = 3;
const TAG_STATS: u8 = 4;
const TAG_MOVE: u8 = 5;
const TAG_STATUS: u8 = 6;
const TAG_TOP_UP: u8 = 7;
const TAG_RECLAIM: u8 = 8;
const TAG_UPGRADE: u8 = 9;
const TAG_RESTART: u8 = 10;

fn put_principal(tag: u8, p: &candid::Principal) -> Vec<u8> {
    let p = p.as_slice();
    let mut k = vec![tag, p.len() as u8];
    k.extend_from_slice(p);
    k
}

fn put_outer(out: &mut Vec<u8>, outer_key: &str) {
    put_len_bytes(out, outer_key.as_bytes());
}

fn put_len_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Outer keys are at most `MAX_OUTER_KEY_BYTES` (256), op ids 32 bytes; u16 covers any
    // String a record could hold up to 64 KiB, and longer ones (never accepted) are cut at
    // the length, which keeps keys well-formed.
    let b = &b[..b.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

fn step_code(step: MoveStep) -> u8 {
    match step {
        MoveStep::BeginImport => 0,
        MoveStep::BeginExport => 1,
        MoveStep::Export => 2,
        MoveStep::Import => 3,
        MoveStep::Release => 4,
        MoveStep::Abort => 5,
        MoveStep::Activate => 6,
        MoveStep::Unwind => 7,
    }
}

/// The key prefix of every call of one move, whatever its step.
fn move_prefix(outer_key: &str) -> Vec<u8> {
    let mut k = vec![TAG_MOVE];
    put_outer(&mut k, outer_key);
    k
}

/// The key prefix of every call in flight for `purpose`.
pub(crate) fn purpose_key(purpose: &Purpose) -> Vec<u8> {
    match purpose {
        Purpose::Create { outer_key } => {
            let mut k = vec![TAG_CREATE];
            put_outer(&mut k, outer_key);
            k
        }
        Purpose::Delete { outer_key } => {
            let mut k = vec![TAG_DELETE];
            put_outer(&mut k, outer_key);
            k
        }
        Purpose::Job { job } => {
            let mut k = vec![TAG_JOB];
            k.extend_from_slice(&job.to_be_bytes());
            k
        }
        Purpose::Stats { partition } => put_principal(TAG_STATS, partition),
        Purpose::Status { partition } => put_principal(TAG_STATUS, partition),
        Purpose::Upgrade { partition } => put_principal(TAG_UPGRADE, partition),
        Purpose::Restart { partition } => put_principal(TAG_RESTART, partition),
        Purpose::TopUp { partition, amount } => {
            let mut k = put_principal(TAG_TOP_UP, partition);
            k.extend_from_slice(&amount.to_be_bytes());
            k
        }
        Purpose::Move { outer_key, step } => {
            let mut k = move_prefix(outer_key);
            k.push(step_code(*step));
            k
        }
        Purpose::Reclaim { op_id } => {
            let mut k = vec![TAG_RECLAIM];
            put_len_bytes(&mut k, op_id);
            k
        }
    }
}

fn with_id(mut prefix: Vec<u8>, id: CallId) -> Vec<u8> {
    prefix.extend_from_slice(&id.to_be_bytes());
    prefix
}

impl<M: Memory> Index<M> {
    /// Records call `id` as in flight for `purpose`.
    pub(crate) fn track(&mut self, id: CallId, purpose: Purpose) {
        self.inflight_by_purpose
            .insert(with_id(purpose_key(&purpose), id), ());
        self.inflight.insert(id, purpose);
    }

    /// Forgets call `id`; what its reply was for, if it was in flight.
    pub(crate) fn untrack(&mut self, id: CallId) -> Option<Purpose> {
        let purpose = self.inflight.remove(&id)?;
        self.inflight_by_purpose
            .remove(&with_id(purpose_key(&purpose), id));
        Some(purpose)
    }

    /// Whether a call for `purpose` is in flight (one range probe).
    pub(crate) fn in_flight(&self, purpose: &Purpose) -> bool {
        self.any_with_prefix(purpose_key(purpose))
    }

    /// Whether a call of a move of `outer_key` is in flight, whatever its step (the move may
    /// have been called off since).
    pub(crate) fn move_call_in_flight(&self, outer_key: &str) -> bool {
        self.any_with_prefix(move_prefix(outer_key))
    }

    /// Whether a top-up of `partition` is in flight, whatever its amount.
    pub(crate) fn top_up_in_flight(&self, partition: candid::Principal) -> bool {
        self.any_with_prefix(put_principal(TAG_TOP_UP, &partition))
    }

    fn any_with_prefix(&self, prefix: Vec<u8>) -> bool {
        self.inflight_by_purpose
            .keys_range(prefix.clone()..)
            .next()
            .is_some_and(|k| k.starts_with(&prefix))
    }

    /// Forgets every call in flight (both regions).
    pub(crate) fn forget_all_calls(&mut self) {
        // Re-initialising a stable BTreeMap over its memory would leak its pages; remove the
        // entries instead (upgrade time, once).
        let ids: Vec<CallId> = self.inflight.keys().collect();
        for id in ids {
            self.inflight.remove(&id);
        }
        let keys: Vec<Vec<u8>> = self.inflight_by_purpose.keys().collect();
        for k in keys {
            self.inflight_by_purpose.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candid::Principal;
    use proptest::prelude::*;

    fn purposes() -> impl Strategy<Value = Purpose> {
        let outer = "[a-c/]{0,4}";
        prop_oneof![
            outer.prop_map(|outer_key| Purpose::Create { outer_key }),
            outer.prop_map(|outer_key| Purpose::Delete { outer_key }),
            (0u64..4).prop_map(|job| Purpose::Job { job }),
            prop::collection::vec(any::<u8>(), 0..4).prop_map(|b| Purpose::Stats {
                partition: Principal::from_slice(&b)
            }),
            prop::collection::vec(any::<u8>(), 0..4).prop_map(|b| Purpose::Reclaim {
                op_id: serde_bytes::ByteBuf::from(b)
            }),
            (outer, 0u8..8).prop_map(|(outer_key, s)| Purpose::Move {
                outer_key,
                step: [
                    MoveStep::BeginImport,
                    MoveStep::BeginExport,
                    MoveStep::Export,
                    MoveStep::Import,
                    MoveStep::Release,
                    MoveStep::Abort,
                    MoveStep::Activate,
                    MoveStep::Unwind,
                ][s as usize],
            }),
        ]
    }

    proptest! {
        /// The key of a purpose is a prefix of another's only when they are the same purpose,
        /// so a range probe never answers for a neighbour (`ab` vs `abc`, a short principal).
        #[test]
        fn purpose_keys_are_prefix_free(a in purposes(), b in purposes()) {
            let (ka, kb) = (purpose_key(&a), purpose_key(&b));
            prop_assert_eq!(kb.starts_with(&ka), a == b, "{:?} {:?}", a, b);
        }

        /// A move's prefix covers exactly its own steps.
        #[test]
        fn move_prefix_covers_its_steps_only(a in purposes(), outer in "[a-c/]{0,4}") {
            let covered = purpose_key(&a).starts_with(&move_prefix(&outer));
            let expected = matches!(&a, Purpose::Move { outer_key, .. } if *outer_key == outer);
            prop_assert_eq!(covered, expected);
        }
    }
}
