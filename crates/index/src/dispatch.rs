//! The index's one dispatcher for calls made to it: a method name and its Candid argument in,
//! the Candid reply out, exactly as `canisters/index` exports them. The simulator delivers
//! every client message to the index through it and the demo's IC HTTP endpoint will; a test
//! proves [`methods`] equals the committed `index.did`.
//!
//! `create_subdb` and `delete_subdb` may have to wait for a partition: the dispatcher then
//! answers [`Outcome::Await`] with the call to make, and the reply is
//! [`Pending::reply`] of what [`Index::on_reply`] finished, as the canister glue does it.

use crate::calls::Call;
use crate::{Env, Finished, Index, Step};
use candid::CandidType;
use flotilla_types::dispatch::{
    decode_args, encode_args, type_of, DispatchError, MethodKind, MethodSig, TypeOf,
};
use flotilla_types::index::{
    AdminError, CancelMoveError, CreateError, CreateRequest, DeleteRequest,
    DeleteSubDbRequestError, FleetUpgradeInfo, IndexSettings, IndexStats, MoveInfo, MoveRequest,
    MoveSubDbError, PartitionsPage, PartitionsRequest, RouteError, RoutesPage, RoutesRequest,
    SettingsError, UpgradePartitionsArgs, UpgradePartitionsError, UploadProgress, UploadWasmError,
    WasmChunk,
};
use flotilla_types::InnerKey;
use ic_stable_structures::Memory;

/// What an update call to the index leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The reply, plus background calls to make (whose replies go to `on_reply`).
    Reply { reply: Vec<u8>, calls: Vec<Call> },
    /// The reply waits for this call; feed its result to `on_reply` and answer
    /// `pending.reply(reaction.finished)`.
    Await { call: Call, pending: Pending },
}

/// A client call waiting for a partition's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    Create,
    Delete,
}

impl Pending {
    /// The client's reply once the awaited call came back. A reply that finished nothing
    /// (an outcome the index could not learn) answers `InProgress`; the client retries with
    /// the same op id.
    pub fn reply(self, finished: Option<Finished>) -> Vec<u8> {
        match (self, finished) {
            (Pending::Create, Some(Finished::Create(r))) => encode_args((r,)),
            (Pending::Delete, Some(Finished::Delete(r))) => encode_args((r,)),
            (Pending::Create, _) => encode_args((Err::<InnerKey, _>(CreateError::InProgress),)),
            (Pending::Delete, _) => {
                encode_args((Err::<(), _>(DeleteSubDbRequestError::InProgress),))
            }
        }
    }
}

mod plain {
    use super::*;

    flotilla_types::dispatcher! {
        logic: Index<M: Memory>, ctx: Env;
        queries {
            route(keys: Vec<String>) -> Result<Vec<Option<InnerKey>>, RouteError> =
                |i, _cx| i.route(&keys);
            routes(req: RoutesRequest) -> RoutesPage = |i, cx| i.routes_for(&cx.caller, &req);
            stats() -> IndexStats = |i, cx| i.stats_for(&cx.caller);
            partitions(req: PartitionsRequest) -> PartitionsPage = |i, _cx| i.partitions(&req);
            list_moves() -> Vec<MoveInfo> = |i, cx| i.list_moves_for(&cx.caller);
        }
        updates {
            add_admin(p: candid::Principal) -> Result<(), AdminError> = |i, cx| i.add_admin(cx, p);
            remove_admin(p: candid::Principal) -> Result<(), AdminError> =
                |i, cx| i.remove_admin(cx, p);
            upload_partition_wasm_chunk(c: WasmChunk) -> Result<UploadProgress, UploadWasmError> =
                |i, cx| i.upload_partition_wasm(cx, c);
            update_settings(s: IndexSettings) -> Result<(), SettingsError> =
                |i, cx| i.update_settings(cx, s);
            allow_creators(who: Vec<candid::Principal>) -> Result<(), AdminError> =
                |i, cx| i.allow_creators(cx, who);
            disallow_creators(who: Vec<candid::Principal>) -> Result<(), AdminError> =
                |i, cx| i.disallow_creators(cx, who);
            upgrade_partitions(a: UpgradePartitionsArgs)
                -> Result<FleetUpgradeInfo, UpgradePartitionsError> =
                |i, cx| i.upgrade_partitions(cx, &a);
        }
    }
}

pub use plain::{method_kind as plain_method_kind, query};

/// Every method of the index, with its kind and Candid types.
pub fn methods() -> Vec<MethodSig> {
    let mut m = plain::methods();
    let update = |name, args: Vec<TypeOf>, rets: Vec<TypeOf>| MethodSig {
        name,
        kind: MethodKind::Update,
        args,
        rets,
    };
    m.push(update(
        "create_subdb",
        vec![type_of::<CreateRequest>],
        vec![type_of::<Result<InnerKey, CreateError>>],
    ));
    m.push(update(
        "delete_subdb",
        vec![type_of::<DeleteRequest>],
        vec![type_of::<Result<(), DeleteSubDbRequestError>>],
    ));
    m.push(update(
        "move_subdb",
        vec![type_of::<MoveRequest>],
        vec![type_of::<Result<candid::Principal, MoveSubDbError>>],
    ));
    m.push(update(
        "cancel_move",
        vec![type_of::<String>],
        vec![type_of::<Result<(), CancelMoveError>>],
    ));
    m.push(update(
        "run_housekeeping",
        vec![],
        vec![type_of::<Result<u32, AdminError>>],
    ));
    m
}

/// The kind of `method`, if the index has it.
pub fn method_kind(method: &str) -> Option<MethodKind> {
    match method {
        "create_subdb" | "delete_subdb" | "move_subdb" | "cancel_move" | "run_housekeeping" => {
            Some(MethodKind::Update)
        }
        _ => plain_method_kind(method),
    }
}

fn awaiting<R: CandidType>(step: Step<R>, pending: Pending) -> Outcome {
    match step {
        Step::Done(r) => Outcome::Reply {
            reply: encode_args((r,)),
            calls: vec![],
        },
        Step::Await(call) => Outcome::Await { call, pending },
    }
}

/// Runs any index method as an update call from `env.caller`.
pub fn update<M: Memory>(
    index: &mut Index<M>,
    env: &Env,
    method: &str,
    arg: &[u8],
) -> Result<Outcome, DispatchError> {
    Ok(match method {
        "create_subdb" => {
            let (req,): (CreateRequest,) = decode_args(method, arg)?;
            awaiting(index.create_subdb(env, req), Pending::Create)
        }
        "delete_subdb" => {
            let (req,): (DeleteRequest,) = decode_args(method, arg)?;
            awaiting(index.delete_subdb(env, req), Pending::Delete)
        }
        "move_subdb" => {
            let (req,): (MoveRequest,) = decode_args(method, arg)?;
            let (reply, calls) = match index.move_subdb(env, &req) {
                Ok((target, calls)) => (Ok(target), calls),
                Err(e) => (Err::<candid::Principal, MoveSubDbError>(e), vec![]),
            };
            Outcome::Reply {
                reply: encode_args((reply,)),
                calls,
            }
        }
        "cancel_move" => {
            let (key,): (String,) = decode_args(method, arg)?;
            let (reply, calls) = match index.cancel_move(env, &key) {
                Ok(calls) => (Ok(()), calls),
                Err(e) => (Err::<(), CancelMoveError>(e), vec![]),
            };
            Outcome::Reply {
                reply: encode_args((reply,)),
                calls,
            }
        }
        "run_housekeeping" => {
            let () = decode_args(method, arg)?;
            let (reply, calls) = match index.run_housekeeping(env) {
                Ok(calls) => (Ok(calls.len() as u32), calls),
                Err(e) => (Err::<u32, AdminError>(e), vec![]),
            };
            Outcome::Reply {
                reply: encode_args((reply,)),
                calls,
            }
        }
        _ => Outcome::Reply {
            reply: plain::update(index, env, method, arg)?,
            calls: vec![],
        },
    })
}
