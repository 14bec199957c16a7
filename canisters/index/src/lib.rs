//! The Flotilla index canister: thin ic-cdk glue over `flotilla_index::Index`.
//!
//! Endpoints decode, call the logic, perform the calls it asks for with ic-cdk and feed each
//! result back as a message to the same state machine. Nothing else lives here.

use candid::Principal;
use flotilla_index::calls::{Call, CallResult, InstallMode, Reject, Request, Response};
use flotilla_index::{Env, Finished, Index, Step};
use flotilla_types::index::{
    AdminError, CreateError, CreateRequest, DeleteRequest, DeleteSubDbRequestError, IndexInit,
    IndexStats, RouteError, RoutesPage, RoutesRequest, UploadProgress, UploadWasmError, WasmChunk,
};
use flotilla_types::partition::{
    BeginImportError, ExportDeltaReply, ExportReply, HousekeepingError, PartitionStats,
    ReleaseError, StatsError,
};
use flotilla_types::{CreateSubDbError, DeleteSubDbError, ImportError, InnerKey, SubDbId};
use ic_cdk::call::{Call as IcCall, CallErrorExt};
use ic_management_canister_types::{
    CanisterIdRecord, CanisterInstallMode, CanisterSettings, ChunkHash, CreateCanisterArgs,
    InstallChunkedCodeArgs, InstallCodeArgs, UploadChunkArgs,
};
use ic_stable_structures::memory_manager::{MemoryManager, VirtualMemory};
use ic_stable_structures::DefaultMemoryImpl;
use serde_bytes::ByteBuf;
use std::cell::RefCell;
use std::time::Duration;

type Mem = VirtualMemory<DefaultMemoryImpl>;

/// How often background work runs (spare pool, creation jobs, re-drives, stats).
const TICK_INTERVAL: Duration = Duration::from_secs(5);

thread_local! {
    static MEMORY: MemoryManager<DefaultMemoryImpl> = MemoryManager::init(DefaultMemoryImpl::default());
    static INDEX: RefCell<Option<Index<Mem>>> = const { RefCell::new(None) };
}

fn memory(id: ic_stable_structures::memory_manager::MemoryId) -> Mem {
    MEMORY.with(|m| m.get(id))
}

fn with<R>(f: impl FnOnce(&mut Index<Mem>) -> R) -> R {
    INDEX.with(|i| f(i.borrow_mut().as_mut().expect("index initialized")))
}

fn env() -> Env {
    Env {
        caller: ic_cdk::api::msg_caller(),
        now: ic_cdk::api::time(),
        self_id: ic_cdk::api::canister_self(),
    }
}

/// The env of background work and reply handling: the index acting for itself.
fn self_env() -> Env {
    Env {
        caller: ic_cdk::api::canister_self(),
        ..env()
    }
}

#[ic_cdk::init]
fn init(arg: IndexInit) {
    INDEX.with(|i| *i.borrow_mut() = Some(Index::install(memory, arg)));
    start_timer();
}

#[ic_cdk::post_upgrade]
fn post_upgrade() {
    let index = Index::open(memory).unwrap_or_else(|e| ic_cdk::trap(format!("{e:?}")));
    INDEX.with(|i| *i.borrow_mut() = Some(index));
    start_timer();
}

fn start_timer() {
    ic_cdk_timers::set_timer_interval(TICK_INTERVAL, || async {
        let calls = with(|i| i.tick(&self_env()));
        dispatch(calls);
    });
}

fn mode(m: InstallMode) -> CanisterInstallMode {
    match m {
        InstallMode::Install => CanisterInstallMode::Install,
        InstallMode::Reinstall => CanisterInstallMode::Reinstall,
        InstallMode::Upgrade => CanisterInstallMode::Upgrade(None),
    }
}

fn reject(e: impl CallErrorExt + std::fmt::Display) -> Reject {
    Reject {
        message: e.to_string(),
        certain: e.is_clean_reject(),
    }
}

/// Performs one call the logic asked for and decodes its reply.
async fn perform(call: Call) -> CallResult {
    let target = call.target;
    let res = match call.request {
        Request::CreateCanister { cycles } => {
            let args = CreateCanisterArgs {
                settings: Some(CanisterSettings {
                    controllers: Some(vec![ic_cdk::api::canister_self()]),
                    ..Default::default()
                }),
                sender_canister_version: Some(ic_cdk::api::canister_version()),
            };
            IcCall::unbounded_wait(target, "create_canister")
                .with_arg(args)
                .with_cycles(cycles)
                .await
                .map_err(reject)?
                .candid::<CanisterIdRecord>()
                .map(|r| Response::CanisterCreated(r.canister_id))
        }
        Request::InstallCode {
            canister,
            mode: m,
            wasm,
            arg,
        } => {
            let args = InstallCodeArgs {
                mode: mode(m),
                canister_id: canister,
                wasm_module: wasm.into_vec(),
                arg: arg.into_vec(),
                sender_canister_version: Some(ic_cdk::api::canister_version()),
            };
            IcCall::unbounded_wait(target, "install_code")
                .with_arg(args)
                .await
                .map_err(reject)?;
            Ok(Response::Installed)
        }
        Request::UploadChunk { canister, chunk } => {
            let args = UploadChunkArgs {
                canister_id: canister,
                chunk: chunk.into_vec(),
            };
            IcCall::unbounded_wait(target, "upload_chunk")
                .with_arg(args)
                .await
                .map_err(reject)?
                .candid::<ChunkHash>()
                .map(|h| Response::ChunkUploaded {
                    hash: ByteBuf::from(h.hash),
                })
        }
        Request::InstallChunkedCode {
            canister,
            mode: m,
            chunk_hashes,
            wasm_sha256,
            arg,
        } => {
            let args = InstallChunkedCodeArgs {
                mode: mode(m),
                target_canister: canister,
                store_canister: None,
                chunk_hashes_list: chunk_hashes
                    .into_iter()
                    .map(|h| ChunkHash { hash: h.into_vec() })
                    .collect(),
                wasm_module_hash: wasm_sha256.into_vec(),
                arg: arg.into_vec(),
                sender_canister_version: Some(ic_cdk::api::canister_version()),
            };
            IcCall::unbounded_wait(target, "install_chunked_code")
                .with_arg(args)
                .await
                .map_err(reject)?;
            Ok(Response::Installed)
        }
        Request::CreateSubDb(args) => IcCall::unbounded_wait(target, "create_subdb_local")
            .with_arg(args)
            .await
            .map_err(reject)?
            .candid::<Result<SubDbId, CreateSubDbError>>()
            .map(Response::SubDbCreated),
        Request::DeleteSubDb(args) => IcCall::unbounded_wait(target, "delete_subdb")
            .with_arg(args)
            .await
            .map_err(reject)?
            .candid::<Result<(), DeleteSubDbError>>()
            .map(Response::SubDbDeleted),
        Request::Stats(args) => IcCall::unbounded_wait(target, "stats")
            .with_arg(args)
            .await
            .map_err(reject)?
            .candid::<Result<PartitionStats, StatsError>>()
            .map(Response::Stats),
        Request::BeginImport(args) => IcCall::unbounded_wait(target, "begin_import")
            .with_arg(args)
            .await
            .map_err(reject)?
            .candid::<Result<SubDbId, BeginImportError>>()
            .map(Response::ImportBegun),
        Request::BeginExport(args) => IcCall::unbounded_wait(target, "begin_export")
            .with_arg(args)
            .await
            .map_err(reject)?
            .candid::<Result<(), HousekeepingError>>()
            .map(Response::ExportBegun),
        Request::ExportChunk(args) => IcCall::unbounded_wait(target, "export_chunk")
            .with_arg(args)
            .await
            .map_err(reject)?
            .candid::<Result<ExportReply, HousekeepingError>>()
            .map(Response::Exported),
        Request::ExportDelta(args) => IcCall::unbounded_wait(target, "export_delta")
            .with_arg(args)
            .await
            .map_err(reject)?
            .candid::<Result<ExportDeltaReply, HousekeepingError>>()
            .map(Response::DeltaExported),
        Request::ImportChunk(args) => IcCall::unbounded_wait(target, "import_chunk")
            .with_arg(args)
            .await
            .map_err(reject)?
            .candid::<Result<(), ImportError>>()
            .map(Response::Imported),
        Request::Release(args) => IcCall::unbounded_wait(target, "release")
            .with_arg(args)
            .await
            .map_err(reject)?
            .candid::<Result<(), ReleaseError>>()
            .map(Response::Released),
        Request::AbortImport(subdb) => IcCall::unbounded_wait(target, "abort_import")
            .with_arg(subdb)
            .await
            .map_err(reject)?
            .candid::<Result<(), ImportError>>()
            .map(Response::ImportAborted),
    };
    // A reply that does not decode was executed by the callee: its outcome is uncertain.
    res.map_err(|e| Reject {
        message: format!("undecodable reply: {e}"),
        certain: false,
    })
}

/// Performs background calls; each reply is fed back and its follow-ups dispatched in turn.
fn dispatch(calls: Vec<Call>) {
    for call in calls {
        ic_cdk::futures::spawn(async move {
            let id = call.id;
            let result = perform(call).await;
            let reaction = with(|i| i.on_reply(&self_env(), id, result));
            dispatch(reaction.calls);
        });
    }
}

/// Runs a client call that may await one partition call, returning its final answer.
async fn drive<R>(step: Step<R>, pick: impl FnOnce(Finished) -> Option<R>, lost: R) -> R {
    match step {
        Step::Done(r) => r,
        Step::Await(call) => {
            let id = call.id;
            let result = perform(call).await;
            let reaction = with(|i| i.on_reply(&self_env(), id, result));
            dispatch(reaction.calls);
            reaction.finished.and_then(pick).unwrap_or(lost)
        }
    }
}

#[ic_cdk::update]
async fn create_subdb(req: CreateRequest) -> Result<InnerKey, CreateError> {
    let step = with(|i| i.create_subdb(&env(), req));
    let pick = |f| match f {
        Finished::Create(r) => Some(r),
        _ => None,
    };
    drive(step, pick, Err(CreateError::InProgress)).await
}

#[ic_cdk::update]
async fn delete_subdb(req: DeleteRequest) -> Result<(), DeleteSubDbRequestError> {
    let step = with(|i| i.delete_subdb(&env(), req));
    let pick = |f| match f {
        Finished::Delete(r) => Some(r),
        _ => None,
    };
    drive(step, pick, Err(DeleteSubDbRequestError::InProgress)).await
}

#[ic_cdk::query]
fn route(outer_keys: Vec<String>) -> Result<Vec<Option<InnerKey>>, RouteError> {
    with(|i| i.route(&outer_keys))
}

#[ic_cdk::query]
fn routes(req: RoutesRequest) -> RoutesPage {
    with(|i| i.routes(&req))
}

#[ic_cdk::query]
fn stats() -> IndexStats {
    with(|i| i.stats())
}

#[ic_cdk::update]
fn add_admin(p: Principal) -> Result<(), AdminError> {
    with(|i| i.add_admin(&env(), p))
}

#[ic_cdk::update]
fn remove_admin(p: Principal) -> Result<(), AdminError> {
    with(|i| i.remove_admin(&env(), p))
}

#[ic_cdk::update]
fn upload_partition_wasm_chunk(chunk: WasmChunk) -> Result<UploadProgress, UploadWasmError> {
    with(|i| i.upload_partition_wasm(&env(), chunk))
}

/// Runs the background work now instead of at the next timer tick (admins only).
#[ic_cdk::update]
fn run_housekeeping() -> Result<u32, AdminError> {
    let calls = with(|i| i.run_housekeeping(&env()))?;
    let n = calls.len() as u32;
    dispatch(calls);
    Ok(n)
}

ic_cdk::export_candid!();

#[cfg(test)]
mod tests {
    use candid_parser::utils::{service_equal, CandidSource};

    /// Proves the committed `index.did` equals the code's interface. After an intended
    /// interface change, `FLOTILLA_UPDATE_DID=1 cargo test -p flotilla-index-canister`
    /// rewrites the file; review its diff before committing.
    #[test]
    fn committed_did_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/index.did");
        let code = super::__export_service();
        if std::env::var_os("FLOTILLA_UPDATE_DID").is_some() {
            std::fs::write(path, &code).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap();
        if let Err(e) = service_equal(CandidSource::Text(&committed), CandidSource::Text(&code)) {
            panic!("{path} is out of date ({e}). The code's interface:\n{code}");
        }
    }
}
