//! The Flotilla index canister: thin ic-cdk glue over `flotilla_index::Index`.
//!
//! Endpoints decode, call the logic, perform the calls it asks for with ic-cdk and feed each
//! result back as a message to the same state machine. Nothing else lives here.
//!
//! Ingress hardening: `canister_inspect_message` accepts an update call only if
//! [`Index::inspect`] does (refusing, before anything runs or is charged, admin endpoints to
//! non-admins, SubDB creation and deletion to the anonymous principal, unknown methods and
//! oversized arguments), and every endpoint decodes its argument as the dispatcher does,
//! under the decoding and skipping quotas of [`flotilla_types::dispatch::decoder_config`].

use candid::Principal;
use flotilla_glue::endpoints;
use flotilla_index::calls::{Call, CallResult, Reject, Sender};
use flotilla_index::{Env, Finished, Index, Step};
use flotilla_types::index::{
    AdminError, CancelMoveError, CreateError, CreateRequest, DeleteRequest,
    DeleteSubDbRequestError, FleetUpgradeInfo, IndexInit, IndexSettings, IndexStats, MoveInfo,
    MoveRequest, MoveSubDbError, PartitionsPage, PartitionsRequest, RouteError, RoutesPage,
    RoutesRequest, SettingsError, UpgradePartitionsArgs, UpgradePartitionsError, UploadProgress,
    UploadWasmError, WasmChunk,
};
use flotilla_types::InnerKey;
use ic_cdk::call::{Call as IcCall, CallErrorExt};
use ic_stable_structures::memory_manager::{MemoryManager, VirtualMemory};
use ic_stable_structures::DefaultMemoryImpl;
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
        balance: ic_cdk::api::canister_cycle_balance(),
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
    warm_codecs();
    ic_cdk_timers::set_timer_interval(TICK_INTERVAL, || async {
        let calls = with(|i| i.tick(&self_env()));
        dispatch(calls);
    });
}

fn reject(e: impl CallErrorExt + std::fmt::Display) -> Reject {
    Reject {
        message: e.to_string(),
        certain: e.is_clean_reject(),
    }
}

/// Performs one call the logic asked for: its wire form and the decoding of the reply are
/// the logic's own ([`Request::encode`], [`Request::decode_reply`]). A reply that does not
/// decode was executed by the callee, so its outcome is uncertain.
async fn perform(c: Call) -> CallResult {
    let sender = Sender {
        id: ic_cdk::api::canister_self(),
        canister_version: Some(ic_cdk::api::canister_version()),
    };
    let arg = c.request.encode(sender);
    let reply = IcCall::unbounded_wait(c.target, c.request.method())
        .with_raw_args(&arg)
        .with_cycles(c.request.cycles())
        .await
        .map_err(reject)?;
    c.request.decode_reply(&reply).map_err(|message| Reject {
        message,
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

/// Runs an ingress update call only if [`Index::inspect`] accepts it; a refusal traps with its
/// reason, which the caller gets as the reject message. The IC does not inspect queries
/// called as queries, nor inter-canister calls.
#[ic_cdk::inspect_message]
fn inspect_message() {
    let method = ic_cdk::api::msg_method_name();
    let caller = ic_cdk::api::msg_caller();
    let len = ic0::msg_arg_data_size();
    match with(|i| i.inspect(&method, &caller, len)) {
        Ok(()) => ic_cdk::api::accept_message(),
        Err(refusal) => ic_cdk::trap(format!("refused before execution: {refusal}")),
    }
}

endpoints! {
    update async fn create_subdb(req: CreateRequest) -> Result<InnerKey, CreateError> {
        let step = with(|i| i.create_subdb(&env(), req));
        let pick = |f| match f {
            Finished::Create(r) => Some(r),
            _ => None,
        };
        drive(step, pick, Err(CreateError::InProgress)).await
    }

    update async fn delete_subdb(req: DeleteRequest) -> Result<(), DeleteSubDbRequestError> {
        let step = with(|i| i.delete_subdb(&env(), req));
        let pick = |f| match f {
            Finished::Delete(r) => Some(r),
            _ => None,
        };
        drive(step, pick, Err(DeleteSubDbRequestError::InProgress)).await
    }

    query fn route(outer_keys: Vec<String>) -> Result<Vec<Option<InnerKey>>, RouteError> {
        with(|i| i.route(&outer_keys))
    }

    /// Every route for an admin; anyone else gets the routes of the SubDBs it owns.
    query fn routes(req: RoutesRequest) -> RoutesPage {
        with(|i| i.routes_for(&ic_cdk::api::msg_caller(), &req))
    }

    /// A page of the partitions in creation order (`stats` lists at most the first 1,000).
    query fn partitions(req: PartitionsRequest) -> PartitionsPage {
        with(|i| i.partitions(&req))
    }

    update fn add_admin(p: Principal) -> Result<(), AdminError> {
        with(|i| i.add_admin(&env(), p))
    }

    update fn remove_admin(p: Principal) -> Result<(), AdminError> {
        with(|i| i.remove_admin(&env(), p))
    }

    update fn upload_partition_wasm_chunk(chunk: WasmChunk) -> Result<UploadProgress, UploadWasmError> {
        with(|i| i.upload_partition_wasm(&env(), chunk))
    }

    /// Changes settings (admins only): each field given replaces the current value; nothing
    /// changes unless all are valid.
    update fn update_settings(settings: IndexSettings) -> Result<(), SettingsError> {
        with(|i| i.update_settings(&env(), settings))
    }

    /// Puts principals on the allow-list of creators (admins only; at most 1,000 a call).
    update fn allow_creators(who: Vec<Principal>) -> Result<(), AdminError> {
        with(|i| i.allow_creators(&env(), who))
    }

    /// Takes principals off the allow-list (admins only); what they own stays theirs.
    update fn disallow_creators(who: Vec<Principal>) -> Result<(), AdminError> {
        with(|i| i.disallow_creators(&env(), who))
    }

    /// Starts upgrading every partition to the active partition wasm (admins only), a batch at
    /// a time: stop, `install_code` upgrade, start, check. Progress in `stats`.
    update fn upgrade_partitions(args: UpgradePartitionsArgs) -> Result<FleetUpgradeInfo, UpgradePartitionsError> {
        with(|i| i.upgrade_partitions(&env(), &args))
    }

    /// Starts moving one SubDB (admins only), to the partition named or, without one, where the
    /// index's own moves would go; answers the target.
    update fn move_subdb(req: MoveRequest) -> Result<Principal, MoveSubDbError> {
        let (target, calls) = with(|i| i.move_subdb(&env(), &req))?;
        dispatch(calls);
        Ok(target)
    }

    /// Calls a move off (admins only): the source resumes writes and drops its change log, the
    /// target's partial import is reclaimed. A move past the release can only complete.
    update fn cancel_move(outer_key: String) -> Result<(), CancelMoveError> {
        let calls = with(|i| i.cancel_move(&env(), &outer_key))?;
        dispatch(calls);
        Ok(())
    }
}

/// The fleet's figures; the admin list and the moves (outer keys) only for admins.
#[ic_cdk::query]
fn stats() -> IndexStats {
    with(|i| i.stats_for(&ic_cdk::api::msg_caller()))
}

/// Moves in progress (phase, chunks, consecutive failures); empty for non-admins.
#[ic_cdk::query]
fn list_moves() -> Vec<MoveInfo> {
    with(|i| i.list_moves_for(&ic_cdk::api::msg_caller()))
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

    /// The dispatcher the simulator, the demo endpoint and the tests call this canister
    /// through has exactly the committed interface: the same methods, kinds and types.
    #[test]
    fn dispatcher_matches_the_committed_did() {
        let committed = include_str!("../index.did");
        let (_, (env, service)) =
            candid_parser::utils::instantiate_candid(CandidSource::Text(committed)).unwrap();
        flotilla_types::dispatch::check_against_did(
            env,
            &service,
            &flotilla_index::dispatch::methods(),
        )
        .unwrap_or_else(|e| panic!("flotilla_index::dispatch differs from index.did: {e}"));
    }
}
