//! Items: put (with hard-cap eviction), delete, get, has. Batches are in `batch.rs`.

use crate::changes::{change_cost, op_cost, put_cost};
use crate::layout::{scoped_key, Slot};
use crate::oplog::{ArgsHasher, OpCtx, Outcome};
use crate::{check_key, subdb_bounds, Store, KIND_DELETE, KIND_PUT};
use flotilla_types::limits::MAX_VALUE_BYTES;
use flotilla_types::{DeleteError, GetError, PutError, PutOutcome, SubDbId};
use ic_stable_structures::Memory;

impl<M: Memory> Store<M> {
    /// Inserts or replaces `key`. Past the SubDB's hard cap, the smallest keys are evicted in
    /// the same operation (which may be `key` itself when it is the smallest).
    /// `WritesPaused` while a move freezes the SubDB, or throttles its writers and their
    /// budget is spent.
    pub fn put(
        &mut self,
        op: Option<OpCtx<'_>>,
        id: SubDbId,
        key: &[u8],
        value: &[u8],
    ) -> Result<PutOutcome, PutError> {
        let op_cost = op_cost(op.is_some());
        self.once(
            op,
            id,
            |salt| {
                ArgsHasher::new(KIND_PUT, salt)
                    .bytes(key)
                    .bytes(value)
                    .finish()
            },
            |o| match o {
                Outcome::Put(p) => Some(p),
                _ => None,
            },
            |p| Outcome::Put(*p),
            |s| {
                let mut slot = s.live_slot(id).ok_or(PutError::UnknownSubDb)?;
                check_key(key, |len, max| PutError::KeyTooLarge { len, max })?;
                if value.len() > MAX_VALUE_BYTES {
                    return Err(PutError::ValueTooLarge {
                        len: value.len() as u64,
                        max: MAX_VALUE_BYTES as u64,
                    });
                }
                if slot.frozen || !s.admit(id, &slot, || put_cost(&slot, key, value) + op_cost) {
                    return Err(PutError::WritesPaused);
                }
                let replaced = s.raw_put(id, &mut slot, key, value);
                let evicted = s.enforce_cap(id, &mut slot);
                s.put_slot(id, &slot);
                Ok(PutOutcome { replaced, evicted })
            },
        )
    }

    /// Writes one item and keeps the counters exact; true if it replaced a value.
    pub(crate) fn raw_put(
        &mut self,
        id: SubDbId,
        slot: &mut Slot,
        key: &[u8],
        value: &[u8],
    ) -> bool {
        self.track(id, slot, key);
        let new = (key.len() + value.len()) as u64;
        match self.data.insert(scoped_key(id, key), value.to_vec()) {
            Some(old) => {
                let old = (key.len() + old.len()) as u64;
                slot.bytes = slot.bytes - old + new;
                self.totals.bytes = self.totals.bytes - old + new;
                true
            }
            None => {
                slot.items += 1;
                slot.bytes += new;
                self.totals.items += 1;
                self.totals.bytes += new;
                false
            }
        }
    }

    pub(crate) fn raw_delete(&mut self, id: SubDbId, slot: &mut Slot, key: &[u8]) -> bool {
        self.track(id, slot, key);
        match self.data.remove(&scoped_key(id, key)) {
            Some(old) => {
                let b = (key.len() + old.len()) as u64;
                slot.items -= 1;
                slot.bytes -= b;
                self.totals.items -= 1;
                self.totals.bytes -= b;
                true
            }
            None => false,
        }
    }

    pub(crate) fn enforce_cap(&mut self, id: SubDbId, slot: &mut Slot) -> u32 {
        let mut evicted = 0;
        while let Some(cap) = slot.hard_cap() {
            if slot.items <= cap {
                break;
            }
            let (lo, hi) = subdb_bounds(id);
            let smallest = self.data.keys_range((lo, hi)).next().expect("items > 0");
            self.raw_delete(id, slot, &smallest[4..]);
            evicted += 1;
        }
        evicted
    }

    /// Removes `key`; true if it was there. `WritesPaused` as for [`Store::put`].
    pub fn delete(
        &mut self,
        op: Option<OpCtx<'_>>,
        id: SubDbId,
        key: &[u8],
    ) -> Result<bool, DeleteError> {
        let op_cost = op_cost(op.is_some());
        self.once(
            op,
            id,
            |salt| ArgsHasher::new(KIND_DELETE, salt).bytes(key).finish(),
            |o| match o {
                Outcome::Deleted(b) => Some(b),
                _ => None,
            },
            |b| Outcome::Deleted(*b),
            |s| {
                let mut slot = s.live_slot(id).ok_or(DeleteError::UnknownSubDb)?;
                check_key(key, |len, max| DeleteError::KeyTooLarge { len, max })?;
                if slot.frozen || !s.admit(id, &slot, || change_cost(key.len()) + op_cost) {
                    return Err(DeleteError::WritesPaused);
                }
                let existed = s.raw_delete(id, &mut slot, key);
                if existed {
                    s.put_slot(id, &slot);
                }
                Ok(existed)
            },
        )
    }

    pub fn get(&self, id: SubDbId, key: &[u8]) -> Result<Option<Vec<u8>>, GetError> {
        self.live_slot(id).ok_or(GetError::UnknownSubDb)?;
        check_key(key, |len, max| GetError::KeyTooLarge { len, max })?;
        Ok(self.data.get(&scoped_key(id, key)))
    }

    pub fn has(&self, id: SubDbId, key: &[u8]) -> Result<bool, GetError> {
        self.live_slot(id).ok_or(GetError::UnknownSubDb)?;
        check_key(key, |len, max| GetError::KeyTooLarge { len, max })?;
        Ok(self.data.contains_key(&scoped_key(id, key)))
    }
}
