//! The partition canister's interface: user endpoints (reads and writes on one SubDB, decided
//! locally from the SubDB's own access lists) and housekeeping endpoints (index only).

use crate::limits;
use crate::{BatchOp, Chunk, GetError, InnerKey, OpId, ScanArgs, SubDbId, SubDbStats};
use candid::{CandidType, Principal};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use thiserror::Error;

/// Install argument: which canister is this partition's index.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PartitionInit {
    pub index: Principal,
}

/// Who may do what on one SubDB. Stored beside its data and moved with it.
/// Owner: everything. Writers: read and write items. Readers: read items.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub owner: Principal,
    pub readers: Vec<Principal>,
    pub writers: Vec<Principal>,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PutArgs {
    pub subdb: SubDbId,
    pub key: ByteBuf,
    pub value: ByteBuf,
    pub op_id: OpId,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DeleteArgs {
    pub subdb: SubDbId,
    pub key: ByteBuf,
    pub op_id: OpId,
}

/// Many puts and deletes on one SubDB, applied in order, atomically, under one op id: either
/// all of them apply or none does. At most [`limits::MAX_BATCH_OPS`] ops whose
/// [`BatchOp::budget_bytes`] sum to at most [`limits::MAX_BATCH_BYTES`].
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BatchArgs {
    pub subdb: SubDbId,
    pub ops: Vec<BatchOp>,
    pub op_id: OpId,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct GetArgs {
    pub subdb: SubDbId,
    pub key: ByteBuf,
}

/// Reads many `(SubDB, key)` pairs of this partition in one query: at most
/// [`limits::MAX_GET_MANY_KEYS`] pairs, any SubDBs, repeats allowed.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct GetManyArgs {
    pub keys: Vec<GetArgs>,
}

/// `results[i]` answers `keys[i]` exactly as `get` would (a stale, unknown or unreadable
/// SubDB fails for its own pairs only). The results fill at most
/// [`limits::REPLY_BUDGET_BYTES`] (see [`GetManyReply::budget_bytes`]): when the next
/// result would not fit, the reply stops, so it may answer only a prefix of the keys. It
/// always answers at least one when one was asked; ask again with `keys[results.len()..]`.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct GetManyReply {
    pub results: Vec<Result<Option<ByteBuf>, GetError>>,
}

impl GetManyReply {
    /// Bytes one result counts against the reply budget: its value's length plus
    /// [`limits::GET_MANY_RESULT_OVERHEAD_BYTES`].
    pub fn result_budget_bytes(r: &Result<Option<ByteBuf>, GetError>) -> usize {
        limits::GET_MANY_RESULT_OVERHEAD_BYTES
            + match r {
                Ok(Some(v)) => v.len(),
                _ => 0,
            }
    }

    /// Bytes the whole reply counts against the budget.
    pub fn budget_bytes(&self) -> usize {
        self.results.iter().map(Self::result_budget_bytes).sum()
    }
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum GetManyError {
    #[error("asked for {len} keys; the limit is {max}")]
    TooManyKeys { len: u64, max: u64 },
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ScanRequest {
    pub subdb: SubDbId,
    pub args: ScanArgs,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DeleteSubDbArgs {
    pub subdb: SubDbId,
    pub op_id: OpId,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SetAccessArgs {
    pub subdb: SubDbId,
    pub readers: Vec<Principal>,
    pub writers: Vec<Principal>,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum SetAccessError {
    #[error("no such SubDB")]
    UnknownSubDb,
    #[error("the SubDB moved to {to:?}")]
    Moved { to: InnerKey },
    #[error("an access list has {len} principals; the limit is {max}")]
    TooManyPrincipals { len: u64, max: u64 },
    #[error("the anonymous principal cannot be a writer (list it as a reader for public reads)")]
    AnonymousWriter,
    #[error("writes to this SubDB are paused for a move (its cutover, or writes outpacing it); retry shortly")]
    WritesPaused,
    #[error("only the SubDB's owner may change its access lists")]
    NotAuthorized,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum SubDbStatsError {
    #[error("no such SubDB")]
    UnknownSubDb,
    #[error("the SubDB moved to {to:?}")]
    Moved { to: InnerKey },
    #[error("the caller may not read this SubDB")]
    NotAuthorized,
}

/// Housekeeping: create a SubDB for `access.owner` (index only; idempotent by op id).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CreateLocalArgs {
    pub op_id: OpId,
    pub access: Access,
    pub hard_cap: Option<u64>,
    /// The SubDB's byte quota (keys plus values), kept in its metadata and moved with it;
    /// `None`: no quota (an index built before quotas).
    pub max_bytes: Option<u64>,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ExportArgs {
    pub subdb: SubDbId,
    pub seq: u64,
    pub token: Option<ByteBuf>,
    pub budget: u64,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ExportReply {
    pub chunk: Chunk,
    /// Resume token for chunk `seq + 1`; `None` after the last chunk.
    pub next: Option<ByteBuf>,
}

/// Housekeeping: the error of `export_chunk`.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum HousekeepingError {
    #[error("only the index may call this")]
    NotAuthorized,
    #[error("no such SubDB")]
    UnknownSubDb,
    #[error("the chunk budget {budget} is outside {min}..={max}")]
    InvalidBudget { budget: u64, min: u64, max: u64 },
    #[error("the resume token is malformed")]
    InvalidToken,
    #[error("changes to this SubDB are not being tracked; call begin_export first")]
    NotExporting,
    #[error("the change log passed {max} changes; the export was called off")]
    ChangeLogFull { max: u64 },
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BeginImportArgs {
    /// The same op id always names the same import, so a retried call opens nothing new.
    pub op_id: OpId,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum BeginImportError {
    #[error("only the index may call this")]
    NotAuthorized,
    #[error("operation id is {len} bytes; it must be 16 to 32 bytes")]
    InvalidOpId { len: u32 },
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ImportChunkArgs {
    pub subdb: SubDbId,
    pub chunk: Chunk,
    /// Make the SubDB live once this chunk is applied (a move's final chunk).
    pub finish: bool,
}

/// Housekeeping: start tracking changes to a SubDB that is about to be copied away. From now
/// on every write to a key already exported (and every op-log record) is remembered until it
/// has been shipped by `export_delta`. Idempotent.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct BeginExportArgs {
    pub subdb: SubDbId,
}

/// Housekeeping: the changes made since the copy, oldest first, as chunk `seq`.
///
/// `ack` is the `version` of the last delta chunk the target applied (0 for none): changes up
/// to it are forgotten first. `freeze` asks for the cutover: writes pause, and the chunk holds
/// the last changes there will be — but only if everything left fits in this one chunk;
/// otherwise the chunk is an ordinary delta and the reply says `frozen: false`. So the freeze
/// always ends the export, and the pause lasts a fixed number of calls whatever the backlog.
///
/// `write_budget` throttles the SubDB's writers (a move whose deltas do not converge): until
/// the export of the next chunk, writes are admitted while the changes they log cost at most
/// this many bytes in all (each change its key and value, or op id and record, plus
/// `ITEM_OVERHEAD_BYTES`, at least the store's `THROTTLE_MIN_CHANGE_BYTES`); beyond it they
/// answer `WritesPaused` (clients retry with the same op id). A retried export of the same
/// `seq` grants nothing new; `null` lifts the throttle.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportDeltaArgs {
    pub subdb: SubDbId,
    pub seq: u64,
    pub ack: u64,
    pub budget: u64,
    pub freeze: bool,
    pub write_budget: Option<u64>,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ExportDeltaReply {
    pub chunk: Chunk,
    /// Acknowledge this once the chunk is applied.
    pub version: u64,
    /// Changes remain beyond this chunk.
    pub more: bool,
    /// Writes are paused: this chunk carries the SubDB's header and its last changes. (Absent
    /// from partitions built before the freeze waited for the rest to fit: they froze whenever
    /// asked.)
    pub frozen: Option<bool>,
}

/// The error of `resume_writes` (housekeeping: the index ends a SubDB's write pause — on a
/// move's target once the directory routes to it, or on a source whose move was called off).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum ResumeWritesError {
    #[error("only the index may call this")]
    NotAuthorized,
    #[error("no such SubDB")]
    UnknownSubDb,
    #[error("the SubDB moved to {to:?}")]
    Moved { to: InnerKey },
}

/// Housekeeping: the SubDB now lives at `moved_to`; keep a tombstone and free the data.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReleaseArgs {
    pub subdb: SubDbId,
    pub moved_to: InnerKey,
}

/// A release is idempotent: releasing again to the same place answers `Ok`.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum ReleaseError {
    #[error("only the index may call this")]
    NotAuthorized,
    #[error("no such SubDB")]
    UnknownSubDb,
    #[error("the SubDB is not frozen; freeze it for the cutover before releasing it")]
    NotFrozen,
    #[error("the SubDB was already released to {to:?}")]
    ReleasedElsewhere { to: InnerKey },
}

/// Most SubDBs one `stats` reply lists.
pub const MAX_STATS_SUBDBS: u32 = 1_000;

/// Housekeeping: partition totals plus the live SubDBs with ids from `from`, in id order, at
/// most `limit` of them (at most [`MAX_STATS_SUBDBS`]; 0 lists none). To page, pass the last
/// listed id + 1 as the next `from`; a page shorter than `limit` is the last one.
///
/// With `largest_first: Some(true)`, the page lists instead the `limit` largest live SubDBs by
/// bytes, largest first (`from` is not used), read from the store's size index without a
/// scan: how the index picks what to move off a full partition. (Optional, so an index that
/// does not send it, or a partition that does not know it, keeps the id order.)
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsArgs {
    pub from: SubDbId,
    pub limit: u32,
    pub largest_first: Option<bool>,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum StatsError {
    #[error("only the index may call this")]
    NotAuthorized,
    #[error("asked for {requested} SubDBs; the limit is {max}")]
    LimitTooLarge { requested: u32, max: u32 },
}

/// What a partition reports to its index (and the dashboard, through the index).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionStats {
    pub live_subdbs: u64,
    pub items: u64,
    /// Sum of key and value bytes of every item held, including deleted SubDBs not yet
    /// reclaimed.
    pub bytes: u64,
    pub purging_bytes: u64,
    pub op_records: u64,
    /// Stable memory in use, in bytes (pages × 64 KiB).
    pub stable_memory_bytes: u64,
    pub tombstones: u64,
    pub subdbs: Vec<SubDbStats>,
}
