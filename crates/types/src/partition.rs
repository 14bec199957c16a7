//! The partition canister's interface: user endpoints (reads and writes on one SubDB, decided
//! locally from the SubDB's own access lists) and housekeeping endpoints (index only).

use crate::{Chunk, InnerKey, OpId, ScanArgs, SubDbId, SubDbStats};
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

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct GetArgs {
    pub subdb: SubDbId,
    pub key: ByteBuf,
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
    #[error("only the SubDB's owner may change its access lists")]
    NotAuthorized,
}

/// Housekeeping: create a SubDB for `access.owner` (index only; idempotent by op id).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CreateLocalArgs {
    pub op_id: OpId,
    pub access: Access,
    pub hard_cap: Option<u64>,
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

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BeginImportArgs {
    /// The same op id always names the same import, so a retried call opens nothing new.
    pub op_id: OpId,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ImportChunkArgs {
    pub subdb: SubDbId,
    pub chunk: Chunk,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FreezeArgs {
    pub subdb: SubDbId,
    pub frozen: bool,
}

/// Housekeeping: the SubDB now lives at `moved_to`; keep a tombstone and free the data.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReleaseArgs {
    pub subdb: SubDbId,
    pub moved_to: InnerKey,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum HousekeepingError {
    #[error("only the index may call this")]
    NotAuthorized,
    #[error("no such SubDB")]
    UnknownSubDb,
    #[error("the chunk budget {budget} is outside {min}..={max}")]
    InvalidBudget { budget: u64, min: u64, max: u64 },
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
