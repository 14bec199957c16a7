//! Fuzzing every endpoint's decode-and-dispatch (issue 11): arbitrary bytes, valid arguments
//! mutated byte-wise (bit flips, truncation, insertion, removal, huge length prefixes) and
//! valid arguments with values changed to boundary and arbitrary ones, sent to every method of
//! [`dispatch::methods`] (and unknown names) by every class of caller, on a partition holding
//! SubDBs in each state (private, public, paused for a move, released, importing, deleted).
//!
//! Properties of each call:
//! - nothing panics (each call runs under `catch_unwind`);
//! - the answer is a reply of the method's declared Candid type or a
//!   [`DispatchError::BadArgument`] (every method exists);
//! - a `DispatchError`, an `Err` reply, and any query leave the stable memory byte-identical;
//! - ingress inspection refuses only what the logic refuses too: a call that inspection
//!   refuses for its caller never gets an `Ok` reply.
//!
//! `FLOTILLA_FUZZ_CASES` sets the cases per test (default `flotilla_fuzz::DEFAULT_CASES`), and
//! `FLOTILLA_FUZZ_SEED` the seed; a failure names both, with the shrunk input.

use crate::dispatch::{self, Ctx, DispatchError, MethodKind};
use crate::inspect::{self, InspectRefusal};
use crate::Partition;
use candid::Principal;
use flotilla_fuzz::{
    arbitrary_case, bytes_of, err_variant, fuzz, hex, mutated_case, reply_is_ok, typed_case, Case,
    Fuzzed, Known, Sig,
};
use flotilla_store::Config;
use flotilla_types::dispatch::encode_args;
use flotilla_types::limits::REPLY_BUDGET_BYTES;
use flotilla_types::partition::{
    Access, BatchArgs, BeginExportArgs, BeginImportArgs, CreateLocalArgs, DeleteArgs,
    DeleteSubDbArgs, ExportArgs, ExportDeltaArgs, GetArgs, GetManyArgs, ImportChunkArgs,
    PartitionInit, PutArgs, ReleaseArgs, ScanRequest, SetAccessArgs, StatsArgs,
};
use flotilla_types::{BatchOp, Chunk, InnerKey, OpId, ScanArgs, SubDbId};
use ic_stable_structures::memory_manager::{MemoryManager, VirtualMemory};
use ic_stable_structures::VectorMemory;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_bytes::ByteBuf;
use std::panic::{catch_unwind, AssertUnwindSafe};

type Mem = VirtualMemory<VectorMemory>;

const INDEX: Principal = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 7, 1, 1]);
const TARGET: Principal = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 8, 1, 1]);
const OWNER: Principal = Principal::from_slice(&[0xA1; 29]);
const READER: Principal = Principal::from_slice(&[0xB2; 29]);
const WRITER: Principal = Principal::from_slice(&[0xC3; 29]);
const STRANGER: Principal = Principal::from_slice(&[0xD4; 29]);
const ANON: Principal = Principal::anonymous();
/// Every class of caller: anonymous, the three roles of a SubDB, a stranger, the index.
/// What a tweaked principal may become.
const KNOWN: Known = Known {
    callers: &CALLERS,
    target: TARGET,
};

const CALLERS: [Principal; 6] = [ANON, OWNER, READER, WRITER, STRANGER, INDEX];
/// Method names the partition does not have.
const UNKNOWN: [&str; 5] = ["", "nope", "get ", "GET", "canister_inspect_message"];

fn op(n: u8) -> OpId {
    OpId::from(vec![n; 16])
}

fn b(s: &[u8]) -> ByteBuf {
    ByteBuf::from(s.to_vec())
}

fn manager(raw: &VectorMemory) -> MemoryManager<VectorMemory> {
    MemoryManager::init_with_bucket_size(raw.clone(), 1)
}

fn open(raw: &VectorMemory) -> Partition<Mem> {
    let mm = manager(raw);
    Partition::open(|id| mm.get(id)).expect("the fixture opens")
}

/// The SubDBs of the fixture, one per state.
#[derive(Clone, Copy, Debug)]
struct Ids {
    /// OWNER's, READER reads, WRITER writes; items a, b, c.
    private: SubDbId,
    /// Readable by everyone (the anonymous principal is a reader); WRITER writes.
    public: SubDbId,
    /// Being exported, writes paused (a move's cutover).
    paused: SubDbId,
    /// Moved away: a tombstone.
    released: SubDbId,
    /// Receiving a move.
    importing: SubDbId,
    /// Deleted, its items still being reclaimed.
    deleted: SubDbId,
}

/// Builds the fixture's memory; returns it with the ids and a real export chunk.
fn build() -> (VectorMemory, Ids, Chunk) {
    let raw = VectorMemory::default();
    let mm = manager(&raw);
    let mut p = Partition::install(
        |id| mm.get(id),
        &PartitionInit { index: INDEX },
        Config::default(),
    )
    .unwrap();
    let mut n = 0u8;
    let mut create = |p: &mut Partition<Mem>, readers: Vec<Principal>| {
        n += 1;
        p.create_subdb_local(
            INDEX,
            &CreateLocalArgs {
                op_id: op(n),
                access: Access {
                    owner: OWNER,
                    readers,
                    writers: vec![WRITER],
                },
                hard_cap: Some(50),
                max_bytes: None,
            },
        )
        .unwrap()
    };
    let private = create(&mut p, vec![READER]);
    let public = create(&mut p, vec![ANON]);
    let paused = create(&mut p, vec![READER]);
    let released = create(&mut p, vec![READER]);
    let deleted = create(&mut p, vec![]);
    for (i, s) in [private, public, paused, released, deleted]
        .into_iter()
        .enumerate()
    {
        for (j, k) in [b"a", b"b", b"c"].into_iter().enumerate() {
            let op_n = 100 + (i * 3 + j) as u8;
            p.put(OWNER, &put(s, k, b"value", op_n)).unwrap();
        }
    }
    let batch = BatchArgs {
        subdb: private,
        ops: vec![
            BatchOp::Put {
                key: b(b"d"),
                value: b(b"dd"),
            },
            BatchOp::Delete { key: b(b"zz") },
        ],
        op_id: op(30),
    };
    p.batch(WRITER, &batch).unwrap();
    let budget = REPLY_BUDGET_BYTES as u64;
    let chunk = p
        .export_chunk(
            INDEX,
            &ExportArgs {
                subdb: private,
                seq: 0,
                token: None,
                budget,
            },
        )
        .unwrap()
        .chunk;
    for s in [paused, released] {
        p.begin_export(INDEX, &BeginExportArgs { subdb: s })
            .unwrap();
        let delta = ExportDeltaArgs {
            subdb: s,
            seq: 0,
            ack: 0,
            budget,
            freeze: true,
            write_budget: None,
        };
        p.export_delta(INDEX, &delta).unwrap();
    }
    p.put(OWNER, &put(paused, b"late", b"x", 40)).unwrap_err();
    let moved_to = InnerKey {
        partition: TARGET,
        subdb: 3,
    };
    p.release(
        INDEX,
        &ReleaseArgs {
            subdb: released,
            moved_to,
        },
    )
    .unwrap();
    let importing = p
        .begin_import(INDEX, &BeginImportArgs { op_id: op(50) })
        .unwrap();
    p.delete_subdb(
        INDEX,
        &DeleteSubDbArgs {
            subdb: deleted,
            op_id: op(51),
        },
    )
    .unwrap();
    let ids = Ids {
        private,
        public,
        paused,
        released,
        importing,
        deleted,
    };
    (raw, ids, chunk)
}

fn e<T: candid::CandidType>(v: T) -> Vec<u8> {
    encode_args((v,))
}

fn put(subdb: SubDbId, key: &[u8], value: &[u8], op_n: u8) -> PutArgs {
    PutArgs {
        subdb,
        key: b(key),
        value: b(value),
        op_id: op(op_n),
    }
}

/// Valid arguments of `method` on the fixture: the seeds that mutation starts from. They reach
/// every outcome (success, each refusal, replays and conflicts of op ids used by the fixture).
fn samples(method: &str, ids: Ids, chunk: &Chunk) -> Vec<Vec<u8>> {
    let Ids {
        private,
        public,
        paused,
        released,
        importing,
        deleted,
    } = ids;
    let all = [private, public, paused, released, importing, deleted, 999];
    let get = |s, k: &[u8]| GetArgs {
        subdb: s,
        key: b(k),
    };
    let budget = REPLY_BUDGET_BYTES as u64;
    let moved_to = InnerKey {
        partition: TARGET,
        subdb: 9,
    };
    match method {
        "get" | "has" => all.iter().map(|&s| e(get(s, b"a"))).collect(),
        "scan" => vec![
            encode_args((ScanRequest {
                subdb: private,
                args: ScanArgs::default(),
            },)),
            encode_args((ScanRequest {
                subdb: public,
                args: ScanArgs {
                    start: Some(b(b"a")),
                    end: Some(b(b"z")),
                    cursor: Some(b(b"b")),
                    limit: Some(2),
                    max_bytes: Some(100),
                    reverse: true,
                },
            },)),
            encode_args((ScanRequest {
                subdb: released,
                args: ScanArgs {
                    limit: Some(0),
                    ..ScanArgs::default()
                },
            },)),
        ],
        "subdb_stats" | "abort_import" | "resume_writes" => {
            all.iter().map(|&s| encode_args((s,))).collect()
        }
        "get_many" => vec![encode_args((GetManyArgs {
            keys: all.iter().map(|&s| get(s, b"b")).collect(),
        },))],
        "put" => vec![
            e(put(private, b"k", b"v", 60)),
            e(put(public, b"a", b"new", 61)),
            e(put(paused, b"k", b"v", 62)),
            e(put(released, b"k", b"v", 63)),
            // The fixture's first put on `private`: a replay by its owner, a conflict else.
            e(put(private, b"a", b"value", 100)),
        ],
        "delete" => vec![encode_args((DeleteArgs {
            subdb: private,
            key: b(b"a"),
            op_id: op(64),
        },))],
        "batch" => vec![
            encode_args((BatchArgs {
                subdb: private,
                ops: vec![
                    BatchOp::Put {
                        key: b(b"x"),
                        value: b(b"y"),
                    },
                    BatchOp::Delete { key: b(b"a") },
                ],
                op_id: op(65),
            },)),
            encode_args((BatchArgs {
                subdb: public,
                ops: vec![],
                op_id: op(30),
            },)),
        ],
        "set_access" => vec![
            encode_args((SetAccessArgs {
                subdb: private,
                readers: vec![READER, STRANGER],
                writers: vec![WRITER],
            },)),
            encode_args((SetAccessArgs {
                subdb: public,
                readers: vec![ANON],
                writers: vec![ANON],
            },)),
        ],
        "delete_subdb" => [private, released, deleted]
            .iter()
            .map(|&s| {
                encode_args((DeleteSubDbArgs {
                    subdb: s,
                    op_id: op(66),
                },))
            })
            .collect(),
        "create_subdb_local" => vec![encode_args((CreateLocalArgs {
            op_id: op(67),
            access: Access {
                owner: STRANGER,
                readers: vec![ANON, READER],
                writers: vec![WRITER],
            },
            hard_cap: Some(3),
            max_bytes: None,
        },))],
        "stats" => vec![encode_args((StatsArgs {
            from: 0,
            limit: 10,
            largest_first: None,
        },))],
        "export_chunk" => vec![
            encode_args((ExportArgs {
                subdb: private,
                seq: 0,
                token: None,
                budget,
            },)),
            encode_args((ExportArgs {
                subdb: paused,
                seq: 1,
                token: Some(b(b"\x01b")),
                budget,
            },)),
        ],
        "begin_export" => vec![encode_args((BeginExportArgs { subdb: private },))],
        "export_delta" => [(paused, false), (private, true)]
            .iter()
            .map(|&(s, freeze)| {
                encode_args((ExportDeltaArgs {
                    subdb: s,
                    seq: 0,
                    ack: 0,
                    budget,
                    freeze,
                    write_budget: None,
                },))
            })
            .collect(),
        "begin_import" => vec![
            encode_args((BeginImportArgs { op_id: op(68) },)),
            encode_args((BeginImportArgs { op_id: op(50) },)),
        ],
        "import_chunk" => vec![
            encode_args((ImportChunkArgs {
                subdb: importing,
                chunk: chunk.clone(),
                finish: true,
            },)),
            encode_args((ImportChunkArgs {
                subdb: importing,
                chunk: Chunk::default(),
                finish: false,
            },)),
        ],
        "release" => [paused, private, released]
            .iter()
            .map(|&s| encode_args((ReleaseArgs { subdb: s, moved_to },)))
            .collect(),
        other => panic!("no samples for {other}: add them to tests_fuzz::samples"),
    }
}

/// The fuzzed partition: its memory, the pristine image every case starts from, the logic.
struct World {
    raw: VectorMemory,
    pristine: Vec<u8>,
    p: Partition<Mem>,
    sigs: Vec<Sig>,
    /// Cases that got a typed `Ok`, an `Err` reply, a `DispatchError`, an inspection refusal.
    tally: [u64; 4],
}

impl Fuzzed for World {
    fn run(&mut self, case: &Case) -> Result<(), TestCaseError> {
        self.run_case(case)
    }

    fn tally(&self) -> [u64; 4] {
        self.tally
    }
}

impl World {
    fn new() -> World {
        let (raw, ids, chunk) = build();
        // Opening writes nothing; the pristine image is the memory as opened.
        let p = open(&raw);
        let pristine = raw.borrow().clone();
        let sigs = dispatch::methods()
            .into_iter()
            .map(|sig| {
                let samples = samples(sig.name, ids, &chunk);
                Sig::new(sig, samples)
            })
            .collect();
        World {
            raw,
            pristine,
            p,
            sigs,
            tally: [0; 4],
        }
    }

    fn changed(&self) -> bool {
        *self.raw.borrow() != self.pristine
    }

    fn restore(&mut self) {
        self.raw.borrow_mut().clone_from(&self.pristine);
        self.p = open(&self.raw);
    }

    /// Runs one case and checks every property; restores the pristine state afterwards.
    fn run_case(&mut self, case: &Case) -> Result<(), TestCaseError> {
        let n = self.sigs.len();
        let pick = case.method.index(n + UNKNOWN.len());
        let method = (pick < n).then_some(pick);
        let name = match method {
            Some(m) => self.sigs[m].sig.name,
            None => UNKNOWN[pick - n],
        };
        let caller = CALLERS[case.caller.index(CALLERS.len())];
        let arg = bytes_of(&self.sigs, method, &case.input, &KNOWN);
        let what = format!("{name} by {caller} with {} bytes {}", arg.len(), hex(&arg));
        let ctx = Ctx {
            caller,
            stable_memory_bytes: 1 << 20,
        };
        let verdict = catch_unwind(|| inspect::inspect(name, &caller, arg.len(), &INDEX))
            .map_err(|_| TestCaseError::fail(format!("inspect panicked: {what}")))?;
        let result = self.call(&ctx, name, &arg, &what);
        let changed = self.changed();
        if changed {
            self.restore();
        }
        let result = result?;
        let Some(m) = method else {
            prop_assert_eq!(
                result,
                Err(DispatchError::NoSuchMethod {
                    method: name.to_string()
                }),
                "{}",
                what
            );
            prop_assert!(!changed, "unknown method changed memory: {}", what);
            let unknown = matches!(verdict, Err(InspectRefusal::UnknownMethod { .. }));
            prop_assert!(
                unknown,
                "inspection let an unknown method through: {}",
                what
            );
            self.tally[3] += 1;
            return Ok(());
        };
        let sig = &self.sigs[m];
        let ok = match &result {
            Err(e) => {
                prop_assert!(
                    matches!(e, DispatchError::BadArgument { method, .. } if method == name),
                    "{:?}: {}",
                    e,
                    what
                );
                prop_assert!(!changed, "a DispatchError changed memory: {}", what);
                self.tally[2] += 1;
                false
            }
            Ok(reply) => {
                let ok = reply_is_ok(sig, reply).map_err(|e| {
                    TestCaseError::fail(format!("reply not of the declared type ({e}): {what}"))
                })?;
                prop_assert!(
                    ok || !changed,
                    "an Err reply changed memory: {} -> {}",
                    what,
                    hex(reply)
                );
                prop_assert!(
                    sig.sig.kind == MethodKind::Update || !changed,
                    "a query changed memory: {}",
                    what
                );
                self.tally[if ok { 0 } else { 1 }] += 1;
                ok
            }
        };
        match verdict {
            Ok(()) => {}
            Err(InspectRefusal::ArgumentTooLarge { .. }) => self.tally[3] += 1,
            Err(r) => {
                self.tally[3] += 1;
                prop_assert!(
                    !ok,
                    "inspection refused ({}) a call the logic ran: {}",
                    r,
                    what
                );
            }
        }
        Ok(())
    }

    /// Calls `name` as the IC would: a query method both as a query and as an update.
    fn call(
        &mut self,
        ctx: &Ctx,
        name: &str,
        arg: &[u8],
        what: &str,
    ) -> Result<Result<Vec<u8>, DispatchError>, TestCaseError> {
        if dispatch::method_kind(name) == Some(MethodKind::Query) {
            let p = &self.p;
            let q = catch_unwind(AssertUnwindSafe(|| dispatch::query(p, ctx, name, arg)));
            let q = q.map_err(|_| TestCaseError::fail(format!("query panicked: {what}")))?;
            prop_assert!(!self.changed(), "a query changed memory: {}", what);
            let p = &mut self.p;
            let u = catch_unwind(AssertUnwindSafe(|| dispatch::update(p, ctx, name, arg)));
            let u = u.map_err(|_| self.panicked(what))?;
            prop_assert_eq!(&q, &u, "query and update answers differ: {}", what);
            return Ok(u);
        }
        let p = &mut self.p;
        let u = catch_unwind(AssertUnwindSafe(|| dispatch::update(p, ctx, name, arg)));
        u.map_err(|_| self.panicked(what))
    }

    fn panicked(&mut self, what: &str) -> TestCaseError {
        self.restore();
        TestCaseError::fail(format!("dispatch panicked: {what}"))
    }
}

#[test]
fn fuzz_every_endpoint_with_arbitrary_bytes() {
    fuzz(
        "fuzz_every_endpoint_with_arbitrary_bytes",
        "flotilla-partition",
        World::new(),
        arbitrary_case(),
    );
}

#[test]
fn fuzz_every_endpoint_with_mutated_arguments() {
    fuzz(
        "fuzz_every_endpoint_with_mutated_arguments",
        "flotilla-partition",
        World::new(),
        mutated_case(),
    );
}

#[test]
fn fuzz_every_endpoint_with_tweaked_values() {
    fuzz(
        "fuzz_every_endpoint_with_tweaked_values",
        "flotilla-partition",
        World::new(),
        typed_case(),
    );
}

/// Every sample is a valid argument: unmutated, each reaches the logic (no `DispatchError`),
/// and the samples of each method reach an `Ok` and (but for `get_many`) an `Err` for some
/// caller, so mutation starts from both sides of the checks.
#[test]
fn samples_reach_the_logic() {
    let mut w = World::new();
    for m in 0..w.sigs.len() {
        let name = w.sigs[m].sig.name;
        let (mut oks, mut errs) = (0, 0);
        for s in 0..w.sigs[m].samples.len() {
            for caller in CALLERS {
                let arg = w.sigs[m].samples[s].clone();
                let ctx = Ctx {
                    caller,
                    stable_memory_bytes: 0,
                };
                let reply = dispatch::update(&mut w.p, &ctx, name, &arg)
                    .unwrap_or_else(|e| panic!("sample {s} of {name}: {e}"));
                if reply_is_ok(&w.sigs[m], &reply).unwrap() {
                    oks += 1;
                } else {
                    errs += 1;
                }
                if w.changed() {
                    w.restore();
                }
            }
        }
        // `get_many` answers `Err` only to too many keys (each pair has its own result).
        assert!(oks > 0, "{name}: no sample gets Ok");
        assert!(errs > 0 || name == "get_many", "{name}: no sample gets Err");
    }
}

/// The index-only rule of inspection is exactly the logic's `require_index` guard, and the
/// anonymous rule exactly the calls the logic never lets the anonymous principal make: with
/// every sample argument, the index is never `NotAuthorized` on an index-only method and
/// everyone else always is; the anonymous principal never gets `Ok` from a write.
#[test]
fn inspection_rules_match_the_logic() {
    let mut w = World::new();
    for m in 0..w.sigs.len() {
        let name = w.sigs[m].sig.name;
        let rule = inspect::rule_of(name).unwrap();
        for s in 0..w.sigs[m].samples.len() {
            for caller in CALLERS {
                let arg = w.sigs[m].samples[s].clone();
                let ctx = Ctx {
                    caller,
                    stable_memory_bytes: 0,
                };
                let reply = dispatch::update(&mut w.p, &ctx, name, &arg).unwrap();
                if w.changed() {
                    w.restore();
                }
                let not_authorized =
                    err_variant(&w.sigs[m], &reply) == Some(candid::idl_hash("NotAuthorized"));
                match rule.callers {
                    inspect::Callers::Index => assert_eq!(
                        not_authorized,
                        caller != INDEX,
                        "{name} sample {s} by {caller}"
                    ),
                    inspect::Callers::Authenticated if caller == ANON => {
                        assert!(!reply_is_ok(&w.sigs[m], &reply).unwrap(), "{name} {s}")
                    }
                    _ => {}
                }
            }
        }
    }
}
