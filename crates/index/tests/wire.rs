//! The index's outgoing calls on the wire: every partition-bound [`Request`] names an update
//! method of the partition's dispatcher (whose table a canister test proves equal to the
//! committed `partition.did`), its encoded argument decodes there, and the partition's
//! encoded reply decodes back into the matching [`Response`].

use candid::Principal;
use flotilla_index::calls::{Request, Response, Sender};
use flotilla_partition::dispatch::{self, Ctx, MethodKind};
use flotilla_partition::Partition;
use flotilla_store::Config;
use flotilla_types::partition::{
    Access, BeginExportArgs, BeginImportArgs, CreateLocalArgs, DeleteSubDbArgs, ExportArgs,
    ExportDeltaArgs, ImportChunkArgs, PartitionInit, ReleaseArgs, StatsArgs,
};
use flotilla_types::{Chunk, InnerKey, OpId};
use ic_stable_structures::memory_manager::MemoryManager;
use ic_stable_structures::VectorMemory;
use serde_bytes::ByteBuf;

#[test]
fn every_partition_request_round_trips_through_the_partition_dispatcher() {
    let index = Principal::from_slice(&[9; 10]);
    let owner = Principal::from_slice(&[7; 29]);
    let mm = MemoryManager::init(VectorMemory::default());
    let mut p = Partition::install(|i| mm.get(i), &PartitionInit { index }, Config::default())
        .expect("install");
    let ctx = Ctx {
        caller: index,
        stable_memory_bytes: 0,
    };
    let sender = Sender {
        id: index,
        canister_version: None,
    };
    let op = |b: u8| OpId::from(vec![b; 16]);
    let requests = vec![
        Request::CreateSubDb(CreateLocalArgs {
            op_id: op(1),
            access: Access {
                owner,
                readers: vec![],
                writers: vec![],
            },
            hard_cap: None,
            max_bytes: None,
        }),
        Request::Stats(StatsArgs {
            from: 0,
            limit: 10,
            largest_first: None,
        }),
        Request::BeginImport(BeginImportArgs { op_id: op(2) }),
        Request::BeginExport(BeginExportArgs { subdb: 0 }),
        Request::ExportChunk(ExportArgs {
            subdb: 0,
            seq: 0,
            token: None,
            budget: 1 << 20,
        }),
        Request::ExportDelta(ExportDeltaArgs {
            subdb: 0,
            seq: 1,
            ack: 0,
            budget: 1 << 20,
            freeze: false,
            write_budget: Some(4096),
        }),
        Request::ImportChunk(ImportChunkArgs {
            subdb: 1,
            chunk: Chunk::default(),
            finish: false,
        }),
        Request::AbortImport(1),
        Request::ResumeWrites(0),
        Request::Release(ReleaseArgs {
            subdb: 0,
            moved_to: InnerKey {
                partition: owner,
                subdb: 3,
            },
        }),
        Request::DeleteSubDb(DeleteSubDbArgs {
            subdb: 0,
            op_id: op(3),
        }),
    ];
    let kinds: std::collections::BTreeMap<_, _> = dispatch::methods()
        .into_iter()
        .map(|m| (m.name, m.kind))
        .collect();
    for r in &requests {
        let m = r.method();
        assert_eq!(
            kinds.get(m),
            Some(&MethodKind::Update),
            "{m} is a partition update"
        );
        let reply = dispatch::update(&mut p, &ctx, m, &r.encode(sender))
            .unwrap_or_else(|e| panic!("{m}: {e}"));
        let response = r
            .decode_reply(&reply)
            .unwrap_or_else(|e| panic!("{m}: {e}"));
        let matches = matches!(
            (r, &response),
            (Request::CreateSubDb(_), Response::SubDbCreated(_))
                | (Request::DeleteSubDb(_), Response::SubDbDeleted(_))
                | (Request::Stats(_), Response::Stats(_))
                | (Request::BeginImport(_), Response::ImportBegun(_))
                | (Request::BeginExport(_), Response::ExportBegun(_))
                | (Request::ExportChunk(_), Response::Exported(_))
                | (Request::ExportDelta(_), Response::DeltaExported(_))
                | (Request::ImportChunk(_), Response::Imported(_))
                | (Request::Release(_), Response::Released(_))
                | (Request::AbortImport(_), Response::ImportAborted(_))
                | (Request::ResumeWrites(_), Response::WritesResumed(_))
        );
        assert!(matches, "{m} answered {response:?}");
    }
    // A reply of the wrong type is an uncertain outcome, never a wrong `Response`.
    let wrong = candid::encode_one(7u64).unwrap();
    assert!(requests[0].decode_reply(&wrong).is_err());
    // Management requests decode their canister's replies too.
    let created = Request::CreateCanister { cycles: 5 };
    let reply =
        candid::encode_one(ic_management_canister_types::CanisterIdRecord { canister_id: owner })
            .unwrap();
    assert_eq!(
        created.decode_reply(&reply),
        Ok(Response::CanisterCreated(owner))
    );
    assert_eq!(created.cycles(), 5);
    let install = Request::InstallCode {
        canister: owner,
        mode: flotilla_index::calls::InstallMode::Upgrade,
        wasm: ByteBuf::from(vec![0; 4]),
        arg: ByteBuf::new(),
    };
    let args: ic_management_canister_types::InstallCodeArgs =
        candid::decode_one(&install.encode(sender)).unwrap();
    assert_eq!(args.canister_id, owner);
    assert_eq!(
        install.decode_reply(&candid::encode_args(()).unwrap()),
        Ok(Response::Installed)
    );
}

/// The cycles care's management calls: `canister_status` and `deposit_cycles` take a
/// `CanisterIdRecord`, and the status reply the management canister's own types encode (every
/// field of today's interface) decodes into the balance.
#[test]
fn cycles_calls_round_trip_with_the_management_canister_types() {
    use candid::Nat;
    use ic_management_canister_types::{
        CanisterIdRecord, CanisterStatusResult, CanisterStatusType, DefiniteCanisterSettings,
        MemoryMetrics, QueryStats,
    };
    let partition = Principal::from_slice(&[3; 10]);
    let sender = Sender {
        id: Principal::from_slice(&[9; 10]),
        canister_version: None,
    };
    for req in [
        Request::CanisterStatus {
            canister: partition,
        },
        Request::DepositCycles {
            canister: partition,
            cycles: 7,
        },
    ] {
        let (arg,): (CanisterIdRecord,) = candid::decode_args(&req.encode(sender)).unwrap();
        assert_eq!(arg.canister_id, partition);
        assert!(req.is_upkeep());
    }
    let status = CanisterStatusResult {
        status: CanisterStatusType::Running,
        ready_for_migration: false,
        version: 3,
        settings: DefiniteCanisterSettings::default(),
        module_hash: None,
        memory_size: Nat::from(1u32),
        memory_metrics: MemoryMetrics {
            wasm_memory_size: Nat::from(0u32),
            stable_memory_size: Nat::from(0u32),
            global_memory_size: Nat::from(0u32),
            wasm_binary_size: Nat::from(0u32),
            custom_sections_size: Nat::from(0u32),
            canister_history_size: Nat::from(0u32),
            wasm_chunk_store_size: Nat::from(0u32),
            snapshots_size: Nat::from(0u32),
            log_memory_store_size: Nat::from(0u32),
        },
        cycles: Nat::from(1_234_567_890_123u128),
        reserved_cycles: Nat::from(0u32),
        idle_cycles_burned_per_day: Nat::from(0u32),
        query_stats: QueryStats {
            num_calls_total: Nat::from(0u32),
            num_instructions_total: Nat::from(0u32),
            request_payload_bytes_total: Nat::from(0u32),
            response_payload_bytes_total: Nat::from(0u32),
        },
    };
    let req = Request::CanisterStatus {
        canister: partition,
    };
    assert_eq!(
        req.decode_reply(&candid::encode_one(&status).unwrap()),
        Ok(Response::Status {
            cycles: 1_234_567_890_123,
            module_hash: None,
            stopped: false,
        })
    );
    let deposit = Request::DepositCycles {
        canister: partition,
        cycles: 7,
    };
    assert_eq!(
        deposit.decode_reply(&candid::encode_args(()).unwrap()),
        Ok(Response::Deposited)
    );
    assert_eq!(deposit.cycles(), 7);
}
