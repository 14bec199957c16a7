//! Flotilla's partition storage engine.
//!
//! One [`Store`] holds many SubDBs — ordered key→value collections — over ic-stable-structures
//! memories, so the same code runs natively on `VectorMemory` and in a canister on stable
//! memory. All items of all SubDBs share one `StableBTreeMap` keyed by
//! `subdb id (u32 BE) ++ key`, so each SubDB is one contiguous, ordered key range: scans in
//! either direction are plain range walks. Per-SubDB counters live in a fixed-size slot per
//! id (O(1) to read and update), so byte accounting costs no extra tree operation.
//!
//! Persisted layout: see [`layout`] (magic `FLST`, version 1; other versions are refused) and
//! the regions in [`memory`].
//!
//! Limits are named in [`flotilla_types::limits`] and every violation is a typed error; an
//! operation that returns an error changed nothing.

mod batch;
pub mod layout;
pub mod memory;
pub mod oplog;

use flotilla_types::limits::{
    DEFAULT_SCAN_ITEMS, ITEM_OVERHEAD_BYTES, MAX_EXPORT_CHANGES, MAX_KEY_BYTES, MAX_SCAN_ITEMS,
    MAX_SUBDB_META_BYTES, MAX_VALUE_BYTES, OP_ID_MAX_BYTES, OP_ID_MIN_BYTES, REPLY_BUDGET_BYTES,
};
use flotilla_types::{
    BatchError, Chunk, ChunkHeader, CreateSubDbError, DeleteError, DeleteSubDbError, Entry,
    ExportError, GetError, ImportError, OpEntry, PutError, PutOutcome, ScanArgs, ScanError,
    ScanPage, SubDbId, SubDbStats,
};
use ic_stable_structures::memory_manager::MemoryId;
use ic_stable_structures::{BTreeMap, Cell, Memory, Vec as StableVec};
use layout::{scoped_key, Header, Slot, SlotState, CREATE_SCOPE, LAYOUT_VERSION, MAGIC};
use oplog::{ArgsHasher, Lookup, OpLog, OpsCursor, Outcome};
use serde_bytes::ByteBuf;
use std::ops::Bound;

pub use oplog::OpCtx;

/// Records per op-log generation unless configured otherwise: every op id is remembered for
/// at least this many later recorded operations.
pub const DEFAULT_OP_WINDOW: u64 = 100_000;
/// Items a SubDB deletion reclaims at once; the rest is reclaimed by [`Store::purge_step`].
pub const PURGE_BATCH: usize = 1_000;
/// Logged changes one delta chunk examines at most (changes that ship as nothing, like op
/// records forgotten meanwhile, cost no budget), so a delta's work stays bounded.
pub const DELTA_SCAN_PER_CHUNK: usize = 20_000;
/// Op-log records one export chunk examines at most while looking for a SubDB's records, so
/// a chunk's work stays bounded whatever the log's size.
pub const OPS_SCAN_PER_CHUNK: usize = 20_000;

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
    /// Derived at init from the slots, kept in step by every mutation.
    totals: Totals,
}

/// Tags of tracked changes.
/// The frontier value of an exporting SubDB whose change log overflowed
/// ([`MAX_EXPORT_CHANGES`]): nothing more is logged and its exports answer `ChangeLogFull`.
/// (Other frontiers: `1 ++ key`, the copy passed `key`; `2`, the copy passed every item.)
const FRONTIER_OVERFLOWED: u8 = 3;
const DIRTY_ITEM: u8 = 0;
const DIRTY_OP: u8 = 1;

/// A delta chunk and where it leaves the change log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    pub chunk: Chunk,
    /// The newest change in the chunk (the `ack` to pass once it is applied).
    pub version: u64,
    /// Changes remain beyond this chunk.
    pub more: bool,
}

/// One tracked change, as it ships in a delta chunk.
enum Change {
    Put(Entry),
    Delete(ByteBuf),
    Op(OpEntry),
}

impl Change {
    /// Bytes counted against the chunk budget (as `Chunk::budget_bytes` counts them).
    fn cost(&self) -> usize {
        ITEM_OVERHEAD_BYTES
            + match self {
                Change::Put(e) => e.key.len() + e.value.len(),
                Change::Delete(k) => k.len(),
                Change::Op(o) => o.op_id.len() + o.record.len(),
            }
    }
}

fn log_key(id: SubDbId, version: u64) -> Vec<u8> {
    let mut k = id.to_be_bytes().to_vec();
    k.extend_from_slice(&version.to_be_bytes());
    k
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
        let header = Cell::init(mem(memory::STORE_HEADER), Header::new(config.op_window));
        let h = *header.get();
        if h.magic != MAGIC {
            return Err(InitError::BadMagic { found: h.magic });
        }
        if h.version != LAYOUT_VERSION {
            return Err(InitError::UnsupportedVersion {
                found: h.version,
                supported: LAYOUT_VERSION,
            });
        }
        let slots: StableVec<Slot, M> = StableVec::init(mem(memory::SUBDB_SLOTS));
        let mut totals = Totals::default();
        for s in slots.iter() {
            totals.items += s.items;
            totals.bytes += s.bytes;
            match s.state {
                SlotState::Live => totals.live_subdbs += 1,
                SlotState::Purging => {
                    totals.purging_items += s.items;
                    totals.purging_bytes += s.bytes;
                }
                SlotState::Importing | SlotState::Gone => {}
            }
        }
        let ops = OpLog::init(mem(memory::OPS_GEN_A), mem(memory::OPS_GEN_B));
        Ok(Store {
            header,
            slots,
            meta: BTreeMap::init(mem(memory::SUBDB_META)),
            data: BTreeMap::init(mem(memory::DATA)),
            ops,
            frontiers: BTreeMap::init(mem(memory::EXPORT_FRONTIER)),
            dirty_keys: BTreeMap::init(mem(memory::DIRTY_KEYS)),
            dirty_log: BTreeMap::init(mem(memory::DIRTY_LOG)),
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

    fn slot(&self, id: SubDbId) -> Option<Slot> {
        self.slots.get(id as u64)
    }

    fn live_slot(&self, id: SubDbId) -> Option<Slot> {
        self.slot(id).filter(|s| s.state == SlotState::Live)
    }

    fn new_slot(&mut self, slot: Slot, meta: &[u8]) -> SubDbId {
        let id = self.slots.len();
        assert!(id < CREATE_SCOPE as u64, "SubDB ids exhausted");
        self.slots.push(&slot);
        self.meta.insert(id as u32, meta.to_vec());
        id as SubDbId
    }

    /// Creates a SubDB. `meta` is an opaque blob kept beside it and moved with it (the
    /// partition stores the owner and access lists there).
    pub fn create_subdb(
        &mut self,
        op: Option<OpCtx<'_>>,
        hard_cap: Option<u64>,
        meta: &[u8],
    ) -> Result<SubDbId, CreateSubDbError> {
        self.once(
            op,
            CREATE_SCOPE,
            |salt| {
                ArgsHasher::new(KIND_CREATE, salt)
                    .u64(hard_cap.map_or(u64::MAX, |c| c))
                    .bytes(meta)
                    .finish()
            },
            |o| match o {
                Outcome::Created(id) => Some(id),
                _ => None,
            },
            |id| Outcome::Created(*id),
            |s| {
                if hard_cap == Some(0) {
                    return Err(CreateSubDbError::InvalidHardCap);
                }
                if meta.len() > MAX_SUBDB_META_BYTES {
                    return Err(CreateSubDbError::MetaTooLarge {
                        len: meta.len() as u64,
                        max: MAX_SUBDB_META_BYTES as u64,
                    });
                }
                let id = s.new_slot(Slot::new(SlotState::Live, hard_cap), meta);
                s.totals.live_subdbs += 1;
                Ok(id)
            },
        )
    }

    /// Deletes a SubDB. It disappears at once; its items are reclaimed now up to
    /// [`PURGE_BATCH`], the rest by [`Store::purge_step`]. Its id is never reused.
    pub fn delete_subdb(
        &mut self,
        op: Option<OpCtx<'_>>,
        id: SubDbId,
    ) -> Result<(), DeleteSubDbError> {
        self.once(
            op,
            id,
            |salt| ArgsHasher::new(KIND_DELETE_SUBDB, salt).finish(),
            |o| (o == Outcome::SubDbDeleted).then_some(()),
            |_| Outcome::SubDbDeleted,
            |s| {
                let mut slot = s.live_slot(id).ok_or(DeleteSubDbError::UnknownSubDb)?;
                if slot.frozen {
                    return Err(DeleteSubDbError::WritesPaused);
                }
                s.discard(id, &mut slot);
                Ok(())
            },
        )
    }

    /// Marks a live or importing SubDB deleted and reclaims a first batch of its items.
    fn discard(&mut self, id: SubDbId, slot: &mut Slot) {
        if slot.state == SlotState::Live {
            self.totals.live_subdbs -= 1;
        }
        slot.state = SlotState::Purging;
        slot.frozen = false;
        if slot.exporting {
            // The frontier goes now; logged changes are reclaimed with the items.
            slot.exporting = false;
            self.frontiers.remove(&id);
        }
        self.totals.purging_items += slot.items;
        self.totals.purging_bytes += slot.bytes;
        self.meta.remove(&id);
        self.slots.set(id as u64, slot);
        self.purge_subdb(id, PURGE_BATCH);
    }

    /// Reclaims up to `max_items` items of one purging SubDB; true when it is fully reclaimed.
    fn purge_subdb(&mut self, id: SubDbId, max_items: usize) -> bool {
        let Some(mut slot) = self.slot(id).filter(|s| s.state == SlotState::Purging) else {
            return true;
        };
        let max_items = max_items.saturating_sub(self.drop_changes(id, max_items));
        let (lo, hi) = subdb_bounds(id);
        let keys: Vec<Vec<u8>> = self.data.keys_range((lo, hi)).take(max_items).collect();
        for k in keys {
            if let Some(v) = self.data.remove(&k) {
                let b = (k.len() - 4 + v.len()) as u64;
                slot.items -= 1;
                slot.bytes -= b;
                self.totals.items -= 1;
                self.totals.bytes -= b;
                self.totals.purging_items -= 1;
                self.totals.purging_bytes -= b;
            }
        }
        let done = slot.items == 0 && self.pending_changes_any(id);
        if done {
            slot.state = SlotState::Gone;
        }
        self.slots.set(id as u64, &slot);
        done
    }

    /// Reclaims up to `max_items` items of deleted SubDBs. Returns how many remain.
    /// Canisters call this from a timer until it returns 0.
    pub fn purge_step(&mut self, mut max_items: usize) -> u64 {
        // Purging SubDBs are rare; a linear pass over the slots finds them.
        let purging: Vec<SubDbId> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == SlotState::Purging)
            .map(|(i, _)| i as SubDbId)
            .collect();
        for id in purging {
            if max_items == 0 {
                break;
            }
            let before = self.totals.purging_items;
            self.purge_subdb(id, max_items);
            max_items = max_items.saturating_sub((before - self.totals.purging_items) as usize);
        }
        self.totals.purging_items
    }

    pub fn status(&self, id: SubDbId) -> SubDbStatus {
        match self.slot(id).map(|s| s.state) {
            Some(SlotState::Live) => SubDbStatus::Live,
            Some(SlotState::Importing) => SubDbStatus::Importing,
            _ => SubDbStatus::Absent,
        }
    }

    pub fn exists(&self, id: SubDbId) -> bool {
        self.live_slot(id).is_some()
    }

    pub fn stats(&self, id: SubDbId) -> Option<SubDbStats> {
        self.live_slot(id).map(|s| SubDbStats {
            id,
            items: s.items,
            bytes: s.bytes,
            hard_cap: s.hard_cap(),
        })
    }

    /// The opaque metadata blob of a live or importing SubDB.
    pub fn meta(&self, id: SubDbId) -> Option<Vec<u8>> {
        self.meta.get(&id)
    }

    /// Replaces the metadata blob of a live SubDB.
    pub fn set_meta(&mut self, id: SubDbId, meta: &[u8]) -> Result<(), CreateSubDbError> {
        if meta.len() > MAX_SUBDB_META_BYTES {
            return Err(CreateSubDbError::MetaTooLarge {
                len: meta.len() as u64,
                max: MAX_SUBDB_META_BYTES as u64,
            });
        }
        if self.exists(id) {
            self.meta.insert(id, meta.to_vec());
        }
        Ok(())
    }

    /// Live SubDBs with ids from `from`, in id order, at most `limit`.
    pub fn list_subdbs(&self, from: SubDbId, limit: usize) -> Vec<SubDbStats> {
        (from as u64..self.slots.len())
            .filter_map(|i| self.stats(i as SubDbId))
            .take(limit)
            .collect()
    }

    pub fn totals(&self) -> Totals {
        Totals {
            op_records: self.ops.record_count(),
            ..self.totals
        }
    }

    /// Pauses (or resumes) writes to a live SubDB: while frozen, mutations answer
    /// `WritesPaused` and reads go on. Used for a move's cutover. False if not live.
    pub fn set_frozen(&mut self, id: SubDbId, frozen: bool) -> bool {
        let Some(mut slot) = self.live_slot(id) else {
            return false;
        };
        slot.frozen = frozen;
        self.slots.set(id as u64, &slot);
        true
    }

    pub fn is_frozen(&self, id: SubDbId) -> bool {
        self.live_slot(id).is_some_and(|s| s.frozen)
    }

    // ---- items ----------------------------------------------------------------------------

    /// Inserts or replaces `key`. Past the SubDB's hard cap, the smallest keys are evicted in
    /// the same operation (which may be `key` itself when it is the smallest).
    pub fn put(
        &mut self,
        op: Option<OpCtx<'_>>,
        id: SubDbId,
        key: &[u8],
        value: &[u8],
    ) -> Result<PutOutcome, PutError> {
        self.once(
            op,
            id,
            |salt| {
                ArgsHasher::new(KIND_PUT, salt)
                    .bytes(key)
                    .bytes(value)
                    .finish()
            },
            |o| match o {
                Outcome::Put(p) => Some(p),
                _ => None,
            },
            |p| Outcome::Put(*p),
            |s| {
                let mut slot = s.live_slot(id).ok_or(PutError::UnknownSubDb)?;
                check_key(key, |len, max| PutError::KeyTooLarge { len, max })?;
                if value.len() > MAX_VALUE_BYTES {
                    return Err(PutError::ValueTooLarge {
                        len: value.len() as u64,
                        max: MAX_VALUE_BYTES as u64,
                    });
                }
                if slot.frozen {
                    return Err(PutError::WritesPaused);
                }
                let replaced = s.raw_put(id, &mut slot, key, value);
                let evicted = s.enforce_cap(id, &mut slot);
                s.slots.set(id as u64, &slot);
                Ok(PutOutcome { replaced, evicted })
            },
        )
    }

    /// Writes one item and keeps the counters exact; true if it replaced a value.
    fn raw_put(&mut self, id: SubDbId, slot: &mut Slot, key: &[u8], value: &[u8]) -> bool {
        self.track(id, slot, key);
        let new = (key.len() + value.len()) as u64;
        match self.data.insert(scoped_key(id, key), value.to_vec()) {
            Some(old) => {
                let old = (key.len() + old.len()) as u64;
                slot.bytes = slot.bytes - old + new;
                self.totals.bytes = self.totals.bytes - old + new;
                true
            }
            None => {
                slot.items += 1;
                slot.bytes += new;
                self.totals.items += 1;
                self.totals.bytes += new;
                false
            }
        }
    }

    fn raw_delete(&mut self, id: SubDbId, slot: &mut Slot, key: &[u8]) -> bool {
        self.track(id, slot, key);
        match self.data.remove(&scoped_key(id, key)) {
            Some(old) => {
                let b = (key.len() + old.len()) as u64;
                slot.items -= 1;
                slot.bytes -= b;
                self.totals.items -= 1;
                self.totals.bytes -= b;
                true
            }
            None => false,
        }
    }

    fn enforce_cap(&mut self, id: SubDbId, slot: &mut Slot) -> u32 {
        let mut evicted = 0;
        while let Some(cap) = slot.hard_cap() {
            if slot.items <= cap {
                break;
            }
            let (lo, hi) = subdb_bounds(id);
            let smallest = self.data.keys_range((lo, hi)).next().expect("items > 0");
            self.raw_delete(id, slot, &smallest[4..]);
            evicted += 1;
        }
        evicted
    }

    /// Removes `key`; true if it was there.
    pub fn delete(
        &mut self,
        op: Option<OpCtx<'_>>,
        id: SubDbId,
        key: &[u8],
    ) -> Result<bool, DeleteError> {
        self.once(
            op,
            id,
            |salt| ArgsHasher::new(KIND_DELETE, salt).bytes(key).finish(),
            |o| match o {
                Outcome::Deleted(b) => Some(b),
                _ => None,
            },
            |b| Outcome::Deleted(*b),
            |s| {
                let mut slot = s.live_slot(id).ok_or(DeleteError::UnknownSubDb)?;
                check_key(key, |len, max| DeleteError::KeyTooLarge { len, max })?;
                if slot.frozen {
                    return Err(DeleteError::WritesPaused);
                }
                let existed = s.raw_delete(id, &mut slot, key);
                if existed {
                    s.slots.set(id as u64, &slot);
                }
                Ok(existed)
            },
        )
    }

    pub fn get(&self, id: SubDbId, key: &[u8]) -> Result<Option<Vec<u8>>, GetError> {
        self.live_slot(id).ok_or(GetError::UnknownSubDb)?;
        check_key(key, |len, max| GetError::KeyTooLarge { len, max })?;
        Ok(self.data.get(&scoped_key(id, key)))
    }

    pub fn has(&self, id: SubDbId, key: &[u8]) -> Result<bool, GetError> {
        self.live_slot(id).ok_or(GetError::UnknownSubDb)?;
        check_key(key, |len, max| GetError::KeyTooLarge { len, max })?;
        Ok(self.data.contains_key(&scoped_key(id, key)))
    }

    /// One page of an ordered scan; see [`ScanArgs`] for the contract.
    pub fn scan(&self, id: SubDbId, args: &ScanArgs) -> Result<ScanPage, ScanError> {
        self.live_slot(id).ok_or(ScanError::UnknownSubDb)?;
        let limit = args.limit.unwrap_or(DEFAULT_SCAN_ITEMS);
        if limit == 0 || args.max_bytes == Some(0) {
            return Err(ScanError::ZeroLimit);
        }
        if limit > MAX_SCAN_ITEMS {
            return Err(ScanError::LimitTooLarge {
                requested: limit,
                max: MAX_SCAN_ITEMS,
            });
        }
        let budget = args
            .max_bytes
            .map_or(REPLY_BUDGET_BYTES, |b| (b as usize).min(REPLY_BUDGET_BYTES));
        for k in [&args.start, &args.end, &args.cursor].into_iter().flatten() {
            check_key(k, |len, max| ScanError::KeyTooLarge { len, max })?;
        }
        if let (Some(s), Some(e)) = (&args.start, &args.end) {
            if s > e {
                return Err(ScanError::InvalidRange);
            }
        }
        let (sub_lo, sub_hi) = subdb_bounds(id);
        let mut lo = match &args.start {
            Some(s) => Bound::Included(scoped_key(id, s)),
            None => sub_lo,
        };
        let mut hi = match &args.end {
            Some(e) => Bound::Excluded(scoped_key(id, e)),
            None => sub_hi,
        };
        if let Some(c) = &args.cursor {
            let in_range = args.start.as_ref().is_none_or(|s| c >= s)
                && args.end.as_ref().is_none_or(|e| c < e);
            if !in_range {
                return Err(ScanError::InvalidCursor);
            }
            let c = Bound::Excluded(scoped_key(id, c));
            if args.reverse {
                hi = c;
            } else {
                lo = c;
            }
        }
        let range = self.data.range((lo, hi));
        let iter: Box<dyn Iterator<Item = _>> = if args.reverse {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let mut page = ScanPage::default();
        let mut used = 0usize;
        for e in iter {
            // Another item exists: stop here if the page is full, leaving a cursor.
            if page.entries.len() as u32 >= limit {
                page.next = page.entries.last().map(|l| l.key.clone());
                break;
            }
            let key = &e.key()[4..];
            let value = e.value();
            let cost = item_cost(key, &value);
            if !page.entries.is_empty() && used + cost > budget {
                page.next = page.entries.last().map(|l| l.key.clone());
                break;
            }
            used += cost;
            page.entries.push(Entry {
                key: ByteBuf::from(key.to_vec()),
                value: ByteBuf::from(value),
            });
        }
        Ok(page)
    }

    // ---- export / import ------------------------------------------------------------------

    /// Exports the next chunk of a live SubDB: its items in key order, then its op-log
    /// records. Pass the returned token back for the following chunk; `None` means this was
    /// the last. A chunk counts at most `budget` bytes (see [`Chunk::budget_bytes`]) unless a
    /// single item alone is larger; chunk 0 carries the header.
    pub fn export_chunk(
        &mut self,
        id: SubDbId,
        seq: u64,
        token: Option<&[u8]>,
        budget: usize,
    ) -> Result<(Chunk, Option<Vec<u8>>), ExportError> {
        let slot = self.live_slot(id).ok_or(ExportError::UnknownSubDb)?;
        self.check_log(id)?;
        let token = match token {
            None => ExportToken::Items(None),
            Some(t) => ExportToken::decode(t).ok_or(ExportError::InvalidToken)?,
        };
        let mut chunk = Chunk {
            seq,
            ..Chunk::default()
        };
        if seq == 0 {
            chunk.header = Some(ChunkHeader {
                hard_cap: slot.hard_cap(),
                meta: ByteBuf::from(self.meta(id).unwrap_or_default()),
                items: slot.items,
                bytes: slot.bytes,
            });
        }
        let mut used = chunk.budget_bytes();
        if let ExportToken::Items(after) = &token {
            let (sub_lo, hi) = subdb_bounds(id);
            let lo = match after {
                Some(k) => Bound::Excluded(scoped_key(id, k)),
                None => sub_lo,
            };
            for e in self.data.range((lo, hi)) {
                let key = &e.key()[4..];
                let value = e.value();
                let cost = item_cost(key, &value);
                if used + cost > budget && !(chunk.puts.is_empty() && chunk.ops.is_empty()) {
                    let last = key_before_next(&chunk);
                    if slot.exporting {
                        self.advance_frontier(id, Some(&last));
                    }
                    let next = ExportToken::Items(Some(last));
                    return Ok((chunk, Some(next.encode())));
                }
                used += cost;
                chunk.puts.push(Entry {
                    key: ByteBuf::from(key.to_vec()),
                    value: ByteBuf::from(value),
                });
            }
        }
        let from = match token {
            ExportToken::Ops(c) => c,
            ExportToken::Items(_) => {
                // The items are all out: every later item write is a change to ship.
                if slot.exporting {
                    self.advance_frontier(id, None);
                }
                OpsCursor {
                    gen: 0,
                    after: None,
                }
            }
        };
        let next = self
            .ops
            .export(id, &from, OPS_SCAN_PER_CHUNK, |op_id, rec| {
                let cost = op_id.len() + rec.len() + ITEM_OVERHEAD_BYTES;
                if used + cost > budget && !(chunk.puts.is_empty() && chunk.ops.is_empty()) {
                    return false;
                }
                used += cost;
                chunk.ops.push(OpEntry {
                    op_id: ByteBuf::from(op_id.to_vec()),
                    record: ByteBuf::from(rec.to_vec()),
                });
                true
            });
        if let Some(c) = next {
            return Ok((chunk, Some(ExportToken::Ops(c).encode())));
        }
        Ok((chunk, None))
    }

    // ---- live-move change tracking -----------------------------------------------------

    /// Starts tracking changes to a live SubDB that is about to be copied away: from now on a
    /// write to a key the copy already passed, and every op-log record of the SubDB, is logged
    /// until [`Store::export_delta`] has shipped it and the shipment is acknowledged.
    /// Idempotent; restarting after an abort starts from scratch.
    pub fn begin_export(&mut self, id: SubDbId) -> Result<(), ExportError> {
        let mut slot = self.live_slot(id).ok_or(ExportError::UnknownSubDb)?;
        if !slot.exporting {
            slot.exporting = true;
            self.slots.set(id as u64, &slot);
        }
        Ok(())
    }

    /// Ends a live SubDB's write pause and its change tracking, if any: a move's target once
    /// the index routes to it, or a source whose move was called off (its change log and copy
    /// frontier are dropped; a later `begin_export` starts from scratch). False if not live.
    pub fn resume_writes(&mut self, id: SubDbId) -> bool {
        let Some(mut slot) = self.live_slot(id) else {
            return false;
        };
        if slot.exporting || slot.frozen {
            let exporting = slot.exporting;
            slot.exporting = false;
            slot.frozen = false;
            self.slots.set(id as u64, &slot);
            if exporting {
                self.clear_export_state(id);
            }
        }
        true
    }

    pub fn is_exporting(&self, id: SubDbId) -> bool {
        self.live_slot(id).is_some_and(|s| s.exporting)
    }

    /// Changes logged and not yet acknowledged, for one SubDB.
    pub fn pending_changes(&self, id: SubDbId) -> u64 {
        let (lo, hi) = (log_key(id, 0), log_key(id, u64::MAX));
        self.dirty_log.keys_range(lo..=hi).count() as u64
    }

    /// Forgets a SubDB's copy frontier and its logged changes: at most `MAX_EXPORT_CHANGES`,
    /// all there can be, so one message does it.
    fn clear_export_state(&mut self, id: SubDbId) {
        self.frontiers.remove(&id);
        self.drop_changes(id, MAX_EXPORT_CHANGES as usize);
    }

    /// Forgets up to `max` logged changes of `id`; returns how many it forgot.
    fn drop_changes(&mut self, id: SubDbId, max: usize) -> usize {
        let logged: Vec<(Vec<u8>, Vec<u8>)> = self
            .dirty_log
            .range(log_key(id, 0)..=log_key(id, u64::MAX))
            .take(max)
            .map(|e| e.into_pair())
            .collect();
        for (lk, tagged) in &logged {
            self.dirty_log.remove(lk);
            self.dirty_keys.remove(&scoped_key(id, tagged));
        }
        logged.len()
    }

    /// True when no change of `id` is logged any more.
    fn pending_changes_any(&self, id: SubDbId) -> bool {
        self.dirty_log
            .keys_range(log_key(id, 0)..=log_key(id, u64::MAX))
            .next()
            .is_none()
    }

    /// `ChangeLogFull` once the SubDB's change log overflowed (see [`FRONTIER_OVERFLOWED`]).
    fn check_log(&self, id: SubDbId) -> Result<(), ExportError> {
        match self.frontiers.get(&id) {
            Some(f) if f.first() == Some(&FRONTIER_OVERFLOWED) => Err(ExportError::ChangeLogFull {
                max: MAX_EXPORT_CHANGES,
            }),
            _ => Ok(()),
        }
    }

    /// Records that the copy has exported items up to `last` (`None`: all of them).
    fn advance_frontier(&mut self, id: SubDbId, last: Option<&[u8]>) {
        let current = self.frontiers.get(&id);
        let new = match last {
            None => vec![2],
            Some(k) => match &current {
                Some(c) if c[0] != 1 || &c[1..] >= k => return,
                _ => [&[1u8][..], k].concat(),
            },
        };
        if current.as_ref() != Some(&new) {
            self.frontiers.insert(id, new);
        }
    }

    /// Logs a write to `key` of an exporting SubDB when the copy has already passed it.
    fn track(&mut self, id: SubDbId, slot: &Slot, key: &[u8]) {
        if !slot.exporting {
            return;
        }
        let covered = match self.frontiers.get(&id) {
            None => false,
            Some(f) => f[0] == 2 || (f[0] == 1 && key <= &f[1..]),
        };
        if covered {
            self.mark_dirty(id, DIRTY_ITEM, key);
        }
    }

    fn mark_dirty(&mut self, id: SubDbId, tag: u8, key: &[u8]) {
        let mut tagged = vec![tag];
        tagged.extend_from_slice(key);
        let frontier = self.frontiers.get(&id);
        if frontier.as_ref().and_then(|f| f.first()) == Some(&FRONTIER_OVERFLOWED) {
            return;
        }
        if self.dirty_log.len() >= MAX_EXPORT_CHANGES
            && !self.dirty_keys.contains_key(&scoped_key(id, &tagged))
        {
            // The log is full: stop logging this SubDB; its export now answers
            // `ChangeLogFull` and the index calls the move off (`resume_writes` drops the log).
            self.frontiers.insert(id, vec![FRONTIER_OVERFLOWED]);
            return;
        }
        let mut h = *self.header.get();
        h.dirty_version += 1;
        let version = h.dirty_version;
        self.header.set(h);
        if let Some(old) = self.dirty_keys.insert(scoped_key(id, &tagged), version) {
            self.dirty_log.remove(&log_key(id, old));
        }
        self.dirty_log.insert(log_key(id, version), tagged);
    }

    /// Ships logged changes, oldest first, as one chunk of at most `budget` bytes (unless one
    /// change alone is larger): the current value of each changed key (a delete if it is gone)
    /// and each new op-log record. Changes up to `ack` — the version of the last delta the
    /// target applied — are forgotten first; nothing is forgotten before it is acknowledged, so
    /// a lost chunk is simply shipped again. With `freeze`, writes pause first (the cutover).
    pub fn export_delta(
        &mut self,
        id: SubDbId,
        seq: u64,
        ack: u64,
        budget: usize,
        freeze: bool,
    ) -> Result<Delta, ExportError> {
        let mut slot = self.live_slot(id).ok_or(ExportError::UnknownSubDb)?;
        if !slot.exporting {
            return Err(ExportError::NotExporting);
        }
        self.check_log(id)?;
        if freeze && !slot.frozen {
            slot.frozen = true;
            self.slots.set(id as u64, &slot);
        }
        let acked: Vec<(Vec<u8>, Vec<u8>)> = self
            .dirty_log
            .range(log_key(id, 0)..=log_key(id, ack))
            .map(|e| e.into_pair())
            .collect();
        for (lk, tagged) in acked {
            self.dirty_log.remove(&lk);
            let dk = scoped_key(id, &tagged);
            let version = u64::from_be_bytes(lk[4..].try_into().unwrap());
            if self.dirty_keys.get(&dk) == Some(version) {
                self.dirty_keys.remove(&dk);
            }
        }
        let mut chunk = Chunk {
            seq,
            ..Chunk::default()
        };
        if freeze {
            // The last word on the SubDB's own settings too: its metadata (access lists) may
            // have changed since chunk 0 carried it, and nothing changes it once frozen.
            chunk.header = Some(ChunkHeader {
                hard_cap: slot.hard_cap(),
                meta: ByteBuf::from(self.meta(id).unwrap_or_default()),
                items: slot.items,
                bytes: slot.bytes,
            });
        }
        let mut version = ack;
        let mut used = chunk.budget_bytes();
        let mut more = false;
        for (examined, e) in self
            .dirty_log
            .range(log_key(id, ack.saturating_add(1))..=log_key(id, u64::MAX))
            .enumerate()
        {
            if examined == DELTA_SCAN_PER_CHUNK {
                more = true;
                break;
            }
            let tagged = e.value();
            let (tag, key) = (tagged[0], &tagged[1..]);
            let change = if tag == DIRTY_OP {
                // An op record forgotten by the op-log window meanwhile ships as nothing.
                self.ops.record_of(id, key).map(|rec| {
                    Change::Op(OpEntry {
                        op_id: ByteBuf::from(key.to_vec()),
                        record: ByteBuf::from(rec),
                    })
                })
            } else {
                Some(match self.data.get(&scoped_key(id, key)) {
                    Some(v) => Change::Put(Entry {
                        key: ByteBuf::from(key.to_vec()),
                        value: ByteBuf::from(v),
                    }),
                    None => Change::Delete(ByteBuf::from(key.to_vec())),
                })
            };
            let cost = change.as_ref().map_or(0, Change::cost);
            if version > ack && used + cost > budget {
                more = true;
                break;
            }
            used += cost;
            match change {
                Some(Change::Put(e)) => chunk.puts.push(e),
                Some(Change::Delete(k)) => chunk.deletes.push(k),
                Some(Change::Op(o)) => chunk.ops.push(o),
                None => {}
            }
            version = u64::from_be_bytes(e.key()[4..].try_into().unwrap());
        }
        Ok(Delta {
            chunk,
            version,
            more,
        })
    }

    /// Opens a SubDB that will receive a moved SubDB's chunks. It stays invisible to reads
    /// and writes until [`Store::finish_import`].
    pub fn begin_import(&mut self) -> SubDbId {
        self.new_slot(Slot::new(SlotState::Importing, None), &[])
    }

    /// Applies one chunk to an importing SubDB. Chunks apply in order; a chunk whose number
    /// was already applied is accepted and changes nothing.
    pub fn import_chunk(&mut self, id: SubDbId, chunk: &Chunk) -> Result<(), ImportError> {
        let mut slot = match self.slot(id) {
            Some(s) if s.state == SlotState::Importing => s,
            // A finished import still accepts a repeat of a chunk it applied (a retried final
            // chunk), and nothing new.
            Some(s) if s.state == SlotState::Live && chunk.seq < s.import_seq => return Ok(()),
            Some(s) if s.state == SlotState::Live => return Err(ImportError::AlreadyFinished),
            _ => return Err(ImportError::UnknownImport),
        };
        if chunk.seq < slot.import_seq {
            return Ok(());
        }
        if chunk.seq > slot.import_seq {
            return Err(ImportError::ChunkOutOfOrder {
                expected: slot.import_seq,
                got: chunk.seq,
            });
        }
        validate_chunk(chunk)?;
        if let Some(h) = &chunk.header {
            slot.hard_cap = h.hard_cap.unwrap_or(0);
            self.meta.insert(id, h.meta.to_vec());
        }
        for e in &chunk.puts {
            self.raw_put(id, &mut slot, &e.key, &e.value);
        }
        for k in &chunk.deletes {
            self.raw_delete(id, &mut slot, k);
        }
        for o in &chunk.ops {
            self.ops.import(&self.header, id, &o.op_id, &o.record);
        }
        slot.import_seq += 1;
        self.slots.set(id as u64, &slot);
        Ok(())
    }

    /// Makes an imported SubDB live, with writes paused (see [`Store::resume_writes`]).
    /// Idempotent.
    pub fn finish_import(&mut self, id: SubDbId) -> Result<SubDbStats, ImportError> {
        let mut slot = match self.slot(id) {
            Some(s) if s.state == SlotState::Importing => s,
            Some(s) if s.state == SlotState::Live => return Ok(self.stats(id).unwrap()),
            _ => return Err(ImportError::UnknownImport),
        };
        slot.state = SlotState::Live;
        // Live for reads, but writes stay paused until the index, having routed the SubDB
        // here, calls `resume_writes`: the source still serves until then.
        slot.frozen = true;
        self.slots.set(id as u64, &slot);
        self.totals.live_subdbs += 1;
        Ok(self.stats(id).unwrap())
    }

    /// Abandons an import, reclaiming what arrived — also a finished one whose writes were
    /// never resumed (live, paused, and not exporting: nobody routes to it yet, since the index
    /// resumes its writes only after routing there).
    pub fn abort_import(&mut self, id: SubDbId) -> Result<(), ImportError> {
        match self.slot(id) {
            Some(mut s)
                if s.state == SlotState::Importing
                    || (s.state == SlotState::Live && s.frozen && !s.exporting) =>
            {
                self.discard(id, &mut s);
                Ok(())
            }
            Some(s) if s.state == SlotState::Live => Err(ImportError::AlreadyFinished),
            _ => Err(ImportError::UnknownImport),
        }
    }

    /// Removes a live SubDB that moved away (the index owns its new home). Same reclaiming
    /// as a delete, without an op id and regardless of the write pause.
    pub fn release(&mut self, id: SubDbId) -> bool {
        match self.live_slot(id) {
            Some(mut s) => {
                self.discard(id, &mut s);
                true
            }
            None => false,
        }
    }
}

fn validate_chunk(chunk: &Chunk) -> Result<(), ImportError> {
    if let Some(h) = &chunk.header {
        if h.meta.len() > MAX_SUBDB_META_BYTES {
            return Err(ImportError::MetaTooLarge {
                len: h.meta.len() as u64,
                max: MAX_SUBDB_META_BYTES as u64,
            });
        }
    }
    for k in chunk.puts.iter().map(|e| &e.key).chain(&chunk.deletes) {
        check_key(k, |len, max| ImportError::KeyTooLarge { len, max })?;
    }
    for o in &chunk.ops {
        let ok_id = (OP_ID_MIN_BYTES..=OP_ID_MAX_BYTES).contains(&o.op_id.len());
        if !ok_id || !oplog::OpRecord::is_well_formed(&o.record) {
            return Err(ImportError::MalformedOpRecord);
        }
    }
    if let Some(e) = chunk.puts.iter().find(|e| e.value.len() > MAX_VALUE_BYTES) {
        return Err(ImportError::ValueTooLarge {
            len: e.value.len() as u64,
            max: MAX_VALUE_BYTES as u64,
        });
    }
    Ok(())
}

fn key_before_next(chunk: &Chunk) -> Vec<u8> {
    chunk
        .puts
        .last()
        .map(|e| e.key.to_vec())
        .unwrap_or_default()
}

/// Where an export resumes: after an item key, or in the op log.
enum ExportToken {
    Items(Option<Vec<u8>>),
    Ops(OpsCursor),
}

impl ExportToken {
    fn encode(&self) -> Vec<u8> {
        match self {
            ExportToken::Items(None) => vec![0],
            ExportToken::Items(Some(k)) => [&[1u8][..], k].concat(),
            ExportToken::Ops(OpsCursor { gen, after: None }) => vec![2, *gen],
            ExportToken::Ops(OpsCursor {
                gen,
                after: Some(k),
            }) => [&[3u8, *gen][..], k].concat(),
        }
    }

    fn decode(b: &[u8]) -> Option<ExportToken> {
        let ops = |gen: u8, after| (gen < 2).then_some(ExportToken::Ops(OpsCursor { gen, after }));
        match (*b.first()?, &b[1..]) {
            (0, []) => Some(ExportToken::Items(None)),
            (1, k) if k.len() <= MAX_KEY_BYTES => Some(ExportToken::Items(Some(k.to_vec()))),
            (2, [gen]) => ops(*gen, None),
            (3, [gen, k @ ..]) if !k.is_empty() && k.len() <= OP_ID_MAX_BYTES => {
                ops(*gen, Some(k.to_vec()))
            }
            _ => None,
        }
    }
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
