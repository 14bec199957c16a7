//! SubDB lifecycle: create, delete (reclaimed in batches by `purge_step`), status, stats,
//! metadata, listing, totals and the write pause.

use crate::layout::{Slot, SlotState, CREATE_SCOPE};
use crate::oplog::{ArgsHasher, OpCtx, Outcome};
use crate::{
    subdb_bounds, Store, SubDbStatus, Totals, KIND_CREATE, KIND_DELETE_SUBDB, PURGE_BATCH,
};
use flotilla_types::limits::MAX_SUBDB_META_BYTES;
use flotilla_types::{CreateSubDbError, DeleteSubDbError, SubDbId, SubDbStats};
use ic_stable_structures::Memory;

impl<M: Memory> Store<M> {
    pub(crate) fn slot(&self, id: SubDbId) -> Option<Slot> {
        self.slots.get(id as u64)
    }

    pub(crate) fn live_slot(&self, id: SubDbId) -> Option<Slot> {
        self.slot(id).filter(|s| s.state == SlotState::Live)
    }

    /// Writes slot `id`, keeping the size index in step (every slot write goes through here).
    pub(crate) fn put_slot(&mut self, id: SubDbId, slot: &Slot) {
        let was = self.slots.get(id as u64);
        let old = was.filter(|w| w.state == SlotState::Live).map(|w| w.bytes);
        let new = (slot.state == SlotState::Live).then_some(slot.bytes);
        if old != new {
            if let Some(b) = old {
                self.by_size.remove(&(b, id));
            }
            if let Some(b) = new {
                self.by_size.insert((b, id));
            }
        }
        self.slots.set(id as u64, slot);
    }

    pub(crate) fn new_slot(&mut self, slot: Slot, meta: &[u8]) -> SubDbId {
        let id = self.slots.len();
        assert!(id < CREATE_SCOPE as u64, "SubDB ids exhausted");
        if slot.state == SlotState::Live {
            self.by_size.insert((slot.bytes, id as SubDbId));
        }
        self.slots.push(&slot);
        self.meta.insert(id as u32, meta.to_vec());
        id as SubDbId
    }

    /// Creates a SubDB. `meta` is an opaque blob kept beside it and moved with it (the
    /// partition stores the owner and access lists there).
    pub fn create_subdb(
        &mut self,
        op: Option<OpCtx<'_>>,
        hard_cap: Option<u64>,
        meta: &[u8],
    ) -> Result<SubDbId, CreateSubDbError> {
        self.once(
            op,
            CREATE_SCOPE,
            |salt| {
                ArgsHasher::new(KIND_CREATE, salt)
                    .u64(hard_cap.map_or(u64::MAX, |c| c))
                    .bytes(meta)
                    .finish()
            },
            |o| match o {
                Outcome::Created(id) => Some(id),
                _ => None,
            },
            |id| Outcome::Created(*id),
            |s| {
                if hard_cap == Some(0) {
                    return Err(CreateSubDbError::InvalidHardCap);
                }
                if meta.len() > MAX_SUBDB_META_BYTES {
                    return Err(CreateSubDbError::MetaTooLarge {
                        len: meta.len() as u64,
                        max: MAX_SUBDB_META_BYTES as u64,
                    });
                }
                let id = s.new_slot(Slot::new(SlotState::Live, hard_cap), meta);
                s.totals.live_subdbs += 1;
                Ok(id)
            },
        )
    }

    /// Deletes a SubDB. It disappears at once; its items are reclaimed now up to
    /// [`PURGE_BATCH`], the rest by [`Store::purge_step`]. Its id is never reused.
    pub fn delete_subdb(
        &mut self,
        op: Option<OpCtx<'_>>,
        id: SubDbId,
    ) -> Result<(), DeleteSubDbError> {
        self.once(
            op,
            id,
            |salt| ArgsHasher::new(KIND_DELETE_SUBDB, salt).finish(),
            |o| (o == Outcome::SubDbDeleted).then_some(()),
            |_| Outcome::SubDbDeleted,
            |s| {
                let mut slot = s.live_slot(id).ok_or(DeleteSubDbError::UnknownSubDb)?;
                if slot.frozen {
                    return Err(DeleteSubDbError::WritesPaused);
                }
                s.discard(id, &mut slot);
                Ok(())
            },
        )
    }

    /// Marks a live or importing SubDB deleted and reclaims a first batch of its items.
    pub(crate) fn discard(&mut self, id: SubDbId, slot: &mut Slot) {
        if slot.state == SlotState::Live {
            self.totals.live_subdbs -= 1;
        }
        slot.state = SlotState::Purging;
        slot.frozen = false;
        if slot.exporting {
            // The frontier and write budget go now; logged changes are reclaimed with the
            // items.
            slot.exporting = false;
            self.frontiers.remove(&id);
            self.throttles.remove(&id);
        }
        self.totals.purging_items += slot.items;
        self.totals.purging_bytes += slot.bytes;
        self.meta.remove(&id);
        self.put_slot(id, slot);
        self.purging.insert(id, ());
        self.purge_subdb(id, PURGE_BATCH);
    }

    /// Reclaims up to `max_items` items of one purging SubDB; true when it is fully reclaimed.
    fn purge_subdb(&mut self, id: SubDbId, max_items: usize) -> bool {
        let Some(mut slot) = self.slot(id).filter(|s| s.state == SlotState::Purging) else {
            self.purging.remove(&id);
            return true;
        };
        let max_items = max_items.saturating_sub(self.drop_changes(id, max_items));
        let (lo, hi) = subdb_bounds(id);
        let keys: Vec<Vec<u8>> = self.data.keys_range((lo, hi)).take(max_items).collect();
        for k in keys {
            if let Some(v) = self.data.remove(&k) {
                let b = (k.len() - 4 + v.len()) as u64;
                slot.items -= 1;
                slot.bytes -= b;
                self.totals.items -= 1;
                self.totals.bytes -= b;
                self.totals.purging_items -= 1;
                self.totals.purging_bytes -= b;
            }
        }
        let done = slot.items == 0 && self.pending_changes_any(id);
        if done {
            slot.state = SlotState::Gone;
            self.purging.remove(&id);
        }
        self.put_slot(id, &slot);
        done
    }

    /// Reclaims up to `max_items` items of deleted SubDBs. Returns how many remain.
    /// Canisters call this from a timer until it returns 0.
    pub fn purge_step(&mut self, mut max_items: usize) -> u64 {
        // Only the SubDBs marked for reclaiming, oldest id first; a step with nothing marked
        // costs one empty range probe, however many SubDB ids the store has handed out.
        while max_items > 0 {
            let Some(id) = self.purging.keys().next() else {
                break;
            };
            let before = self.totals.purging_items;
            let done = self.purge_subdb(id, max_items);
            let reclaimed = (before - self.totals.purging_items) as usize;
            if !done && reclaimed == 0 {
                // Nothing left to take in this step (its budget went to change-log entries).
                break;
            }
            max_items = max_items.saturating_sub(reclaimed);
        }
        self.totals.purging_items
    }

    pub fn status(&self, id: SubDbId) -> SubDbStatus {
        match self.slot(id).map(|s| s.state) {
            Some(SlotState::Live) => SubDbStatus::Live,
            Some(SlotState::Importing) => SubDbStatus::Importing,
            _ => SubDbStatus::Absent,
        }
    }

    pub fn exists(&self, id: SubDbId) -> bool {
        self.live_slot(id).is_some()
    }

    pub fn stats(&self, id: SubDbId) -> Option<SubDbStats> {
        self.live_slot(id).map(|s| SubDbStats {
            id,
            items: s.items,
            bytes: s.bytes,
            hard_cap: s.hard_cap(),
        })
    }

    /// The opaque metadata blob of a live or importing SubDB.
    pub fn meta(&self, id: SubDbId) -> Option<Vec<u8>> {
        self.meta.get(&id)
    }

    /// Replaces the metadata blob of a live SubDB.
    pub fn set_meta(&mut self, id: SubDbId, meta: &[u8]) -> Result<(), CreateSubDbError> {
        if meta.len() > MAX_SUBDB_META_BYTES {
            return Err(CreateSubDbError::MetaTooLarge {
                len: meta.len() as u64,
                max: MAX_SUBDB_META_BYTES as u64,
            });
        }
        if self.exists(id) {
            self.meta.insert(id, meta.to_vec());
        }
        Ok(())
    }

    /// Live SubDBs with ids from `from`, in id order, at most `limit`.
    pub fn list_subdbs(&self, from: SubDbId, limit: usize) -> Vec<SubDbStats> {
        (from as u64..self.slots.len())
            .filter_map(|i| self.stats(i as SubDbId))
            .take(limit)
            .collect()
    }

    /// The `limit` largest live SubDBs by bytes, largest first (ties: higher id first),
    /// from the size index: O(limit), whatever the number of SubDBs.
    pub fn largest_subdbs(&self, limit: usize) -> Vec<SubDbStats> {
        self.by_size
            .iter()
            .rev()
            .take(limit)
            .filter_map(|(_, id)| self.stats(*id))
            .collect()
    }

    pub fn totals(&self) -> Totals {
        Totals {
            op_records: self.ops.record_count(),
            ..self.totals
        }
    }

    /// Pauses (or resumes) writes to a live SubDB: while frozen, mutations answer
    /// `WritesPaused` and reads go on. Used for a move's cutover. False if not live.
    pub fn set_frozen(&mut self, id: SubDbId, frozen: bool) -> bool {
        let Some(mut slot) = self.live_slot(id) else {
            return false;
        };
        slot.frozen = frozen;
        self.put_slot(id, &slot);
        true
    }

    pub fn is_frozen(&self, id: SubDbId) -> bool {
        self.live_slot(id).is_some_and(|s| s.frozen)
    }
}
