use super::*;
use calls::{Reject, Response};
use directory::partition_create_op;
use flotilla_types::index::{
    AdminError, CreateRequest, DeleteRequest, IndexStats, PartitionInfo, PartitionState,
    RouteError, RoutesRequest, UploadWasmError, WasmChunk,
};
use flotilla_types::limits::{
    MAX_ACCESS_PRINCIPALS, MAX_JOB_FAILURES, MAX_PARTITION_WASM_BYTES, MAX_ROUTE_BATCH,
    MAX_WASM_UPLOAD_CHUNK_BYTES,
};
use flotilla_types::partition::PartitionStats;
use flotilla_types::partition::{DeleteSubDbArgs, PartitionInit};
use flotilla_types::CreateSubDbError;
use flotilla_types::{DeleteSubDbError, OpId};
use ic_stable_structures::memory_manager::{MemoryManager, VirtualMemory};
use ic_stable_structures::VectorMemory;
use sha2::{Digest, Sha256};

type Mem = VirtualMemory<VectorMemory>;

fn p(n: u8) -> Principal {
    Principal::from_slice(&[n; 10])
}

const ADMIN: u8 = 1;
const ALICE: u8 = 2;
const BOB: u8 = 3;

/// The index's cycle balance in these tests: plenty (`tests_cycles.rs` varies it).
pub(crate) const BALANCE: u128 = 1_000_000_000_000_000;

fn env(caller: Principal) -> Env {
    Env {
        caller,
        now: 1_000,
        self_id: p(200),
        balance: BALANCE,
    }
}

fn mm(raw: &VectorMemory) -> MemoryManager<VectorMemory> {
    MemoryManager::init_with_bucket_size(raw.clone(), 1)
}

fn fresh() -> (VectorMemory, Index<Mem>) {
    let raw = VectorMemory::default();
    let m = mm(&raw);
    let index = Index::install(
        |id| m.get(id),
        IndexInit {
            admins: vec![p(ADMIN), Principal::anonymous()],
            spare_pool_target: Some(1),
            move_cap_bytes: Some(1_000),
            ..IndexInit::default()
        },
    );
    (raw, index)
}

const WASM: &[u8] = b"\0asm-pretend-partition-module";

fn upload(index: &mut Index<Mem>, wasm: &[u8]) {
    let sha = ByteBuf::from(Sha256::digest(wasm).to_vec());
    let mut last = None;
    for (i, piece) in wasm.chunks(MAX_WASM_UPLOAD_CHUNK_BYTES).enumerate() {
        let chunk = WasmChunk {
            offset: (i * MAX_WASM_UPLOAD_CHUNK_BYTES) as u64,
            bytes: ByteBuf::from(piece.to_vec()),
            total_len: wasm.len() as u64,
            sha256: sha.clone(),
        };
        last = Some(index.upload_partition_wasm(&env(p(ADMIN)), chunk).unwrap());
    }
    assert!(last.unwrap().complete);
}

/// Drives every call `tick` asks for with a well-behaved management canister, until a spare
/// partition exists. Returns the new partition ids.
fn provision(index: &mut Index<Mem>, ids: &mut u8) -> Vec<Principal> {
    let mut created = vec![];
    let mut calls = index.tick(&env(p(ADMIN)));
    while let Some(call) = calls.pop() {
        let reply = match &call.request {
            Request::CreateCanister { .. } => {
                *ids += 1;
                created.push(p(100 + *ids));
                Response::CanisterCreated(p(100 + *ids))
            }
            Request::InstallCode { .. } | Request::InstallChunkedCode { .. } => Response::Installed,
            Request::UploadChunk { chunk, .. } => Response::ChunkUploaded {
                hash: ByteBuf::from(Sha256::digest(chunk).to_vec()),
            },
            Request::Stats(_) => Response::Stats(Ok(PartitionStats::default())),
            Request::CanisterStatus { .. } => Response::Status {
                cycles: 1_000_000_000_000,
                module_hash: None,
                stopped: false,
            },
            other => panic!("unexpected {other:?}"),
        };
        calls.extend(index.on_reply(&env(p(ADMIN)), call.id, Ok(reply)).calls);
    }
    created
}

fn op(n: u8) -> OpId {
    OpId::from(vec![n; 16])
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

fn awaited<R: std::fmt::Debug>(step: Step<R>) -> Call {
    match step {
        Step::Await(c) => c,
        Step::Done(r) => panic!("expected a call, got {r:?}"),
    }
}

/// Deletes `key` as `who` (op id `op_n`) and has its partition confirm it.
fn deleted(index: &mut Index<Mem>, who: u8, key: &str, op_n: u8) {
    let req = DeleteRequest {
        outer_key: key.into(),
        op_id: op(op_n),
    };
    let call = awaited(index.delete_subdb(&env(p(who)), req));
    index.on_reply(&env(p(who)), call.id, Ok(Response::SubDbDeleted(Ok(()))));
}

fn done<R: std::fmt::Debug>(step: Step<R>) -> R {
    match step {
        Step::Done(r) => r,
        Step::Await(c) => panic!("expected an answer, got call {c:?}"),
    }
}

/// An index with a wasm and one spare partition, and `alice` owning SubDB "a" (id 7).
fn with_subdb() -> (VectorMemory, Index<Mem>, InnerKey) {
    let (raw, mut index) = fresh();
    upload(&mut index, WASM);
    let parts = provision(&mut index, &mut 0);
    let call = awaited(index.create_subdb(&env(p(ALICE)), create_req("a", 1)));
    assert_eq!(call.target, parts[0]);
    let r = index.on_reply(&env(p(ALICE)), call.id, Ok(Response::SubDbCreated(Ok(7))));
    let inner = InnerKey {
        partition: parts[0],
        subdb: 7,
    };
    assert_eq!(r.finished, Some(Finished::Create(Ok(inner))));
    (raw, index, inner)
}

#[test]
fn install_filters_anonymous_admins() {
    let (_, index) = fresh();
    assert_eq!(index.stats().admins, vec![p(ADMIN)]);
    assert!(!index.is_admin(&Principal::anonymous()));
}

#[test]
fn admin_management_and_authorization() {
    let (_, mut index) = fresh();
    for caller in [Principal::anonymous(), p(ALICE)] {
        let before = index.stats();
        assert_eq!(
            index.add_admin(&env(caller), p(BOB)),
            Err(AdminError::NotAuthorized)
        );
        assert_eq!(
            index.remove_admin(&env(caller), p(ADMIN)),
            Err(AdminError::NotAuthorized)
        );
        assert_eq!(index.stats(), before);
    }
    let a = env(p(ADMIN));
    assert_eq!(
        index.add_admin(&a, Principal::anonymous()),
        Err(AdminError::Anonymous)
    );
    assert_eq!(index.remove_admin(&a, p(ADMIN)), Err(AdminError::LastAdmin));
    index.add_admin(&a, p(BOB)).unwrap();
    index.add_admin(&a, p(BOB)).unwrap();
    assert_eq!(index.stats().admins, vec![p(ADMIN), p(BOB)]);
    index.remove_admin(&env(p(BOB)), p(ADMIN)).unwrap();
    assert_eq!(index.stats().admins, vec![p(BOB)]);
}

#[test]
fn wasm_upload_in_pieces_with_checks() {
    let (_, mut index) = fresh();
    let wasm: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let sha = ByteBuf::from(Sha256::digest(&wasm).to_vec());
    let chunk = |off: usize, len: usize| WasmChunk {
        offset: off as u64,
        bytes: ByteBuf::from(wasm[off..off + len].to_vec()),
        total_len: wasm.len() as u64,
        sha256: sha.clone(),
    };
    let admin = env(p(ADMIN));
    for caller in [Principal::anonymous(), p(ALICE)] {
        assert_eq!(
            index.upload_partition_wasm(&env(caller), chunk(0, 10)),
            Err(UploadWasmError::NotAuthorized)
        );
    }
    assert_eq!(index.stats().partition_wasm, None);
    assert!(matches!(
        index.upload_partition_wasm(&admin, chunk(0, MAX_WASM_UPLOAD_CHUNK_BYTES + 1)),
        Err(UploadWasmError::ChunkTooLarge { .. })
    ));
    assert_eq!(
        index.upload_partition_wasm(&admin, chunk(10, 10)),
        Err(UploadWasmError::OutOfOrder {
            expected: 0,
            got: 10
        })
    );
    let mut big = chunk(0, 10);
    big.total_len = MAX_PARTITION_WASM_BYTES as u64 + 1;
    assert!(matches!(
        index.upload_partition_wasm(&admin, big),
        Err(UploadWasmError::TooLarge { .. })
    ));
    let p1 = index
        .upload_partition_wasm(&admin, chunk(0, 1_500_000))
        .unwrap();
    assert_eq!((p1.received, p1.complete), (1_500_000, false));
    let mut other = chunk(1_500_000, 10);
    other.sha256 = ByteBuf::from(vec![0; 32]);
    assert_eq!(
        index.upload_partition_wasm(&admin, other),
        Err(UploadWasmError::Mismatch)
    );
    let p2 = index
        .upload_partition_wasm(&admin, chunk(1_500_000, 1_500_000))
        .unwrap();
    assert!(p2.complete);
    assert_eq!(index.active_wasm().unwrap(), wasm);
    assert_eq!(index.stats().partition_wasm.unwrap().len, 3_000_000);
    // A corrupted re-upload is refused and the active module stays.
    let mut bad = chunk(0, 10);
    bad.total_len = 10;
    assert_eq!(
        index.upload_partition_wasm(&admin, bad),
        Err(UploadWasmError::HashMismatch)
    );
    assert_eq!(index.active_wasm().unwrap(), wasm);
}

#[test]
fn housekeeping_on_request_is_for_admins() {
    let (_, mut index) = fresh();
    upload(&mut index, WASM);
    for caller in [Principal::anonymous(), p(ALICE)] {
        let before = (index.stats(), index.cfg().next_call_id);
        assert_eq!(
            index.run_housekeeping(&env(caller)),
            Err(AdminError::NotAuthorized)
        );
        assert_eq!((index.stats(), index.cfg().next_call_id), before);
    }
    let calls = index.run_housekeeping(&env(p(ADMIN))).unwrap();
    assert!(matches!(calls[0].request, Request::CreateCanister { .. }));
}

#[test]
fn no_wasm_no_capacity_then_spare_pool_provisions() {
    let (_, mut index) = fresh();
    assert_eq!(
        done(index.create_subdb(&env(p(ALICE)), create_req("a", 1))),
        Err(CreateError::NoPartitionWasm)
    );
    assert!(
        index.tick(&env(p(ADMIN))).is_empty(),
        "no wasm, nothing to create"
    );
    upload(&mut index, WASM);
    assert_eq!(
        done(index.create_subdb(&env(p(ALICE)), create_req("a", 1))),
        Err(CreateError::NoCapacity)
    );
    let calls = index.tick(&env(p(ADMIN)));
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].request,
        Request::CreateCanister {
            cycles: DEFAULT_PARTITION_CYCLES
        }
    );
    assert_eq!(calls[0].target, Principal::management_canister());
    // A second tick does not start a second creation while one is in flight.
    assert!(index.tick(&env(p(ADMIN))).is_empty());
    let r = index.on_reply(
        &env(p(ADMIN)),
        calls[0].id,
        Ok(Response::CanisterCreated(p(101))),
    );
    let install = &r.calls[0];
    match &install.request {
        Request::InstallCode {
            canister,
            mode,
            wasm,
            arg,
        } => {
            assert_eq!((*canister, *mode), (p(101), InstallMode::Install));
            assert_eq!(wasm.as_slice(), WASM);
            let init: PartitionInit = candid::decode_one(arg).unwrap();
            assert_eq!(init.index, p(200));
        }
        other => panic!("{other:?}"),
    }
    index.on_reply(&env(p(ADMIN)), install.id, Ok(Response::Installed));
    let stats = index.stats();
    assert_eq!(stats.partitions.len(), 1);
    assert_eq!(stats.partitions[0].state, PartitionState::Spare);
    assert_eq!(stats.partitions_being_created, 0);
}

#[test]
fn large_wasm_installs_through_the_chunk_store() {
    let (_, mut index) = fresh();
    index.update_cfg(|c| c.inline_install_limit = 100);
    let wasm: Vec<u8> = (0..(2 * WASM_CHUNK_BYTES + 5)).map(|i| i as u8).collect();
    upload(&mut index, &wasm);
    let mut calls = index.tick(&env(p(ADMIN)));
    let mut uploads = vec![];
    let mut installed = false;
    while let Some(call) = calls.pop() {
        let reply = match call.request {
            Request::CreateCanister { .. } => Response::CanisterCreated(p(101)),
            Request::UploadChunk { canister, chunk } => {
                assert_eq!(canister, p(101));
                uploads.push(chunk.len());
                Response::ChunkUploaded {
                    hash: ByteBuf::from(Sha256::digest(&chunk).to_vec()),
                }
            }
            Request::InstallChunkedCode {
                chunk_hashes,
                wasm_sha256,
                ..
            } => {
                assert_eq!(chunk_hashes.len(), 3);
                assert_eq!(wasm_sha256.as_slice(), Sha256::digest(&wasm).as_slice());
                installed = true;
                Response::Installed
            }
            other => panic!("{other:?}"),
        };
        calls.extend(index.on_reply(&env(p(ADMIN)), call.id, Ok(reply)).calls);
    }
    assert_eq!(uploads, vec![WASM_CHUNK_BYTES, WASM_CHUNK_BYTES, 5]);
    assert!(installed);
    assert_eq!(index.stats().partitions.len(), 1);
}

#[test]
fn an_install_whose_outcome_was_lost_is_retried_as_a_reinstall() {
    let (_, mut index) = fresh();
    upload(&mut index, WASM);
    let c = index.tick(&env(p(ADMIN)));
    let r = index.on_reply(
        &env(p(ADMIN)),
        c[0].id,
        Ok(Response::CanisterCreated(p(101))),
    );
    let lost = Reject {
        message: "lost".into(),
        certain: false,
    };
    index.on_reply(&env(p(ADMIN)), r.calls[0].id, Err(lost));
    let again = index.tick(&env(p(ADMIN)));
    assert!(matches!(
        again[0].request,
        Request::InstallCode {
            mode: InstallMode::Reinstall,
            ..
        }
    ));
}

#[test]
fn failed_creation_steps_are_retried_by_tick() {
    let (_, mut index) = fresh();
    upload(&mut index, WASM);
    let c = index.tick(&env(p(ADMIN)));
    let reject = Reject {
        message: "out of cycles".into(),
        certain: true,
    };
    assert!(index
        .on_reply(&env(p(ADMIN)), c[0].id, Err(reject))
        .calls
        .is_empty());
    let again = index.tick(&env(p(ADMIN)));
    assert_eq!(again.len(), 1);
    assert!(matches!(again[0].request, Request::CreateCanister { .. }));
}

#[test]
fn create_is_one_partition_call_and_idempotent() {
    let (_, mut index, inner) = with_subdb();
    assert_eq!(index.route(&["a".into()]).unwrap(), vec![Some(inner)]);
    assert_eq!(index.stats().routing_version, 1);
    // Retry: the first answer, no call.
    assert_eq!(
        done(index.create_subdb(&env(p(ALICE)), create_req("a", 1))),
        Ok(inner)
    );
    // Same op id, other arguments: conflict. Other op id, same name: taken.
    let mut other = create_req("b", 1);
    assert_eq!(
        done(index.create_subdb(&env(p(ALICE)), other.clone())),
        Err(CreateError::OpIdConflict)
    );
    other.op_id = op(2);
    other.outer_key = "a".into();
    assert_eq!(
        done(index.create_subdb(&env(p(BOB)), other)),
        Err(CreateError::OuterKeyTaken)
    );
    assert_eq!(index.stats().subdbs, 1);
}

#[test]
fn create_call_carries_access_and_cap() {
    let (_, mut index) = fresh();
    upload(&mut index, WASM);
    provision(&mut index, &mut 0);
    let mut req = create_req("shared", 3);
    req.hard_cap = Some(10);
    req.readers = vec![p(BOB)];
    req.owner = Some(p(ALICE));
    // Only an admin may name another owner.
    assert_eq!(
        done(index.create_subdb(&env(p(BOB)), req.clone())),
        Err(CreateError::NotAuthorized)
    );
    let call = awaited(index.create_subdb(&env(p(ADMIN)), req));
    match call.request {
        Request::CreateSubDb(args) => {
            assert_eq!(args.access.owner, p(ALICE));
            assert_eq!(args.access.readers, vec![p(BOB)]);
            assert_eq!(args.hard_cap, Some(10));
            assert_eq!(args.op_id, partition_create_op(&op(3), "shared"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn create_argument_errors_change_nothing() {
    let (_, mut index) = fresh();
    upload(&mut index, WASM);
    provision(&mut index, &mut 0);
    let before = index.stats();
    let a = env(p(ALICE));
    let mut r = create_req("", 1);
    assert_eq!(
        done(index.create_subdb(&a, r.clone())),
        Err(CreateError::InvalidOuterKey { len: 0, max: 256 })
    );
    r.outer_key = "x".repeat(257);
    assert!(matches!(
        done(index.create_subdb(&a, r)),
        Err(CreateError::InvalidOuterKey { len: 257, .. })
    ));
    let mut r = create_req("k", 1);
    r.op_id = OpId::from(vec![1; 8]);
    assert_eq!(
        done(index.create_subdb(&a, r)),
        Err(CreateError::InvalidOpId { len: 8 })
    );
    let mut r = create_req("k", 1);
    r.writers = vec![p(9); MAX_ACCESS_PRINCIPALS + 1];
    assert!(matches!(
        done(index.create_subdb(&a, r)),
        Err(CreateError::TooManyPrincipals { .. })
    ));
    assert_eq!(
        done(index.create_subdb(&env(Principal::anonymous()), create_req("k", 1))),
        Err(CreateError::NotAuthorized)
    );
    assert_eq!(index.stats(), before);
}

#[test]
fn pending_create_waits_retries_and_releases_only_on_refusal() {
    let (_, mut index) = fresh();
    upload(&mut index, WASM);
    provision(&mut index, &mut 0);
    let a = env(p(ALICE));
    let call = awaited(index.create_subdb(&a, create_req("k", 1)));
    // Not routable while pending; a retry waits.
    assert_eq!(index.route(&["k".into()]).unwrap(), vec![None]);
    assert_eq!(
        done(index.create_subdb(&a, create_req("k", 1))),
        Err(CreateError::InProgress)
    );
    // Outcome unknown: the entry stays; the retry re-drives the identical call.
    let lost = Reject {
        message: "timeout".into(),
        certain: false,
    };
    let r = index.on_reply(&a, call.id, Err(lost));
    assert!(matches!(
        r.finished,
        Some(Finished::Create(Err(
            CreateError::PartitionUnavailable { .. }
        )))
    ));
    let again = awaited(index.create_subdb(&a, create_req("k", 1)));
    assert_eq!(again.request, call.request);
    assert_ne!(again.id, call.id);
    // The partition refuses: the name is released and the op forgotten.
    let r = index.on_reply(
        &a,
        again.id,
        Ok(Response::SubDbCreated(Err(
            CreateSubDbError::InvalidHardCap,
        ))),
    );
    assert_eq!(
        r.finished,
        Some(Finished::Create(Err(CreateError::Partition(
            CreateSubDbError::InvalidHardCap
        ))))
    );
    let fresh_try = awaited(index.create_subdb(&a, create_req("k", 1)));
    // A clean reject of this attempt cannot speak for earlier ones with the same op id: the
    // name stays reserved and `tick` re-drives the identical call.
    let certain = Reject {
        message: "stopped".into(),
        certain: true,
    };
    index.on_reply(&a, fresh_try.id, Err(certain));
    assert_eq!(index.stats().subdbs, 1);
    assert_eq!(index.route(&["k".into()]).unwrap(), vec![None]);
    let redo = index
        .tick(&a)
        .into_iter()
        .find(|c| matches!(c.request, Request::CreateSubDb(_)))
        .unwrap();
    assert_eq!(redo.request, fresh_try.request);
}

#[test]
fn tick_redrives_pending_creates() {
    let (_, mut index) = fresh();
    upload(&mut index, WASM);
    provision(&mut index, &mut 0);
    let a = env(p(ALICE));
    let call = awaited(index.create_subdb(&a, create_req("k", 1)));
    let lost = Reject {
        message: "timeout".into(),
        certain: false,
    };
    index.on_reply(&a, call.id, Err(lost));
    let calls = index.tick(&a);
    let redo = calls
        .iter()
        .find(|c| matches!(c.request, Request::CreateSubDb(_)))
        .unwrap();
    index.on_reply(&a, redo.id, Ok(Response::SubDbCreated(Ok(3))));
    assert_eq!(index.route(&["k".into()]).unwrap()[0].unwrap().subdb, 3);
    // The client's retry now gets the answer.
    assert_eq!(
        done(index.create_subdb(&a, create_req("k", 1)))
            .unwrap()
            .subdb,
        3
    );
}

#[test]
fn delete_by_owner_or_admin_only() {
    let (_, mut index, inner) = with_subdb();
    let del = |n: u8| DeleteRequest {
        outer_key: "a".into(),
        op_id: op(n),
    };
    let before = index.stats();
    for caller in [Principal::anonymous(), p(BOB)] {
        assert_eq!(
            done(index.delete_subdb(&env(caller), del(5))),
            Err(DeleteSubDbRequestError::NotAuthorized)
        );
    }
    assert_eq!(index.stats(), before);
    assert_eq!(
        done(index.delete_subdb(
            &env(p(ALICE)),
            DeleteRequest {
                outer_key: "zz".into(),
                op_id: op(5)
            }
        )),
        Err(DeleteSubDbRequestError::UnknownOuterKey)
    );
    let call = awaited(index.delete_subdb(&env(p(ALICE)), del(5)));
    assert_eq!(call.target, inner.partition);
    assert_eq!(
        call.request,
        Request::DeleteSubDb(DeleteSubDbArgs {
            subdb: 7,
            op_id: op(5)
        })
    );
    // Still routable (reads go on) until the partition confirms.
    assert_eq!(index.route(&["a".into()]).unwrap(), vec![Some(inner)]);
    let r = index.on_reply(&env(p(ALICE)), call.id, Ok(Response::SubDbDeleted(Ok(()))));
    assert_eq!(r.finished, Some(Finished::Delete(Ok(()))));
    assert_eq!(index.route(&["a".into()]).unwrap(), vec![None]);
    assert_eq!(index.stats().routing_version, 2);
    assert_eq!(done(index.delete_subdb(&env(p(ALICE)), del(5))), Ok(()));
    assert_eq!(
        done(index.delete_subdb(&env(p(BOB)), del(5))),
        Err(DeleteSubDbRequestError::OpIdConflict)
    );
}

#[test]
fn refused_delete_goes_back_to_live() {
    let (_, mut index, inner) = with_subdb();
    let call = awaited(index.delete_subdb(
        &env(p(ADMIN)),
        DeleteRequest {
            outer_key: "a".into(),
            op_id: op(6),
        },
    ));
    let r = index.on_reply(
        &env(p(ADMIN)),
        call.id,
        Ok(Response::SubDbDeleted(Err(DeleteSubDbError::WritesPaused))),
    );
    assert!(matches!(
        r.finished,
        Some(Finished::Delete(Err(DeleteSubDbRequestError::Partition(_))))
    ));
    assert_eq!(index.route(&["a".into()]).unwrap(), vec![Some(inner)]);
}

#[test]
fn routes_page_in_order_with_version() {
    let (_, mut index) = fresh();
    upload(&mut index, WASM);
    provision(&mut index, &mut 0);
    for (i, k) in ["c", "a", "b"].iter().enumerate() {
        let call = awaited(index.create_subdb(&env(p(ALICE)), create_req(k, i as u8 + 10)));
        index.on_reply(
            &env(p(ALICE)),
            call.id,
            Ok(Response::SubDbCreated(Ok(i as u32))),
        );
    }
    let page = index.routes(&RoutesRequest {
        start_after: None,
        limit: Some(2),
    });
    assert_eq!(page.version, 3);
    let keys: Vec<_> = page.routes.iter().map(|r| r.outer_key.clone()).collect();
    assert_eq!(keys, vec!["a", "b"]);
    let page2 = index.routes(&RoutesRequest {
        start_after: page.next,
        limit: Some(2),
    });
    assert_eq!(page2.routes.len(), 1);
    assert_eq!(page2.next, None);
    let too_many = vec!["a".to_string(); MAX_ROUTE_BATCH + 1];
    assert!(matches!(
        index.route(&too_many),
        Err(RouteError::TooMany { .. })
    ));
}

/// A page of routes with the longest outer keys stops at the reply budget, well under the
/// 2 MiB reply limit, and the pages together list every route once.
#[test]
fn routes_pages_stay_under_the_reply_budget() {
    use flotilla_types::limits::{
        MAX_MESSAGE_BYTES, MAX_OUTER_KEY_BYTES, MAX_ROUTES_PAGE, ROUTES_REPLY_BUDGET_BYTES,
    };
    let (_, mut index) = fresh();
    let n = MAX_ROUTES_PAGE as usize;
    for i in 0..n {
        let mut k = format!("{i:06}");
        k.push_str(&"k".repeat(MAX_OUTER_KEY_BYTES - k.len()));
        let entry = DirEntry {
            state: DirState::Live,
            partition: Principal::from_slice(&[7; 29]),
            subdb: i as u32,
            owner: p(ALICE),
            op_id: vec![],
        };
        index.directory.insert(k, entry);
    }
    let mut seen = 0;
    let mut pages = 0;
    let mut req = RoutesRequest::default();
    loop {
        let page = index.routes(&req);
        let len = candid::encode_one(&page).unwrap().len();
        assert!(len <= ROUTES_REPLY_BUDGET_BYTES, "{len} bytes");
        assert!(len < MAX_MESSAGE_BYTES);
        seen += page.routes.len();
        pages += 1;
        match page.next {
            Some(k) => req.start_after = Some(k),
            None => break,
        }
    }
    assert_eq!(seen, n);
    assert_eq!(pages, 2, "10,000 longest keys take two pages");
}

#[test]
fn read_paths_ask_for_no_call() {
    let (_, index, _) = with_subdb();
    let before = index.cfg().next_call_id;
    let inflight = index.inflight.len();
    let _ = index.route(&["a".into()]);
    let _ = index.routes(&RoutesRequest::default());
    let _ = index.stats();
    assert_eq!(index.cfg().next_call_id, before);
    assert_eq!(index.inflight.len(), inflight);
}

#[test]
fn placement_prefers_newest_active_with_room_and_marks_full() {
    let (_, mut index) = fresh();
    upload(&mut index, WASM);
    index.update_cfg(|c| c.spare_pool_target = 2);
    let parts = provision(&mut index, &mut 0);
    assert_eq!(parts.len(), 2);
    let a = env(p(ALICE));
    let c1 = awaited(index.create_subdb(&a, create_req("one", 1)));
    index.on_reply(&a, c1.id, Ok(Response::SubDbCreated(Ok(0))));
    // The promoted spare takes the next one too while it has room.
    let c2 = awaited(index.create_subdb(&a, create_req("two", 2)));
    assert_eq!(c2.target, c1.target);
    index.on_reply(&a, c2.id, Ok(Response::SubDbCreated(Ok(1))));
    // Stats show it over the cap: it becomes full and the other spare is promoted.
    let later = Env {
        now: 1_000 + DEFAULT_STATS_PERIOD_NS,
        ..a
    };
    let stats_calls: Vec<Call> = index
        .tick(&later)
        .into_iter()
        .filter(|c| matches!(c.request, Request::Stats(_)))
        .collect();
    assert_eq!(stats_calls.len(), 2);
    for c in stats_calls {
        let bytes = if c.target == c1.target { 5_000 } else { 0 };
        index.on_reply(
            &later,
            c.id,
            Ok(Response::Stats(Ok(PartitionStats {
                bytes,
                live_subdbs: 2,
                ..Default::default()
            }))),
        );
    }
    let full = index
        .stats()
        .partitions
        .into_iter()
        .find(|x| x.id == c1.target)
        .unwrap();
    assert_eq!((full.state, full.bytes), (PartitionState::Full, 5_000));
    let c3 = awaited(index.create_subdb(&a, create_req("three", 3)));
    assert_ne!(c3.target, c1.target);
}

#[test]
fn upgrade_keeps_state_and_redrives_lost_calls() {
    let (raw, mut index) = fresh();
    upload(&mut index, WASM);
    provision(&mut index, &mut 0);
    let a = env(p(ALICE));
    let pending = awaited(index.create_subdb(&a, create_req("k", 1)));
    let job_call = {
        index.update_cfg(|c| c.spare_pool_target = 2);
        index
            .tick(&a)
            .into_iter()
            .find(|c| matches!(c.request, Request::CreateCanister { .. }))
            .unwrap()
    };
    drop(index);
    let m = mm(&raw);
    let mut index = Index::open(|id| m.get(id)).unwrap();
    // Replies to calls made before the upgrade are ignored.
    let r = index.on_reply(&a, pending.id, Ok(Response::SubDbCreated(Ok(1))));
    assert_eq!(r, Reaction::default());
    index.on_reply(&a, job_call.id, Ok(Response::CanisterCreated(p(150))));
    let calls = index.tick(&a);
    assert!(calls.iter().any(|c| c.request == pending.request));
    assert!(calls
        .iter()
        .any(|c| matches!(c.request, Request::CreateCanister { .. })));
    assert_eq!(index.stats().admins, vec![p(ADMIN)]);
}

/// The purpose index of the calls in flight holds exactly the calls in flight.
fn assert_inflight_indexed(index: &Index<Mem>) {
    assert_eq!(index.inflight.len(), index.inflight_by_purpose.len());
    for e in index.inflight.iter() {
        let (id, purpose) = e.into_pair();
        let mut key = inflight::purpose_key(&purpose);
        key.extend_from_slice(&id.to_be_bytes());
        assert!(index.inflight_by_purpose.contains_key(&key), "{purpose:?}");
        assert!(index.in_flight(&purpose));
    }
}

/// "Is a call in flight for X" answers from the purpose index: set while the call is out,
/// cleared by its reply and by an upgrade, and never confused with a neighbour's purpose.
#[test]
fn calls_in_flight_are_indexed_by_purpose() {
    let (raw, mut index) = fresh();
    upload(&mut index, WASM);
    provision(&mut index, &mut 0);
    let a = env(p(ALICE));
    let ab = awaited(index.create_subdb(&a, create_req("ab", 1)));
    let abc = awaited(index.create_subdb(&a, create_req("abc", 2)));
    let create = |k: &str| Purpose::Create {
        outer_key: k.to_string(),
    };
    assert!(index.in_flight(&create("ab")) && index.in_flight(&create("abc")));
    assert!(!index.in_flight(&create("a")));
    assert!(!index.in_flight(&Purpose::Delete {
        outer_key: "ab".into()
    }));
    assert_inflight_indexed(&index);
    // While its call is out, tick re-drives nothing for "ab".
    assert!(!index.tick(&a).iter().any(|c| c.request == ab.request));
    index.on_reply(&a, ab.id, Ok(Response::SubDbCreated(Ok(0))));
    assert!(!index.in_flight(&create("ab")) && index.in_flight(&create("abc")));
    assert_inflight_indexed(&index);
    // An upgrade forgets every call in flight, in both regions.
    drop(index);
    let m = mm(&raw);
    let mut index = Index::open(|id| m.get(id)).unwrap();
    assert_eq!(index.inflight_by_purpose.len(), 0);
    assert!(!index.in_flight(&create("abc")));
    // So tick re-drives the lost create, once.
    let calls = index.tick(&a);
    assert_eq!(calls.iter().filter(|c| c.request == abc.request).count(), 1);
    assert!(index.in_flight(&create("abc")));
    assert!(!index.tick(&a).iter().any(|c| c.request == abc.request));
    assert_inflight_indexed(&index);
}

/// A tick asks at most `MAX_STATS_CALLS_PER_TICK` partitions for stats, most overdue first,
/// whatever the fleet's size; the rest follow on later ticks, and a partition asked is not
/// asked again for a period (answered or not).
#[test]
fn stats_calls_per_tick_are_capped_most_overdue_first() {
    let (raw, mut index) = fresh();
    let n = 2 * MAX_STATS_CALLS_PER_TICK + 50;
    let id = |i: usize| Principal::from_slice(&(i as u32).to_be_bytes());
    for i in 0..n {
        let seq = index.bump_partition_seq();
        index.put_partition(
            id(i),
            PartitionRecord {
                state: PartitionState::Full,
                seq,
                bytes: 0,
                items: 0,
                subdbs: 0,
                stable_memory_bytes: 0,
                // Older stats for higher i: the last ones are the most overdue.
                stats_at: (n - i) as u64,
                created_at: 0,
                cycles: None,
                cycles_at: None,
                cycles_asked_at: None,
                topped_up: None,
                burn_per_period: None,
                burn_base: None,
                module: None,
                health: None,
            },
        );
    }
    let period = index.cfg().stats_period_ns;
    let at = |now| Env {
        now,
        ..env(p(ADMIN))
    };
    let targets = |calls: &[Call]| -> Vec<Principal> {
        calls
            .iter()
            .filter(|c| matches!(c.request, Request::Stats(_)))
            .map(|c| c.target)
            .collect()
    };
    let now = period + n as u64;
    let first_calls = index.tick(&at(now));
    let first = targets(&first_calls);
    assert_eq!(
        first,
        (n - MAX_STATS_CALLS_PER_TICK..n)
            .rev()
            .map(id)
            .collect::<Vec<_>>()
    );
    let second = targets(&index.tick(&at(now + 1)));
    assert_eq!(second.len(), MAX_STATS_CALLS_PER_TICK);
    assert!(second.iter().all(|p| !first.contains(p)));
    let third = targets(&index.tick(&at(now + 2)));
    assert_eq!(third.len(), 50);
    // Everyone was asked: nothing is due until a period after the first asks.
    assert!(targets(&index.tick(&at(now + 3))).is_empty());
    // The first calls fail: those partitions are asked again a period after they were.
    for c in first_calls {
        let failed = Err(Reject {
            message: "unreachable".into(),
            certain: true,
        });
        index.on_reply(&at(now + 4), c.id, failed);
    }
    assert_eq!(
        targets(&index.tick(&at(now + period))).len(),
        MAX_STATS_CALLS_PER_TICK
    );
    index.check_fleet();
    // After an upgrade the order comes from the stats received (none here): all due again.
    drop(index);
    let m = mm(&raw);
    let mut index = Index::open(|id| m.get(id)).unwrap();
    index.check_fleet();
    assert_eq!(targets(&index.tick(&at(now + 3))), first);
}

#[test]
fn open_refuses_foreign_layouts() {
    let raw = VectorMemory::default();
    let m = mm(&raw);
    let mut cell = Cell::init(
        m.get(memory::CONFIG),
        Config {
            magic: ByteBuf::from(b"NOPE".to_vec()),
            ..fresh().1.cfg().clone()
        },
    );
    assert_eq!(Index::open(|id| m.get(id)).err(), Some(OpenError::BadMagic));
    let mut c = cell.get().clone();
    c.magic = ByteBuf::from(MAGIC.to_vec());
    c.version = 9;
    cell.set(c);
    assert_eq!(
        Index::open(|id| m.get(id)).err(),
        Some(OpenError::UnsupportedVersion {
            found: 9,
            supported: 1
        })
    );
}

// ---- the timer survives admins and callers (issue 10, item 5) ---------------------------

/// A job mid-upload when the admin swaps in a module with fewer chunks: `tick` used to index
/// the old chunk list and panic on every run. The job now restarts its upload with the new
/// module, and the canister ends up installed with exactly the new module's chunks.
#[test]
fn wasm_swapped_mid_upload_restarts_the_upload_with_the_new_module() {
    let (_, mut index) = fresh();
    index.update_cfg(|c| c.inline_install_limit = 100);
    let big: Vec<u8> = (0..(2 * WASM_CHUNK_BYTES + 5)).map(|i| i as u8).collect();
    upload(&mut index, &big);
    let c = index.tick(&env(p(ADMIN)));
    let r = index.on_reply(
        &env(p(ADMIN)),
        c[0].id,
        Ok(Response::CanisterCreated(p(101))),
    );
    // Two chunks of three arrive.
    let mut call = r.calls[0].clone();
    for _ in 0..2 {
        let Request::UploadChunk { chunk, .. } = &call.request else {
            panic!("{call:?}")
        };
        let hash = ByteBuf::from(Sha256::digest(chunk).to_vec());
        let r = index.on_reply(
            &env(p(ADMIN)),
            call.id,
            Ok(Response::ChunkUploaded { hash }),
        );
        call = r.calls[0].clone();
    }
    // The third is lost; meanwhile a one-chunk module becomes active.
    index.on_reply(
        &env(p(ADMIN)),
        call.id,
        Err(Reject {
            message: "lost".into(),
            certain: false,
        }),
    );
    let small: Vec<u8> = (0..300).map(|i| (i * 7) as u8).collect();
    upload(&mut index, &small);
    let mut calls = index.tick(&env(p(ADMIN)));
    let mut uploads = vec![];
    let mut installed = None;
    while let Some(call) = calls.pop() {
        let reply = match call.request {
            Request::UploadChunk { chunk, .. } => {
                uploads.push(chunk.to_vec());
                Response::ChunkUploaded {
                    hash: ByteBuf::from(Sha256::digest(&chunk).to_vec()),
                }
            }
            Request::InstallChunkedCode {
                chunk_hashes,
                wasm_sha256,
                mode,
                ..
            } => {
                installed = Some((chunk_hashes, wasm_sha256, mode));
                Response::Installed
            }
            Request::Stats(_) => Response::Stats(Ok(PartitionStats::default())),
            other => panic!("{other:?}"),
        };
        calls.extend(index.on_reply(&env(p(ADMIN)), call.id, Ok(reply)).calls);
    }
    assert_eq!(uploads, vec![small.clone()]);
    let (hashes, sha, _) = installed.expect("installed");
    assert_eq!(hashes.len(), 1);
    assert_eq!(sha.as_slice(), Sha256::digest(&small).as_slice());
    assert_eq!(index.stats().partitions.len(), 1);
}

/// A creation job that keeps failing is dropped after `MAX_JOB_FAILURES` and no longer
/// counts toward the spare pool: the next tick starts a fresh job.
#[test]
fn a_job_that_keeps_failing_is_dropped_and_replaced() {
    let (_, mut index) = fresh();
    upload(&mut index, WASM);
    let reject = || {
        Err(Reject {
            message: "out of cycles".into(),
            certain: true,
        })
    };
    let first_job = index.jobs.keys().next();
    assert_eq!(first_job, None);
    let mut seen_jobs = std::collections::BTreeSet::new();
    for _ in 0..(MAX_JOB_FAILURES + 1) {
        let calls = index.tick(&env(p(ADMIN)));
        assert_eq!(calls.len(), 1, "one job, one call");
        seen_jobs.extend(index.jobs.keys());
        index.on_reply(&env(p(ADMIN)), calls[0].id, reject());
    }
    assert!(index.jobs.len() <= 1);
    assert_eq!(
        seen_jobs.len(),
        2,
        "the first job was dropped after {MAX_JOB_FAILURES} failures and replaced"
    );
}

/// A configuration written by an older build (fewer fields) still opens, with defaults for
/// what it lacks, and one from a newer build (more fields) opens too.
#[test]
fn persisted_config_decodes_with_missing_and_extra_fields() {
    #[derive(candid::CandidType)]
    struct Old {
        magic: ByteBuf,
        version: u16,
        admins: Vec<Principal>,
    }
    let old = candid::encode_one(Old {
        magic: ByteBuf::from(MAGIC.to_vec()),
        version: LAYOUT_VERSION,
        admins: vec![p(ADMIN)],
    })
    .unwrap();
    let c = <Config as ic_stable_structures::Storable>::from_bytes(old.into());
    assert_eq!(c.admins, vec![p(ADMIN)]);
    assert_eq!(c.op_window, DEFAULT_OP_WINDOW);
    assert_eq!(c.stats_period_ns, DEFAULT_STATS_PERIOD_NS);
    assert_eq!(c.inline_install_limit, DEFAULT_INLINE_INSTALL_LIMIT);
    #[derive(candid::CandidType)]
    struct Newer {
        magic: ByteBuf,
        version: u16,
        admins: Vec<Principal>,
        a_future_field: Vec<String>,
    }
    let newer = candid::encode_one(Newer {
        magic: ByteBuf::from(MAGIC.to_vec()),
        version: LAYOUT_VERSION,
        admins: vec![p(ALICE)],
        a_future_field: vec!["x".into()],
    })
    .unwrap();
    let c = <Config as ic_stable_structures::Storable>::from_bytes(newer.into());
    assert_eq!(c.admins, vec![p(ALICE)]);
}

mod tick_never_traps {
    //! Random states and operation sequences — admins re-uploading modules, callers creating
    //! and deleting, partitions and the management canister answering anything (success,
    //! refusal, a reply of the wrong kind, a reject, silence), upgrades — with `tick` run
    //! between them. Nothing may panic: a trap in `tick` would stop the timer's work for good.
    use super::*;
    use flotilla_types::partition::ExportDeltaReply;
    use flotilla_types::partition::ExportReply;
    use flotilla_types::{Chunk, ImportError, SubDbStats};
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Tick,
        Upload { len: usize, partial: bool },
        Create { name: u8, op: u8, caller: u8 },
        Delete { name: u8, op: u8, caller: u8 },
        Reply { pick: usize, kind: u8, n: u64 },
        Upgrade,
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Tick),
            1 => (prop_oneof![Just(50usize), Just(300), Just(WASM_CHUNK_BYTES + 3), Just(2 * WASM_CHUNK_BYTES + 1)], any::<bool>())
                .prop_map(|(len, partial)| Op::Upload { len, partial }),
            2 => (0u8..6, 0u8..8, 1u8..4).prop_map(|(name, op, caller)| Op::Create { name, op, caller }),
            1 => (0u8..6, 0u8..8, 1u8..4).prop_map(|(name, op, caller)| Op::Delete { name, op, caller }),
            8 => (any::<usize>(), 0u8..6, 0u64..5_000).prop_map(|(pick, kind, n)| Op::Reply { pick, kind, n }),
            1 => Just(Op::Upgrade),
        ]
    }

    /// A reply to `req`: `kind` 0–1 success, 2 the callee's refusal, 3 a certain reject, 4 an
    /// uncertain one, 5 a reply of the wrong kind.
    fn reply(req: &Request, kind: u8, n: u64, next_id: &mut u8) -> CallResult {
        let lost = |certain| {
            Err(Reject {
                message: "x".into(),
                certain,
            })
        };
        match kind {
            3 => return lost(true),
            4 => return lost(false),
            5 => return Ok(Response::Installed),
            _ => {}
        }
        let ok = kind < 2;
        let chunk = Chunk {
            seq: n,
            ..Chunk::default()
        };
        Ok(match req {
            Request::CreateCanister { .. } => {
                *next_id = next_id.wrapping_add(1);
                Response::CanisterCreated(p(100u8.wrapping_add(*next_id)))
            }
            Request::InstallCode { .. } | Request::InstallChunkedCode { .. } if !ok => {
                return lost(true)
            }
            Request::InstallCode { .. } | Request::InstallChunkedCode { .. } => Response::Installed,
            Request::UploadChunk { chunk, .. } => Response::ChunkUploaded {
                hash: ByteBuf::from(Sha256::digest(chunk).to_vec()),
            },
            Request::CreateSubDb(_) => Response::SubDbCreated(if ok {
                Ok(n as u32)
            } else {
                Err(CreateSubDbError::InvalidHardCap)
            }),
            Request::DeleteSubDb(_) => Response::SubDbDeleted(if ok {
                Ok(())
            } else {
                Err(DeleteSubDbError::WritesPaused)
            }),
            Request::Stats(_) => Response::Stats(Ok(PartitionStats {
                live_subdbs: n % 7,
                bytes: n * 1_000_003,
                purging_bytes: n % 3,
                subdbs: (0..(n % 7) as u32)
                    .map(|id| SubDbStats {
                        id,
                        items: n,
                        bytes: n.wrapping_mul(id as u64 + 1) * 997,
                        hard_cap: None,
                    })
                    .collect(),
                ..PartitionStats::default()
            })),
            Request::BeginImport(_) => Response::ImportBegun(Ok(n as u32)),
            Request::BeginExport(_) => Response::ExportBegun(Ok(())),
            Request::ExportChunk(_) => Response::Exported(Ok(ExportReply {
                chunk,
                next: (!n.is_multiple_of(3)).then(|| ByteBuf::from(vec![1])),
            })),
            Request::ExportDelta(_) => Response::DeltaExported(Ok(ExportDeltaReply {
                chunk,
                version: n,
                more: n.is_multiple_of(2),
                frozen: [None, Some(false), Some(true)][(n % 3) as usize],
            })),
            Request::ImportChunk(_) => Response::Imported(if ok {
                Ok(())
            } else {
                Err(ImportError::UnknownImport)
            }),
            Request::Release(_) => Response::Released(Ok(())),
            Request::AbortImport(_) => Response::ImportAborted(Ok(())),
            #[allow(unreachable_patterns)]
            _ => return lost(true),
        })
    }

    fn wasm(len: usize, salt: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ salt)
            .collect()
    }

    fn run(ops: Vec<Op>, inline_small: bool) {
        let (raw, mut index) = fresh();
        if inline_small {
            index.update_cfg(|c| c.inline_install_limit = 100);
        }
        let mut calls: Vec<Call> = vec![];
        let mut next_id = 0u8;
        let mut salt = 0u8;
        for (step, action) in ops.into_iter().enumerate() {
            let now = 1_000 + step as u64 * 3_000_000_000;
            let e = |caller: Principal| Env {
                caller,
                now,
                self_id: p(200),
                balance: BALANCE,
            };
            match action {
                Op::Tick => calls.extend(index.tick(&e(p(ADMIN)))),
                Op::Upload { len, partial } => {
                    salt = salt.wrapping_add(1);
                    let w = wasm(len, salt);
                    let sha = ByteBuf::from(Sha256::digest(&w).to_vec());
                    for (i, piece) in w.chunks(MAX_WASM_UPLOAD_CHUNK_BYTES).enumerate() {
                        let chunk = WasmChunk {
                            offset: (i * MAX_WASM_UPLOAD_CHUNK_BYTES) as u64,
                            bytes: ByteBuf::from(piece.to_vec()),
                            total_len: w.len() as u64,
                            sha256: sha.clone(),
                        };
                        let _ = index.upload_partition_wasm(&e(p(ADMIN)), chunk);
                        if partial {
                            break;
                        }
                    }
                }
                Op::Create {
                    name,
                    op: o,
                    caller,
                } => {
                    let mut req = create_req(&format!("k{name}"), o);
                    req.hard_cap = (o % 2 == 0).then_some(5);
                    if let Step::Await(c) = index.create_subdb(&e(p(caller)), req) {
                        calls.push(c);
                    }
                }
                Op::Delete {
                    name,
                    op: o,
                    caller,
                } => {
                    let req = DeleteRequest {
                        outer_key: format!("k{name}"),
                        op_id: op(100 + o),
                    };
                    if let Step::Await(c) = index.delete_subdb(&e(p(caller)), req) {
                        calls.push(c);
                    }
                }
                Op::Reply { pick, kind, n } => {
                    if !calls.is_empty() {
                        let call = calls.swap_remove(pick % calls.len());
                        let result = reply(&call.request, kind, n, &mut next_id);
                        calls.extend(index.on_reply(&e(p(200)), call.id, result).calls);
                    }
                }
                Op::Upgrade => {
                    let m = mm(&raw);
                    index = Index::open(|id| m.get(id)).expect("reopens");
                    calls.clear();
                }
            }
            let _ = index.stats();
            let _ = index.routes(&RoutesRequest {
                start_after: None,
                limit: None,
            });
            assert_inflight_indexed(&index);
            index.check_fleet();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn tick_and_replies_never_panic(
            ops in proptest::collection::vec(op_strategy(), 1..120),
            inline_small in any::<bool>(),
        ) {
            run(ops, inline_small);
        }
    }
}

/// The op id a create carries to the partition covers the outer key: once the index's record
/// of op id X (for "a") is gone from its window, a create of "b" reusing X reaches the
/// partition under another op id, so the partition's own dedup cannot answer it with "a"'s
/// SubDB (two names routed to one SubDB).
#[test]
fn a_reused_create_op_id_cannot_route_two_names_to_one_subdb() {
    let (_, mut index) = fresh();
    upload(&mut index, WASM);
    provision(&mut index, &mut 0);
    index.update_cfg(|c| c.op_window = 1);
    let call = awaited(index.create_subdb(&env(p(ALICE)), create_req("a", 1)));
    let Request::CreateSubDb(first) = call.request.clone() else {
        panic!("{call:?}")
    };
    index.on_reply(&env(p(ALICE)), call.id, Ok(Response::SubDbCreated(Ok(7))));
    // Another op pushes op 1 out of the index's window.
    let c2 = awaited(index.create_subdb(&env(p(ALICE)), create_req("c", 2)));
    index.on_reply(&env(p(ALICE)), c2.id, Ok(Response::SubDbCreated(Ok(8))));
    let call = awaited(index.create_subdb(&env(p(ALICE)), create_req("b", 1)));
    let Request::CreateSubDb(second) = call.request else {
        panic!("{call:?}")
    };
    assert_eq!(first.access, second.access);
    assert_ne!(
        first.op_id, second.op_id,
        "the partition would replay a's SubDB for b"
    );
    assert!(second.op_id.validate().is_ok());
}

#[path = "tests_moves.rs"]
mod moves;

#[path = "tests_cycles.rs"]
mod cycles;

#[path = "tests_quotas.rs"]
mod quotas;

#[path = "tests_health.rs"]
mod health;
#[path = "tests_leaks.rs"]
mod leaks;
#[path = "tests_upgrades.rs"]
mod upgrades;

/// `stats` lists at most `MAX_STATS_PARTITIONS` partitions (the oldest) under its reply
/// budget; `partitions` pages all of them in creation order.
#[test]
fn stats_stay_under_their_budget_and_partitions_page_the_rest() {
    use flotilla_types::index::PartitionsRequest;
    use flotilla_types::limits::{
        MAX_PARTITIONS_PAGE, MAX_STATS_PARTITIONS, STATS_REPLY_BUDGET_BYTES,
    };
    let (_, mut index) = fresh();
    let n = MAX_STATS_PARTITIONS * 2 + 500;
    let id =
        |i: usize| Principal::from_slice(&[&[9u8; 25][..], &(i as u32).to_be_bytes()].concat());
    for i in 0..n {
        let seq = index.bump_partition_seq();
        index.put_partition(
            id(i),
            PartitionRecord {
                state: PartitionState::Active,
                seq,
                bytes: u64::MAX,
                items: u64::MAX,
                subdbs: u64::MAX,
                stable_memory_bytes: u64::MAX,
                stats_at: u64::MAX,
                created_at: u64::MAX,
                cycles: Some(u128::MAX),
                cycles_at: Some(u64::MAX),
                cycles_asked_at: Some(u64::MAX),
                topped_up: Some(u128::MAX),
                burn_per_period: Some(u128::MAX),
                burn_base: Some(BurnBase {
                    cycles: u128::MAX,
                    at: u64::MAX,
                }),
                module: Some(ByteBuf::from(vec![0xff; 32])),
                health: None,
            },
        );
    }
    let s = index.stats();
    assert_eq!(
        (s.partitions.len(), s.partitions_total),
        (MAX_STATS_PARTITIONS, n as u64)
    );
    assert_eq!(s.partitions[0].id, id(0), "the oldest first");
    let bytes = flotilla_types::dispatch::encode_args((&s,)).len();
    assert!(bytes < STATS_REPLY_BUDGET_BYTES / 2, "{bytes} bytes");
    let mut seen = vec![];
    let mut req = PartitionsRequest {
        start_after: None,
        limit: Some(700),
    };
    loop {
        let page = index.partitions(&req);
        assert!(page.partitions.len() <= 700);
        seen.extend(page.partitions.iter().map(|p| p.id));
        match page.next {
            Some(next) => req.start_after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, (0..n).map(id).collect::<Vec<_>>());
    // The default page is the most a page holds, and stays under the budget.
    let page = index.partitions(&PartitionsRequest::default());
    assert_eq!(page.partitions.len(), n.min(MAX_PARTITIONS_PAGE as usize));
    let bytes = flotilla_types::dispatch::encode_args((&page,)).len();
    assert!(bytes < STATS_REPLY_BUDGET_BYTES, "{bytes} bytes");
}
