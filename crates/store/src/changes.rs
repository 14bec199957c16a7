//! Change tracking for live moves: while a SubDB is exported, writes to keys the copy
//! already passed and its new op-log records are logged, shipped by `export_delta` and
//! forgotten once acknowledged. `export_delta` with `freeze` is the cutover: it freezes the
//! SubDB only when everything left fits in its one chunk. A move whose deltas do not converge
//! throttles the SubDB's writers: each delta chunk's export grants a write budget, and a write
//! whose changes would pass what is left of it answers `WritesPaused`.

use crate::layout::{scoped_key, Slot, Throttle};
use crate::oplog::RECORD_MAX_BYTES;
use crate::Store;
use flotilla_types::limits::{
    ITEM_OVERHEAD_BYTES, MAX_EXPORT_CHANGES, MAX_KEY_BYTES, OP_ID_MAX_BYTES, REPLY_BUDGET_BYTES,
};
use flotilla_types::{Chunk, ChunkHeader, Entry, ExportError, OpEntry, SubDbId};
use ic_stable_structures::Memory;
use serde_bytes::ByteBuf;

/// Logged changes one delta chunk examines at most (changes that ship as nothing, like op
/// records forgotten meanwhile, cost no budget), so a delta's work stays bounded.
pub const DELTA_SCAN_PER_CHUNK: usize = 20_000;

/// The least one logged change costs a throttled SubDB's write budget, so a budget no larger
/// than a chunk (`REPLY_BUDGET_BYTES`) admits at most [`DELTA_SCAN_PER_CHUNK`] changes: what
/// it admits is always examined by one delta chunk.
pub const THROTTLE_MIN_CHANGE_BYTES: u64 = (REPLY_BUDGET_BYTES / DELTA_SCAN_PER_CHUNK) as u64 + 1;

/// What a change of `bytes` (key and value, or op id and record) costs a write budget: at
/// most what it adds to a delta chunk, at least [`THROTTLE_MIN_CHANGE_BYTES`].
pub(crate) fn change_cost(bytes: usize) -> u64 {
    ((bytes + ITEM_OVERHEAD_BYTES) as u64).max(THROTTLE_MIN_CHANGE_BYTES)
}

/// The budget cost of a put of `key` and `value` to a SubDB with `slot`: the item, and the
/// eviction (a delete of the smallest key, at most `MAX_KEY_BYTES`) a hard cap may add.
pub(crate) fn put_cost(slot: &Slot, key: &[u8], value: &[u8]) -> u64 {
    let evicted = slot.hard_cap().map_or(0, |_| change_cost(MAX_KEY_BYTES));
    change_cost(key.len() + value.len()) + evicted
}

/// The budget cost of the op-log record a write with an op id logs (none without one).
pub(crate) fn op_cost(has_op_id: bool) -> u64 {
    if has_op_id {
        change_cost(OP_ID_MAX_BYTES + RECORD_MAX_BYTES)
    } else {
        0
    }
}

/// The frontier value of an exporting SubDB whose change log overflowed
/// ([`MAX_EXPORT_CHANGES`]): nothing more is logged and its exports answer `ChangeLogFull`.
/// (Other frontiers: `1 ++ key`, the copy passed `key`; `2`, the copy passed every item.)
const FRONTIER_OVERFLOWED: u8 = 3;
/// Tags of tracked changes.
const DIRTY_ITEM: u8 = 0;
pub(crate) const DIRTY_OP: u8 = 1;

/// A delta chunk and where it leaves the change log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    pub chunk: Chunk,
    /// The newest change in the chunk (the `ack` to pass once it is applied).
    pub version: u64,
    /// Changes remain beyond this chunk.
    pub more: bool,
    /// The SubDB is frozen: this chunk carries its header and the last changes there are
    /// (unless `more`, which a freeze never leaves behind by itself).
    pub frozen: bool,
}

/// One tracked change, as it ships in a delta chunk.
enum Change {
    Put(Entry),
    Delete(ByteBuf),
    Op(OpEntry),
}

impl Change {
    /// Bytes counted against the chunk budget (as `Chunk::budget_bytes` counts them).
    fn cost(&self) -> usize {
        ITEM_OVERHEAD_BYTES
            + match self {
                Change::Put(e) => e.key.len() + e.value.len(),
                Change::Delete(k) => k.len(),
                Change::Op(o) => o.op_id.len() + o.record.len(),
            }
    }
}

fn log_key(id: SubDbId, version: u64) -> Vec<u8> {
    let mut k = id.to_be_bytes().to_vec();
    k.extend_from_slice(&version.to_be_bytes());
    k
}

impl<M: Memory> Store<M> {
    /// Starts tracking changes to a live SubDB that is about to be copied away: from now on a
    /// write to a key the copy already passed, and every op-log record of the SubDB, is logged
    /// until [`Store::export_delta`] has shipped it and the shipment is acknowledged.
    /// Idempotent; restarting after an abort starts from scratch.
    pub fn begin_export(&mut self, id: SubDbId) -> Result<(), ExportError> {
        let mut slot = self.live_slot(id).ok_or(ExportError::UnknownSubDb)?;
        if !slot.exporting {
            slot.exporting = true;
            self.put_slot(id, &slot);
        }
        Ok(())
    }

    /// Ends a live SubDB's write pause and its change tracking, if any: a move's target once
    /// the index routes to it, or a source whose move was called off (its change log and copy
    /// frontier are dropped; a later `begin_export` starts from scratch). False if not live.
    pub fn resume_writes(&mut self, id: SubDbId) -> bool {
        let Some(mut slot) = self.live_slot(id) else {
            return false;
        };
        if slot.exporting || slot.frozen {
            let exporting = slot.exporting;
            slot.exporting = false;
            slot.frozen = false;
            self.put_slot(id, &slot);
            if exporting {
                self.clear_export_state(id);
            }
        }
        true
    }

    pub fn is_exporting(&self, id: SubDbId) -> bool {
        self.live_slot(id).is_some_and(|s| s.exporting)
    }

    /// Changes logged and not yet acknowledged, for one SubDB.
    pub fn pending_changes(&self, id: SubDbId) -> u64 {
        let (lo, hi) = (log_key(id, 0), log_key(id, u64::MAX));
        self.dirty_log.keys_range(lo..=hi).count() as u64
    }

    /// Forgets a SubDB's copy frontier, its write budget and its logged changes: at most
    /// `MAX_EXPORT_CHANGES`, all there can be, so one message does it.
    fn clear_export_state(&mut self, id: SubDbId) {
        self.frontiers.remove(&id);
        self.throttles.remove(&id);
        self.drop_changes(id, MAX_EXPORT_CHANGES as usize);
    }

    /// Forgets up to `max` logged changes of `id`; returns how many it forgot.
    pub(crate) fn drop_changes(&mut self, id: SubDbId, max: usize) -> usize {
        let logged: Vec<(Vec<u8>, Vec<u8>)> = self
            .dirty_log
            .range(log_key(id, 0)..=log_key(id, u64::MAX))
            .take(max)
            .map(|e| e.into_pair())
            .collect();
        for (lk, tagged) in &logged {
            self.dirty_log.remove(lk);
            self.dirty_keys.remove(&scoped_key(id, tagged));
        }
        logged.len()
    }

    /// True when no change of `id` is logged any more.
    pub(crate) fn pending_changes_any(&self, id: SubDbId) -> bool {
        self.dirty_log
            .keys_range(log_key(id, 0)..=log_key(id, u64::MAX))
            .next()
            .is_none()
    }

    /// `ChangeLogFull` once the SubDB's change log overflowed (see [`FRONTIER_OVERFLOWED`]).
    pub(crate) fn check_log(&self, id: SubDbId) -> Result<(), ExportError> {
        match self.frontiers.get(&id) {
            Some(f) if f.first() == Some(&FRONTIER_OVERFLOWED) => Err(ExportError::ChangeLogFull {
                max: MAX_EXPORT_CHANGES,
            }),
            _ => Ok(()),
        }
    }

    /// Whether a write to `id` whose logged changes cost at most `cost` (see [`change_cost`])
    /// may go ahead, charging it if so: always, unless a move throttles the SubDB's writers
    /// and less than `cost` is left of the budget the last delta export granted (then the
    /// write answers `WritesPaused`, and the writer retries after the next delta). Call it
    /// once every other check passed, so an admitted write is applied.
    /// (`cost` is only worked out for an exporting SubDB: the others pay one flag check.)
    pub(crate) fn admit(&mut self, id: SubDbId, slot: &Slot, cost: impl FnOnce() -> u64) -> bool {
        if !slot.exporting {
            return true;
        }
        let Some(mut t) = self.throttles.get(&id) else {
            return true;
        };
        let cost = cost();
        if cost > t.left {
            return false;
        }
        t.left -= cost;
        self.throttles.insert(id, t);
        true
    }

    /// What is left of a throttled SubDB's write budget (`None`: not throttled).
    pub fn write_budget_left(&self, id: SubDbId) -> Option<u64> {
        self.throttles.get(&id).map(|t| t.left)
    }

    /// Records that the copy has exported items up to `last` (`None`: all of them).
    pub(crate) fn advance_frontier(&mut self, id: SubDbId, last: Option<&[u8]>) {
        let current = self.frontiers.get(&id);
        let new = match last {
            None => vec![2],
            Some(k) => match &current {
                Some(c) if c[0] != 1 || &c[1..] >= k => return,
                _ => [&[1u8][..], k].concat(),
            },
        };
        if current.as_ref() != Some(&new) {
            self.frontiers.insert(id, new);
        }
    }

    /// Logs a write to `key` of an exporting SubDB when the copy has already passed it.
    pub(crate) fn track(&mut self, id: SubDbId, slot: &Slot, key: &[u8]) {
        if !slot.exporting {
            return;
        }
        let covered = match self.frontiers.get(&id) {
            None => false,
            Some(f) => f[0] == 2 || (f[0] == 1 && key <= &f[1..]),
        };
        if covered {
            self.mark_dirty(id, DIRTY_ITEM, key);
        }
    }

    pub(crate) fn mark_dirty(&mut self, id: SubDbId, tag: u8, key: &[u8]) {
        let mut tagged = vec![tag];
        tagged.extend_from_slice(key);
        let frontier = self.frontiers.get(&id);
        if frontier.as_ref().and_then(|f| f.first()) == Some(&FRONTIER_OVERFLOWED) {
            return;
        }
        if self.dirty_log.len() >= MAX_EXPORT_CHANGES
            && !self.dirty_keys.contains_key(&scoped_key(id, &tagged))
        {
            // The log is full: stop logging this SubDB; its export now answers
            // `ChangeLogFull` and the index calls the move off (`resume_writes` drops the log).
            self.frontiers.insert(id, vec![FRONTIER_OVERFLOWED]);
            return;
        }
        let mut h = *self.header.get();
        h.dirty_version += 1;
        let version = h.dirty_version;
        self.header.set(h);
        if let Some(old) = self.dirty_keys.insert(scoped_key(id, &tagged), version) {
            self.dirty_log.remove(&log_key(id, old));
        }
        self.dirty_log.insert(log_key(id, version), tagged);
    }

    /// Ships logged changes, oldest first, as one chunk of at most `budget` bytes (unless one
    /// change alone is larger): the current value of each changed key (a delete if it is gone)
    /// and each new op-log record. Changes up to `ack` — the version of the last delta the
    /// target applied — are forgotten first; nothing is forgotten before it is acknowledged, so
    /// a lost chunk is simply shipped again.
    ///
    /// With `freeze` (the cutover), writes pause — but only if every change left fits in this
    /// chunk, which then also carries the SubDB's header: the frozen export is always the last
    /// one, so the pause lasts a fixed number of calls whatever the backlog. Otherwise the chunk
    /// is an ordinary delta (`frozen` false) and the caller tries again after applying it. A
    /// SubDB frozen already answers frozen (a retry of a lost freeze: nothing changed since).
    ///
    /// `write_budget` throttles the SubDB's writers (a move whose deltas do not converge):
    /// until the export of the next chunk (`seq + 1`), writes are admitted while their changes
    /// cost at most this many bytes in all ([`change_cost`]); a retried export of the same
    /// `seq` grants nothing new. `None` lifts the throttle.
    pub fn export_delta(
        &mut self,
        id: SubDbId,
        seq: u64,
        ack: u64,
        budget: usize,
        freeze: bool,
        write_budget: Option<u64>,
    ) -> Result<Delta, ExportError> {
        let mut slot = self.live_slot(id).ok_or(ExportError::UnknownSubDb)?;
        if !slot.exporting {
            return Err(ExportError::NotExporting);
        }
        self.check_log(id)?;
        let freeze = freeze || slot.frozen;
        let acked: Vec<(Vec<u8>, Vec<u8>)> = self
            .dirty_log
            .range(log_key(id, 0)..=log_key(id, ack))
            .map(|e| e.into_pair())
            .collect();
        for (lk, tagged) in acked {
            self.dirty_log.remove(&lk);
            let dk = scoped_key(id, &tagged);
            let version = u64::from_be_bytes(lk[4..].try_into().unwrap());
            if self.dirty_keys.get(&dk) == Some(version) {
                self.dirty_keys.remove(&dk);
            }
        }
        let mut chunk = Chunk {
            seq,
            ..Chunk::default()
        };
        if freeze {
            // The last word on the SubDB's own settings too: its metadata (access lists) may
            // have changed since chunk 0 carried it, and nothing changes it once frozen.
            chunk.header = Some(ChunkHeader {
                hard_cap: slot.hard_cap(),
                meta: ByteBuf::from(self.meta(id).unwrap_or_default()),
                items: slot.items,
                bytes: slot.bytes,
            });
        }
        let mut version = ack;
        let mut used = chunk.budget_bytes();
        let mut more = false;
        for (examined, e) in self
            .dirty_log
            .range(log_key(id, ack.saturating_add(1))..=log_key(id, u64::MAX))
            .enumerate()
        {
            if examined == DELTA_SCAN_PER_CHUNK {
                more = true;
                break;
            }
            let tagged = e.value();
            let (tag, key) = (tagged[0], &tagged[1..]);
            let change = if tag == DIRTY_OP {
                // An op record forgotten by the op-log window meanwhile ships as nothing.
                self.ops.record_of(id, key).map(|rec| {
                    Change::Op(OpEntry {
                        op_id: ByteBuf::from(key.to_vec()),
                        record: ByteBuf::from(rec),
                    })
                })
            } else {
                Some(match self.data.get(&scoped_key(id, key)) {
                    Some(v) => Change::Put(Entry {
                        key: ByteBuf::from(key.to_vec()),
                        value: ByteBuf::from(v),
                    }),
                    None => Change::Delete(ByteBuf::from(key.to_vec())),
                })
            };
            let cost = change.as_ref().map_or(0, Change::cost);
            if version > ack && used + cost > budget {
                more = true;
                break;
            }
            used += cost;
            match change {
                Some(Change::Put(e)) => chunk.puts.push(e),
                Some(Change::Delete(k)) => chunk.deletes.push(k),
                Some(Change::Op(o)) => chunk.ops.push(o),
                None => {}
            }
            version = u64::from_be_bytes(e.key()[4..].try_into().unwrap());
        }
        let frozen = freeze && (slot.frozen || !more);
        if frozen && !slot.frozen {
            slot.frozen = true;
            self.put_slot(id, &slot);
        }
        if !frozen {
            // Not the last word yet: the header ships with the chunk that freezes.
            chunk.header = None;
        }
        match write_budget {
            Some(left) if !frozen => {
                if self.throttles.get(&id).map(|t| t.seq) != Some(seq) {
                    self.throttles.insert(id, Throttle { seq, left });
                }
            }
            _ => {
                self.throttles.remove(&id);
            }
        }
        Ok(Delta {
            chunk,
            version,
            more,
            frozen,
        })
    }
}
