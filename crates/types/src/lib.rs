//! Candid types shared by the Flotilla canisters and their clients.
//!
//! Everything that crosses a canister boundary lives here: ids, named limits, arguments,
//! replies and one error enum per operation. The storage engine (`flotilla-store`) returns these
//! errors directly, so a limit is checked once and reported the same way on every layer.

pub mod dispatch;
pub mod errors;
pub mod index;
pub mod limits;
pub mod partition;

use candid::{CandidType, Principal};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

pub use errors::*;

/// Local id of a SubDB inside one partition. Ids are never reused by a partition, so a stale
/// inner key can never address a different SubDB.
pub type SubDbId = u32;

/// The fast location of a SubDB: which partition holds it and under which local id.
/// Goes stale when the SubDB moves.
#[derive(
    CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub struct InnerKey {
    pub partition: Principal,
    pub subdb: SubDbId,
}

/// A client-chosen operation id carried by every mutating call (16–32 random bytes).
#[derive(
    CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(transparent)]
pub struct OpId(pub ByteBuf);

impl OpId {
    /// Checks the length bounds ([`limits::OP_ID_MIN_BYTES`]..=[`limits::OP_ID_MAX_BYTES`]).
    pub fn validate(&self) -> Result<(), InvalidOpId> {
        let len = self.0.len();
        if (limits::OP_ID_MIN_BYTES..=limits::OP_ID_MAX_BYTES).contains(&len) {
            Ok(())
        } else {
            Err(InvalidOpId { len: len as u32 })
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for OpId {
    fn from(v: Vec<u8>) -> Self {
        OpId(ByteBuf::from(v))
    }
}

/// One key→value pair, as returned by scans and carried by export chunks.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: ByteBuf,
    pub value: ByteBuf,
}

/// An ordered scan over one SubDB.
///
/// The range is `[start, end)` in key order. Forward scans walk it from `start` up, reverse
/// scans from `end` down. A page ends after `limit` items, or earlier when the next item would
/// push the page past `max_bytes` (and never above [`limits::REPLY_BUDGET_BYTES`]); it always
/// holds at least one item when one remains. `next` is the resume cursor: pass it back as
/// `cursor` to get the following page; `None` means the range is exhausted.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanArgs {
    pub start: Option<ByteBuf>,
    pub end: Option<ByteBuf>,
    pub reverse: bool,
    pub limit: Option<u32>,
    pub max_bytes: Option<u32>,
    pub cursor: Option<ByteBuf>,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanPage {
    pub entries: Vec<Entry>,
    pub next: Option<ByteBuf>,
}

/// What a put did. Recorded in the op-id log, so a retry returns exactly this.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutOutcome {
    /// The key already had a value, which this put replaced.
    pub replaced: bool,
    /// Items evicted (smallest keys first) to keep the SubDB within its hard cap.
    pub evicted: u32,
}

/// Size figures of one SubDB.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubDbStats {
    pub id: SubDbId,
    pub items: u64,
    /// Sum of key and value lengths of every item.
    pub bytes: u64,
    pub hard_cap: Option<u64>,
}

/// What travels with a SubDB besides its items: its cap and its opaque metadata (owner and
/// access lists), plus its size for verification on arrival.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkHeader {
    pub hard_cap: Option<u64>,
    pub meta: ByteBuf,
    pub items: u64,
    pub bytes: u64,
}

/// One op-id log record that moves with its SubDB, so a retry that reaches the new home after a
/// move still finds the first result.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OpEntry {
    pub op_id: ByteBuf,
    pub record: ByteBuf,
}

/// One piece of an exported SubDB. Chunks are numbered from 0; chunk 0 carries the header.
/// Applying a chunk whose number was already applied changes nothing.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    pub seq: u64,
    pub header: Option<ChunkHeader>,
    pub puts: Vec<Entry>,
    pub deletes: Vec<ByteBuf>,
    pub ops: Vec<OpEntry>,
}

impl Chunk {
    /// Bytes this chunk counts against its budget (see [`limits::ITEM_OVERHEAD_BYTES`]).
    pub fn budget_bytes(&self) -> usize {
        let o = limits::ITEM_OVERHEAD_BYTES;
        let header = self.header.as_ref().map_or(0, |h| h.meta.len() + 4 * o);
        header
            + self
                .puts
                .iter()
                .map(|e| e.key.len() + e.value.len() + o)
                .sum::<usize>()
            + self.deletes.iter().map(|k| k.len() + o).sum::<usize>()
            + self
                .ops
                .iter()
                .map(|e| e.op_id.len() + e.record.len() + o)
                .sum::<usize>()
    }
}
