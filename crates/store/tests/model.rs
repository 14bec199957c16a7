//! Model-based property test: random operation sequences run against the store and against a
//! `BTreeMap`-per-SubDB model (with an exact model of the two-generation op-id log); every
//! answer, every scan page, the byte accounting and export→import round trips are compared.
//! Batched writes run against the same model (their writes applied one by one), including
//! op-id replays and conflicts with single puts and deletes, and inside live moves.
//!
//! The run takes `FLOTILLA_SEED` (else a fresh seed) and prints `seed=N` on failure;
//! `FLOTILLA_CASES` sets the case count (default 1,000).

use flotilla_store::{Config, OpCtx, Store};
use flotilla_types::*;
use ic_stable_structures::memory_manager::{MemoryManager, VirtualMemory};
use ic_stable_structures::VectorMemory;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, RngSeed, TestRunner};
use serde_bytes::ByteBuf;
use std::collections::{BTreeMap, HashMap};

type Mem = VirtualMemory<VectorMemory>;
const WINDOW: u64 = 6;

#[derive(Clone, Debug)]
enum Op {
    Create {
        cap: Option<u64>,
        op: Option<(u8, u8)>,
    },
    DeleteSubDb {
        db: usize,
        op: Option<(u8, u8)>,
    },
    Put {
        db: usize,
        key: Vec<u8>,
        value: Vec<u8>,
        op: Option<(u8, u8)>,
    },
    Delete {
        db: usize,
        key: Vec<u8>,
        op: Option<(u8, u8)>,
    },
    /// A batched write; `None` values are deletes.
    Batch {
        db: usize,
        writes: Vec<Write>,
        op: Option<(u8, u8)>,
    },
    Get {
        db: usize,
        key: Vec<u8>,
    },
    Scan {
        db: usize,
        start: Option<Vec<u8>>,
        end: Option<Vec<u8>>,
        reverse: bool,
        limit: u32,
        max_bytes: Option<u32>,
    },
    ExportImport {
        db: usize,
        budget: usize,
    },
    /// A live move of `db` into the second store with `writes` interleaved one group per
    /// chunk (a group of one as a single put or delete, a larger one as a batch), then deltas
    /// and a frozen final delta.
    LiveMove {
        db: usize,
        budget: usize,
        writes: Vec<Vec<Write>>,
    },
    Reopen,
}

/// A key and a value to put, or `None` to delete it.
type Write = (Vec<u8>, Option<Vec<u8>>);

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0u8..4, 0..3)
}

fn write() -> impl Strategy<Value = Write> {
    (
        key(),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..12)),
    )
}

/// (op id number, caller number): a small pool so ids collide, replay and conflict.
fn op_id() -> impl Strategy<Value = Option<(u8, u8)>> {
    prop::option::of((0u8..6, 0u8..2))
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let db = 0usize..8;
    prop_oneof![
        2 => (prop::option::of(1u64..5), op_id()).prop_map(|(cap, op)| Op::Create { cap, op }),
        1 => (db.clone(), op_id()).prop_map(|(db, op)| Op::DeleteSubDb { db, op }),
        10 => (db.clone(), key(), prop::collection::vec(any::<u8>(), 0..12), op_id())
            .prop_map(|(db, key, value, op)| Op::Put { db, key, value, op }),
        3 => (db.clone(), key(), op_id()).prop_map(|(db, key, op)| Op::Delete { db, key, op }),
        4 => (db.clone(), prop::collection::vec(write(), 0..6), op_id())
            .prop_map(|(db, writes, op)| Op::Batch { db, writes, op }),
        3 => (db.clone(), key()).prop_map(|(db, key)| Op::Get { db, key }),
        4 => (db.clone(), prop::option::of(key()), prop::option::of(key()), any::<bool>(), 1u32..5,
              prop::option::of(1u32..60))
            .prop_map(|(db, start, end, reverse, limit, max_bytes)| Op::Scan { db, start, end, reverse, limit, max_bytes }),
        1 => (db.clone(), 40usize..300).prop_map(|(db, budget)| Op::ExportImport { db, budget }),
        1 => (db.clone(), 40usize..300, prop::collection::vec(prop::collection::vec(write(), 1..4), 0..12))
            .prop_map(|(db, budget, writes)| Op::LiveMove { db, budget, writes }),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Clone, Debug, PartialEq)]
enum Args {
    Create(Option<u64>),
    DeleteSubDb,
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Batch(Vec<Write>),
}

#[derive(Clone, Debug, PartialEq)]
enum Out {
    Created(u32),
    Unit,
    Put(PutOutcome),
    Deleted(bool),
    Batch(BatchOutcome),
}

#[derive(Default)]
struct ModelDb {
    cap: Option<u64>,
    items: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl ModelDb {
    /// A put: whether it replaced a value, and how many items the cap evicted.
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> (bool, u32) {
        let replaced = self.items.insert(key, value).is_some();
        let mut evicted = 0;
        while self.cap.is_some_and(|c| self.items.len() as u64 > c) {
            self.items.pop_first();
            evicted += 1;
        }
        (replaced, evicted)
    }

    /// A batch: its writes one after another.
    fn batch(&mut self, writes: &[Write]) -> BatchOutcome {
        let mut out = BatchOutcome::default();
        for (k, v) in writes {
            match v {
                Some(v) => {
                    let (replaced, evicted) = self.put(k.clone(), v.clone());
                    out.puts_replaced += replaced as u32;
                    out.evicted += evicted;
                }
                None => out.deletes_existed += self.items.remove(k).is_some() as u32,
            }
        }
        out
    }
}

fn batch_ops(writes: &[Write]) -> Vec<BatchOp> {
    writes
        .iter()
        .map(|(k, v)| match v {
            Some(v) => BatchOp::Put {
                key: ByteBuf::from(k.clone()),
                value: ByteBuf::from(v.clone()),
            },
            None => BatchOp::Delete {
                key: ByteBuf::from(k.clone()),
            },
        })
        .collect()
}

/// A remembered operation: scope, caller, arguments, outcome.
type Record = (u32, u8, Args, Out);
type Items = Vec<(Vec<u8>, Vec<u8>)>;

/// The model: live SubDBs by id, the next id, and the op log's two generations.
#[derive(Default)]
struct Model {
    dbs: BTreeMap<u32, ModelDb>,
    next_id: u32,
    gens: [HashMap<Vec<u8>, Record>; 2],
    cur: usize,
}

enum Seen {
    Fresh,
    Done(Out),
    Conflict,
}

impl Model {
    fn lookup(&self, id: &[u8], scope: u32, salt: u8, args: &Args) -> Seen {
        for g in &self.gens {
            if let Some((s, c, a, out)) = g.get(id) {
                return if *s == scope && *c == salt && a == args {
                    Seen::Done(out.clone())
                } else {
                    Seen::Conflict
                };
            }
        }
        Seen::Fresh
    }

    fn record(&mut self, id: Vec<u8>, rec: Record) {
        if self.gens[self.cur].len() as u64 >= WINDOW {
            self.cur ^= 1;
            self.gens[self.cur].clear();
        }
        self.gens[self.cur].insert(id, rec);
    }

    fn scope_records(&self, scope: u32) -> usize {
        self.gens
            .iter()
            .flat_map(|g| g.values())
            .filter(|r| r.0 == scope)
            .count()
    }
}

fn op_bytes(n: u8) -> OpId {
    OpId::from(vec![n; 16])
}

const SALTS: [&[u8]; 2] = [b"alice", b"bob"];

/// Runs `apply` on the model under the op-log rules; `Err` is the model's error.
fn model_once<E>(
    m: &mut Model,
    op: Option<(u8, u8)>,
    scope: u32,
    args: Args,
    conflict: E,
    apply: impl FnOnce(&mut Model) -> Result<Out, E>,
) -> Result<Out, E> {
    let Some((n, salt)) = op else { return apply(m) };
    let id = vec![n; 16];
    match m.lookup(&id, scope, salt, &args) {
        Seen::Done(out) => Ok(out),
        Seen::Conflict => Err(conflict),
        Seen::Fresh => {
            let out = apply(m)?;
            m.record(id, (scope, salt, args, out.clone()));
            Ok(out)
        }
    }
}

fn open(raw: &VectorMemory) -> Store<Mem> {
    let mm = MemoryManager::init_with_bucket_size(raw.clone(), 1);
    Store::init(|id| mm.get(id), Config { op_window: WINDOW }).unwrap()
}

fn db_id(m: &Model, db: usize) -> u32 {
    // Mostly ids that exist or existed, sometimes one that never did.
    (db as u32) % (m.next_id + 1)
}

fn full_scan(s: &Store<Mem>, id: u32, args: ScanArgs) -> Result<Items, TestCaseError> {
    let mut out = vec![];
    let mut args = args;
    let limit = args.limit.unwrap() as usize;
    for _ in 0..1000 {
        let page = s
            .scan(id, &args)
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert!(!page.entries.is_empty() || page.next.is_none());
        prop_assert!(page.entries.len() <= limit);
        if let Some(mb) = args.max_bytes {
            let bytes: usize = page
                .entries
                .iter()
                .map(|e| e.key.len() + e.value.len() + limits::ITEM_OVERHEAD_BYTES)
                .sum();
            prop_assert!(bytes <= mb as usize || page.entries.len() == 1);
        } else if page.next.is_some() {
            prop_assert_eq!(page.entries.len(), limit);
        }
        out.extend(
            page.entries
                .into_iter()
                .map(|e| (e.key.to_vec(), e.value.to_vec())),
        );
        match page.next {
            Some(c) => args.cursor = Some(c),
            None => return Ok(out),
        }
    }
    Err(TestCaseError::fail("scan did not terminate"))
}

fn check_accounting(s: &Store<Mem>, m: &Model) -> Result<(), TestCaseError> {
    let mut items = 0;
    let mut bytes = 0;
    for (id, db) in &m.dbs {
        let st = s
            .stats(*id)
            .ok_or_else(|| TestCaseError::fail("live SubDB missing"))?;
        let b: u64 = db
            .items
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum();
        prop_assert_eq!(
            (st.items, st.bytes, st.hard_cap),
            (db.items.len() as u64, b, db.cap)
        );
        items += st.items;
        bytes += st.bytes;
    }
    let t = s.totals();
    prop_assert_eq!(
        (t.items, t.bytes, t.live_subdbs),
        (items, bytes, m.dbs.len() as u64)
    );
    prop_assert_eq!(t.purging_items, 0);
    prop_assert!(t.op_records <= 2 * WINDOW);
    let listed: Vec<u32> = s.list_subdbs(0, usize::MAX).iter().map(|x| x.id).collect();
    prop_assert_eq!(listed, m.dbs.keys().copied().collect::<Vec<_>>());
    Ok(())
}

fn run_case(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let raw = VectorMemory::default();
    let mut s = open(&raw);
    let mut dst = open(&VectorMemory::default());
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Create { cap, op } => {
                let args = Args::Create(cap);
                let conflict = CreateSubDbError::OpIdConflict;
                let want = model_once(&mut m, op, u32::MAX, args, conflict, |m| {
                    let id = m.next_id;
                    m.next_id += 1;
                    let items = BTreeMap::new();
                    m.dbs.insert(id, ModelDb { cap, items });
                    Ok(Out::Created(id))
                });
                let o = op.map(|(n, _)| op_bytes(n));
                let ctx = op.map(|(_, c)| OpCtx {
                    op_id: o.as_ref().unwrap(),
                    salt: SALTS[c as usize],
                });
                let got = s.create_subdb(ctx, cap, b"meta").map(Out::Created);
                prop_assert_eq!(got, want);
            }
            Op::DeleteSubDb { db, op } => {
                let id = db_id(&m, db);
                let want = model_once(
                    &mut m,
                    op,
                    id,
                    Args::DeleteSubDb,
                    DeleteSubDbError::OpIdConflict,
                    |m| {
                        m.dbs
                            .remove(&id)
                            .map(|_| Out::Unit)
                            .ok_or(DeleteSubDbError::UnknownSubDb)
                    },
                );
                let o = op.map(|(n, _)| op_bytes(n));
                let ctx = op.map(|(_, c)| OpCtx {
                    op_id: o.as_ref().unwrap(),
                    salt: SALTS[c as usize],
                });
                prop_assert_eq!(s.delete_subdb(ctx, id).map(|_| Out::Unit), want);
            }
            Op::Put { db, key, value, op } => {
                let id = db_id(&m, db);
                let want = model_once(
                    &mut m,
                    op,
                    id,
                    Args::Put(key.clone(), value.clone()),
                    PutError::OpIdConflict,
                    |m| {
                        let d = m.dbs.get_mut(&id).ok_or(PutError::UnknownSubDb)?;
                        let (replaced, evicted) = d.put(key.clone(), value.clone());
                        Ok(Out::Put(PutOutcome { replaced, evicted }))
                    },
                );
                let o = op.map(|(n, _)| op_bytes(n));
                let ctx = op.map(|(_, c)| OpCtx {
                    op_id: o.as_ref().unwrap(),
                    salt: SALTS[c as usize],
                });
                prop_assert_eq!(s.put(ctx, id, &key, &value).map(Out::Put), want);
            }
            Op::Delete { db, key, op } => {
                let id = db_id(&m, db);
                let want = model_once(
                    &mut m,
                    op,
                    id,
                    Args::Delete(key.clone()),
                    DeleteError::OpIdConflict,
                    |m| {
                        let d = m.dbs.get_mut(&id).ok_or(DeleteError::UnknownSubDb)?;
                        Ok(Out::Deleted(d.items.remove(&key).is_some()))
                    },
                );
                let o = op.map(|(n, _)| op_bytes(n));
                let ctx = op.map(|(_, c)| OpCtx {
                    op_id: o.as_ref().unwrap(),
                    salt: SALTS[c as usize],
                });
                prop_assert_eq!(s.delete(ctx, id, &key).map(Out::Deleted), want);
            }
            Op::Batch { db, writes, op } => {
                let id = db_id(&m, db);
                let want = if writes.is_empty() {
                    // Refused before the op id is looked at.
                    Err(BatchError::EmptyBatch)
                } else {
                    model_once(
                        &mut m,
                        op,
                        id,
                        Args::Batch(writes.clone()),
                        BatchError::OpIdConflict,
                        |m| {
                            let d = m.dbs.get_mut(&id).ok_or(BatchError::UnknownSubDb)?;
                            Ok(Out::Batch(d.batch(&writes)))
                        },
                    )
                };
                let o = op.map(|(n, _)| op_bytes(n));
                let ctx = op.map(|(_, c)| OpCtx {
                    op_id: o.as_ref().unwrap(),
                    salt: SALTS[c as usize],
                });
                let got = s.batch(ctx, id, &batch_ops(&writes)).map(Out::Batch);
                prop_assert_eq!(got, want);
            }
            Op::Get { db, key } => {
                let id = db_id(&m, db);
                let want = m
                    .dbs
                    .get(&id)
                    .map(|d| d.items.get(&key).cloned())
                    .ok_or(GetError::UnknownSubDb);
                prop_assert_eq!(s.get(id, &key), want.clone());
                prop_assert_eq!(s.has(id, &key), want.map(|v| v.is_some()));
            }
            Op::Scan {
                db,
                start,
                end,
                reverse,
                limit,
                max_bytes,
            } => {
                let id = db_id(&m, db);
                let args = ScanArgs {
                    start: start.clone().map(ByteBuf::from),
                    end: end.clone().map(ByteBuf::from),
                    reverse,
                    limit: Some(limit),
                    max_bytes,
                    cursor: None,
                };
                let Some(d) = m.dbs.get(&id) else {
                    prop_assert_eq!(s.scan(id, &args), Err(ScanError::UnknownSubDb));
                    continue;
                };
                if let (Some(a), Some(b)) = (&start, &end) {
                    if a > b {
                        prop_assert_eq!(s.scan(id, &args), Err(ScanError::InvalidRange));
                        continue;
                    }
                }
                let mut want: Items = d
                    .items
                    .iter()
                    .filter(|(k, _)| {
                        start.as_ref().is_none_or(|a| *k >= a)
                            && end.as_ref().is_none_or(|b| *k < b)
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if reverse {
                    want.reverse();
                }
                prop_assert_eq!(full_scan(&s, id, args)?, want);
            }
            Op::ExportImport { db, budget } => {
                let id = db_id(&m, db);
                let Some(d) = m.dbs.get(&id) else {
                    prop_assert_eq!(
                        s.export_chunk(id, 0, None, budget).unwrap_err(),
                        ExportError::UnknownSubDb
                    );
                    continue;
                };
                let t = dst.begin_import();
                let mut token: Option<Vec<u8>> = None;
                let mut seq = 0;
                let mut ops = 0;
                loop {
                    let (chunk, next) = s.export_chunk(id, seq, token.as_deref(), budget).unwrap();
                    let single = chunk.puts.len() + chunk.ops.len() <= 1;
                    prop_assert!(
                        chunk.budget_bytes() <= budget || single,
                        "chunk over budget"
                    );
                    ops += chunk.ops.len();
                    dst.import_chunk(t, &chunk).unwrap();
                    dst.import_chunk(t, &chunk).unwrap();
                    seq += 1;
                    match next {
                        Some(n) => token = Some(n),
                        None => break,
                    }
                }
                let st = dst.finish_import(t).unwrap();
                prop_assert_eq!(st.hard_cap, d.cap);
                prop_assert_eq!(ops, m.scope_records(id));
                let all = ScanArgs {
                    limit: Some(limits::MAX_SCAN_ITEMS),
                    ..Default::default()
                };
                let want: Vec<_> = d
                    .items
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                prop_assert_eq!(full_scan(&dst, t, all)?, want);
                prop_assert_eq!(dst.meta(t), Some(b"meta".to_vec()));
            }
            Op::LiveMove { db, budget, writes } => {
                let id = db_id(&m, db);
                let Some(cap) = m.dbs.get(&id).map(|d| d.cap) else {
                    prop_assert_eq!(s.begin_export(id).unwrap_err(), ExportError::UnknownSubDb);
                    continue;
                };
                s.begin_export(id).unwrap();
                let t = dst.begin_import();
                let mut writes = writes.into_iter();
                let mut write = |s: &mut Store<Mem>, m: &mut Model| {
                    if let Some(group) = writes.next() {
                        let d = m.dbs.get_mut(&id).unwrap();
                        match &group[..] {
                            [(k, Some(v))] => {
                                s.put(None, id, k, v).unwrap();
                                d.put(k.clone(), v.clone());
                            }
                            [(k, None)] => {
                                s.delete(None, id, k).unwrap();
                                d.items.remove(k);
                            }
                            _ => {
                                let got = s.batch(None, id, &batch_ops(&group)).unwrap();
                                assert_eq!(got, d.batch(&group));
                            }
                        }
                    }
                };
                let (mut seq, mut token) = (0, None::<Vec<u8>>);
                loop {
                    let (c, next) = s.export_chunk(id, seq, token.as_deref(), budget).unwrap();
                    dst.import_chunk(t, &c).unwrap();
                    seq += 1;
                    write(&mut s, &mut m);
                    match next {
                        Some(n) => token = Some(n),
                        None => break,
                    }
                }
                let mut ack = 0;
                for freeze in [false, true] {
                    loop {
                        let d = s.export_delta(id, seq, ack, budget, freeze, None).unwrap();
                        prop_assert!(
                            d.chunk.budget_bytes() <= budget
                                || d.chunk.puts.len() + d.chunk.deletes.len() + d.chunk.ops.len()
                                    <= 1
                        );
                        dst.import_chunk(t, &d.chunk).unwrap();
                        seq += 1;
                        ack = d.version;
                        if !freeze {
                            write(&mut s, &mut m);
                        }
                        if !d.more {
                            break;
                        }
                    }
                }
                // Writes left over hit the frozen source and are refused.
                if let Some(group) = writes.next() {
                    prop_assert_eq!(
                        s.delete(None, id, &group[0].0),
                        Err(DeleteError::WritesPaused)
                    );
                    prop_assert_eq!(
                        s.batch(None, id, &batch_ops(&group)),
                        Err(BatchError::WritesPaused)
                    );
                }
                let st = dst.finish_import(t).unwrap();
                prop_assert_eq!(st.hard_cap, cap);
                let all = ScanArgs {
                    limit: Some(limits::MAX_SCAN_ITEMS),
                    ..Default::default()
                };
                let want: Vec<_> = m.dbs[&id]
                    .items
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                prop_assert_eq!(full_scan(&dst, t, all)?, want);
                prop_assert!(s.resume_writes(id));
            }
            Op::Reopen => {
                drop(s);
                s = open(&raw);
            }
        }
        check_accounting(&s, &m)?;
    }
    Ok(())
}

#[test]
fn store_matches_model() {
    let seed: u64 = std::env::var("FLOTILLA_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let cases = std::env::var("FLOTILLA_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut runner = TestRunner::new(PtConfig {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..PtConfig::default()
    });
    let result = runner.run(&prop::collection::vec(op_strategy(), 1..80), run_case);
    if let Err(e) = result {
        panic!("seed={seed} (rerun with FLOTILLA_SEED={seed}): {e}");
    }
    println!("store_matches_model: {cases} cases passed, seed={seed}");
}
