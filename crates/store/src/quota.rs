//! What a write would leave a SubDB holding, without applying it. The partition enforces a
//! SubDB's byte quota with this before it lets a put or a batch reach the store, so a write
//! that would pass the quota stores nothing. Read-only: nothing here changes the store.

use crate::layout::scoped_key;
use crate::{subdb_bounds, Store};
use flotilla_types::{OpId, SubDbId};
use ic_stable_structures::Memory;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// One write of a projection: a key and, for a put, its value's length (`None`: a delete).
pub type ProjectedOp<'a> = (&'a [u8], Option<usize>);

impl<M: Memory> Store<M> {
    /// The bytes (keys plus values) live SubDB `id` would hold after `ops` were applied in
    /// order exactly as [`Store::put`], [`Store::delete`] and [`Store::batch`] apply them,
    /// hard-cap evictions included (after each put, the smallest keys go until the SubDB is
    /// back at its cap). `None` if `id` is not live. Reads the old value of every key a put
    /// replaces or a delete or eviction removes.
    pub fn bytes_after<'a>(
        &self,
        id: SubDbId,
        ops: impl IntoIterator<Item = ProjectedOp<'a>>,
    ) -> Option<u64> {
        let slot = self.live_slot(id)?;
        let cap = slot.hard_cap();
        let (mut items, mut bytes) = (slot.items, slot.bytes);
        // Keys the ops touched: `Some(len)` held with a value of `len` bytes, `None` gone.
        let mut touched: BTreeMap<Vec<u8>, Option<u64>> = BTreeMap::new();
        // The touched keys that are held, for the smallest-key search of evictions.
        let mut held: BTreeSet<Vec<u8>> = BTreeSet::new();
        // Every stored key below this bound is gone in `touched` (evictions walk up).
        let (mut from, hi) = subdb_bounds(id);
        let value_len =
            |touched: &BTreeMap<Vec<u8>, Option<u64>>, key: &[u8]| match touched.get(key) {
                Some(v) => *v,
                None => self.data.get(&scoped_key(id, key)).map(|v| v.len() as u64),
            };
        for (key, value) in ops {
            let old = value_len(&touched, key);
            match value {
                Some(len) => {
                    let new = (key.len() + len) as u64;
                    match old {
                        Some(o) => bytes = bytes - (key.len() as u64 + o) + new,
                        None => {
                            items += 1;
                            bytes += new;
                        }
                    }
                    touched.insert(key.to_vec(), Some(len as u64));
                    held.insert(key.to_vec());
                    while cap.is_some_and(|c| items > c) {
                        // The smallest held key: the first stored key not gone, or the
                        // smallest touched key held, whichever is smaller.
                        let stored = self
                            .data
                            .keys_range((from.clone(), hi.clone()))
                            .map(|k| k[4..].to_vec())
                            .find(|k| !matches!(touched.get(k), Some(None)));
                        if let Some(k) = &stored {
                            from = Bound::Included(scoped_key(id, k));
                        }
                        let smallest = match (stored, held.first()) {
                            (Some(s), Some(h)) => s.min(h.clone()),
                            (Some(s), None) => s,
                            (None, Some(h)) => h.clone(),
                            (None, None) => break,
                        };
                        let len = value_len(&touched, &smallest).unwrap_or(0);
                        items -= 1;
                        bytes -= smallest.len() as u64 + len;
                        held.remove(&smallest);
                        touched.insert(smallest, None);
                    }
                }
                None => {
                    if let Some(o) = old {
                        items -= 1;
                        bytes -= key.len() as u64 + o;
                        touched.insert(key.to_vec(), None);
                        held.remove(key);
                    }
                }
            }
        }
        Some(bytes)
    }

    /// Whether the op-id log still remembers `op_id` for SubDB `id` (a retry of it replays
    /// its first answer, or conflicts, whatever the SubDB holds now).
    pub fn op_recorded(&self, id: SubDbId, op_id: &OpId) -> bool {
        self.ops.record_of(id, op_id.as_bytes()).is_some()
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{op, store};
    use flotilla_types::BatchOp;
    use serde_bytes::ByteBuf;

    /// xorshift64*: small, seeded, reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn projected(o: &BatchOp) -> super::ProjectedOp<'_> {
        match o {
            BatchOp::Put { key, value } => (&key[..], Some(value.len())),
            BatchOp::Delete { key } => (&key[..], None),
        }
    }

    /// Random batches (puts, deletes, replacements, evictions under small hard caps) on random
    /// SubDBs: the projection always equals the bytes the store holds once it applied them.
    #[test]
    fn the_projection_matches_what_the_store_applies() {
        let seeds: u64 = std::env::var("FLOTILLA_QUOTA_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(200);
        for seed in 1..=seeds {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let mut s = store();
            let cap = [None, Some(1), Some(2), Some(5)][rng.below(4) as usize];
            let id = s.create_subdb(None, cap, b"").unwrap();
            for round in 0..20u8 {
                let n = 1 + rng.below(12) as usize;
                let ops: Vec<BatchOp> = (0..n)
                    .map(|_| {
                        let key = ByteBuf::from(vec![
                            b'a' + rng.below(8) as u8;
                            1 + rng.below(3) as usize
                        ]);
                        if rng.below(3) == 0 {
                            BatchOp::Delete { key }
                        } else {
                            let value = ByteBuf::from(vec![0; rng.below(40) as usize]);
                            BatchOp::Put { key, value }
                        }
                    })
                    .collect();
                let want = s.bytes_after(id, ops.iter().map(projected)).unwrap();
                let o = op(round.wrapping_add(1));
                s.batch(crate::tests::ctx(&o), id, &ops).unwrap();
                assert_eq!(
                    s.stats(id).unwrap().bytes,
                    want,
                    "seed={seed} round={round} cap={cap:?} ops={ops:?}"
                );
                assert!(s.op_recorded(id, &o), "seed={seed}");
            }
        }
    }
}
