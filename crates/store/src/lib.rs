//! Flotilla's partition storage engine.
//!
//! One [`Store`] holds many SubDBs — ordered key→value collections — over ic-stable-structures
//! memories, so the same code runs natively on `VectorMemory` and in a canister on stable
//! memory. All items of all SubDBs share one `StableBTreeMap` keyed by
//! `subdb id (u32 BE) ++ key`, so each SubDB is one contiguous, ordered key range: scans in
//! either direction are plain range walks. Per-SubDB counters live in a fixed-size slot per
//! id (O(1) to read and update), so byte accounting costs no extra tree operation.
//!
//! Persisted layout: see [`layout`] (magic `FLST`, version 2; version 1 is migrated when
//! opened, other versions are refused) and the regions in [`memory`].
//!
//! Limits are named in [`flotilla_types::limits`] and every violation is a typed error; an
//! operation that returns an error changed nothing.
//!
//! Where the logic lives, by concern (each file adds its own `impl Store`):
//!
//! - `subdbs.rs`: SubDB lifecycle (create, delete, purge, stats, metadata, write pause);
//! - `items.rs`: put, delete, get, has; `batch.rs`: batched writes;
//! - `scan.rs`: ordered scans;
//! - `export.rs`: whole-SubDB export and import, release after a move;
//! - `changes.rs`: change tracking during a move, delta export;
//! - `quota.rs`: what a write would leave a SubDB holding (the partition's byte quota);
//! - `oplog.rs`: the op-id log; `layout.rs`, `memory.rs`: persisted formats and regions.
//!
//! This file holds the store, its opening, the op-id plumbing and the helpers they share.

mod batch;
mod changes;
mod export;
mod items;
pub mod layout;
pub mod memory;
pub mod oplog;
mod quota;
mod scan;
mod subdbs;

use changes::DIRTY_OP;
use flotilla_types::limits::{ITEM_OVERHEAD_BYTES, MAX_KEY_BYTES};
use flotilla_types::{
    BatchError, CreateSubDbError, DeleteError, DeleteSubDbError, PutError, SubDbId,
};
use ic_stable_structures::memory_manager::MemoryId;
use ic_stable_structures::{BTreeMap, Cell, Memory, Vec as StableVec};
use layout::{scoped_key, Header, Slot, SlotState, LAYOUT_VERSION, LAYOUT_VERSION_V1, MAGIC};
use oplog::{Lookup, OpLog, Outcome};
use std::ops::Bound;

pub use changes::{Delta, DELTA_SCAN_PER_CHUNK, THROTTLE_MIN_CHANGE_BYTES};
pub use export::OPS_SCAN_PER_CHUNK;
pub use oplog::OpCtx;
pub use quota::ProjectedOp;

/// Records per op-log generation unless configured otherwise: every op id is remembered for
/// at least this many later recorded operations.
pub const DEFAULT_OP_WINDOW: u64 = 100_000;
/// Items a SubDB deletion reclaims at once; the rest is reclaimed by [`Store::purge_step`].
pub const PURGE_BATCH: usize = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Op-log records per generation (at least 1).
    pub op_window: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            op_window: DEFAULT_OP_WINDOW,
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    #[error("memory holds no Flotilla store (magic {found:?})")]
    BadMagic { found: [u8; 4] },
    #[error("store layout version {found} is not supported (this build reads {supported})")]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("op window must be at least 1")]
    ZeroOpWindow,
}

/// Totals over every SubDB the store holds, including deleted ones not yet reclaimed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub items: u64,
    pub bytes: u64,
    pub live_subdbs: u64,
    /// Items and bytes of deleted SubDBs still being reclaimed (part of `items` and `bytes`).
    pub purging_items: u64,
    pub purging_bytes: u64,
    pub op_records: u64,
}

/// What a caller can learn about a SubDB id it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubDbStatus {
    Live,
    Importing,
    /// Deleted (its items may still be being reclaimed), or never created.
    Absent,
}

pub struct Store<M: Memory> {
    header: Cell<Header, M>,
    slots: StableVec<Slot, M>,
    meta: BTreeMap<u32, Vec<u8>, M>,
    data: BTreeMap<Vec<u8>, Vec<u8>, M>,
    ops: OpLog<M>,
    frontiers: BTreeMap<u32, Vec<u8>, M>,
    dirty_keys: BTreeMap<Vec<u8>, u64, M>,
    dirty_log: BTreeMap<Vec<u8>, Vec<u8>, M>,
    throttles: BTreeMap<u32, layout::Throttle, M>,
    /// SubDBs marked for reclaiming (`SlotState::Purging`), by id.
    purging: BTreeMap<u32, (), M>,
    /// Live SubDBs by size: `(bytes, id)`. Heap only: derived at init from the slots, kept in
    /// step by [`Store::put_slot`], so the largest SubDBs are read without a scan.
    by_size: std::collections::BTreeSet<(u64, SubDbId)>,
    /// Derived at init from the slots, kept in step by every mutation.
    totals: Totals,
}

const KIND_CREATE: u8 = 1;
const KIND_DELETE_SUBDB: u8 = 2;
const KIND_PUT: u8 = 3;
const KIND_DELETE: u8 = 4;
const KIND_BATCH: u8 = 5;

/// Operations that can refuse an op id.
trait OpError: From<flotilla_types::InvalidOpId> {
    fn conflict() -> Self;
}
macro_rules! op_error {
    ($($t:ident),*) => {$(impl OpError for $t { fn conflict() -> Self { $t::OpIdConflict } })*};
}
op_error!(
    CreateSubDbError,
    DeleteSubDbError,
    PutError,
    DeleteError,
    BatchError
);

fn check_key<E>(key: &[u8], err: impl FnOnce(u64, u64) -> E) -> Result<(), E> {
    if key.len() > MAX_KEY_BYTES {
        return Err(err(key.len() as u64, MAX_KEY_BYTES as u64));
    }
    Ok(())
}

fn item_cost(key: &[u8], value: &[u8]) -> usize {
    key.len() + value.len() + ITEM_OVERHEAD_BYTES
}

impl<M: Memory> Store<M> {
    /// Opens the store in the given memories (one per [`memory`] id), creating it if they are
    /// empty. `config` applies to a new store; an existing one keeps its own.
    pub fn init(mut mem: impl FnMut(MemoryId) -> M, config: Config) -> Result<Self, InitError> {
        if config.op_window == 0 {
            return Err(InitError::ZeroOpWindow);
        }
        let mut header = Cell::init(mem(memory::STORE_HEADER), Header::new(config.op_window));
        let h = *header.get();
        if h.magic != MAGIC {
            return Err(InitError::BadMagic { found: h.magic });
        }
        if h.version != LAYOUT_VERSION && h.version != LAYOUT_VERSION_V1 {
            return Err(InitError::UnsupportedVersion {
                found: h.version,
                supported: LAYOUT_VERSION,
            });
        }
        let slots: StableVec<Slot, M> = StableVec::init(mem(memory::SUBDB_SLOTS));
        let mut totals = Totals::default();
        let mut purging: BTreeMap<u32, (), M> = BTreeMap::init(mem(memory::PURGING));
        let mut by_size = std::collections::BTreeSet::new();
        for (id, s) in slots.iter().enumerate() {
            totals.items += s.items;
            totals.bytes += s.bytes;
            match s.state {
                SlotState::Live => {
                    totals.live_subdbs += 1;
                    by_size.insert((s.bytes, id as SubDbId));
                }
                SlotState::Purging => {
                    totals.purging_items += s.items;
                    totals.purging_bytes += s.bytes;
                    // A store written before the `PURGING` region: mark what it was reclaiming.
                    purging.insert(id as u32, ());
                }
                SlotState::Importing | SlotState::Gone => {}
            }
        }
        let ops = if h.version == LAYOUT_VERSION_V1 {
            // Version 1 kept the op log in two `StableBTreeMap`s: move it (the only change).
            let old = [mem(memory::OPS_GEN_A), mem(memory::OPS_GEN_B)];
            OpLog::migrate_v1(
                &mut header,
                old,
                mem(memory::OPS_LOG_A),
                mem(memory::OPS_LOG_B),
            )
        } else {
            OpLog::init(&header, mem(memory::OPS_LOG_A), mem(memory::OPS_LOG_B))
        };
        Ok(Store {
            header,
            slots,
            meta: BTreeMap::init(mem(memory::SUBDB_META)),
            data: BTreeMap::init(mem(memory::DATA)),
            ops,
            frontiers: BTreeMap::init(mem(memory::EXPORT_FRONTIER)),
            dirty_keys: BTreeMap::init(mem(memory::DIRTY_KEYS)),
            dirty_log: BTreeMap::init(mem(memory::DIRTY_LOG)),
            throttles: BTreeMap::init(mem(memory::EXPORT_THROTTLE)),
            purging,
            by_size,
            totals,
        })
    }

    // ---- op-id plumbing -------------------------------------------------------------------

    /// Runs `apply` at most once per op id: a recorded op id with the same scope and argument
    /// hash gets its first outcome back, any other use of it is refused. The hash leaves out
    /// the local SubDB id (the scope covers it), so records stay valid after a move re-homes
    /// them under a new id.
    fn once<T, E: OpError>(
        &mut self,
        op: Option<OpCtx<'_>>,
        scope: u32,
        hash: impl FnOnce(&[u8]) -> [u8; oplog::HASH_BYTES],
        replay: impl FnOnce(Outcome) -> Option<T>,
        record: impl FnOnce(&T) -> Outcome,
        apply: impl FnOnce(&mut Self) -> Result<T, E>,
    ) -> Result<T, E> {
        let Some(op) = op else {
            return apply(self);
        };
        op.op_id.validate()?;
        let h = hash(op.salt);
        match self.ops.lookup(scope, op.op_id, &h) {
            Lookup::Done(outcome) => replay(outcome).ok_or_else(E::conflict),
            Lookup::Conflict => Err(E::conflict()),
            Lookup::Fresh => {
                let out = apply(self)?;
                self.ops
                    .record(&mut self.header, scope, op.op_id, h, record(&out));
                if self.slot(scope).is_some_and(|s| s.exporting) {
                    self.mark_dirty(scope, DIRTY_OP, op.op_id.as_bytes());
                }
                Ok(out)
            }
        }
    }

    // ---- SubDB lifecycle ------------------------------------------------------------------
}

/// The key range holding all items of one SubDB.
fn subdb_bounds(id: SubDbId) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let lo = Bound::Included(scoped_key(id, &[]));
    let hi = match id.checked_add(1) {
        Some(n) => Bound::Excluded(scoped_key(n, &[])),
        None => Bound::Unbounded,
    };
    (lo, hi)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_batch;
#[cfg(test)]
mod tests_cutover;
