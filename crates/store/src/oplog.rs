//! The op-id log: at-most-once application of mutating operations.
//!
//! Every mutating call may carry an operation id. The first successful application records
//! `(scope, op id) → (hash of arguments, outcome)`; a later call with the same id and the same
//! arguments gets the recorded outcome back without being applied again, and the same id with
//! other arguments is refused. Failed calls change nothing and are not recorded.
//!
//! Bounded memory: records live in two generations (two `StableBTreeMap`s). New records go into
//! the current one; after `window` local records, the other generation is cleared in O(1) (its
//! pages are reused) and becomes current. So every record is remembered for at least `window`
//! later local records, at most `2 × window` local records (plus those imported with moved
//! SubDBs meanwhile) are held, and recording costs one map insert with no eviction work.
//!
//! Each record names the SubDB it touched, so a SubDB's records move with it: a retry that
//! reaches the new home after a move still finds its first result. The key is the op id
//! alone, so reusing an id on another SubDB is a conflict too.

use crate::layout::Header;
use flotilla_types::{BatchOutcome, OpId, PutOutcome, SubDbId};
use ic_stable_structures::storable::{Bound, Storable};
use ic_stable_structures::{BTreeMap, Cell, Memory};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, DefaultHasher, Hasher};
use std::ops::Bound::{Excluded, Unbounded};

/// Who asks, and under which op id. `salt` is folded into the argument hash (the partition
/// passes the caller's principal), so one caller's op id cannot replay another caller's call.
#[derive(Clone, Copy, Debug)]
pub struct OpCtx<'a> {
    pub op_id: &'a OpId,
    pub salt: &'a [u8],
}

/// The recorded result of an applied operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created(SubDbId),
    SubDbDeleted,
    Put(PutOutcome),
    Deleted(bool),
    /// Counts of a batch; `puts_replaced` and `deletes_existed` are stored as u16 (a batch
    /// holds at most `MAX_BATCH_OPS` ≤ 65,535 ops).
    Batch(BatchOutcome),
}

impl Outcome {
    fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Outcome::Created(id) => {
                out.push(1);
                out.extend_from_slice(&id.to_le_bytes());
            }
            Outcome::SubDbDeleted => out.push(2),
            Outcome::Put(p) => {
                out.push(3);
                out.push(p.replaced as u8);
                out.extend_from_slice(&p.evicted.to_le_bytes());
            }
            Outcome::Deleted(existed) => {
                out.push(4);
                out.push(existed as u8);
            }
            Outcome::Batch(b) => {
                out.push(5);
                out.extend_from_slice(&(b.puts_replaced as u16).to_le_bytes());
                out.extend_from_slice(&(b.deletes_existed as u16).to_le_bytes());
                out.extend_from_slice(&b.evicted.to_le_bytes());
            }
        }
    }

    fn decode(b: &[u8]) -> Option<Outcome> {
        let u32_at = |i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
        let u16_at = |i: usize| Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?));
        Some(match *b.first()? {
            1 => Outcome::Created(u32_at(1)?),
            2 => Outcome::SubDbDeleted,
            3 => Outcome::Put(PutOutcome {
                replaced: *b.get(1)? == 1,
                evicted: u32_at(2)?,
            }),
            4 => Outcome::Deleted(*b.get(1)? == 1),
            5 => Outcome::Batch(BatchOutcome {
                puts_replaced: u16_at(1)?.into(),
                deletes_existed: u16_at(3)?.into(),
                evicted: u32_at(5)?,
            }),
            _ => return None,
        })
    }
}

pub const HASH_BYTES: usize = 16;

/// Hash of an operation's arguments, built field by field without copying them.
pub struct ArgsHasher(Sha256);

impl ArgsHasher {
    pub fn new(kind: u8, salt: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update([kind]);
        h.update((salt.len() as u32).to_le_bytes());
        h.update(salt);
        ArgsHasher(h)
    }

    pub fn bytes(mut self, b: &[u8]) -> Self {
        self.0.update((b.len() as u64).to_le_bytes());
        self.0.update(b);
        self
    }

    pub fn u64(mut self, v: u64) -> Self {
        self.0.update(v.to_le_bytes());
        self
    }

    pub fn finish(self) -> [u8; HASH_BYTES] {
        self.0.finalize()[..HASH_BYTES].try_into().unwrap()
    }
}

/// Op-log key: the op id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpKey(pub Vec<u8>);

impl Storable for OpKey {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0)
    }
    fn into_bytes(self) -> Vec<u8> {
        self.0
    }
    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        OpKey(bytes.into_owned())
    }
    const BOUND: Bound = Bound::Bounded {
        max_size: flotilla_types::limits::OP_ID_MAX_BYTES as u32,
        is_fixed_size: false,
    };
}

/// Op-log record: `scope u32 LE ++ args hash ++ encoded outcome`. The scope is the SubDB the
/// operation touched ([`crate::layout::CREATE_SCOPE`] for creations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpRecord(pub Vec<u8>);

const SCOPE_BYTES: usize = 4;

impl OpRecord {
    fn new(scope: u32, hash: [u8; HASH_BYTES], outcome: Outcome) -> Self {
        let mut b = Vec::with_capacity(SCOPE_BYTES + HASH_BYTES + 8);
        b.extend_from_slice(&scope.to_le_bytes());
        b.extend_from_slice(&hash);
        outcome.encode(&mut b);
        OpRecord(b)
    }

    fn scope(&self) -> Option<u32> {
        Some(u32::from_le_bytes(
            self.0.get(..SCOPE_BYTES)?.try_into().ok()?,
        ))
    }

    fn hash(&self) -> Option<&[u8]> {
        self.0.get(SCOPE_BYTES..SCOPE_BYTES + HASH_BYTES)
    }

    fn outcome(&self) -> Option<Outcome> {
        Outcome::decode(self.0.get(SCOPE_BYTES + HASH_BYTES..)?)
    }

    /// The record with its scope replaced: how a moved SubDB's records are re-homed.
    fn rescoped(&self, scope: u32) -> OpRecord {
        let mut b = self.0.clone();
        b[..SCOPE_BYTES].copy_from_slice(&scope.to_le_bytes());
        OpRecord(b)
    }

    /// Whether bytes received in a chunk form a well-formed record.
    pub fn is_well_formed(bytes: &[u8]) -> bool {
        bytes.len() <= RECORD_MAX_BYTES && OpRecord(bytes.to_vec()).outcome().is_some()
    }
}

pub(crate) const RECORD_MAX_BYTES: usize = 32;

impl Storable for OpRecord {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0)
    }
    fn into_bytes(self) -> Vec<u8> {
        self.0
    }
    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        OpRecord(bytes.into_owned())
    }
    const BOUND: Bound = Bound::Bounded {
        max_size: RECORD_MAX_BYTES as u32,
        is_fixed_size: false,
    };
}

pub enum Lookup {
    /// Never seen (or forgotten): apply the operation.
    Fresh,
    /// Applied before with the same arguments: answer this.
    Done(Outcome),
    /// Seen with other arguments (or on another SubDB).
    Conflict,
}

/// Where an export of op records resumes: generation, and the last op id sent from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpsCursor {
    pub gen: u8,
    pub after: Option<Vec<u8>>,
}

type Fingerprints = HashSet<u64, BuildHasherDefault<DefaultHasher>>;

fn fingerprint(op_id: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(op_id);
    h.finish()
}

pub struct OpLog<M: Memory> {
    gens: [BTreeMap<OpKey, OpRecord, M>; 2],
    /// Heap filter: fingerprints of the op ids in each generation, rebuilt at init. A fresh op
    /// id (the common case) is answered without descending either map.
    seen: [Fingerprints; 2],
}

impl<M: Memory> OpLog<M> {
    pub fn init(a: M, b: M) -> Self {
        let gens = [BTreeMap::init(a), BTreeMap::init(b)];
        let seen =
            [0, 1].map(|g: usize| gens[g].keys().map(|k: OpKey| fingerprint(&k.0)).collect());
        OpLog { gens, seen }
    }

    pub fn lookup(&self, scope: u32, op_id: &OpId, hash: &[u8; HASH_BYTES]) -> Lookup {
        let fp = fingerprint(op_id.as_bytes());
        let key = OpKey(op_id.as_bytes().to_vec());
        for (gen, seen) in self.gens.iter().zip(&self.seen) {
            if !seen.contains(&fp) {
                continue;
            }
            if let Some(rec) = gen.get(&key) {
                let same = rec.scope() == Some(scope) && rec.hash() == Some(&hash[..]);
                return match rec.outcome() {
                    Some(outcome) if same => Lookup::Done(outcome),
                    _ => Lookup::Conflict,
                };
            }
        }
        Lookup::Fresh
    }

    pub fn record(
        &mut self,
        header: &mut Cell<Header, M>,
        scope: u32,
        op_id: &OpId,
        hash: [u8; HASH_BYTES],
        outcome: Outcome,
    ) {
        self.insert(
            header,
            OpKey(op_id.as_bytes().to_vec()),
            OpRecord::new(scope, hash, outcome),
        );
    }

    /// Records a local operation. The current generation rotates after `window` local
    /// records, so every record — local or imported — is remembered for at least `window`
    /// later local records.
    fn insert(&mut self, header: &mut Cell<Header, M>, key: OpKey, rec: OpRecord) {
        let mut h = *header.get();
        let mut cur = h.op_gen as usize & 1;
        if h.op_local >= h.op_window {
            cur ^= 1;
            self.gens[cur].clear_new();
            self.seen[cur].clear();
            h.op_gen = cur as u8;
            h.op_local = 0;
        }
        h.op_local += 1;
        header.set(h);
        self.seen[cur].insert(fingerprint(&key.0));
        self.gens[cur].insert(key, rec);
    }

    /// Up to `max_scan` records examined from `from` on, returning those of `scope` (op id,
    /// record) and where to resume (`None` when both generations are done).
    pub fn export(
        &self,
        scope: u32,
        from: &OpsCursor,
        max_scan: usize,
        mut take: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Option<OpsCursor> {
        let mut cursor = from.clone();
        let mut scanned = 0;
        while cursor.gen < 2 {
            let g = &self.gens[cursor.gen as usize];
            let range = match &cursor.after {
                Some(k) => g.range((Excluded(OpKey(k.clone())), Unbounded)),
                None => g.range(..),
            };
            for e in range {
                if scanned == max_scan {
                    return Some(cursor);
                }
                scanned += 1;
                let rec = e.value();
                if rec.scope() == Some(scope) && !take(&e.key().0, &rec.0) {
                    return Some(cursor);
                }
                cursor.after = Some(e.key().0.clone());
            }
            cursor = OpsCursor {
                gen: cursor.gen + 1,
                after: None,
            };
        }
        None
    }

    /// The raw record of `op_id` if it is still remembered and belongs to `scope`.
    pub fn record_of(&self, scope: u32, op_id: &[u8]) -> Option<Vec<u8>> {
        let key = OpKey(op_id.to_vec());
        let fp = fingerprint(op_id);
        self.gens
            .iter()
            .zip(&self.seen)
            .filter(|(_, seen)| seen.contains(&fp))
            .find_map(|(g, _)| g.get(&key))
            .filter(|r| r.scope() == Some(scope))
            .map(|r| r.0)
    }

    /// Stores a record received with a moved SubDB under its new scope, in the current
    /// generation without counting toward its rotation. A record of the same id for another
    /// SubDB is kept (ids are random; a collision must not erase that SubDB's record).
    pub fn import(&mut self, header: &Cell<Header, M>, scope: u32, op_id: &[u8], rec: &[u8]) {
        let rec = OpRecord(rec.to_vec()).rescoped(scope);
        let key = OpKey(op_id.to_vec());
        let fp = fingerprint(op_id);
        for (g, seen) in self.gens.iter_mut().zip(&self.seen) {
            if seen.contains(&fp) {
                match g.get(&key) {
                    Some(old) if old.scope() != Some(scope) => return,
                    // A copy left in the other generation would shadow the new one.
                    Some(_) => {
                        g.remove(&key);
                    }
                    None => {}
                }
            }
        }
        let cur = header.get().op_gen as usize & 1;
        self.seen[cur].insert(fp);
        self.gens[cur].insert(key, rec);
    }

    pub fn record_count(&self) -> u64 {
        self.gens[0].len() + self.gens[1].len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip() {
        for o in [
            Outcome::Created(42),
            Outcome::SubDbDeleted,
            Outcome::Put(PutOutcome {
                replaced: true,
                evicted: 3,
            }),
            Outcome::Deleted(false),
            Outcome::Batch(BatchOutcome {
                puts_replaced: u16::MAX.into(),
                deletes_existed: 7,
                evicted: u32::MAX,
            }),
        ] {
            let rec = OpRecord::new(3, [7; HASH_BYTES], o);
            assert_eq!(rec.scope(), Some(3));
            assert_eq!(rec.rescoped(9).scope(), Some(9));
            assert!(rec.0.len() <= RECORD_MAX_BYTES);
            assert_eq!(rec.outcome(), Some(o));
            assert!(OpRecord::is_well_formed(&rec.0));
        }
        assert!(!OpRecord::is_well_formed(&[0; 21]));
    }

    #[test]
    fn hash_separates_fields() {
        let a = ArgsHasher::new(1, b"s").bytes(b"ab").bytes(b"c").finish();
        let b = ArgsHasher::new(1, b"s").bytes(b"a").bytes(b"bc").finish();
        let c = ArgsHasher::new(1, b"t").bytes(b"ab").bytes(b"c").finish();
        assert_ne!(a, b);
        assert_ne!(a, c);
    }
}
