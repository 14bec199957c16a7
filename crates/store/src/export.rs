//! Export and import of whole SubDBs, for moves: `export_chunk` ships a SubDB's items then
//! its op-log records in budgeted chunks; `begin_import`, `import_chunk`, `finish_import`
//! and `abort_import` rebuild it on the target; `release` frees a SubDB that moved away.
//! The changes made while the copy runs are tracked in `changes.rs`.

use crate::layout::{scoped_key, Slot, SlotState};
use crate::oplog::{self, OpsCursor};
use crate::{check_key, item_cost, subdb_bounds, Store};
use flotilla_types::limits::{
    ITEM_OVERHEAD_BYTES, MAX_KEY_BYTES, MAX_SUBDB_META_BYTES, MAX_VALUE_BYTES, OP_ID_MAX_BYTES,
    OP_ID_MIN_BYTES,
};
use flotilla_types::{
    Chunk, ChunkHeader, Entry, ExportError, ImportError, OpEntry, SubDbId, SubDbStats,
};
use ic_stable_structures::Memory;
use serde_bytes::ByteBuf;
use std::ops::Bound;

/// Op-log records one export chunk examines at most while looking for a SubDB's records, so
/// a chunk's work stays bounded whatever the log's size.
pub const OPS_SCAN_PER_CHUNK: usize = 20_000;

impl<M: Memory> Store<M> {
    /// Exports the next chunk of a live SubDB: its items in key order, then its op-log
    /// records. Pass the returned token back for the following chunk; `None` means this was
    /// the last. A chunk counts at most `budget` bytes (see [`Chunk::budget_bytes`]) unless a
    /// single item alone is larger; chunk 0 carries the header.
    pub fn export_chunk(
        &mut self,
        id: SubDbId,
        seq: u64,
        token: Option<&[u8]>,
        budget: usize,
    ) -> Result<(Chunk, Option<Vec<u8>>), ExportError> {
        let slot = self.live_slot(id).ok_or(ExportError::UnknownSubDb)?;
        self.check_log(id)?;
        let token = match token {
            None => ExportToken::Items(None),
            Some(t) => ExportToken::decode(t).ok_or(ExportError::InvalidToken)?,
        };
        let mut chunk = Chunk {
            seq,
            ..Chunk::default()
        };
        if seq == 0 {
            chunk.header = Some(ChunkHeader {
                hard_cap: slot.hard_cap(),
                meta: ByteBuf::from(self.meta(id).unwrap_or_default()),
                items: slot.items,
                bytes: slot.bytes,
            });
        }
        let mut used = chunk.budget_bytes();
        if let ExportToken::Items(after) = &token {
            let (sub_lo, hi) = subdb_bounds(id);
            let lo = match after {
                Some(k) => Bound::Excluded(scoped_key(id, k)),
                None => sub_lo,
            };
            for e in self.data.range((lo, hi)) {
                let key = &e.key()[4..];
                let value = e.value();
                let cost = item_cost(key, &value);
                if used + cost > budget && !(chunk.puts.is_empty() && chunk.ops.is_empty()) {
                    let last = key_before_next(&chunk);
                    if slot.exporting {
                        self.advance_frontier(id, Some(&last));
                    }
                    let next = ExportToken::Items(Some(last));
                    return Ok((chunk, Some(next.encode())));
                }
                used += cost;
                chunk.puts.push(Entry {
                    key: ByteBuf::from(key.to_vec()),
                    value: ByteBuf::from(value),
                });
            }
        }
        let from = match token {
            ExportToken::Ops(c) => c,
            ExportToken::Items(_) => {
                // The items are all out: every later item write is a change to ship.
                if slot.exporting {
                    self.advance_frontier(id, None);
                }
                OpsCursor { gen: 0, pos: 0 }
            }
        };
        let next = self
            .ops
            .export(id, &from, OPS_SCAN_PER_CHUNK, |op_id, rec| {
                let cost = op_id.len() + rec.len() + ITEM_OVERHEAD_BYTES;
                if used + cost > budget && !(chunk.puts.is_empty() && chunk.ops.is_empty()) {
                    return false;
                }
                used += cost;
                chunk.ops.push(OpEntry {
                    op_id: ByteBuf::from(op_id.to_vec()),
                    record: ByteBuf::from(rec.to_vec()),
                });
                true
            });
        if let Some(c) = next {
            return Ok((chunk, Some(ExportToken::Ops(c).encode())));
        }
        Ok((chunk, None))
    }

    /// Opens a SubDB that will receive a moved SubDB's chunks. It stays invisible to reads
    /// and writes until [`Store::finish_import`].
    pub fn begin_import(&mut self) -> SubDbId {
        self.new_slot(Slot::new(SlotState::Importing, None), &[])
    }

    /// Applies one chunk to an importing SubDB. Chunks apply in order; a chunk whose number
    /// was already applied is accepted and changes nothing.
    pub fn import_chunk(&mut self, id: SubDbId, chunk: &Chunk) -> Result<(), ImportError> {
        let mut slot = match self.slot(id) {
            Some(s) if s.state == SlotState::Importing => s,
            // A finished import still accepts a repeat of a chunk it applied (a retried final
            // chunk), and nothing new.
            Some(s) if s.state == SlotState::Live && chunk.seq < s.import_seq => return Ok(()),
            Some(s) if s.state == SlotState::Live => return Err(ImportError::AlreadyFinished),
            _ => return Err(ImportError::UnknownImport),
        };
        if chunk.seq < slot.import_seq {
            return Ok(());
        }
        if chunk.seq > slot.import_seq {
            return Err(ImportError::ChunkOutOfOrder {
                expected: slot.import_seq,
                got: chunk.seq,
            });
        }
        validate_chunk(chunk)?;
        if let Some(h) = &chunk.header {
            slot.hard_cap = h.hard_cap.unwrap_or(0);
            self.meta.insert(id, h.meta.to_vec());
        }
        for e in &chunk.puts {
            self.raw_put(id, &mut slot, &e.key, &e.value);
        }
        for k in &chunk.deletes {
            self.raw_delete(id, &mut slot, k);
        }
        for o in &chunk.ops {
            self.ops.import(&mut self.header, id, &o.op_id, &o.record);
        }
        slot.import_seq += 1;
        self.put_slot(id, &slot);
        Ok(())
    }

    /// Makes an imported SubDB live, with writes paused (see [`Store::resume_writes`]).
    /// Idempotent.
    pub fn finish_import(&mut self, id: SubDbId) -> Result<SubDbStats, ImportError> {
        let mut slot = match self.slot(id) {
            Some(s) if s.state == SlotState::Importing => s,
            Some(s) if s.state == SlotState::Live => return Ok(self.stats(id).unwrap()),
            _ => return Err(ImportError::UnknownImport),
        };
        slot.state = SlotState::Live;
        // Live for reads, but writes stay paused until the index, having routed the SubDB
        // here, calls `resume_writes`: the source still serves until then.
        slot.frozen = true;
        self.put_slot(id, &slot);
        self.totals.live_subdbs += 1;
        Ok(self.stats(id).unwrap())
    }

    /// Abandons an import, reclaiming what arrived — also a finished one whose writes were
    /// never resumed (live, paused, and not exporting: nobody routes to it yet, since the index
    /// resumes its writes only after routing there).
    pub fn abort_import(&mut self, id: SubDbId) -> Result<(), ImportError> {
        match self.slot(id) {
            Some(mut s)
                if s.state == SlotState::Importing
                    || (s.state == SlotState::Live && s.frozen && !s.exporting) =>
            {
                self.discard(id, &mut s);
                Ok(())
            }
            Some(s) if s.state == SlotState::Live => Err(ImportError::AlreadyFinished),
            _ => Err(ImportError::UnknownImport),
        }
    }

    /// Removes a live SubDB that moved away (the index owns its new home). Same reclaiming
    /// as a delete, without an op id and regardless of the write pause.
    pub fn release(&mut self, id: SubDbId) -> bool {
        match self.live_slot(id) {
            Some(mut s) => {
                self.discard(id, &mut s);
                true
            }
            None => false,
        }
    }
}

fn validate_chunk(chunk: &Chunk) -> Result<(), ImportError> {
    if let Some(h) = &chunk.header {
        if h.meta.len() > MAX_SUBDB_META_BYTES {
            return Err(ImportError::MetaTooLarge {
                len: h.meta.len() as u64,
                max: MAX_SUBDB_META_BYTES as u64,
            });
        }
    }
    for k in chunk.puts.iter().map(|e| &e.key).chain(&chunk.deletes) {
        check_key(k, |len, max| ImportError::KeyTooLarge { len, max })?;
    }
    for o in &chunk.ops {
        let ok_id = (OP_ID_MIN_BYTES..=OP_ID_MAX_BYTES).contains(&o.op_id.len());
        if !ok_id || !oplog::OpRecord::is_well_formed(&o.record) {
            return Err(ImportError::MalformedOpRecord);
        }
    }
    if let Some(e) = chunk.puts.iter().find(|e| e.value.len() > MAX_VALUE_BYTES) {
        return Err(ImportError::ValueTooLarge {
            len: e.value.len() as u64,
            max: MAX_VALUE_BYTES as u64,
        });
    }
    Ok(())
}

fn key_before_next(chunk: &Chunk) -> Vec<u8> {
    chunk
        .puts
        .last()
        .map(|e| e.key.to_vec())
        .unwrap_or_default()
}

/// Where an export resumes: after an item key, or in the op log (generation, position).
///
/// Tokens 2 and 3 were written by store layout version 1 (the op log in key order: "from the
/// start of a generation", "after this op id in it"); a token 3 handed out before an upgrade
/// resumes its generation from position 0, which sends that generation's records again
/// (importing a record twice leaves one copy, so this costs bytes, nothing else).
#[derive(Debug, PartialEq, Eq)]
enum ExportToken {
    Items(Option<Vec<u8>>),
    Ops(OpsCursor),
}

impl ExportToken {
    fn encode(&self) -> Vec<u8> {
        match self {
            ExportToken::Items(None) => vec![0],
            ExportToken::Items(Some(k)) => [&[1u8][..], k].concat(),
            ExportToken::Ops(OpsCursor { gen, pos }) => {
                [&[4u8, *gen][..], &pos.to_le_bytes()].concat()
            }
        }
    }

    fn decode(b: &[u8]) -> Option<ExportToken> {
        let ops = |gen: u8, pos| (gen < 2).then_some(ExportToken::Ops(OpsCursor { gen, pos }));
        match (*b.first()?, &b[1..]) {
            (0, []) => Some(ExportToken::Items(None)),
            (1, k) if k.len() <= MAX_KEY_BYTES => Some(ExportToken::Items(Some(k.to_vec()))),
            (2, [gen]) => ops(*gen, 0),
            (3, [gen, k @ ..]) if !k.is_empty() && k.len() <= OP_ID_MAX_BYTES => ops(*gen, 0),
            (4, [gen, p @ ..]) if p.len() == 4 => ops(*gen, u32::from_le_bytes(p.try_into().ok()?)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod token_tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_version_1_tokens_restart_their_generation() {
        for t in [
            ExportToken::Items(None),
            ExportToken::Items(Some(b"k".to_vec())),
            ExportToken::Ops(OpsCursor { gen: 1, pos: 0 }),
            ExportToken::Ops(OpsCursor {
                gen: 0,
                pos: u32::MAX,
            }),
        ] {
            assert_eq!(ExportToken::decode(&t.encode()), Some(t));
        }
        let v1_after = [&[3u8, 1][..], &[9; 16]].concat();
        assert_eq!(
            ExportToken::decode(&v1_after),
            Some(ExportToken::Ops(OpsCursor { gen: 1, pos: 0 }))
        );
        assert_eq!(
            ExportToken::decode(&[2, 0]),
            Some(ExportToken::Ops(OpsCursor { gen: 0, pos: 0 }))
        );
        assert_eq!(ExportToken::decode(&[4, 2, 0, 0, 0, 0]), None);
        assert_eq!(ExportToken::decode(&[4, 0, 0, 0]), None);
    }
}
