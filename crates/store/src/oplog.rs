//! The op-id log: at-most-once application of mutating operations.
//!
//! Every mutating call may carry an operation id. The first successful application records
//! `(scope, op id) → (hash of arguments, outcome)`; a later call with the same id and the same
//! arguments gets the recorded outcome back without being applied again, and the same id with
//! other arguments is refused. Failed calls change nothing and are not recorded.
//!
//! Bounded memory: records live in two generations, each an append-only region of fixed-size
//! records (`OPS_LOG_A`, `OPS_LOG_B`). New records are appended to the current one; after
//! `window` local records, the other generation is cleared in O(1) — its epoch (in the store
//! header) is advanced, which makes every record in it stale, and it is refilled from position
//! 0 — and becomes current. So every record is remembered for at least `window` later local
//! records, at most `2 × window` local records (plus those imported with moved SubDBs
//! meanwhile) are held, and recording costs one contiguous 72-byte write with no eviction
//! work. A heap index per generation (64-bit fingerprint of the op id → positions), rebuilt at
//! init by reading both regions, finds a record with one read and answers a fresh op id with
//! none.
//!
//! Record (`RECORD_BYTES` = 72, at `position × 72` in its generation's region):
//! ```text
//! 0..4   epoch of the generation when written, u32 LE (records of an older epoch are stale:
//!        a generation's records are the run from position 0 that carries its current epoch)
//! 4      flags: bit 0 = written locally (counts toward rotation), bit 1 = superseded (an
//!        imported record of the same op id replaced it)
//! 5      op id length (16..32)
//! 6..38  op id, zero-padded
//! 38..42 scope u32 LE (SubDB id, or `CREATE_SCOPE`)
//! 42     argument hash kind (`HashKind`: 1 = SHA-256)
//! 43..59 argument hash (16 bytes)
//! 59..72 encoded outcome, zero-padded
//! ```
//!
//! Each record names the SubDB it touched, so a SubDB's records move with it: a retry that
//! reaches the new home after a move still finds its first result. The op id alone identifies
//! a record (ids are not scoped per caller or per SubDB): reusing an id on another SubDB, or
//! by another caller (whose principal is folded into the argument hash), is a conflict too.
//!
//! Each stored record also names the function that made its argument hash (`HashKind`; only
//! SHA-256, truncated to 16 bytes, exists), so a later build can bring a cheaper one without
//! misreading the records already written. Records travel in export chunks in version 1's
//! format (`OpRecord`), which builds of either layout version read.

use crate::layout::{Header, LAYOUT_VERSION};
use flotilla_types::{BatchOutcome, OpId, PutOutcome, SubDbId};
use ic_stable_structures::storable::{Bound, Storable};
use ic_stable_structures::{BTreeMap, Cell, Memory};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher, Hasher};

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

/// The function that made a stored record's argument hash (the first [`HASH_BYTES`] of its
/// digest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashKind {
    /// SHA-256: every record so far.
    Sha256 = 1,
}

impl HashKind {
    fn from_u8(b: u8) -> Option<HashKind> {
        match b {
            1 => Some(HashKind::Sha256),
            _ => None,
        }
    }
}

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

/// Op-log key of store layout version 1: the op id.
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

/// An op record as it travels in export chunks, and as layout version 1 stored it:
/// `scope u32 LE ++ args hash (16 bytes, SHA-256) ++ encoded outcome`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpRecord(pub Vec<u8>);

const SCOPE_BYTES: usize = 4;

impl OpRecord {
    fn parts(bytes: &[u8]) -> Option<(u32, &[u8], Outcome)> {
        let scope = u32::from_le_bytes(bytes.get(..SCOPE_BYTES)?.try_into().ok()?);
        let hash = bytes.get(SCOPE_BYTES..SCOPE_BYTES + HASH_BYTES)?;
        let outcome = Outcome::decode(bytes.get(SCOPE_BYTES + HASH_BYTES..)?)?;
        Some((scope, hash, outcome))
    }

    /// Whether bytes received in a chunk form a well-formed record.
    pub fn is_well_formed(bytes: &[u8]) -> bool {
        bytes.len() <= RECORD_MAX_BYTES && OpRecord::parts(bytes).is_some()
    }
}

/// Largest op record in an export chunk.
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

/// Bytes of one record in a generation's region.
pub const RECORD_BYTES: usize = 72;
const OUTCOME_BYTES: usize = RECORD_BYTES - 59;
const ID_MAX: usize = flotilla_types::limits::OP_ID_MAX_BYTES;
const FLAG_LOCAL: u8 = 1;
const FLAG_SUPERSEDED: u8 = 2;
/// Records a generation can hold (positions are u32). Only imports could fill one without
/// its `window` of local records rotating it first; a full generation rotates at the next
/// record.
pub const MAX_GEN_RECORDS: u64 = u32::MAX as u64;
/// Records read at once when a generation is scanned (init, export): 64 KiB.
const SCAN_BLOCK_RECORDS: usize = 910;
const WASM_PAGE: u64 = 65_536;

/// One record of a generation's region (layout in the module documentation).
#[derive(Clone, Copy)]
struct Rec([u8; RECORD_BYTES]);

impl Rec {
    #[allow(clippy::too_many_arguments)]
    fn new(
        epoch: u32,
        flags: u8,
        op_id: &[u8],
        scope: u32,
        kind: u8,
        hash: &[u8],
        outcome: &[u8],
    ) -> Rec {
        let mut b = [0u8; RECORD_BYTES];
        let id = &op_id[..op_id.len().min(ID_MAX)];
        b[0..4].copy_from_slice(&epoch.to_le_bytes());
        b[4] = flags;
        b[5] = id.len() as u8;
        b[6..6 + id.len()].copy_from_slice(id);
        b[38..42].copy_from_slice(&scope.to_le_bytes());
        b[42] = kind;
        b[43..59].copy_from_slice(&hash[..HASH_BYTES]);
        let n = outcome.len().min(OUTCOME_BYTES);
        b[59..59 + n].copy_from_slice(&outcome[..n]);
        Rec(b)
    }

    fn epoch(&self) -> u32 {
        u32::from_le_bytes(self.0[0..4].try_into().unwrap())
    }
    fn local(&self) -> bool {
        self.0[4] & FLAG_LOCAL != 0
    }
    fn superseded(&self) -> bool {
        self.0[4] & FLAG_SUPERSEDED != 0
    }
    fn op_id(&self) -> &[u8] {
        &self.0[6..6 + (self.0[5] as usize).min(ID_MAX)]
    }
    fn scope(&self) -> u32 {
        u32::from_le_bytes(self.0[38..42].try_into().unwrap())
    }
    fn kind(&self) -> Option<HashKind> {
        HashKind::from_u8(self.0[42])
    }
    fn hash(&self) -> &[u8] {
        &self.0[43..59]
    }
    fn outcome(&self) -> Option<Outcome> {
        Outcome::decode(&self.0[59..])
    }

    /// The record as an export chunk carries it (`None` if it could not be imported anyway).
    fn wire(&self) -> Option<Vec<u8>> {
        let outcome = self.outcome()?;
        self.kind()?;
        let mut b = Vec::with_capacity(RECORD_MAX_BYTES);
        b.extend_from_slice(&self.0[38..42]);
        b.extend_from_slice(self.hash());
        outcome.encode(&mut b);
        Some(b)
    }
}

pub enum Lookup {
    /// Never seen (or forgotten): apply the operation.
    Fresh,
    /// Applied before with the same arguments: answer this.
    Done(Outcome),
    /// Seen with other arguments (or on another SubDB).
    Conflict,
}

/// Where an export of op records resumes: generation, and the position in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpsCursor {
    pub gen: u8,
    pub pos: u32,
}

type FastHasher = BuildHasherDefault<DefaultHasher>;

fn fingerprint(op_id: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(op_id);
    h.finish()
}

/// Heap index of one generation: fingerprint of the op id → the positions of its live records
/// (almost always one; `more` holds the rest when fingerprints collide).
#[derive(Default)]
struct Index {
    first: HashMap<u64, u32, FastHasher>,
    more: HashMap<u64, Vec<u32>, FastHasher>,
}

impl Index {
    fn insert(&mut self, fp: u64, pos: u32) {
        match self.first.entry(fp) {
            Entry::Vacant(e) => {
                e.insert(pos);
            }
            Entry::Occupied(_) => self.more.entry(fp).or_default().push(pos),
        }
    }

    fn positions(&self, fp: u64) -> impl Iterator<Item = u32> + '_ {
        let more = (!self.more.is_empty())
            .then(|| self.more.get(&fp))
            .flatten()
            .into_iter()
            .flatten();
        self.first
            .get(&fp)
            .copied()
            .into_iter()
            .chain(more.copied())
    }

    fn remove(&mut self, fp: u64, pos: u32) {
        if self.first.get(&fp) == Some(&pos) {
            match self.more.get_mut(&fp) {
                Some(v) => {
                    let next = v.pop().expect("never kept empty");
                    if v.is_empty() {
                        self.more.remove(&fp);
                    }
                    self.first.insert(fp, next);
                }
                None => {
                    self.first.remove(&fp);
                }
            }
        } else if let Some(v) = self.more.get_mut(&fp) {
            v.retain(|&p| p != pos);
            if v.is_empty() {
                self.more.remove(&fp);
            }
        }
    }

    fn clear(&mut self) {
        self.first.clear();
        self.more.clear();
    }
}

/// One generation: its region, its length and its heap index.
struct Gen<M: Memory> {
    mem: M,
    /// Records at positions `0..len` carry the generation's current epoch.
    len: u32,
    /// Records not superseded.
    live: u64,
    index: Index,
}

impl<M: Memory> Gen<M> {
    fn read(&self, pos: u32) -> Rec {
        let mut r = Rec([0; RECORD_BYTES]);
        self.mem.read(pos as u64 * RECORD_BYTES as u64, &mut r.0);
        r
    }

    fn write(&mut self, pos: u32, rec: &Rec) {
        let end = (pos as u64 + 1) * RECORD_BYTES as u64;
        let size = self.mem.size() * WASM_PAGE;
        if end > size && self.mem.grow((end - size).div_ceil(WASM_PAGE)) < 0 {
            panic!("op log: stable memory exhausted");
        }
        self.mem.write(pos as u64 * RECORD_BYTES as u64, &rec.0);
    }

    /// Calls `f(position, record)` for the records from `from` on while they carry `epoch`
    /// and `f` answers true; returns the position where it stopped.
    fn walk(&self, from: u32, epoch: Option<u32>, mut f: impl FnMut(u32, &Rec) -> bool) -> u32 {
        let cap = (self.mem.size() * WASM_PAGE / RECORD_BYTES as u64).min(MAX_GEN_RECORDS);
        let end = match epoch {
            Some(_) => cap,
            None => (self.len as u64).min(cap),
        };
        let mut buf = vec![0u8; SCAN_BLOCK_RECORDS * RECORD_BYTES];
        let mut pos = from as u64;
        while pos < end {
            let n = (end - pos).min(SCAN_BLOCK_RECORDS as u64) as usize;
            let bytes = &mut buf[..n * RECORD_BYTES];
            self.mem.read(pos * RECORD_BYTES as u64, bytes);
            for chunk in bytes.chunks_exact(RECORD_BYTES) {
                let rec = Rec(chunk.try_into().unwrap());
                if epoch.is_some_and(|e| rec.epoch() != e) || !f(pos as u32, &rec) {
                    return pos as u32;
                }
                pos += 1;
            }
        }
        pos as u32
    }
}

pub struct OpLog<M: Memory> {
    gens: [Gen<M>; 2],
    /// Records written locally into the current generation since it became current.
    local: u64,
}

impl<M: Memory> OpLog<M> {
    /// Opens the log of a layout-version-2 store: each generation is the run of records from
    /// position 0 that carry its epoch; the heap indexes and counts are rebuilt from them.
    pub fn init(header: &Cell<Header, M>, a: M, b: M) -> Self {
        let h = *header.get();
        let cur = h.op_gen as usize & 1;
        let mut local = 0;
        let gens = [a, b];
        let mut g = 0;
        let gens = gens.map(|mem| {
            let mut gen = Gen {
                mem,
                len: 0,
                live: 0,
                index: Index::default(),
            };
            let mut index = Index::default();
            let mut live = 0;
            gen.len = gen.walk(0, Some(h.op_epochs[g]), |pos, rec| {
                if !rec.superseded() {
                    index.insert(fingerprint(rec.op_id()), pos);
                    live += 1;
                }
                if g == cur && rec.local() {
                    local += 1;
                }
                true
            });
            gen.index = index;
            gen.live = live;
            g += 1;
            gen
        });
        OpLog { gens, local }
    }

    /// Migrates a store of layout version 1: every record of its two `StableBTreeMap`
    /// generations is appended, in key order, to the same generation of the new log (hash
    /// kind SHA-256, as version 1 made them); as many of the current generation's records as
    /// version 1 counted local are marked local, so the next rotation comes when it would
    /// have. The old maps are then cleared, and the header says version 2. One pass, one read
    /// and one write per record: for the default window (at most 200,000 records plus
    /// imports) well inside `post_upgrade`'s instruction limit.
    pub fn migrate_v1(header: &mut Cell<Header, M>, old: [M; 2], a: M, b: M) -> Self {
        let mut h = *header.get();
        let cur = h.op_gen as usize & 1;
        let mut local_left = h.v1_op_local();
        h.version = LAYOUT_VERSION;
        h.op_epochs = [1, 1];
        let mut log = OpLog {
            gens: [a, b].map(|mem| Gen {
                mem,
                len: 0,
                live: 0,
                index: Index::default(),
            }),
            local: 0,
        };
        for (g, mem) in old.into_iter().enumerate() {
            let mut map: BTreeMap<OpKey, OpRecord, M> = BTreeMap::init(mem);
            for e in map.iter() {
                let (key, rec) = (&e.key().0, e.value().0);
                let flags = if g == cur && local_left > 0 {
                    local_left -= 1;
                    log.local += 1;
                    FLAG_LOCAL
                } else {
                    0
                };
                let scope = rec
                    .get(..SCOPE_BYTES)
                    .map_or(0, |s| u32::from_le_bytes(s.try_into().expect("four bytes")));
                let mut hash = [0u8; HASH_BYTES];
                if let Some(src) = rec.get(SCOPE_BYTES..SCOPE_BYTES + HASH_BYTES) {
                    hash.copy_from_slice(src);
                }
                let outcome = rec.get(SCOPE_BYTES + HASH_BYTES..).unwrap_or(&[]);
                let r = Rec::new(1, flags, key, scope, HashKind::Sha256 as u8, &hash, outcome);
                log.append(g, &r);
            }
            map.clear_new();
        }
        header.set(h);
        log
    }

    /// The live record of `op_id`: generation, position, record.
    fn find(&self, op_id: &[u8]) -> Option<(usize, u32, Rec)> {
        let fp = fingerprint(op_id);
        self.gens.iter().enumerate().find_map(|(g, gen)| {
            gen.index
                .positions(fp)
                .map(|pos| (pos, gen.read(pos)))
                .find(|(_, r)| r.op_id() == op_id)
                .map(|(pos, r)| (g, pos, r))
        })
    }

    /// What to do with `op_id`, whose arguments hash to `hash` (SHA-256).
    pub fn lookup(&self, scope: u32, op_id: &OpId, hash: &[u8; HASH_BYTES]) -> Lookup {
        let Some((_, _, rec)) = self.find(op_id.as_bytes()) else {
            return Lookup::Fresh;
        };
        let (Some(HashKind::Sha256), Some(outcome)) = (rec.kind(), rec.outcome()) else {
            return Lookup::Conflict;
        };
        if rec.scope() == scope && rec.hash() == hash {
            Lookup::Done(outcome)
        } else {
            Lookup::Conflict
        }
    }

    /// Records a local operation (its arguments hashed with SHA-256). The current
    /// generation rotates after `window` local records, so every record — local or imported —
    /// is remembered for at least `window` later local records.
    pub fn record(
        &mut self,
        header: &mut Cell<Header, M>,
        scope: u32,
        op_id: &OpId,
        hash: [u8; HASH_BYTES],
        outcome: Outcome,
    ) {
        if self.local >= header.get().op_window {
            self.rotate(header);
        }
        let mut out = Vec::with_capacity(OUTCOME_BYTES);
        outcome.encode(&mut out);
        let h = header.get();
        let cur = h.op_gen as usize & 1;
        let rec = Rec::new(
            h.op_epochs[cur],
            FLAG_LOCAL,
            op_id.as_bytes(),
            scope,
            HashKind::Sha256 as u8,
            &hash,
            &out,
        );
        self.append_current(header, &rec);
        self.local += 1;
    }

    /// Makes the other generation current, emptied: its epoch advances (skipping 0, which
    /// fresh memory reads as), so its old records are stale.
    fn rotate(&mut self, header: &mut Cell<Header, M>) {
        let mut h = *header.get();
        let next = (h.op_gen as usize & 1) ^ 1;
        h.op_gen = next as u8;
        h.op_epochs[next] = h.op_epochs[next].wrapping_add(1).max(1);
        header.set(h);
        let g = &mut self.gens[next];
        g.len = 0;
        g.live = 0;
        g.index.clear();
        self.local = 0;
    }

    /// Appends to the current generation (rotating first if it is full, see
    /// [`MAX_GEN_RECORDS`]). `rec` carries the epoch of the generation current on entry.
    fn append_current(&mut self, header: &mut Cell<Header, M>, rec: &Rec) {
        let mut rec = *rec;
        if self.gens[header.get().op_gen as usize & 1].len as u64 >= MAX_GEN_RECORDS {
            self.rotate(header);
            let h = header.get();
            rec.0[0..4].copy_from_slice(&h.op_epochs[h.op_gen as usize & 1].to_le_bytes());
        }
        self.append(header.get().op_gen as usize & 1, &rec);
    }

    fn append(&mut self, g: usize, rec: &Rec) {
        let gen = &mut self.gens[g];
        let pos = gen.len;
        gen.write(pos, rec);
        gen.len += 1;
        if !rec.superseded() {
            gen.live += 1;
            gen.index.insert(fingerprint(rec.op_id()), pos);
        }
    }

    /// Up to `max_scan` records examined from `from` on, passing those of `scope` to `take`
    /// (op id, record as chunks carry it), and where to resume (`None` when both generations
    /// are done).
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
            let gen = &self.gens[cursor.gen as usize];
            let mut full = false;
            cursor.pos = gen.walk(cursor.pos, None, |_, rec| {
                if scanned == max_scan {
                    full = true;
                    return false;
                }
                scanned += 1;
                if rec.superseded() || rec.scope() != scope {
                    return true;
                }
                match rec.wire() {
                    Some(w) => take(rec.op_id(), &w),
                    None => true,
                }
            });
            if full || cursor.pos < gen.len {
                return Some(cursor);
            }
            cursor = OpsCursor {
                gen: cursor.gen + 1,
                pos: 0,
            };
        }
        None
    }

    /// The record of `op_id`, as chunks carry it, if it is still remembered and belongs to
    /// `scope`.
    pub fn record_of(&self, scope: u32, op_id: &[u8]) -> Option<Vec<u8>> {
        self.find(op_id)
            .filter(|(_, _, r)| r.scope() == scope)
            .and_then(|(_, _, r)| r.wire())
    }

    /// Stores a record received with a moved SubDB under its new scope, in the current
    /// generation without counting toward its rotation. A record of the same id for another
    /// SubDB is kept (ids are random; a collision must not erase that SubDB's record); one for
    /// this SubDB is superseded (marked, and dropped from the index), so the new one is the
    /// only live record of the id. `rec` must be well formed ([`OpRecord::is_well_formed`]).
    pub fn import(&mut self, header: &mut Cell<Header, M>, scope: u32, op_id: &[u8], rec: &[u8]) {
        let Some((_, hash, outcome)) = OpRecord::parts(rec) else {
            return;
        };
        if let Some((g, pos, old)) = self.find(op_id) {
            if old.scope() != scope {
                return;
            }
            let gen = &mut self.gens[g];
            gen.mem.write(
                pos as u64 * RECORD_BYTES as u64 + 4,
                &[old.0[4] | FLAG_SUPERSEDED],
            );
            gen.index.remove(fingerprint(op_id), pos);
            gen.live -= 1;
        }
        let mut out = Vec::with_capacity(OUTCOME_BYTES);
        outcome.encode(&mut out);
        let h = header.get();
        let r = Rec::new(
            h.op_epochs[h.op_gen as usize & 1],
            0,
            op_id,
            scope,
            HashKind::Sha256 as u8,
            hash,
            &out,
        );
        self.append_current(header, &r);
    }

    pub fn record_count(&self) -> u64 {
        self.gens[0].live + self.gens[1].live
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ic_stable_structures::VectorMemory;

    fn all_outcomes() -> [Outcome; 5] {
        [
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
        ]
    }

    #[test]
    fn outcomes_round_trip_through_records_and_chunks() {
        for o in all_outcomes() {
            let mut out = Vec::new();
            o.encode(&mut out);
            assert!(out.len() <= OUTCOME_BYTES);
            let kind = HashKind::Sha256 as u8;
            let rec = Rec::new(7, FLAG_LOCAL, &[5; 32], 3, kind, &[7; 16], &out);
            assert_eq!(rec.outcome(), Some(o));
            assert_eq!(rec.op_id(), &[5; 32]);
            assert_eq!(
                (rec.epoch(), rec.local(), rec.superseded()),
                (7, true, false)
            );
            assert_eq!((rec.scope(), rec.kind()), (3, Some(HashKind::Sha256)));
            let wire = rec.wire().unwrap();
            // The chunk format is version 1's: scope, hash, outcome.
            assert_eq!(wire, [&3u32.to_le_bytes()[..], &[7; 16], &out].concat());
            assert!(wire.len() <= RECORD_MAX_BYTES);
            assert!(OpRecord::is_well_formed(&wire));
            assert_eq!(OpRecord::parts(&wire), Some((3, &[7u8; 16][..], o)));
            // A record naming an unknown hash kind is never matched nor exported.
            let odd = Rec::new(7, 0, &[5; 32], 3, 9, &[7; 16], &out);
            assert_eq!(odd.wire(), None);
        }
        assert!(!OpRecord::is_well_formed(&[0; 21]));
        assert!(!OpRecord::is_well_formed(&[0; 33]));
    }

    #[test]
    fn hash_separates_fields_and_is_version_1s() {
        let a = ArgsHasher::new(1, b"s").bytes(b"ab").bytes(b"c").finish();
        let b = ArgsHasher::new(1, b"s").bytes(b"a").bytes(b"bc").finish();
        let c = ArgsHasher::new(1, b"t").bytes(b"ab").bytes(b"c").finish();
        assert_ne!(a, b);
        assert_ne!(a, c);
        // Exactly what version 1 computed: the first 16 bytes of the SHA-256 digest.
        let mut h = Sha256::new();
        h.update([3u8]);
        h.update(1u32.to_le_bytes());
        h.update(b"s");
        h.update(1u64.to_le_bytes());
        h.update(b"k");
        let ours = ArgsHasher::new(3, b"s").bytes(b"k").finish();
        assert_eq!(ours[..], h.finalize()[..16]);
    }

    #[test]
    fn fingerprint_collisions_keep_every_position() {
        let mut ix = Index::default();
        ix.insert(7, 1);
        ix.insert(7, 2);
        ix.insert(7, 3);
        ix.insert(8, 4);
        assert_eq!(ix.positions(7).collect::<Vec<_>>(), vec![1, 2, 3]);
        ix.remove(7, 1);
        let mut left: Vec<_> = ix.positions(7).collect();
        left.sort();
        assert_eq!(left, vec![2, 3]);
        ix.remove(7, 3);
        ix.remove(7, 2);
        assert_eq!(ix.positions(7).count(), 0);
        assert!(ix.more.is_empty());
        assert_eq!(ix.positions(8).collect::<Vec<_>>(), vec![4]);
    }

    fn op(n: u8) -> OpId {
        OpId::from(vec![n; 16])
    }

    #[test]
    fn records_rotate_and_reopen_with_their_epochs() {
        let mem = [(); 3].map(|_| VectorMemory::default());
        let mut header = Cell::init(mem[0].clone(), Header::new(3));
        let mut log = OpLog::init(&header, mem[1].clone(), mem[2].clone());
        let put = Outcome::Deleted(true);
        for n in 0..7u8 {
            log.record(&mut header, 1, &op(n), [n; 16], put);
        }
        // Window 3: records 0..3 went to A, 3..6 to B, 6 to A again (its epoch 2).
        assert_eq!(header.get().op_epochs, [2, 2]);
        assert_eq!(header.get().op_gen, 0);
        let fresh = |log: &OpLog<VectorMemory>, n: u8| {
            matches!(log.lookup(1, &op(n), &[n; 16]), Lookup::Fresh)
        };
        assert!((0..3).all(|n| fresh(&log, n)));
        assert!((3..7).all(|n| !fresh(&log, n)));
        assert_eq!(log.record_count(), 4);
        let reopened = OpLog::init(&header, mem[1].clone(), mem[2].clone());
        assert_eq!(reopened.record_count(), 4);
        assert_eq!(reopened.local, 1);
        assert_eq!([reopened.gens[0].len, reopened.gens[1].len], [1, 3]);
        assert!((0..3).all(|n| fresh(&reopened, n)));
        assert!(matches!(
            reopened.lookup(1, &op(4), &[4; 16]),
            Lookup::Done(Outcome::Deleted(true))
        ));
        assert!(matches!(
            reopened.lookup(1, &op(4), &[5; 16]),
            Lookup::Conflict
        ));
        assert!(matches!(
            reopened.lookup(2, &op(4), &[4; 16]),
            Lookup::Conflict
        ));
    }

    #[test]
    fn an_import_supersedes_its_own_scope_and_spares_another() {
        let mem = [(); 3].map(|_| VectorMemory::default());
        let mut header = Cell::init(mem[0].clone(), Header::new(100));
        let mut log = OpLog::init(&header, mem[1].clone(), mem[2].clone());
        log.record(&mut header, 1, &op(1), [1; 16], Outcome::Deleted(true));
        log.record(&mut header, 2, &op(2), [2; 16], Outcome::Deleted(true));
        let wire = |scope: u32| {
            let mut w = scope.to_le_bytes().to_vec();
            w.extend_from_slice(&[9; 16]);
            Outcome::Deleted(false).encode(&mut w);
            w
        };
        // Same id, same SubDB (scope 1): the import replaces the record.
        log.import(&mut header, 1, &[1; 16], &wire(77));
        // Same id as SubDB 2's record, but for SubDB 1: SubDB 2's record is kept.
        log.import(&mut header, 1, &[2; 16], &wire(77));
        assert_eq!(log.record_count(), 2);
        assert_eq!(log.local, 2);
        assert_eq!(log.record_of(1, &[1; 16]), Some(wire(1)));
        assert_eq!(
            log.record_of(2, &[2; 16]).map(|w| w[..4].to_vec()),
            Some(vec![2, 0, 0, 0])
        );
        let reopened = OpLog::init(&header, mem[1].clone(), mem[2].clone());
        assert_eq!(reopened.record_count(), 2);
        assert_eq!(reopened.local, 2);
        assert_eq!(reopened.record_of(1, &[1; 16]), Some(wire(1)));
        // The imported record answers with its own hash and outcome.
        let l = reopened.lookup(1, &op(1), &[9; 16]);
        assert!(matches!(l, Lookup::Done(Outcome::Deleted(false))));
        let mut seen = Vec::new();
        let end = reopened.export(1, &OpsCursor { gen: 0, pos: 0 }, 100, |id, rec| {
            seen.push((id.to_vec(), rec.to_vec()));
            true
        });
        assert_eq!(end, None);
        assert_eq!(seen, vec![(vec![1; 16], wire(1))]);
        // A scan budget of one record stops after the first (superseded) record.
        let c = reopened.export(1, &OpsCursor { gen: 0, pos: 0 }, 1, |_, _| true);
        assert_eq!(c, Some(OpsCursor { gen: 0, pos: 1 }));
    }

    #[test]
    fn version_1_maps_migrate_with_their_generations_and_local_count() {
        let mem = [(); 5].map(|_| VectorMemory::default());
        let mut h = Header::new(10);
        h.version = crate::layout::LAYOUT_VERSION_V1;
        h.op_gen = 1;
        h.op_epochs = [2, 0]; // v1 bytes 24..32: op_local = 2
        let mut header = Cell::init(mem[0].clone(), h);
        let rec = |scope: u32, o: Outcome| {
            let mut w = scope.to_le_bytes().to_vec();
            w.extend_from_slice(&[scope as u8; 16]);
            o.encode(&mut w);
            OpRecord(w)
        };
        let mut a: BTreeMap<OpKey, OpRecord, _> = BTreeMap::init(mem[1].clone());
        let mut b: BTreeMap<OpKey, OpRecord, _> = BTreeMap::init(mem[2].clone());
        a.insert(OpKey(vec![1; 16]), rec(5, Outcome::Created(5)));
        b.insert(OpKey(vec![2; 20]), rec(6, Outcome::Deleted(true)));
        b.insert(OpKey(vec![3; 32]), rec(6, Outcome::SubDbDeleted));
        b.insert(OpKey(vec![4; 16]), rec(7, Outcome::Deleted(false)));
        let log = OpLog::migrate_v1(
            &mut header,
            [mem[1].clone(), mem[2].clone()],
            mem[3].clone(),
            mem[4].clone(),
        );
        assert_eq!(header.get().version, LAYOUT_VERSION);
        assert_eq!(header.get().op_epochs, [1, 1]);
        assert_eq!(header.get().op_gen, 1);
        assert_eq!(log.record_count(), 4);
        assert_eq!(log.local, 2);
        assert_eq!(
            BTreeMap::<OpKey, OpRecord, _>::init(mem[1].clone()).len(),
            0
        );
        assert_eq!(
            BTreeMap::<OpKey, OpRecord, _>::init(mem[2].clone()).len(),
            0
        );
        let reopened = OpLog::init(&header, mem[3].clone(), mem[4].clone());
        assert_eq!(reopened.record_count(), 4);
        assert_eq!(reopened.local, 2);
        assert_eq!([reopened.gens[0].len, reopened.gens[1].len], [1, 3]);
        for (id, scope, o) in [
            (vec![1; 16], 5, Outcome::Created(5)),
            (vec![2; 20], 6, Outcome::Deleted(true)),
            (vec![3; 32], 6, Outcome::SubDbDeleted),
            (vec![4; 16], 7, Outcome::Deleted(false)),
        ] {
            assert_eq!(reopened.record_of(scope, &id), Some(rec(scope, o).0));
            let l = reopened.lookup(scope, &OpId::from(id), &[scope as u8; 16]);
            assert!(matches!(l, Lookup::Done(x) if x == o));
        }
    }
}
