//! The world's message queue: messages ordered by (delivery round, sequence number).
//!
//! The sequence number is global and grows with every push, so two messages due in the same
//! round are delivered in the order they were sent, and the order never depends on anything
//! but the run's own decisions.

use std::collections::BTreeMap;

pub struct Queue<T> {
    items: BTreeMap<(u64, u64), T>,
    next_seq: u64,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            items: BTreeMap::new(),
            next_seq: 0,
        }
    }
}

impl<T> Queue<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Enqueues `item` for delivery in `round`; returns its sequence number.
    pub fn push(&mut self, round: u64, item: T) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.items.insert((round, seq), item);
        seq
    }

    /// The next message due at or before `round`, earliest (round, seq) first.
    pub fn pop_due(&mut self, round: u64) -> Option<(u64, u64, T)> {
        let (&(r, _), _) = self.items.first_key_value()?;
        if r > round {
            return None;
        }
        self.items.pop_first().map(|((r, s), t)| (r, s, t))
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Messages in delivery order (for snapshots and quiescence checks).
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64, &T)> {
        self.items.iter().map(|((r, s), t)| (*r, *s, t))
    }

    /// Removes every message matching `pred`, in delivery order.
    pub fn drain_where(&mut self, mut pred: impl FnMut(&T) -> bool) -> Vec<T> {
        let keys: Vec<(u64, u64)> = self
            .items
            .iter()
            .filter(|(_, t)| pred(t))
            .map(|(k, _)| *k)
            .collect();
        keys.into_iter()
            .filter_map(|k| self.items.remove(&k))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_round_then_send_order() {
        let mut q = Queue::new();
        q.push(3, "c");
        q.push(1, "a");
        q.push(3, "d");
        q.push(2, "b");
        q.push(1, "a2");
        assert_eq!(q.len(), 5);
        let mut out = vec![];
        while let Some((_, _, t)) = q.pop_due(10) {
            out.push(t);
        }
        assert_eq!(out, ["a", "a2", "b", "c", "d"]);
        assert!(q.is_empty());
    }

    #[test]
    fn holds_back_future_messages() {
        let mut q = Queue::new();
        q.push(5, 1);
        q.push(2, 2);
        assert_eq!(q.pop_due(1).map(|m| m.2), None);
        assert_eq!(q.pop_due(2).map(|m| m.2), Some(2));
        assert_eq!(q.pop_due(4).map(|m| m.2), None);
        // A message pushed for an earlier round than one already queued still goes first.
        q.push(3, 3);
        assert_eq!(q.pop_due(5).map(|m| m.2), Some(3));
        assert_eq!(q.pop_due(5).map(|m| m.2), Some(1));
    }

    #[test]
    fn sequence_numbers_are_global() {
        let mut q = Queue::new();
        let a = q.push(9, ());
        let b = q.push(1, ());
        assert!(b > a);
        assert_eq!(q.pop_due(9).map(|m| m.1), Some(b));
    }

    #[test]
    fn drain_where_removes_matches_in_order() {
        let mut q = Queue::new();
        for i in 0..6 {
            q.push(6 - i, i);
        }
        let odd = q.drain_where(|i| i % 2 == 1);
        assert_eq!(odd, [5, 3, 1]);
        let rest: Vec<_> = q.iter().map(|(_, _, t)| *t).collect();
        assert_eq!(rest, [4, 2, 0]);
    }
}
