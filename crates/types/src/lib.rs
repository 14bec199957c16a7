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

/// One write of a batch (see `flotilla_types::partition::BatchArgs`).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum BatchOp {
    Put { key: ByteBuf, value: ByteBuf },
    Delete { key: ByteBuf },
}

impl BatchOp {
    pub fn key(&self) -> &[u8] {
        match self {
            BatchOp::Put { key, .. } | BatchOp::Delete { key } => key,
        }
    }

    /// Bytes this op counts against [`limits::MAX_BATCH_BYTES`]: its key, its value (for a
    /// put) and [`limits::ITEM_OVERHEAD_BYTES`]. A client splits a large batch into messages
    /// whose ops sum to at most that limit and number at most [`limits::MAX_BATCH_OPS`].
    pub fn budget_bytes(&self) -> usize {
        limits::ITEM_OVERHEAD_BYTES
            + match self {
                BatchOp::Put { key, value } => key.len() + value.len(),
                BatchOp::Delete { key } => key.len(),
            }
    }
}

/// Bytes a batch of `ops` counts against [`limits::MAX_BATCH_BYTES`] (the sum of
/// [`BatchOp::budget_bytes`]).
pub fn batch_budget_bytes(ops: &[BatchOp]) -> usize {
    ops.iter().map(BatchOp::budget_bytes).sum()
}

/// What a batch did, as counts. Recorded in the op-id log, so a retry returns exactly this.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Puts that replaced a value (one written earlier in the same batch counts too).
    pub puts_replaced: u32,
    /// Deletes that removed a value (one written earlier in the same batch counts too).
    pub deletes_existed: u32,
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

#[cfg(test)]
mod tests {
    use super::limits::*;
    use super::partition::{BatchArgs, GetManyReply};
    use super::*;

    fn put(k: usize, v: usize) -> BatchOp {
        BatchOp::Put {
            key: ByteBuf::from(vec![7; k]),
            value: ByteBuf::from(vec![9; v]),
        }
    }

    #[test]
    fn batch_op_budget_counts_key_value_and_overhead() {
        assert_eq!(put(3, 5).budget_bytes(), 3 + 5 + ITEM_OVERHEAD_BYTES);
        let del = BatchOp::Delete {
            key: ByteBuf::from(vec![1; 4]),
        };
        assert_eq!(del.budget_bytes(), 4 + ITEM_OVERHEAD_BYTES);
        assert_eq!(del.key(), &[1; 4]);
        assert_eq!(batch_budget_bytes(&[put(3, 5), del]), 3 + 5 + 4 + 2 * 16);
        assert_eq!(batch_budget_bytes(&[]), 0);
    }

    /// Batches exactly at the limits, of large and of many small ops.
    fn maximal_batches() -> Vec<BatchArgs> {
        let args = |ops| BatchArgs {
            subdb: u32::MAX,
            ops,
            op_id: OpId::from(vec![0xFF; OP_ID_MAX_BYTES]),
        };
        // Largest items until the budget is nearly spent, then one op filling it exactly.
        let mut big = vec![];
        let mut left = MAX_BATCH_BYTES;
        let largest = MAX_KEY_BYTES + MAX_VALUE_BYTES + ITEM_OVERHEAD_BYTES;
        while left >= largest {
            big.push(put(MAX_KEY_BYTES, MAX_VALUE_BYTES));
            left -= largest;
        }
        big.push(put(
            MAX_KEY_BYTES,
            left - MAX_KEY_BYTES - ITEM_OVERHEAD_BYTES,
        ));
        // The most ops, sharing the budget evenly.
        let each = MAX_BATCH_BYTES / MAX_BATCH_OPS - ITEM_OVERHEAD_BYTES;
        let many = (0..MAX_BATCH_OPS)
            .map(|_| put(each / 2, each - each / 2))
            .collect();
        let deletes = (0..MAX_BATCH_OPS)
            .map(|_| BatchOp::Delete {
                key: ByteBuf::from(vec![3; each.min(MAX_KEY_BYTES)]),
            })
            .collect();
        vec![args(big), args(many), args(deletes)]
    }

    #[test]
    fn a_maximal_batch_encodes_under_the_message_limit() {
        for b in maximal_batches() {
            let budget = batch_budget_bytes(&b.ops);
            assert!(budget <= MAX_BATCH_BYTES);
            let encoded = candid::encode_one(&b).unwrap().len();
            // The Candid framing of each op fits in its overhead allowance.
            assert!(encoded <= budget + 512, "{encoded} vs {budget}");
            assert!(
                encoded + 64 * 1024 < MAX_MESSAGE_BYTES,
                "encoded {encoded} leaves under 64 KiB for the envelope"
            );
        }
    }

    #[test]
    fn get_many_results_fit_their_overhead() {
        let moved: Result<Option<ByteBuf>, GetError> = Err(GetError::Moved {
            to: InnerKey {
                partition: Principal::from_slice(&[0xAB; 29]),
                subdb: u32::MAX,
            },
        });
        let too_large: Result<Option<ByteBuf>, GetError> = Err(GetError::KeyTooLarge {
            len: u64::MAX,
            max: u64::MAX,
        });
        let value = Ok(Some(ByteBuf::from(vec![1; MAX_VALUE_BYTES])));
        let empty: Result<Option<ByteBuf>, GetError> = Ok(None);
        for r in [moved, too_large, value, empty] {
            let one = GetManyReply {
                results: vec![r.clone()],
            };
            let two = GetManyReply {
                results: vec![r.clone(), r],
            };
            let per_result =
                candid::encode_one(&two).unwrap().len() - candid::encode_one(&one).unwrap().len();
            assert!(per_result <= GetManyReply::result_budget_bytes(&one.results[0]));
        }
        // A full reply: the most results, each as large as the budget allows.
        let each = REPLY_BUDGET_BYTES / MAX_GET_MANY_KEYS - GET_MANY_RESULT_OVERHEAD_BYTES;
        let full = GetManyReply {
            results: (0..MAX_GET_MANY_KEYS)
                .map(|_| Ok(Some(ByteBuf::from(vec![2; each]))))
                .collect(),
        };
        assert!(full.budget_bytes() <= REPLY_BUDGET_BYTES);
        assert!(candid::encode_one(&full).unwrap().len() < MAX_MESSAGE_BYTES);
    }
}
