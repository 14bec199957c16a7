//! Heap indexes over the registry, so the timer's work and placement do not walk every
//! partition: the placed (active or full) partitions and the spares in creation order, and
//! every partition by when its stats were last received or asked for, and by when its next
//! cycle-balance check is due.
//!
//! They hold nothing the registry does not: [`Index::open`] derives them from it (one pass, at
//! upgrade) and every registry write goes through [`Index::put_partition`], which keeps them
//! in step. Only the time a stats call was last *asked for* is heap-only: after an upgrade
//! (which forgets calls in flight) a partition is due by its last stats, as before.

use crate::records::PartitionRecord;
use crate::{Env, Index};
use candid::Principal;
use flotilla_types::index::PartitionState;
use ic_stable_structures::Memory;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Default)]
pub(crate) struct Fleet {
    /// Active and full partitions, by creation order (`PartitionRecord::seq`).
    placed: BTreeMap<u64, Principal>,
    /// Spares, by creation order.
    spares: BTreeMap<u64, Principal>,
    /// `(time, partition)`: when its stats were last received or asked for (0: never).
    due: BTreeSet<(u64, Principal)>,
    due_at: BTreeMap<Principal, u64>,
    /// `(time, partition)`: when its next cycle-balance check is due (`cycles.rs`).
    status: BTreeSet<(u64, Principal)>,
    status_at: BTreeMap<Principal, u64>,
    /// The index's own balance at its last timer run, and when (ns; 0: not since the install
    /// or upgrade).
    pub(crate) balance: (u128, u64),
}

impl Fleet {
    fn add(&mut self, id: Principal, rec: &PartitionRecord, due: u64) {
        match rec.state {
            PartitionState::Spare => self.spares.insert(rec.seq, id),
            PartitionState::Active | PartitionState::Full => self.placed.insert(rec.seq, id),
        };
        self.set_due(id, due);
    }

    fn remove(&mut self, id: Principal, rec: &PartitionRecord) {
        let by_seq = match rec.state {
            PartitionState::Spare => &mut self.spares,
            PartitionState::Active | PartitionState::Full => &mut self.placed,
        };
        if by_seq.get(&rec.seq) == Some(&id) {
            by_seq.remove(&rec.seq);
        }
    }

    fn set_status_due(&mut self, id: Principal, t: u64) {
        if let Some(old) = self.status_at.insert(id, t) {
            self.status.remove(&(old, id));
        }
        self.status.insert((t, id));
    }

    fn set_due(&mut self, id: Principal, t: u64) {
        if let Some(old) = self.due_at.insert(id, t) {
            self.due.remove(&(old, id));
        }
        self.due.insert((t, id));
    }

    pub(crate) fn spare_count(&self) -> u64 {
        self.spares.len() as u64
    }
}

impl<M: Memory> Index<M> {
    /// Derives the fleet indexes from the registry (install and upgrade).
    pub(crate) fn build_fleet(&mut self) {
        let mut fleet = Fleet::default();
        for e in self.registry.iter() {
            let (id, rec) = e.into_pair();
            fleet.add(id, &rec, rec.stats_at);
            fleet.set_status_due(id, self.status_due_at(&rec));
        }
        self.fleet = fleet;
    }

    /// Writes a partition's record, keeping the fleet indexes in step. (Every registry write
    /// goes through here.) A record whose `stats_at` changed is due by it; otherwise it keeps
    /// its place in the stats order (a call may have been asked for since).
    pub(crate) fn put_partition(&mut self, id: Principal, rec: PartitionRecord) {
        let old = self.registry.insert(id, rec.clone());
        let due = match (&old, self.fleet.due_at.get(&id)) {
            (Some(o), Some(t)) if o.stats_at == rec.stats_at => *t,
            _ => rec.stats_at,
        };
        if let Some(o) = &old {
            self.fleet.remove(id, o);
        }
        let status_due = self.status_due_at(&rec);
        self.fleet.add(id, &rec, due);
        self.fleet.set_status_due(id, status_due);
    }

    /// Up to `max` partitions whose cycle-balance check is due at `now`, most overdue first.
    pub(crate) fn status_due(&self, now: u64, max: usize) -> Vec<Principal> {
        self.fleet
            .status
            .iter()
            .take_while(|(t, _)| *t <= now)
            .take(max)
            .map(|(_, p)| *p)
            .collect()
    }

    /// Placed partitions, newest first.
    pub(crate) fn placed_newest_first(&self) -> impl Iterator<Item = Principal> + '_ {
        self.fleet.placed.values().rev().copied()
    }

    /// Spares, oldest first.
    pub(crate) fn spares_oldest_first(&self) -> impl Iterator<Item = Principal> + '_ {
        self.fleet.spares.values().copied()
    }

    /// Up to `max` partitions whose stats are due at `env.now` (never received, or received
    /// or asked for at least `period` ago), most overdue first.
    pub(crate) fn stats_due(&self, env: &Env, period: u64, max: usize) -> Vec<Principal> {
        self.fleet
            .due
            .iter()
            .take_while(|(t, _)| *t == 0 || env.now.saturating_sub(*t) >= period)
            .take(max)
            .map(|(_, p)| *p)
            .collect()
    }

    /// A stats call to `id` was asked for at `now`: not due again for a period.
    pub(crate) fn stats_asked(&mut self, id: Principal, now: u64) {
        if self.fleet.due_at.contains_key(&id) {
            self.fleet.set_due(id, now);
        }
    }
}

#[cfg(test)]
impl<M: Memory> Index<M> {
    /// Panics unless the fleet indexes say what the registry says.
    pub(crate) fn check_fleet(&self) {
        let mut placed = BTreeMap::new();
        let mut spares = BTreeMap::new();
        for e in self.registry.iter() {
            let (id, rec) = e.into_pair();
            match rec.state {
                PartitionState::Spare => spares.insert(rec.seq, id),
                _ => placed.insert(rec.seq, id),
            };
            let t = self.fleet.due_at.get(&id).copied();
            assert!(t.is_some_and(|t| self.fleet.due.contains(&(t, id))), "{id}");
        }
        assert_eq!(self.fleet.placed, placed);
        assert_eq!(self.fleet.spares, spares);
        assert_eq!(self.fleet.due.len() as u64, self.registry.len());
        assert_eq!(self.fleet.status.len() as u64, self.registry.len());
        assert_eq!(self.fleet.due_at.len() as u64, self.registry.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(state: PartitionState, seq: u64, stats_at: u64) -> PartitionRecord {
        PartitionRecord {
            state,
            seq,
            bytes: 0,
            items: 0,
            subdbs: 0,
            stable_memory_bytes: 0,
            stats_at,
            created_at: 0,
            cycles: None,
            cycles_at: None,
            cycles_asked_at: None,
            topped_up: None,
            burn_per_period: None,
            burn_base: None,
            module: None,
            health: None,
        }
    }

    fn p(n: u8) -> Principal {
        Principal::from_slice(&[n; 29])
    }

    #[test]
    fn moves_between_spares_and_placed_and_reorders_by_due_time() {
        let mut f = Fleet::default();
        f.add(p(1), &rec(PartitionState::Spare, 0, 0), 0);
        f.add(p(2), &rec(PartitionState::Active, 1, 50), 50);
        assert_eq!(f.spare_count(), 1);
        // Promoted: a new seq, placed.
        f.remove(p(1), &rec(PartitionState::Spare, 0, 0));
        f.add(p(1), &rec(PartitionState::Active, 2, 0), 0);
        assert_eq!(f.spare_count(), 0);
        assert_eq!(
            f.placed.values().copied().collect::<Vec<_>>(),
            vec![p(2), p(1)]
        );
        assert_eq!(f.due.iter().next(), Some(&(0, p(1))));
        f.set_due(p(1), 60);
        assert_eq!(
            f.due.iter().copied().collect::<Vec<_>>(),
            vec![(50, p(2)), (60, p(1))]
        );
        assert_eq!(f.due_at.len(), 2);
    }
}
