//! Every stable-memory region of the index canister, by name. Never renumber; only add.

use ic_stable_structures::memory_manager::MemoryId;

/// Configuration, admins, counters, wasm pointers (`StableCell<Config>`).
pub const CONFIG: MemoryId = MemoryId::new(0);
/// Outer key → directory entry (`StableBTreeMap<OuterKey, DirEntry>`).
pub const DIRECTORY: MemoryId = MemoryId::new(1);
/// Partition canister id → registry record.
pub const REGISTRY: MemoryId = MemoryId::new(2);
/// Op id → index operation record (create/delete SubDB), bounded.
pub const OPS: MemoryId = MemoryId::new(3);
/// Op-record sequence number → op id: eviction order of `OPS`.
pub const OPS_ORDER: MemoryId = MemoryId::new(4);
/// Outer keys whose create or delete awaits a partition's answer.
pub const PENDING: MemoryId = MemoryId::new(5);
/// Background jobs (partition creation), by job id.
pub const JOBS: MemoryId = MemoryId::new(6);
/// Calls in flight, by call id, with what their reply is for.
pub const INFLIGHT: MemoryId = MemoryId::new(7);
/// Two slots for the partition wasm: the active module and an upload in progress.
pub const WASM_SLOT_A: MemoryId = MemoryId::new(8);
pub const WASM_SLOT_B: MemoryId = MemoryId::new(9);
/// Moves in progress, by outer key.
pub const MOVES: MemoryId = MemoryId::new(10);
/// The chunk of each move that is between source and target (persisted so a lost call never
/// loses data: it is re-sent as is).
pub const MOVE_CHUNKS: MemoryId = MemoryId::new(11);
/// Inner key (partition ++ local id BE) → outer key, to name the SubDBs a partition reports.
pub const REVERSE: MemoryId = MemoryId::new(12);
/// Calls in flight by purpose (purpose key ++ call id → nothing): "is a call in flight for X"
/// is one range probe (`inflight.rs`). Kept in step with `INFLIGHT`.
pub const INFLIGHT_BY_PURPOSE: MemoryId = MemoryId::new(13);
/// Owner → SubDBs it owns, creates in progress included (the per-owner quota, `quotas.rs`).
pub const OWNERS: MemoryId = MemoryId::new(14);
/// Principals allowed to create SubDBs under the `AllowList` policy (`quotas.rs`).
pub const CREATORS: MemoryId = MemoryId::new(15);
/// Called-off moves' partial imports whose `abort_import` awaits the target, by the move's op
/// id (`reclaims.rs`).
pub const RECLAIMS: MemoryId = MemoryId::new(16);
/// Partitions a fleet upgrade has still to do or is doing, and their step (`upgrades.rs`).
pub const UPGRADES: MemoryId = MemoryId::new(17);
/// Owner ++ outer key → nothing (`quotas::owned_key`): the names each principal owns, creates
/// in progress included, so `routes` lists a non-admin's own SubDBs without walking the whole
/// directory. Kept in step with `OWNERS`; backfilled from the directory by `Index::open` for
/// an index written before it existed.
pub const OWNED_KEYS: MemoryId = MemoryId::new(18);
