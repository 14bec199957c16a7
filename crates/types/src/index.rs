//! The index canister's interface: admins, the directory (outer key → inner key), routing for
//! clients, partition registry and fleet care.

use crate::{CreateSubDbError, DeleteSubDbError, InnerKey, OpId};
use candid::{CandidType, Principal};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use thiserror::Error;

/// Install argument of the index.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexInit {
    pub admins: Vec<Principal>,
    /// Spare partitions kept ready (default 1, at most `limits::MAX_SPARE_POOL_TARGET`).
    pub spare_pool_target: Option<u32>,
    /// A partition holding more than this many bytes sheds SubDBs (default 1 GiB).
    pub move_cap_bytes: Option<u64>,
    /// Cycles attached to each partition's creation (default 1 T); the IC takes its creation
    /// fee (500 B on a 13-node subnet) out of them, and the partition starts with the rest.
    pub partition_cycles: Option<u128>,
    /// A partition whose balance is below this is topped up (default 500 B).
    pub cycles_threshold: Option<u128>,
    /// A partition topped up is brought to this balance (default 1 T; at least the
    /// threshold).
    pub cycles_target: Option<u128>,
    /// The index never spends its own balance below this: no top-up and no new partition
    /// that would take it under (default 1 T).
    pub cycles_reserve: Option<u128>,
    /// Who may create SubDBs (default `Open`).
    pub create_policy: Option<CreatePolicy>,
    /// SubDBs one principal may own at once (default 10,000).
    pub max_subdbs_per_owner: Option<u64>,
    /// Byte quota (keys plus values) of each new SubDB, enforced by its partition (default
    /// 1 GiB, at least 1). A principal may so hold at most `max_subdbs_per_owner` × this.
    pub max_bytes_per_subdb: Option<u64>,
}

/// Who may create SubDBs. Admins always may.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CreatePolicy {
    /// Every signed-in principal.
    #[default]
    Open,
    /// The principals on the allow-list (`allow_creators`, `disallow_creators`).
    AllowList,
}

/// Argument of `update_settings` (admins only): each field given replaces the current value;
/// the others stay. Checked as a whole: nothing changes unless every field is valid.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexSettings {
    /// At most `limits::MAX_SPARE_POOL_TARGET`.
    pub spare_pool_target: Option<u32>,
    /// At least 1.
    pub move_cap_bytes: Option<u64>,
    /// Cycles attached to each new partition's creation.
    pub partition_cycles: Option<u128>,
    /// A partition below this is topped up.
    pub cycles_threshold: Option<u128>,
    /// The balance a top-up brings a partition to: at least the threshold (the new one, when both are given).
    pub cycles_target: Option<u128>,
    /// The index never spends its own balance below this.
    pub cycles_reserve: Option<u128>,
    /// Who may create SubDBs.
    pub create_policy: Option<CreatePolicy>,
    /// SubDBs one principal may own at once; owners already past a lowered quota keep theirs
    /// but create no more.
    pub max_subdbs_per_owner: Option<u64>,
    /// Byte quota of each SubDB created from now on (at least 1). SubDBs created before keep
    /// the quota they were created with.
    pub max_bytes_per_subdb: Option<u64>,
}

/// The error of `update_settings`.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum SettingsError {
    #[error("only an admin may do this")]
    NotAuthorized,
    #[error("a spare pool of {value}; the limit is {max}")]
    TooManySpares { value: u32, max: u32 },
    #[error("the move cap must be at least 1 byte")]
    ZeroMoveCap,
    #[error("the top-up target {target} is below the threshold {threshold}")]
    TargetBelowThreshold { target: u128, threshold: u128 },
    #[error("the byte quota of a SubDB must be at least 1 byte")]
    ZeroByteQuota,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CreateRequest {
    pub outer_key: String,
    pub op_id: OpId,
    pub hard_cap: Option<u64>,
    /// The owner; only an admin may name someone other than the caller.
    pub owner: Option<Principal>,
    pub readers: Vec<Principal>,
    pub writers: Vec<Principal>,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum CreateError {
    #[error("outer key is {len} bytes; it must be 1 to {max}")]
    InvalidOuterKey { len: u64, max: u64 },
    #[error("the outer key is taken")]
    OuterKeyTaken,
    #[error("operation id is {len} bytes; it must be 16 to 32 bytes")]
    InvalidOpId { len: u32 },
    #[error("this operation id was used with different arguments")]
    OpIdConflict,
    #[error("the caller may not create this SubDB")]
    NotAuthorized,
    #[error("an access list has {len} principals; the limit is {max}")]
    TooManyPrincipals { len: u64, max: u64 },
    #[error("no partition wasm has been uploaded to the index")]
    NoPartitionWasm,
    #[error("no partition has room yet; one is being created, retry shortly")]
    NoCapacity,
    /// No partition has room, and the index cannot pay for a new one without going under its
    /// cycles reserve: nothing is created until an operator tops the index up.
    #[error("no partition has room, and the index is too low on cycles to create one ({balance} cycles, a partition needs {needed} above the reserve)")]
    IndexLowOnCycles { balance: u128, needed: u128 },
    #[error("a call with this operation id is still in progress; retry shortly")]
    InProgress,
    #[error("the partition could not be reached: {reason}")]
    PartitionUnavailable { reason: String },
    #[error("the partition refused: {0}")]
    Partition(CreateSubDbError),
    /// The index's policy is `AllowList` and the caller is neither on it nor an admin.
    #[error("only principals on the index's allow-list may create SubDBs")]
    NotAllowedToCreate,
    /// The owner already owns `max` SubDBs (creates in progress included).
    #[error("the owner already has {max} SubDBs, the most one principal may own")]
    SubDbQuotaExceeded { max: u64 },
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DeleteRequest {
    pub outer_key: String,
    pub op_id: OpId,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum DeleteSubDbRequestError {
    #[error("no SubDB has this outer key")]
    UnknownOuterKey,
    #[error("only the owner or an admin may delete a SubDB")]
    NotAuthorized,
    #[error("operation id is {len} bytes; it must be 16 to 32 bytes")]
    InvalidOpId { len: u32 },
    #[error("this operation id was used with different arguments")]
    OpIdConflict,
    #[error("the SubDB is busy (being created, moved or deleted); retry shortly")]
    InProgress,
    #[error("the partition could not be reached: {reason}")]
    PartitionUnavailable { reason: String },
    #[error("the partition refused: {0}")]
    Partition(DeleteSubDbError),
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub outer_key: String,
    pub inner: InnerKey,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutesRequest {
    pub start_after: Option<String>,
    pub limit: Option<u32>,
}

/// One page of the routing snapshot. `version` grows with every directory change; a client
/// whose cached version equals it knows its cache is current.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutesPage {
    pub version: u64,
    pub routes: Vec<Route>,
    pub next: Option<String>,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum RouteError {
    #[error("asked for {len} routes at once; the limit is {max}")]
    TooMany { len: u64, max: u64 },
}

#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionState {
    /// Created and installed, holding no SubDB yet, kept for quick placement.
    Spare,
    /// Takes new SubDBs while under the move cap.
    Active,
    /// Over the move cap: takes no new SubDBs.
    Full,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub id: Principal,
    pub state: PartitionState,
    pub bytes: u64,
    pub items: u64,
    pub subdbs: u64,
    pub stable_memory_bytes: u64,
    /// Index time (ns) of the last stats refresh; 0 = never.
    pub stats_at: u64,
    pub created_at: u64,
    /// Cycle balance at the last status check (`canister_status`); none before the first.
    pub cycles: Option<u128>,
    /// Index time (ns) of that check; 0 = never.
    pub cycles_at: u64,
    /// Cycles the index has sent it in top-ups, in all.
    pub topped_up: u128,
    /// SHA-256 of the module it runs, as the index last learned it (installed by a creation
    /// job, or checked with `canister_status` by a fleet upgrade); none if unknown.
    pub module: Option<ByteBuf>,
    /// How its calls fare: an unhealthy partition is chosen neither for new SubDBs nor as a
    /// move's target (none from an index built before partition health).
    pub health: Option<PartitionHealth>,
}

/// A partition's health as the index sees it from the calls it makes to it (index
/// `health.rs`, `docs/index.md`).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionHealth {
    /// Consecutive failed calls to it, imports aside (rejected, trapped, reply lost); any
    /// answer resets them.
    pub failed_calls: u32,
    /// Consecutive failed import calls to it (`begin_import`, `import_chunk`); an answered
    /// import call resets them.
    pub failed_imports: u32,
    /// Unreachable since (ns): `failed_calls` reached the limit. Cleared by any answer.
    pub unreachable_since: Option<u64>,
    /// Refuses imports until (ns): `failed_imports` reached the limit. Chosen as a target
    /// again from then on, or as soon as an import call to it is answered.
    pub imports_refused_until: Option<u64>,
}

/// The index's cycles care: its settings, its own balance and what it has spent.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct CyclesStats {
    /// The index's own balance at its last timer run (ns in `balance_at`).
    pub balance: u128,
    pub balance_at: u64,
    pub threshold: u128,
    pub target: u128,
    pub reserve: u128,
    /// Cycles attached to each partition's creation (the creation fee included).
    pub partition_cycles: u128,
    /// The balance is too low to create a partition without going under the reserve:
    /// creation jobs wait, and creates that need a new partition fail with
    /// `IndexLowOnCycles`.
    pub low: bool,
    /// Top-ups confirmed, in all.
    pub top_ups: u64,
    /// Cycles sent in those top-ups, in all.
    pub topped_up: u128,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct WasmInfo {
    pub len: u64,
    pub sha256: ByteBuf,
}

/// A SubDB move in progress.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MoveInfo {
    pub outer_key: String,
    pub source: InnerKey,
    pub target: Principal,
    /// begin-import, begin-export, copy, delta, cutover, finish, release, activate, or, for a
    /// move being called off, unwind then abort.
    pub phase: String,
    /// Consecutive failed calls (at `limits::MAX_MOVE_FAILURES` the move is called off).
    pub failures: u32,
    /// Chunks applied by the target so far.
    pub chunks: u64,
    /// Size of the SubDB when the move began, from its partition's stats; 0 for a move an
    /// admin started with `move_subdb` (the index keeps no per-SubDB sizes).
    pub bytes: u64,
    pub started_at: u64,
    /// Delta chunks applied so far (cutover attempts that did not freeze included).
    pub delta_rounds: u32,
    /// The source throttles the SubDB's writers: its deltas did not converge within
    /// `MAX_DELTA_ROUNDS` rounds, so each delta round admits a bounded budget of writes (the
    /// rest answer `WritesPaused`) until the rest fits one chunk and the source freezes.
    pub throttled: bool,
    /// Index time (ns) the source's freeze was confirmed: writes to the SubDB are paused
    /// since (until the target's, or for a move called off the source's, writes resume).
    pub paused_at: Option<u64>,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct IndexStats {
    pub routing_version: u64,
    pub subdbs: u64,
    pub partitions: Vec<PartitionInfo>,
    pub spare_pool_target: u32,
    pub move_cap_bytes: u64,
    pub partitions_being_created: u32,
    pub partition_wasm: Option<WasmInfo>,
    pub admins: Vec<Principal>,
    pub moves: Vec<MoveInfo>,
    /// The longest write pause of any move so far, in ns of index time: from the confirmed
    /// freeze of the source to the confirmed resume of writes (at the target, or at the
    /// source of a move called off). 0 before the first.
    pub longest_write_pause_ns: u64,
    pub cycles: CyclesStats,
    /// Who may create SubDBs, the principals on the allow-list, and the SubDB quota.
    pub create_policy: CreatePolicy,
    pub allowed_creators: u64,
    pub max_subdbs_per_owner: u64,
    /// Partitions and moves in all: `partitions` lists at most
    /// `limits::MAX_STATS_PARTITIONS` (the oldest; page the rest with the `partitions` query),
    /// `moves` at most `limits::MAX_STATS_MOVES`.
    pub partitions_total: u64,
    pub moves_total: u64,
    /// The fleet upgrade in progress, or the last one; none before the first.
    pub fleet_upgrade: Option<FleetUpgradeInfo>,
    /// Partial imports of called-off moves whose `abort_import` the target has not answered
    /// yet, retried by the timer with backoff (none from an index built before reclaims).
    pub reclaims_pending: Option<u64>,
    /// Partial imports of called-off moves not recorded for reclaiming because the list was
    /// full: left on their targets (none from an index built before reclaims).
    pub reclaims_dropped: Option<u64>,
    /// The byte quota new SubDBs get.
    pub max_bytes_per_subdb: u64,
    /// Whether the caller is an admin. Others see the figures, but not `admins` nor `moves`
    /// (outer keys): both lists are empty for them (`moves_total` still counts the moves).
    pub caller_is_admin: bool,
}

/// Argument of `partitions`: a page of the registry in creation order.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionsRequest {
    /// The `next` of the previous page; none for the first.
    pub start_after: Option<u64>,
    /// At most `limits::MAX_PARTITIONS_PAGE` (the default).
    pub limit: Option<u32>,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionsPage {
    pub partitions: Vec<PartitionInfo>,
    /// Where the next page starts (the last partition's creation number); none at the end.
    pub next: Option<u64>,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct WasmChunk {
    pub offset: u64,
    pub bytes: ByteBuf,
    pub total_len: u64,
    /// SHA-256 of the whole module; checked when the last byte arrives.
    pub sha256: ByteBuf,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct UploadProgress {
    pub received: u64,
    pub complete: bool,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum UploadWasmError {
    #[error("only an admin may upload the partition wasm")]
    NotAuthorized,
    #[error("module of {len} bytes; the limit is {max}")]
    TooLarge { len: u64, max: u64 },
    #[error("chunk of {len} bytes; the limit is {max}")]
    ChunkTooLarge { len: u64, max: u64 },
    #[error("chunk at offset {got}; offset {expected} is next")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("total length or hash differs from the upload in progress")]
    Mismatch,
    #[error("the module's SHA-256 differs from the announced one")]
    HashMismatch,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum AdminError {
    #[error("only an admin may do this")]
    NotAuthorized,
    #[error("the last admin cannot be removed")]
    LastAdmin,
    #[error("the anonymous principal cannot be an admin")]
    Anonymous,
    #[error("{len} principals in one call; the limit is {max}")]
    TooManyPrincipals { len: u64, max: u64 },
}

/// The error of `cancel_move` (admins call a move off).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum CancelMoveError {
    #[error("only an admin may do this")]
    NotAuthorized,
    #[error("no move of this SubDB is in progress")]
    UnknownMove,
    #[error(
        "the source is released and the directory routes to the target: the move can only complete"
    )]
    TooLate,
}

/// Argument of `move_subdb`: an admin asks the index to move one SubDB now.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MoveRequest {
    pub outer_key: String,
    /// The partition to move it to: a registered partition other than the SubDB's own, not
    /// `Full` (a spare is promoted to active). Without one, the index chooses as for its own
    /// moves: the newest active partition with room, else a spare.
    pub target: Option<Principal>,
}

/// Argument of `upgrade_partitions`: how many partitions are upgraded at once.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct UpgradePartitionsArgs {
    /// 1..=`limits::MAX_UPGRADE_BATCH`; default `limits::DEFAULT_UPGRADE_BATCH`.
    pub batch: Option<u32>,
}

/// The error of `upgrade_partitions`.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum UpgradePartitionsError {
    #[error("only an admin may do this")]
    NotAuthorized,
    #[error("no partition wasm has been uploaded")]
    NoWasm,
    #[error("a fleet upgrade is in progress; wait for it to end")]
    AlreadyRunning,
    #[error("the batch must be between 1 and {max}")]
    BadBatch { max: u32 },
}

/// A partition a fleet upgrade gave up on: it runs the module it ran before (or, if only the
/// last check failed, whichever `partition_module` shows) and was started again.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FailedUpgrade {
    pub partition: Principal,
    /// `stop`, `install`, `start` or `status`.
    pub step: String,
    /// The last failure's text (at most `limits::MAX_UPGRADE_MESSAGE_BYTES`).
    pub message: String,
}

/// A partition being upgraded now, and its step: `drain` (waiting for its moves to end),
/// `stop`, `install`, `start` or `status` (checking the module it runs).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct UpgradingPartition {
    pub partition: Principal,
    pub step: String,
    /// Failed calls of this step so far.
    pub failures: u32,
}

/// The fleet upgrade in progress, or the last one.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FleetUpgradeInfo {
    /// SHA-256 of the module the partitions are upgraded to.
    pub module: ByteBuf,
    pub started_at: u64,
    /// Index time (ns) it ended; none while it runs.
    pub finished_at: Option<u64>,
    pub batch: u32,
    /// Partitions upgraded (checked to run `module`), waiting their turn, in progress, failed.
    pub upgraded: u64,
    pub waiting: u64,
    pub in_progress: Vec<UpgradingPartition>,
    pub failed_total: u64,
    /// At most `limits::MAX_UPGRADE_FAILURES_LISTED`, the first ones.
    pub failed: Vec<FailedUpgrade>,
}

/// The error of `move_subdb` (an admin starts a move).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum MoveSubDbError {
    #[error("only an admin may do this")]
    NotAuthorized,
    #[error("no SubDB has this outer key")]
    UnknownOuterKey,
    #[error("the SubDB is being moved already")]
    AlreadyMoving,
    /// Being created or deleted, a call of an earlier (called-off) move of it is still in
    /// flight, or its partition or the target is being upgraded (`upgrade_partitions`).
    #[error("the SubDB is busy (being created or deleted, a call of an earlier move of it is in flight, or its partition or the target is being upgraded); retry shortly")]
    Busy,
    #[error("the target is not a partition of this index")]
    UnknownPartition,
    #[error("the target is the partition the SubDB is on")]
    SameAsSource,
    /// The target is over the move cap and takes no SubDBs.
    #[error("the target partition is full")]
    TargetFull,
    /// No active partition has room and no spare is ready; a partition is being created.
    #[error("no partition has room yet; one is being created, retry shortly")]
    NoTarget,
}
