//! Every stable-memory region of a partition canister, by name.
//!
//! The partition canister hands one `MemoryManager` virtual memory per id to the store and to
//! its own state. Ids are part of the persisted layout: never renumber one, only add.

use ic_stable_structures::memory_manager::MemoryId;

/// Store header: magic, layout version, op-log configuration (`StableCell`).
pub const STORE_HEADER: MemoryId = MemoryId::new(0);
/// Fixed-size per-SubDB counters indexed by local SubDB id (`StableVec<Slot>`).
pub const SUBDB_SLOTS: MemoryId = MemoryId::new(1);
/// Opaque per-SubDB metadata blobs: owner and access lists (`StableBTreeMap<u32, Vec<u8>>`).
pub const SUBDB_META: MemoryId = MemoryId::new(2);
/// All items of all SubDBs, keyed by `subdb id (4 bytes BE) ++ key` (`StableBTreeMap`).
pub const DATA: MemoryId = MemoryId::new(3);
/// The two generations of the op-id log of store layout version 1 (`StableBTreeMap<OpKey,
/// OpRecord>` each). Retired: `Store::init` moves their records into `OPS_LOG_A` and
/// `OPS_LOG_B` and clears them; a store created by version 2 never opens them.
pub const OPS_GEN_A: MemoryId = MemoryId::new(4);
pub const OPS_GEN_B: MemoryId = MemoryId::new(5);
/// Partition-level state kept beside the store (index principal, tombstones of moved SubDBs).
pub const PARTITION_STATE: MemoryId = MemoryId::new(8);
pub const PARTITION_TOMBSTONES: MemoryId = MemoryId::new(9);
/// Partition layer: `begin_import` op id → the SubDB id it opened, so a retry opens nothing new.
pub const PARTITION_IMPORTS: MemoryId = MemoryId::new(10);
/// Live-move change tracking of SubDBs being exported (see `Store::begin_export`):
/// how far the copy got, per SubDB (`StableBTreeMap<u32, Vec<u8>>`),
pub const EXPORT_FRONTIER: MemoryId = MemoryId::new(11);
/// changed keys and op ids → the version of their latest change,
pub const DIRTY_KEYS: MemoryId = MemoryId::new(12);
/// and the same changes in version order, so deltas ship oldest first.
pub const DIRTY_LOG: MemoryId = MemoryId::new(13);
/// The write budget of each exporting SubDB whose move throttles its writers
/// (`StableBTreeMap<u32, Throttle>`; see `Store::export_delta`).
pub const EXPORT_THROTTLE: MemoryId = MemoryId::new(14);
/// Ids of deleted or released SubDBs whose items are still being reclaimed
/// (`StableBTreeMap<u32, ()>`): `purge_step` visits only these. Backfilled at init from the
/// slots for stores written before it existed.
pub const PURGING: MemoryId = MemoryId::new(15);
/// The two generations of the op-id log (layout version 2): fixed-size records appended in
/// order (`oplog::RECORD_BYTES` each, no structure around them; see `oplog.rs`).
pub const OPS_LOG_A: MemoryId = MemoryId::new(16);
pub const OPS_LOG_B: MemoryId = MemoryId::new(17);
/// Partition layer: the metadata blob (access lists, byte quota) a SubDB had when it moved
/// away, by its old local id (`StableBTreeMap<u32, Vec<u8>>`), so its tombstone answers
/// `Moved` only to callers who could read it. Absent for tombstones written before it existed.
pub const PARTITION_TOMB_ACCESS: MemoryId = MemoryId::new(18);
