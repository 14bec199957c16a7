//! The reference model: what every client's SubDBs must contain.
//!
//! Each client owns its SubDBs and has one operation in flight at a time, so the model is
//! exact: a SubDB's contents are the result of its acknowledged writes, and the only key whose
//! value is open at any moment is the one its owner's current write touches (old or new
//! value). Values are remembered by length and a 64-bit digest, not by content.

use candid::Principal;
use flotilla_types::InnerKey;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hasher};

/// A value, by length and digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValueRef {
    pub len: u32,
    pub digest: u64,
}

impl ValueRef {
    pub fn of(bytes: &[u8]) -> ValueRef {
        let mut h = DefaultHasher::new();
        h.write(bytes);
        ValueRef {
            len: bytes.len() as u32,
            digest: h.finish(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubDbState {
    Live,
    /// Deletion acknowledged: must never be routable or readable again.
    Deleted,
}

#[derive(Clone, Debug)]
pub struct SubDbModel {
    pub owner: usize,
    pub state: SubDbState,
    pub items: BTreeMap<Vec<u8>, ValueRef>,
    /// Keys whose value is unknown because a write to them was abandoned unacknowledged
    /// (itself reported as a violation); checks skip them until the next acknowledged write.
    pub uncertain: BTreeSet<Vec<u8>>,
    /// Every inner key this SubDB was seen at (create reply, routes, `Moved` answers).
    pub homes: BTreeSet<InnerKey>,
    /// The reader lists the SubDB may have: the last acknowledged `set_access` (empty at
    /// creation), plus any abandoned unacknowledged since (each may have applied). Writers
    /// stay empty.
    pub readers: BTreeSet<Vec<Principal>>,
}

impl SubDbModel {
    pub fn bytes(&self) -> u64 {
        self.items
            .iter()
            .map(|(k, v)| k.len() as u64 + v.len as u64)
            .sum()
    }
}

/// What one key may read as right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Exactly(Option<ValueRef>),
    /// A write is in flight: the old or the new value.
    Either(Option<ValueRef>, Option<ValueRef>),
    Unknown,
}

impl Expect {
    pub fn admits(&self, got: Option<ValueRef>) -> bool {
        match *self {
            Expect::Exactly(v) => got == v,
            Expect::Either(a, b) => got == a || got == b,
            Expect::Unknown => true,
        }
    }
}

#[derive(Default)]
pub struct Model {
    pub subdbs: BTreeMap<String, SubDbModel>,
}

impl Model {
    pub fn create(&mut self, outer: &str, owner: usize, home: InnerKey) {
        let mut homes = BTreeSet::new();
        homes.insert(home);
        self.subdbs.insert(
            outer.to_string(),
            SubDbModel {
                owner,
                state: SubDbState::Live,
                items: BTreeMap::new(),
                uncertain: BTreeSet::new(),
                homes,
                readers: BTreeSet::from([vec![]]),
            },
        );
    }

    pub fn live(&self, outer: &str) -> Option<&SubDbModel> {
        self.subdbs
            .get(outer)
            .filter(|s| s.state == SubDbState::Live)
    }

    pub fn live_mut(&mut self, outer: &str) -> Option<&mut SubDbModel> {
        self.subdbs
            .get_mut(outer)
            .filter(|s| s.state == SubDbState::Live)
    }

    /// What `key` must read as, given an optional write in flight to it.
    pub fn expect(&self, outer: &str, key: &[u8], in_flight: Option<Option<ValueRef>>) -> Expect {
        let Some(s) = self.subdbs.get(outer) else {
            return Expect::Unknown;
        };
        if s.uncertain.contains(key) {
            return Expect::Unknown;
        }
        let cur = s.items.get(key).copied();
        match in_flight {
            Some(new) if new != cur => Expect::Either(cur, new),
            _ => Expect::Exactly(cur),
        }
    }

    /// The SubDB's bytes before and after a put of `len` bytes to `key`, if the model knows
    /// them exactly (a live SubDB with no uncertain key).
    pub fn bytes_around_put(&self, outer: &str, key: &[u8], len: u32) -> Option<(u64, u64)> {
        let s = self.live(outer).filter(|s| s.uncertain.is_empty())?;
        let before = s.bytes();
        let old = s
            .items
            .get(key)
            .map_or(0, |v| key.len() as u64 + v.len as u64);
        Some((before, before - old + key.len() as u64 + len as u64))
    }

    pub fn put(&mut self, outer: &str, key: &[u8], v: ValueRef) {
        if let Some(s) = self.live_mut(outer) {
            s.uncertain.remove(key);
            s.items.insert(key.to_vec(), v);
        }
    }

    pub fn delete(&mut self, outer: &str, key: &[u8]) {
        if let Some(s) = self.live_mut(outer) {
            s.uncertain.remove(key);
            s.items.remove(key);
        }
    }

    pub fn mark_uncertain(&mut self, outer: &str, key: &[u8]) {
        if let Some(s) = self.live_mut(outer) {
            s.uncertain.insert(key.to_vec());
        }
    }

    pub fn delete_subdb(&mut self, outer: &str) {
        if let Some(s) = self.subdbs.get_mut(outer) {
            s.state = SubDbState::Deleted;
            s.items.clear();
            s.uncertain.clear();
        }
    }

    /// An acknowledged `set_access`: the reader list is `readers`, exactly.
    pub fn set_readers(&mut self, outer: &str, readers: &[Principal]) {
        if let Some(s) = self.live_mut(outer) {
            s.readers = BTreeSet::from([readers.to_vec()]);
        }
    }

    /// A `set_access` abandoned unacknowledged: its list may have applied too.
    pub fn maybe_readers(&mut self, outer: &str, readers: &[Principal]) {
        if let Some(s) = self.live_mut(outer) {
            s.readers.insert(readers.to_vec());
        }
    }

    pub fn note_home(&mut self, outer: &str, home: InnerKey) {
        if let Some(s) = self.subdbs.get_mut(outer) {
            s.homes.insert(home);
        }
    }

    pub fn live_count(&self) -> usize {
        self.subdbs
            .values()
            .filter(|s| s.state == SubDbState::Live)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candid::Principal;

    fn home() -> InnerKey {
        InnerKey {
            partition: Principal::management_canister(),
            subdb: 0,
        }
    }

    #[test]
    fn expectations_follow_writes() {
        let mut m = Model::default();
        m.create("a", 0, home());
        let v1 = ValueRef::of(b"one");
        let v2 = ValueRef::of(b"two");
        assert_eq!(m.expect("a", b"k", None), Expect::Exactly(None));
        m.put("a", b"k", v1);
        assert_eq!(m.expect("a", b"k", None), Expect::Exactly(Some(v1)));
        let e = m.expect("a", b"k", Some(Some(v2)));
        assert!(e.admits(Some(v1)) && e.admits(Some(v2)) && !e.admits(None));
        let e = m.expect("a", b"k", Some(None));
        assert!(e.admits(Some(v1)) && e.admits(None));
        m.mark_uncertain("a", b"k");
        assert_eq!(m.expect("a", b"k", None), Expect::Unknown);
        m.delete("a", b"k");
        assert_eq!(m.expect("a", b"k", None), Expect::Exactly(None));
        m.delete_subdb("a");
        assert!(m.live("a").is_none());
        assert_eq!(m.live_count(), 0);
    }

    #[test]
    fn reader_lists_follow_access_changes() {
        let mut m = Model::default();
        m.create("a", 0, home());
        assert_eq!(m.subdbs["a"].readers, BTreeSet::from([vec![]]));
        let p = Principal::anonymous();
        m.maybe_readers("a", &[p]);
        assert_eq!(m.subdbs["a"].readers.len(), 2);
        m.set_readers("a", &[]);
        assert_eq!(m.subdbs["a"].readers, BTreeSet::from([vec![]]));
    }

    #[test]
    fn value_refs_tell_values_apart() {
        assert_eq!(ValueRef::of(b"x"), ValueRef::of(b"x"));
        assert_ne!(ValueRef::of(b"x"), ValueRef::of(b"y"));
        assert_ne!(ValueRef::of(b""), ValueRef::of(b"\0"));
    }
}
