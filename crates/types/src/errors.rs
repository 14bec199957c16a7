//! One error enum per operation. Each variant says what went wrong and carries the numbers a
//! caller needs to fix the request. A call that returns an error changed nothing.
//!
//! Variants raised only by the partition layer (access and routing) sit beside the ones the
//! storage engine raises, so a client sees a single flat enum per call.

use crate::InnerKey;
use candid::CandidType;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// An operation id outside the allowed length.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("operation id is {len} bytes; it must be 16 to 32 bytes")]
pub struct InvalidOpId {
    pub len: u32,
}

macro_rules! from_invalid_op_id {
    ($($t:ident),*) => {$(
        impl From<InvalidOpId> for $t {
            fn from(e: InvalidOpId) -> Self {
                $t::InvalidOpId { len: e.len }
            }
        }
    )*};
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum CreateSubDbError {
    #[error("hard cap must be at least 1")]
    InvalidHardCap,
    #[error("SubDB metadata is {len} bytes; the limit is {max}")]
    MetaTooLarge { len: u64, max: u64 },
    #[error("an access list has {len} principals; the limit is {max}")]
    TooManyPrincipals { len: u64, max: u64 },
    #[error("operation id is {len} bytes; it must be 16 to 32 bytes")]
    InvalidOpId { len: u32 },
    #[error("this operation id was used with different arguments")]
    OpIdConflict,
    #[error("the caller may not create SubDBs here")]
    NotAuthorized,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum DeleteSubDbError {
    #[error("no such SubDB")]
    UnknownSubDb,
    #[error("the SubDB moved to {to:?}")]
    Moved { to: InnerKey },
    #[error("writes to this SubDB are paused for a move (its cutover, or writes outpacing it); retry shortly")]
    WritesPaused,
    #[error("operation id is {len} bytes; it must be 16 to 32 bytes")]
    InvalidOpId { len: u32 },
    #[error("this operation id was used with different arguments")]
    OpIdConflict,
    #[error("the caller may not delete this SubDB")]
    NotAuthorized,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum PutError {
    #[error("no such SubDB")]
    UnknownSubDb,
    #[error("the SubDB moved to {to:?}")]
    Moved { to: InnerKey },
    #[error("writes to this SubDB are paused for a move (its cutover, or writes outpacing it); retry shortly")]
    WritesPaused,
    #[error("key is {len} bytes; the limit is {max}")]
    KeyTooLarge { len: u64, max: u64 },
    #[error("value is {len} bytes; the limit is {max}")]
    ValueTooLarge { len: u64, max: u64 },
    #[error("operation id is {len} bytes; it must be 16 to 32 bytes")]
    InvalidOpId { len: u32 },
    #[error("this operation id was used with different arguments")]
    OpIdConflict,
    #[error("the caller may not write to this SubDB")]
    NotAuthorized,
    #[error("the write would take the SubDB past its quota of {max_bytes} bytes")]
    QuotaExceeded { max_bytes: u64 },
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum DeleteError {
    #[error("no such SubDB")]
    UnknownSubDb,
    #[error("the SubDB moved to {to:?}")]
    Moved { to: InnerKey },
    #[error("writes to this SubDB are paused for a move (its cutover, or writes outpacing it); retry shortly")]
    WritesPaused,
    #[error("key is {len} bytes; the limit is {max}")]
    KeyTooLarge { len: u64, max: u64 },
    #[error("operation id is {len} bytes; it must be 16 to 32 bytes")]
    InvalidOpId { len: u32 },
    #[error("this operation id was used with different arguments")]
    OpIdConflict,
    #[error("the caller may not write to this SubDB")]
    NotAuthorized,
}

/// The error of a batched write. `index` is the position of the offending op in the batch.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum BatchError {
    #[error("no such SubDB")]
    UnknownSubDb,
    #[error("the SubDB moved to {to:?}")]
    Moved { to: InnerKey },
    #[error("writes to this SubDB are paused for a move (its cutover, or writes outpacing it); retry shortly")]
    WritesPaused,
    #[error("the batch holds no ops")]
    EmptyBatch,
    #[error("the batch holds {len} ops; the limit is {max}")]
    TooManyOps { len: u64, max: u64 },
    #[error("the batch counts {bytes} bytes; the limit is {max}")]
    BatchTooLarge { bytes: u64, max: u64 },
    #[error("op {index}: key is {len} bytes; the limit is {max}")]
    KeyTooLarge { index: u32, len: u64, max: u64 },
    #[error("op {index}: value is {len} bytes; the limit is {max}")]
    ValueTooLarge { index: u32, len: u64, max: u64 },
    #[error("operation id is {len} bytes; it must be 16 to 32 bytes")]
    InvalidOpId { len: u32 },
    #[error("this operation id was used with different arguments")]
    OpIdConflict,
    #[error("the caller may not write to this SubDB")]
    NotAuthorized,
    #[error("the batch would take the SubDB past its quota of {max_bytes} bytes")]
    QuotaExceeded { max_bytes: u64 },
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum GetError {
    #[error("no such SubDB")]
    UnknownSubDb,
    #[error("the SubDB moved to {to:?}")]
    Moved { to: InnerKey },
    #[error("key is {len} bytes; the limit is {max}")]
    KeyTooLarge { len: u64, max: u64 },
    #[error("the caller may not read this SubDB")]
    NotAuthorized,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum ScanError {
    #[error("no such SubDB")]
    UnknownSubDb,
    #[error("the SubDB moved to {to:?}")]
    Moved { to: InnerKey },
    #[error("a bound or cursor is {len} bytes; the key limit is {max}")]
    KeyTooLarge { len: u64, max: u64 },
    #[error("asked for {requested} items per page; the limit is {max}")]
    LimitTooLarge { requested: u32, max: u32 },
    #[error("limit and max_bytes must be at least 1")]
    ZeroLimit,
    #[error("start is after end")]
    InvalidRange,
    #[error("the cursor lies outside the scanned range")]
    InvalidCursor,
    #[error("the caller may not read this SubDB")]
    NotAuthorized,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum ExportError {
    #[error("no such SubDB")]
    UnknownSubDb,
    #[error("the resume token is malformed")]
    InvalidToken,
    #[error("changes to this SubDB are not being tracked; call begin_export first")]
    NotExporting,
    #[error("the change log passed {max} changes; the export was called off")]
    ChangeLogFull { max: u64 },
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Error)]
pub enum ImportError {
    #[error("no import into this SubDB is open")]
    UnknownImport,
    #[error("chunk {got} arrived; chunk {expected} is next")]
    ChunkOutOfOrder { expected: u64, got: u64 },
    #[error("a chunk item's key is {len} bytes; the limit is {max}")]
    KeyTooLarge { len: u64, max: u64 },
    #[error("a chunk item's value is {len} bytes; the limit is {max}")]
    ValueTooLarge { len: u64, max: u64 },
    #[error("SubDB metadata is {len} bytes; the limit is {max}")]
    MetaTooLarge { len: u64, max: u64 },
    #[error("the import already finished")]
    AlreadyFinished,
    #[error("a chunk's op-log record is malformed")]
    MalformedOpRecord,
    #[error("only the index may call this")]
    NotAuthorized,
}

from_invalid_op_id!(
    CreateSubDbError,
    DeleteSubDbError,
    PutError,
    DeleteError,
    BatchError
);
