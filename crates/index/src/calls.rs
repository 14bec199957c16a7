//! The outgoing calls the index logic asks for, and the replies fed back to it.
//!
//! Logic never performs IO: a handler returns [`Call`]s; the canister glue (ic-cdk) or the
//! simulator performs them and hands each result back through `Index::on_reply` with the
//! call's id. The [`Request`] enum is the whole boundary: each variant maps to one
//! management-canister or partition method.

use candid::{CandidType, Principal};
use flotilla_types::partition::{
    BeginExportArgs, BeginImportArgs, BeginImportError, CreateLocalArgs, DeleteSubDbArgs,
    ExportArgs, ExportDeltaArgs, ExportDeltaReply, ExportReply, HousekeepingError, ImportChunkArgs,
    PartitionStats, ReleaseArgs, ReleaseError, ResumeWritesError, StatsArgs, StatsError,
};
use flotilla_types::{CreateSubDbError, DeleteSubDbError, ImportError, SubDbId};
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
        }
    }
}

/// A successful reply, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    CanisterCreated(Principal),
    Installed,
    ChunkUploaded { hash: ByteBuf },
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
