//! Resumable bulk loads: records become batched writes, in parts that each fit one message,
//! each under an op id derived from the load's id and the part's number. A load that stops
//! (a crash, Ctrl-C, a failure) and runs again skips the parts its checkpoint records and
//! re-sends at most the one part that was in flight, under the same op id, which the
//! partition answers from its op log: no record is lost and none is applied twice.
//!
//! `flotilla load` runs exactly this code, with a checkpoint file beside the input.

use crate::{part_has_room, Client, Error, Transport};
use flotilla_types::{batch_budget_bytes, BatchError, BatchOp, OpId};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::ops::ControlFlow;

/// Where a load stands: parts and records acknowledged so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub parts: u64,
    pub records: u64,
}

/// Where a load keeps its progress between runs.
pub trait Checkpoint {
    /// The progress of an earlier run of the same load, if any.
    fn load(&mut self) -> Progress;
    /// Called after each acknowledged part.
    fn save(&mut self, p: Progress) -> std::io::Result<()>;
}

/// A checkpoint in memory (tests, one-shot loads).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryCheckpoint(pub Progress);

impl Checkpoint for MemoryCheckpoint {
    fn load(&mut self) -> Progress {
        self.0
    }
    fn save(&mut self, p: Progress) -> std::io::Result<()> {
        self.0 = p;
        Ok(())
    }
}

/// How a load ended.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("part {part} (records from {first_record}) failed: {error}")]
    Part {
        part: u64,
        first_record: u64,
        error: Error<BatchError>,
    },
    #[error("record {record}: {reason}")]
    BadRecord { record: u64, reason: String },
    #[error("the checkpoint could not be saved: {0}")]
    Checkpoint(String),
    #[error("stopped after {} parts ({} records); run again to resume", .0.parts, .0.records)]
    Stopped(Progress),
}

/// The op id of part `n` of load `load_id`.
pub fn part_op_id(load_id: &[u8], part: u64) -> OpId {
    let mut h = Sha256::new();
    h.update(b"flotilla-load");
    h.update((load_id.len() as u64).to_le_bytes());
    h.update(load_id);
    h.update(part.to_le_bytes());
    OpId::from(h.finalize()[..16].to_vec())
}

/// Loads `records` (key, value) into the SubDB `outer`. `load_id` names the load (the same
/// input must get the same id on every run); `each` sees the progress after every part and
/// may stop the load. Returns the final progress.
///
/// Parts are cut from the stream greedily by the rule of [`crate::split_batch`]: a part ends where
/// the next record would not fit. From a part boundary the same input always gives the same
/// parts, so a resumed run re-sends an interrupted part with exactly its first ops.
pub async fn load<T, I, C>(
    client: &Client<T>,
    outer: &str,
    load_id: &[u8],
    records: I,
    checkpoint: &mut C,
    mut each: impl FnMut(Progress) -> ControlFlow<()>,
) -> Result<Progress, LoadError>
where
    T: Transport,
    I: IntoIterator<Item = Result<(Vec<u8>, Vec<u8>), String>>,
    C: Checkpoint,
{
    let mut done = checkpoint.load();
    let mut records = records.into_iter().enumerate().skip(done.records as usize);
    let mut part: Vec<BatchOp> = vec![];
    let mut part_bytes = 0usize;
    loop {
        let next = match records.next() {
            None => None,
            Some((n, r)) => {
                let (key, value) = r.map_err(|reason| LoadError::BadRecord {
                    record: n as u64,
                    reason,
                })?;
                Some(BatchOp::Put {
                    key: ByteBuf::from(key),
                    value: ByteBuf::from(value),
                })
            }
        };
        let full = match &next {
            None => !part.is_empty(),
            Some(op) => !part_has_room(
                part.len(),
                part_bytes,
                batch_budget_bytes(std::slice::from_ref(op)),
            ),
        };
        if full {
            part_bytes = 0;
            let ops = std::mem::take(&mut part);
            let n = ops.len() as u64;
            let id = part_op_id(load_id, done.parts);
            client
                .batch_with_id(outer, ops, id)
                .await
                .map_err(|error| LoadError::Part {
                    part: done.parts,
                    first_record: done.records,
                    error,
                })?;
            done.parts += 1;
            done.records += n;
            checkpoint
                .save(done)
                .map_err(|e| LoadError::Checkpoint(e.to_string()))?;
            if each(done).is_break() {
                return Err(LoadError::Stopped(done));
            }
        }
        match next {
            Some(op) => {
                part_bytes += batch_budget_bytes(std::slice::from_ref(&op));
                part.push(op);
            }
            None => return Ok(done),
        }
    }
}
