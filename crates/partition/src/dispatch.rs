//! The partition's one dispatcher: a method name and its Candid argument in, the Candid reply
//! out, exactly as `canisters/partition` exports it. The simulator delivers every message to a
//! partition through it (client calls and the index's housekeeping calls alike), the demo's
//! IC HTTP endpoint will, and the tests do; `methods()` is compared with the committed
//! `partition.did` by a test, so the table cannot drift from the canister.
//!
//! Arguments decode under the quotas of [`flotilla_types::dispatch::decoder_config`]. A
//! method that does not exist, a query call of an update method, or an argument that does
//! not decode is a [`DispatchError`], which on the IC is a reject: nothing runs.

use crate::Partition;
use candid::Principal;
pub use flotilla_types::dispatch::{DispatchError, MethodKind, MethodSig};
use flotilla_types::partition::{
    BatchArgs, BeginExportArgs, BeginImportArgs, BeginImportError, CreateLocalArgs, DeleteArgs,
    DeleteSubDbArgs, ExportArgs, ExportDeltaArgs, ExportDeltaReply, ExportReply, GetArgs,
    GetManyArgs, GetManyError, GetManyReply, HousekeepingError, ImportChunkArgs, PartitionStats,
    PutArgs, ReleaseArgs, ReleaseError, ResumeWritesError, ScanRequest, SetAccessArgs,
    SetAccessError, StatsArgs, StatsError, SubDbStatsError,
};
use flotilla_types::{
    BatchError, BatchOutcome, CreateSubDbError, DeleteError, DeleteSubDbError, GetError,
    ImportError, PutError, PutOutcome, ScanError, ScanPage, SubDbId, SubDbStats,
};
use ic_stable_structures::Memory;
use serde_bytes::ByteBuf;

/// What a partition call knows besides its argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx {
    pub caller: Principal,
    /// The canister's stable memory size in bytes (for `stats`).
    pub stable_memory_bytes: u64,
}

flotilla_types::dispatcher! {
    logic: Partition<M: Memory>, ctx: Ctx;
    queries {
        get(a: GetArgs) -> Result<Option<ByteBuf>, GetError> = |p, cx| p.get(cx.caller, &a);
        has(a: GetArgs) -> Result<bool, GetError> = |p, cx| p.has(cx.caller, &a);
        scan(a: ScanRequest) -> Result<ScanPage, ScanError> = |p, cx| p.scan(cx.caller, &a);
        subdb_stats(a: SubDbId) -> Result<SubDbStats, SubDbStatsError> =
            |p, cx| p.subdb_stats(cx.caller, a);
        get_many(a: GetManyArgs) -> Result<GetManyReply, GetManyError> =
            |p, cx| p.get_many(cx.caller, &a);
    }
    updates {
        put(a: PutArgs) -> Result<PutOutcome, PutError> = |p, cx| p.put(cx.caller, &a);
        delete(a: DeleteArgs) -> Result<bool, DeleteError> = |p, cx| p.delete(cx.caller, &a);
        batch(a: BatchArgs) -> Result<BatchOutcome, BatchError> = |p, cx| p.batch(cx.caller, &a);
        delete_subdb(a: DeleteSubDbArgs) -> Result<(), DeleteSubDbError> =
            |p, cx| p.delete_subdb(cx.caller, &a);
        set_access(a: SetAccessArgs) -> Result<(), SetAccessError> =
            |p, cx| p.set_access(cx.caller, &a);
        create_subdb_local(a: CreateLocalArgs) -> Result<SubDbId, CreateSubDbError> =
            |p, cx| p.create_subdb_local(cx.caller, &a);
        stats(a: StatsArgs) -> Result<PartitionStats, StatsError> =
            |p, cx| p.stats(cx.caller, &a, cx.stable_memory_bytes);
        export_chunk(a: ExportArgs) -> Result<ExportReply, HousekeepingError> =
            |p, cx| p.export_chunk(cx.caller, &a);
        begin_export(a: BeginExportArgs) -> Result<(), HousekeepingError> =
            |p, cx| p.begin_export(cx.caller, &a);
        export_delta(a: ExportDeltaArgs) -> Result<ExportDeltaReply, HousekeepingError> =
            |p, cx| p.export_delta(cx.caller, &a);
        begin_import(a: BeginImportArgs) -> Result<SubDbId, BeginImportError> =
            |p, cx| p.begin_import(cx.caller, &a);
        import_chunk(a: ImportChunkArgs) -> Result<(), ImportError> =
            |p, cx| p.import_chunk(cx.caller, &a);
        abort_import(a: SubDbId) -> Result<(), ImportError> =
            |p, cx| p.abort_import(cx.caller, a);
        resume_writes(a: SubDbId) -> Result<(), ResumeWritesError> =
            |p, cx| p.resume_writes(cx.caller, a);
        release(a: ReleaseArgs) -> Result<(), ReleaseError> = |p, cx| p.release(cx.caller, &a);
    }
}
