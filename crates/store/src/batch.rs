//! Batched writes: many puts and deletes on one SubDB in one atomic operation.

use crate::changes::{change_cost, op_cost, put_cost};
use crate::oplog::{ArgsHasher, Outcome};
use crate::{check_key, OpCtx, Store, KIND_BATCH};
use flotilla_types::limits::{MAX_BATCH_BYTES, MAX_BATCH_OPS, MAX_VALUE_BYTES};
use flotilla_types::{batch_budget_bytes, BatchError, BatchOp, BatchOutcome, SubDbId};
use ic_stable_structures::Memory;

impl<M: Memory> Store<M> {
    /// Applies many puts and deletes to one SubDB, in order, atomically and under one op id:
    /// the result is that of applying them one by one as [`Store::put`] and
    /// [`Store::delete`] (hard-cap evictions included, after each put), and either every op
    /// applies or, on any error, none does.
    ///
    /// Checked in this order: `EmptyBatch` and `TooManyOps` (the request alone), the op id
    /// (`InvalidOpId`; a recorded one replays or conflicts), `UnknownSubDb`, `BatchTooLarge`
    /// (the ops' [`BatchOp::budget_bytes`] sum), `KeyTooLarge`/`ValueTooLarge` of the first
    /// offending op, `WritesPaused` (a move freezes the SubDB, or throttles its writers and
    /// the batch's changes cost more than is left of their budget). Writes to an exporting SubDB are tracked per key and
    /// the batch's op record like any other, so a live move ships them in its deltas.
    pub fn batch(
        &mut self,
        op: Option<OpCtx<'_>>,
        id: SubDbId,
        ops: &[BatchOp],
    ) -> Result<BatchOutcome, BatchError> {
        if ops.is_empty() {
            return Err(BatchError::EmptyBatch);
        }
        if ops.len() > MAX_BATCH_OPS {
            return Err(BatchError::TooManyOps {
                len: ops.len() as u64,
                max: MAX_BATCH_OPS as u64,
            });
        }
        let op_cost = op_cost(op.is_some());
        self.once(
            op,
            id,
            |salt| {
                let mut h = ArgsHasher::new(KIND_BATCH, salt).u64(ops.len() as u64);
                for o in ops {
                    h = match o {
                        BatchOp::Put { key, value } => h.u64(0).bytes(key).bytes(value),
                        BatchOp::Delete { key } => h.u64(1).bytes(key),
                    };
                }
                h.finish()
            },
            |o| match o {
                Outcome::Batch(b) => Some(b),
                _ => None,
            },
            |b| Outcome::Batch(*b),
            |s| {
                let mut slot = s.live_slot(id).ok_or(BatchError::UnknownSubDb)?;
                let bytes = batch_budget_bytes(ops);
                if bytes > MAX_BATCH_BYTES {
                    return Err(BatchError::BatchTooLarge {
                        bytes: bytes as u64,
                        max: MAX_BATCH_BYTES as u64,
                    });
                }
                for (i, o) in ops.iter().enumerate() {
                    let index = i as u32;
                    check_key(o.key(), |len, max| BatchError::KeyTooLarge {
                        index,
                        len,
                        max,
                    })?;
                    if let BatchOp::Put { value, .. } = o {
                        if value.len() > MAX_VALUE_BYTES {
                            return Err(BatchError::ValueTooLarge {
                                index,
                                len: value.len() as u64,
                                max: MAX_VALUE_BYTES as u64,
                            });
                        }
                    }
                }
                let cost = || {
                    op_cost
                        + ops
                            .iter()
                            .map(|o| match o {
                                BatchOp::Put { key, value } => put_cost(&slot, key, value),
                                BatchOp::Delete { key } => change_cost(key.len()),
                            })
                            .sum::<u64>()
                };
                if slot.frozen || !s.admit(id, &slot, cost) {
                    return Err(BatchError::WritesPaused);
                }
                // Validated: nothing below can fail.
                let mut out = BatchOutcome::default();
                for o in ops {
                    match o {
                        BatchOp::Put { key, value } => {
                            out.puts_replaced += s.raw_put(id, &mut slot, key, value) as u32;
                            out.evicted += s.enforce_cap(id, &mut slot);
                        }
                        BatchOp::Delete { key } => {
                            out.deletes_existed += s.raw_delete(id, &mut slot, key) as u32;
                        }
                    }
                }
                s.put_slot(id, &slot);
                Ok(out)
            },
        )
    }
}
