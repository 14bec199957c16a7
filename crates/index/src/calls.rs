//! The outgoing calls the index logic asks for, and the replies fed back to it.
//!
//! Logic never performs IO: a handler returns [`Call`]s; the canister glue (ic-cdk) or the
//! simulator performs them and hands each result back through `Index::on_reply` with the
//! call's id. The [`Request`] enum is the whole boundary: each variant maps to one
//! management-canister or partition method.
//!
//! The wire form lives here too, once: [`Request::encode`] gives the method's Candid argument
//! and [`Request::decode_reply`] turns the callee's Candid reply into a [`Response`]. The
//! canister glue sends exactly these bytes; the simulator and the tests deliver them to the
//! partition's dispatcher (`flotilla_partition::dispatch`) and to their management canister.

use candid::{CandidType, Principal};
use flotilla_types::dispatch::{decode_args, encode_args};
use flotilla_types::partition::{
    BeginExportArgs, BeginImportArgs, BeginImportError, CreateLocalArgs, DeleteSubDbArgs,
    ExportArgs, ExportDeltaArgs, ExportDeltaReply, ExportReply, HousekeepingError, ImportChunkArgs,
    PartitionStats, ReleaseArgs, ReleaseError, ResumeWritesError, StatsArgs, StatsError,
};
use flotilla_types::{CreateSubDbError, DeleteSubDbError, ImportError, SubDbId};
use ic_management_canister_types::{
    CanisterIdRecord, CanisterInstallMode, CanisterSettings, ChunkHash, CreateCanisterArgs,
    InstallChunkedCodeArgs, InstallCodeArgs, UploadChunkArgs,
};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

pub type CallId = u64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub id: CallId,
    /// The callee: a partition, or the management canister (`aaaaa-aa`).
    pub target: Principal,
    pub request: Request,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallMode {
    Install,
    /// Install over whatever is there: how a creation job retries an install whose outcome it
    /// lost (the canister is its own, fresh, and holds nothing yet).
    Reinstall,
    Upgrade,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `create_canister` with `cycles` attached; the index is the controller.
    CreateCanister { cycles: u128 },
    /// `install_code` with the whole module inline.
    InstallCode {
        canister: Principal,
        mode: InstallMode,
        wasm: ByteBuf,
        arg: ByteBuf,
    },
    /// `upload_chunk` into the target canister's own chunk store.
    UploadChunk { canister: Principal, chunk: ByteBuf },
    /// `install_chunked_code` from the target's chunk store.
    InstallChunkedCode {
        canister: Principal,
        mode: InstallMode,
        chunk_hashes: Vec<ByteBuf>,
        wasm_sha256: ByteBuf,
        arg: ByteBuf,
    },
    /// Partition `create_subdb_local`.
    CreateSubDb(CreateLocalArgs),
    /// Partition `delete_subdb` (as the index).
    DeleteSubDb(DeleteSubDbArgs),
    /// Partition `stats`.
    Stats(StatsArgs),
    /// Move, on the target: `begin_import`.
    BeginImport(BeginImportArgs),
    /// Move, on the source: `begin_export` (start tracking changes).
    BeginExport(BeginExportArgs),
    /// Move, on the source: `export_chunk` (the copy).
    ExportChunk(ExportArgs),
    /// Move, on the source: `export_delta` (changes since the copy; with `freeze`, the cutover).
    ExportDelta(ExportDeltaArgs),
    /// Move, on the target: `import_chunk`.
    ImportChunk(ImportChunkArgs),
    /// Move, on the source: `release` (tombstone pointing at the new home, free the data).
    Release(ReleaseArgs),
    /// Move called off, on the target: `abort_import` (reclaim what arrived).
    AbortImport(SubDbId),
    /// `resume_writes`: on a move's target once the directory routes to it; on a source whose
    /// move was called off (stop change tracking, drop the change log, end the pause).
    ResumeWrites(SubDbId),
    /// `canister_status` of a partition (the index is its controller): its cycle balance.
    CanisterStatus { canister: Principal },
    /// `deposit_cycles` into a partition, with `cycles` attached.
    DepositCycles { canister: Principal, cycles: u128 },
    /// `stop_canister` of a partition (a fleet upgrade, before its `install_code`).
    StopCanister { canister: Principal },
    /// `start_canister` of a partition (a fleet upgrade, after its `install_code`).
    StartCanister { canister: Principal },
}

impl Request {
    /// The callee's method name.
    pub fn method(&self) -> &'static str {
        match self {
            Request::CreateCanister { .. } => "create_canister",
            Request::InstallCode { .. } => "install_code",
            Request::UploadChunk { .. } => "upload_chunk",
            Request::InstallChunkedCode { .. } => "install_chunked_code",
            Request::CreateSubDb(_) => "create_subdb_local",
            Request::DeleteSubDb(_) => "delete_subdb",
            Request::Stats(_) => "stats",
            Request::BeginImport(_) => "begin_import",
            Request::BeginExport(_) => "begin_export",
            Request::ExportChunk(_) => "export_chunk",
            Request::ExportDelta(_) => "export_delta",
            Request::ImportChunk(_) => "import_chunk",
            Request::Release(_) => "release",
            Request::AbortImport(_) => "abort_import",
            Request::ResumeWrites(_) => "resume_writes",
            Request::CanisterStatus { .. } => "canister_status",
            Request::DepositCycles { .. } => "deposit_cycles",
            Request::StopCanister { .. } => "stop_canister",
            Request::StartCanister { .. } => "start_canister",
        }
    }
}

/// What the caller adds to a request's wire form: its own id (the controller of the canisters
/// it creates) and its canister version (`sender_canister_version` of management calls).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sender {
    pub id: Principal,
    pub canister_version: Option<u64>,
}

impl From<InstallMode> for CanisterInstallMode {
    fn from(m: InstallMode) -> Self {
        match m {
            InstallMode::Install => CanisterInstallMode::Install,
            InstallMode::Reinstall => CanisterInstallMode::Reinstall,
            InstallMode::Upgrade => CanisterInstallMode::Upgrade(None),
        }
    }
}

impl Request {
    /// Periodic upkeep (stats, cycle balances, top-ups), as opposed to work a caller or a move
    /// is waiting on: a fleet at rest keeps making these.
    pub fn is_upkeep(&self) -> bool {
        matches!(
            self,
            Request::Stats(_) | Request::CanisterStatus { .. } | Request::DepositCycles { .. }
        )
    }

    /// Cycles attached to the call.
    pub fn cycles(&self) -> u128 {
        match self {
            Request::CreateCanister { cycles } | Request::DepositCycles { cycles, .. } => *cycles,
            _ => 0,
        }
    }

    /// The Candid argument of the callee's method.
    pub fn encode(&self, sender: Sender) -> Vec<u8> {
        let version = sender.canister_version;
        match self {
            Request::CreateCanister { .. } => encode_args((CreateCanisterArgs {
                settings: Some(CanisterSettings {
                    controllers: Some(vec![sender.id]),
                    ..Default::default()
                }),
                sender_canister_version: version,
            },)),
            Request::InstallCode {
                canister,
                mode,
                wasm,
                arg,
            } => encode_args((InstallCodeArgs {
                mode: (*mode).into(),
                canister_id: *canister,
                wasm_module: wasm.to_vec(),
                arg: arg.to_vec(),
                sender_canister_version: version,
            },)),
            Request::UploadChunk { canister, chunk } => encode_args((UploadChunkArgs {
                canister_id: *canister,
                chunk: chunk.to_vec(),
            },)),
            Request::InstallChunkedCode {
                canister,
                mode,
                chunk_hashes,
                wasm_sha256,
                arg,
            } => encode_args((InstallChunkedCodeArgs {
                mode: (*mode).into(),
                target_canister: *canister,
                store_canister: None,
                chunk_hashes_list: chunk_hashes
                    .iter()
                    .map(|h| ChunkHash { hash: h.to_vec() })
                    .collect(),
                wasm_module_hash: wasm_sha256.to_vec(),
                arg: arg.to_vec(),
                sender_canister_version: version,
            },)),
            Request::CreateSubDb(a) => encode_args((a,)),
            Request::DeleteSubDb(a) => encode_args((a,)),
            Request::Stats(a) => encode_args((a,)),
            Request::BeginImport(a) => encode_args((a,)),
            Request::BeginExport(a) => encode_args((a,)),
            Request::ExportChunk(a) => encode_args((a,)),
            Request::ExportDelta(a) => encode_args((a,)),
            Request::ImportChunk(a) => encode_args((a,)),
            Request::Release(a) => encode_args((a,)),
            Request::AbortImport(a) => encode_args((a,)),
            Request::ResumeWrites(a) => encode_args((a,)),
            Request::CanisterStatus { canister }
            | Request::DepositCycles { canister, .. }
            | Request::StopCanister { canister }
            | Request::StartCanister { canister } => encode_args((CanisterIdRecord {
                canister_id: *canister,
            },)),
        }
    }

    /// Decodes the callee's reply to this request. A reply that does not decode came from a
    /// callee that executed the call, so the caller must treat the outcome as uncertain.
    pub fn decode_reply(&self, bytes: &[u8]) -> Result<Response, String> {
        fn one<T: CandidType + for<'de> Deserialize<'de>>(
            method: &str,
            bytes: &[u8],
        ) -> Result<T, String> {
            decode_args::<(T,)>(method, bytes)
                .map(|(t,)| t)
                .map_err(|e| format!("undecodable reply: {e}"))
        }
        let m = self.method();
        Ok(match self {
            Request::CreateCanister { .. } => {
                Response::CanisterCreated(one::<CanisterIdRecord>(m, bytes)?.canister_id)
            }
            Request::InstallCode { .. } | Request::InstallChunkedCode { .. } => {
                decode_args::<()>(m, bytes).map_err(|e| format!("undecodable reply: {e}"))?;
                Response::Installed
            }
            Request::UploadChunk { .. } => Response::ChunkUploaded {
                hash: ByteBuf::from(one::<ChunkHash>(m, bytes)?.hash),
            },
            Request::CreateSubDb(_) => Response::SubDbCreated(one(m, bytes)?),
            Request::DeleteSubDb(_) => Response::SubDbDeleted(one(m, bytes)?),
            Request::Stats(_) => Response::Stats(one(m, bytes)?),
            Request::BeginImport(_) => Response::ImportBegun(one(m, bytes)?),
            Request::BeginExport(_) => Response::ExportBegun(one(m, bytes)?),
            Request::ExportChunk(_) => Response::Exported(one(m, bytes)?),
            Request::ExportDelta(_) => Response::DeltaExported(one(m, bytes)?),
            Request::ImportChunk(_) => Response::Imported(one(m, bytes)?),
            Request::Release(_) => Response::Released(one(m, bytes)?),
            Request::AbortImport(_) => Response::ImportAborted(one(m, bytes)?),
            Request::ResumeWrites(_) => Response::WritesResumed(one(m, bytes)?),
            Request::CanisterStatus { .. } => {
                let status = one::<StatusCycles>(m, bytes)?;
                Response::Status {
                    cycles: u128::try_from(status.cycles.0)
                        .map_err(|_| "a cycle balance above u128".to_string())?,
                    module_hash: status.module_hash.map(ByteBuf::from),
                    stopped: status.status
                        == ic_management_canister_types::CanisterStatusType::Stopped,
                }
            }
            Request::DepositCycles { .. } => {
                decode_args::<()>(m, bytes).map_err(|e| format!("undecodable reply: {e}"))?;
                Response::Deposited
            }
            Request::StopCanister { .. } => {
                decode_args::<()>(m, bytes).map_err(|e| format!("undecodable reply: {e}"))?;
                Response::Stopped
            }
            Request::StartCanister { .. } => {
                decode_args::<()>(m, bytes).map_err(|e| format!("undecodable reply: {e}"))?;
                Response::Started
            }
        })
    }
}

/// The three fields of `canister_status`'s reply the index reads. Candid skips the reply's other
/// fields, so fields the IC adds later, or ones this build's management types would require,
/// never make the reply undecodable.
#[derive(CandidType, Deserialize)]
struct StatusCycles {
    status: ic_management_canister_types::CanisterStatusType,
    cycles: candid::Nat,
    module_hash: Option<Vec<u8>>,
}

/// A successful reply, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    CanisterCreated(Principal),
    Installed,
    ChunkUploaded {
        hash: ByteBuf,
    },
    SubDbCreated(Result<SubDbId, CreateSubDbError>),
    SubDbDeleted(Result<(), DeleteSubDbError>),
    Stats(Result<PartitionStats, StatsError>),
    ImportBegun(Result<SubDbId, BeginImportError>),
    ExportBegun(Result<(), HousekeepingError>),
    Exported(Result<ExportReply, HousekeepingError>),
    DeltaExported(Result<ExportDeltaReply, HousekeepingError>),
    Imported(Result<(), ImportError>),
    Released(Result<(), ReleaseError>),
    ImportAborted(Result<(), ImportError>),
    WritesResumed(Result<(), ResumeWritesError>),
    /// A partition's status: its cycle balance and the SHA-256 of the module it runs (none:
    /// empty).
    Status {
        cycles: u128,
        module_hash: Option<ByteBuf>,
        /// Stopped (by its controller, the index); stopping or running is not.
        stopped: bool,
    },
    Deposited,
    Stopped,
    Started,
}

/// The call failed: rejected by the system or the callee, trapped, or its reply was lost.
/// `certain` is false when the callee may have executed the call anyway (a lost reply or a
/// timeout), so the logic retries only idempotently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub message: String,
    pub certain: bool,
}

pub type CallResult = Result<Response, Reject>;
