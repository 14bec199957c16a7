//! Fuzzing every endpoint's decode-and-dispatch (issue 11): arbitrary bytes, valid arguments
//! mutated byte-wise (bit flips, truncation, insertion, removal, huge length prefixes) and
//! valid arguments with values changed to boundary and arbitrary ones, sent to every method of
//! [`dispatch::methods`] by every class of caller (anonymous, a SubDB owner, a stranger, an
//! admin, a canister), on an index with a partition wasm, an active partition and a spare, a
//! live SubDB, a create waiting for its partition and a move in progress.
//!
//! Properties of each call:
//! - nothing panics (each call runs under `catch_unwind`);
//! - the answer is a reply of the method's declared Candid type (or a call the reply awaits)
//!   or a [`DispatchError::BadArgument`] (every method exists);
//! - a `DispatchError`, an `Err` reply, and any query leave the stable memory byte-identical
//!   (but for the exceptions of [`err_may_change`]: one by design, one a known bug);
//! - ingress inspection refuses only what the logic refuses too: a call that inspection
//!   refuses for its caller never gets an `Ok` reply nor awaits a call.
//!
//! `FLOTILLA_FUZZ_CASES` sets the cases per test (default `flotilla_fuzz::DEFAULT_CASES`), and
//! `FLOTILLA_FUZZ_SEED` the seed; a failure names both, with the shrunk input.

use crate::calls::{Request, Response};
use crate::dispatch::{self, Outcome};
use crate::inspect::{self, InspectRefusal};
use crate::{Env, Index};
use candid::Principal;
use flotilla_fuzz::{
    arbitrary_case, bytes_of, err_variant, fuzz, hex, mutated_case, reply_is_ok, typed_case, Case,
    Fuzzed, Known, Sig,
};
use flotilla_types::dispatch::{encode_args, DispatchError, MethodKind};
use flotilla_types::index::{
    CreatePolicy, CreateRequest, DeleteRequest, IndexInit, IndexSettings, MoveRequest,
    PartitionsRequest, RoutesRequest, UpgradePartitionsArgs, WasmChunk,
};
use flotilla_types::partition::PartitionStats;
use flotilla_types::OpId;
use ic_stable_structures::memory_manager::{MemoryManager, VirtualMemory};
use ic_stable_structures::VectorMemory;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::panic::{catch_unwind, AssertUnwindSafe};

type Mem = VirtualMemory<VectorMemory>;

const SELF: Principal = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 1, 1]);
const ADMIN: Principal = Principal::from_slice(&[0xA0; 29]);
/// Owns "a" and "c".
const ALICE: Principal = Principal::from_slice(&[0xA1; 29]);
/// Owns "b", whose creation waits for its partition.
const BOB: Principal = Principal::from_slice(&[0xB0; 29]);
const STRANGER: Principal = Principal::from_slice(&[0xD4; 29]);
/// Some canister (not a partition of this index).
const CANISTER: Principal = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 9, 1, 1]);
const ANON: Principal = Principal::anonymous();
/// Every class of caller.
/// What a tweaked principal may become.
const KNOWN: Known = Known {
    callers: &CALLERS,
    target: TARGET,
};

const CALLERS: [Principal; 6] = [ANON, ADMIN, ALICE, BOB, STRANGER, CANISTER];
/// A principal the tweaks also use: the index itself.
const TARGET: Principal = SELF;
/// Method names the index does not have.
const UNKNOWN: [&str; 5] = ["", "nope", "stats ", "Stats", "create_subdb_local"];
/// The fixture's partition module, and the one being uploaded.
const WASM: &[u8] = b"\0asm-pretend-partition-module";
const WASM2: &[u8] = b"\0asm-pretend-partition-module-v2";

fn op(n: u8) -> OpId {
    OpId::from(vec![n; 16])
}

fn env(caller: Principal) -> Env {
    Env {
        caller,
        now: 1_000_000_000,
        self_id: SELF,
        balance: 1_000_000_000_000_000,
    }
}

fn manager(raw: &VectorMemory) -> MemoryManager<VectorMemory> {
    MemoryManager::init_with_bucket_size(raw.clone(), 1)
}

fn open(raw: &VectorMemory) -> Index<Mem> {
    let mm = manager(raw);
    Index::open(|id| mm.get(id)).expect("the fixture opens")
}

fn chunk(wasm: &[u8], offset: usize, len: usize, sha: &[u8]) -> WasmChunk {
    WasmChunk {
        offset: offset as u64,
        bytes: ByteBuf::from(wasm[offset..offset + len].to_vec()),
        total_len: wasm.len() as u64,
        sha256: ByteBuf::from(sha.to_vec()),
    }
}

/// Answers every call as a well-behaved management canister and partitions would, until
/// none is left; returns the partitions created.
fn serve(
    index: &mut Index<Mem>,
    mut calls: Vec<crate::calls::Call>,
    ids: &mut u8,
) -> Vec<Principal> {
    let mut created = vec![];
    while let Some(call) = calls.pop() {
        let reply = match &call.request {
            Request::CreateCanister { .. } => {
                *ids += 1;
                let id = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x40 + *ids, 1, 1]);
                created.push(id);
                Response::CanisterCreated(id)
            }
            Request::InstallCode { .. } | Request::InstallChunkedCode { .. } => Response::Installed,
            Request::UploadChunk { chunk, .. } => Response::ChunkUploaded {
                hash: ByteBuf::from(Sha256::digest(chunk).to_vec()),
            },
            Request::Stats(_) => Response::Stats(Ok(PartitionStats::default())),
            Request::CreateSubDb(_) => {
                *ids += 1;
                Response::SubDbCreated(Ok(*ids as u32))
            }
            Request::CanisterStatus { .. } => Response::Status {
                cycles: 1_000_000_000_000,
                module_hash: None,
                stopped: false,
            },
            Request::DepositCycles { .. } => Response::Deposited,
            Request::StopCanister { .. } => Response::Stopped,
            Request::StartCanister { .. } => Response::Started,
            other => panic!("the fixture does not answer {other:?}"),
        };
        calls.extend(index.on_reply(&env(ADMIN), call.id, Ok(reply)).calls);
    }
    created
}

fn create_req(key: &str, n: u8) -> CreateRequest {
    CreateRequest {
        outer_key: key.to_string(),
        op_id: op(n),
        hard_cap: None,
        owner: None,
        readers: vec![],
        writers: vec![],
    }
}

/// Builds the fixture's memory: a partition wasm; partition P1 holding "a" and "c" (ALICE's);
/// a spare P2; "b" (BOB's) waiting for its partition's answer; "c" moving to P2; the upload of
/// a new module under way.
fn build() -> (VectorMemory, [Principal; 2]) {
    let raw = VectorMemory::default();
    let mm = manager(&raw);
    let mut index = Index::install(
        |id| mm.get(id),
        IndexInit {
            admins: vec![ADMIN],
            spare_pool_target: Some(1),
            move_cap_bytes: Some(1 << 20),
            ..IndexInit::default()
        },
    );
    let sha = Sha256::digest(WASM).to_vec();
    let up = index.upload_partition_wasm(&env(ADMIN), chunk(WASM, 0, WASM.len(), &sha));
    assert!(up.unwrap().complete);
    let mut ids = 0;
    let calls = index.tick(&env(ADMIN));
    let p1 = serve(&mut index, calls, &mut ids)[0];
    for (key, n) in [("a", 1), ("c", 2)] {
        let step = index.create_subdb(&env(ALICE), create_req(key, n));
        let crate::Step::Await(call) = step else {
            panic!("create {key}: {step:?}")
        };
        serve(&mut index, vec![call], &mut ids);
    }
    let calls = index.tick(&env(ADMIN));
    let p2 = serve(&mut index, calls, &mut ids)[0];
    let step = index.create_subdb(&env(BOB), create_req("b", 3));
    assert!(matches!(step, crate::Step::Await(_)), "{step:?}");
    let to = MoveRequest {
        outer_key: "c".into(),
        target: Some(p2),
    };
    let (target, _calls) = index.move_subdb(&env(ADMIN), &to).unwrap();
    assert_eq!(target, p2);
    // A new module, its first piece uploaded.
    let sha2 = Sha256::digest(WASM2).to_vec();
    let up = index.upload_partition_wasm(&env(ADMIN), chunk(WASM2, 0, 8, &sha2));
    assert!(!up.unwrap().complete);
    (raw, [p1, p2])
}

fn e<T: candid::CandidType>(v: T) -> Vec<u8> {
    encode_args((v,))
}

/// Valid arguments of `method` on the fixture: the seeds that mutation starts from. They reach
/// every outcome (success, each refusal, replays and conflicts of op ids used by the fixture).
fn samples(method: &str, [p1, p2]: [Principal; 2]) -> Vec<Vec<u8>> {
    let sha = Sha256::digest(WASM).to_vec();
    let keys = |ks: &[&str]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    let mv = |k: &str, target| MoveRequest {
        outer_key: k.into(),
        target,
    };
    match method {
        "route" => vec![e(keys(&["a", "b", "c", "zz"])), e(keys(&[]))],
        "routes" => vec![
            e(RoutesRequest {
                start_after: None,
                limit: Some(10),
            }),
            e(RoutesRequest {
                start_after: Some("a".into()),
                limit: Some(0),
            }),
        ],
        "stats" | "list_moves" | "run_housekeeping" => vec![encode_args(())],
        "partitions" => vec![
            e(PartitionsRequest::default()),
            e(PartitionsRequest {
                start_after: Some(0),
                limit: Some(1),
            }),
            e(PartitionsRequest {
                start_after: Some(u64::MAX),
                limit: Some(u32::MAX),
            }),
        ],
        "create_subdb" => vec![
            e(create_req("d", 20)),
            e(CreateRequest {
                owner: Some(BOB),
                readers: vec![ANON, STRANGER],
                writers: vec![BOB],
                hard_cap: Some(5),
                ..create_req("e", 21)
            }),
            // Taken; the op id of "a" (a replay for ALICE); "b"'s (waiting).
            e(create_req("a", 22)),
            e(create_req("a", 1)),
            e(create_req("b", 3)),
        ],
        "delete_subdb" => ["a", "b", "c", "zz"]
            .iter()
            .map(|k| {
                e(DeleteRequest {
                    outer_key: k.to_string(),
                    op_id: op(23),
                })
            })
            .collect(),
        "add_admin" | "remove_admin" => [BOB, ADMIN, ANON].iter().map(|&p| e(p)).collect(),
        "allow_creators" | "disallow_creators" => vec![
            e(vec![BOB, STRANGER]),
            e(Vec::<Principal>::new()),
            e(vec![ANON, ALICE]),
        ],
        "update_settings" => vec![
            e(IndexSettings {
                spare_pool_target: Some(2),
                cycles_threshold: Some(10),
                cycles_target: Some(20),
                ..IndexSettings::default()
            }),
            e(IndexSettings::default()),
            // Refused: too many spares; a target under the threshold.
            e(IndexSettings {
                spare_pool_target: Some(u32::MAX),
                ..IndexSettings::default()
            }),
            e(IndexSettings {
                cycles_threshold: Some(30),
                cycles_target: Some(20),
                ..IndexSettings::default()
            }),
            // The allow-list policy, and a quota every owner is already at.
            e(IndexSettings {
                create_policy: Some(CreatePolicy::AllowList),
                max_subdbs_per_owner: Some(0),
                ..IndexSettings::default()
            }),
        ],
        "upload_partition_wasm_chunk" => {
            let sha2 = Sha256::digest(WASM2).to_vec();
            vec![
                e(chunk(WASM, 0, WASM.len(), &sha)),
                e(chunk(WASM, 0, WASM.len(), &[0; 32])),
                e(chunk(WASM, 0, 5, &sha)),
                // The upload in progress: its next piece, its last, a wrong offset.
                e(chunk(WASM2, 8, 4, &sha2)),
                e(chunk(WASM2, 8, WASM2.len() - 8, &sha2)),
                e(chunk(WASM2, 9, 4, &sha2)),
            ]
        }
        "move_subdb" => vec![
            e(mv("a", None)),
            e(mv("a", Some(p2))),
            e(mv("a", Some(p1))),
            e(mv("c", None)),
            e(mv("zz", None)),
        ],
        "cancel_move" => vec![e("c".to_string()), e("a".to_string())],
        "upgrade_partitions" => vec![
            e(UpgradePartitionsArgs { batch: Some(2) }),
            e(UpgradePartitionsArgs::default()),
            // Refused: a batch of 0, one too large.
            e(UpgradePartitionsArgs { batch: Some(0) }),
            e(UpgradePartitionsArgs {
                batch: Some(flotilla_types::limits::MAX_UPGRADE_BATCH + 1),
            }),
        ],
        other => panic!("no samples for {other}: add them to tests_fuzz::samples"),
    }
}

/// What a call answered: a reply now, a call the reply awaits, or no reply at all.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Reply(Vec<u8>),
    Await,
    Refused(DispatchError),
}

/// The fuzzed index: its memory, the pristine image every case starts from, the logic.
struct World {
    raw: VectorMemory,
    pristine: Vec<u8>,
    index: Index<Mem>,
    sigs: Vec<Sig>,
    /// Cases that got an `Ok` (or awaited), an `Err` reply, a `DispatchError`, an
    /// inspection refusal.
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
        let (raw, parts) = build();
        // Opening forgets the calls in flight; the pristine image is the memory as opened,
        // which opening again leaves as it is.
        drop(open(&raw));
        let pristine = raw.borrow().clone();
        let index = open(&raw);
        assert!(
            *raw.borrow() == pristine,
            "opening the index twice changed memory"
        );
        let sigs = dispatch::methods()
            .into_iter()
            .map(|sig| {
                let samples = samples(sig.name, parts);
                Sig::new(sig, samples)
            })
            .collect();
        World {
            raw,
            pristine,
            index,
            sigs,
            tally: [0; 4],
        }
    }

    fn changed(&self) -> bool {
        *self.raw.borrow() != self.pristine
    }

    fn restore(&mut self) {
        self.raw.borrow_mut().clone_from(&self.pristine);
        self.index = open(&self.raw);
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
        let index = &self.index;
        let verdict = catch_unwind(AssertUnwindSafe(|| index.inspect(name, &caller, arg.len())))
            .map_err(|_| TestCaseError::fail(format!("inspect panicked: {what}")))?;
        let result = self.call(caller, name, &arg, &what);
        let changed = self.changed();
        if changed {
            self.restore();
        }
        let answer = result?;
        let Some(m) = method else {
            prop_assert_eq!(
                answer,
                Answer::Refused(DispatchError::NoSuchMethod {
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
        let ok = match &answer {
            Answer::Refused(e) => {
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
            Answer::Await => {
                self.tally[0] += 1;
                true
            }
            Answer::Reply(reply) => {
                let ok = reply_is_ok(sig, reply).map_err(|e| {
                    TestCaseError::fail(format!("reply not of the declared type ({e}): {what}"))
                })?;
                prop_assert!(
                    ok || !changed || err_may_change(sig, &arg, reply),
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
        caller: Principal,
        name: &str,
        arg: &[u8],
        what: &str,
    ) -> Result<Answer, TestCaseError> {
        let env = env(caller);
        if dispatch::method_kind(name) == Some(MethodKind::Query) {
            let index = &self.index;
            let q = catch_unwind(AssertUnwindSafe(|| dispatch::query(index, &env, name, arg)));
            let q = q.map_err(|_| TestCaseError::fail(format!("query panicked: {what}")))?;
            prop_assert!(!self.changed(), "a query changed memory: {}", what);
            let u = self.update(&env, name, arg, what)?;
            let q = match q {
                Ok(reply) => Answer::Reply(reply),
                Err(e) => Answer::Refused(e),
            };
            prop_assert_eq!(&q, &u, "query and update answers differ: {}", what);
            return Ok(u);
        }
        self.update(&env, name, arg, what)
    }

    fn update(
        &mut self,
        env: &Env,
        name: &str,
        arg: &[u8],
        what: &str,
    ) -> Result<Answer, TestCaseError> {
        let index = &mut self.index;
        let u = catch_unwind(AssertUnwindSafe(|| dispatch::update(index, env, name, arg)));
        let u = u.map_err(|_| {
            self.restore();
            TestCaseError::fail(format!("dispatch panicked: {what}"))
        })?;
        Ok(match u {
            Ok(Outcome::Reply { reply, .. }) => Answer::Reply(reply),
            Ok(Outcome::Await { .. }) => Answer::Await,
            Err(e) => Answer::Refused(e),
        })
    }
}

/// The `Err` replies that change state: by design, only an upload whose last piece fails the
/// hash check, which drops the upload (`UploadWasmError::HashMismatch`).
fn err_may_change(sig: &Sig, _arg: &[u8], reply: &[u8]) -> bool {
    sig.sig.name == "upload_partition_wasm_chunk"
        && err_variant(sig, reply) == Some(candid::idl_hash("HashMismatch"))
}

#[test]
fn fuzz_every_endpoint_with_arbitrary_bytes() {
    fuzz(
        "fuzz_every_endpoint_with_arbitrary_bytes",
        "flotilla-index",
        World::new(),
        arbitrary_case(),
    );
}

#[test]
fn fuzz_every_endpoint_with_mutated_arguments() {
    fuzz(
        "fuzz_every_endpoint_with_mutated_arguments",
        "flotilla-index",
        World::new(),
        mutated_case(),
    );
}

#[test]
fn fuzz_every_endpoint_with_tweaked_values() {
    fuzz(
        "fuzz_every_endpoint_with_tweaked_values",
        "flotilla-index",
        World::new(),
        typed_case(),
    );
}

/// Every sample is a valid argument: unmutated, each reaches the logic (no `DispatchError`),
/// and the samples of each update method reach an `Ok` and an `Err` for some caller, so
/// mutation starts from both sides of the checks.
#[test]
fn samples_reach_the_logic() {
    let mut w = World::new();
    for m in 0..w.sigs.len() {
        let name = w.sigs[m].sig.name;
        let (mut oks, mut errs) = (0, 0);
        for s in 0..w.sigs[m].samples.len() {
            for caller in CALLERS {
                let arg = w.sigs[m].samples[s].clone();
                let answer = w.update(&env(caller), name, &arg, name).unwrap();
                match answer {
                    Answer::Reply(reply) => {
                        if reply_is_ok(&w.sigs[m], &reply).unwrap() {
                            oks += 1;
                        } else {
                            errs += 1;
                        }
                    }
                    Answer::Await => oks += 1,
                    Answer::Refused(e) => panic!("sample {s} of {name}: {e}"),
                }
                if w.changed() {
                    w.restore();
                }
            }
        }
        assert!(oks > 0, "{name}: no sample gets Ok");
        let update = w.sigs[m].sig.kind == MethodKind::Update;
        assert!(errs > 0 || !update, "{name}: no sample gets Err");
    }
}

/// The admin rule of inspection is exactly the logic's admin check, and the anonymous rule
/// exactly the calls the logic never lets the anonymous principal make: with every sample
/// argument, an admin endpoint answers `NotAuthorized` to every caller but the admin and
/// never to the admin, and the anonymous principal never gets `Ok` from `create_subdb` or
/// `delete_subdb`.
#[test]
fn inspection_rules_match_the_logic() {
    let mut w = World::new();
    for m in 0..w.sigs.len() {
        let name = w.sigs[m].sig.name;
        let rule = inspect::rule_of(name).unwrap();
        for s in 0..w.sigs[m].samples.len() {
            for caller in CALLERS {
                let arg = w.sigs[m].samples[s].clone();
                let answer = w.update(&env(caller), name, &arg, name).unwrap();
                if w.changed() {
                    w.restore();
                }
                let (ok, not_authorized) = match &answer {
                    Answer::Reply(reply) => (
                        reply_is_ok(&w.sigs[m], reply).unwrap(),
                        err_variant(&w.sigs[m], reply) == Some(candid::idl_hash("NotAuthorized")),
                    ),
                    Answer::Await => (true, false),
                    Answer::Refused(e) => panic!("{name}: {e}"),
                };
                match rule.callers {
                    inspect::Callers::Admins => assert_eq!(
                        not_authorized,
                        caller != ADMIN,
                        "{name} sample {s} by {caller}: {answer:?}"
                    ),
                    inspect::Callers::Authenticated if caller == ANON => {
                        assert!(!ok, "{name} sample {s} by the anonymous principal")
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Regression test for a bug `fuzz_every_endpoint_with_tweaked_values` found:
/// `upload_partition_wasm` at offset 0 emptied the inactive slot before it checked the piece
/// against its `total_len`; when the check then failed (`TooLarge`), the upload in progress
/// kept its `received` count but had lost its bytes, so it could only end in `HashMismatch`.
#[test]
fn upload_at_offset_0_refused_as_too_large_keeps_the_upload() {
    let mut w = World::new();
    let sha = Sha256::digest(WASM).to_vec();
    let mut bad = chunk(WASM, 0, WASM.len(), &sha);
    bad.total_len = 3;
    let r = w.index.upload_partition_wasm(&env(ADMIN), bad);
    assert!(matches!(
        r,
        Err(flotilla_types::index::UploadWasmError::TooLarge { .. })
    ));
    assert!(!w.changed(), "the refused piece changed memory");
    // The upload in progress still completes.
    let sha2 = Sha256::digest(WASM2).to_vec();
    let rest = chunk(WASM2, 8, WASM2.len() - 8, &sha2);
    assert!(
        w.index
            .upload_partition_wasm(&env(ADMIN), rest)
            .unwrap()
            .complete
    );
}
