//! The Flotilla partition canister: ic-cdk glue over `flotilla-partition`.
//!
//! Each endpoint reads the caller, calls the matching [`Partition`] method and returns its
//! typed result; nothing else lives here. The logic makes no inter-canister calls, so neither
//! does this canister. Reads are queries; writes and every housekeeping endpoint (which the
//! index calls inter-canister) are updates. All state is in stable memory, one
//! `MemoryManager` region per id of `flotilla_store::memory`, so an upgrade saves nothing
//! beforehand and re-opens everything afterwards. The upgrade argument, if any, is ignored:
//! the index principal set at install is kept.
//!
//! A timer reclaims deleted and released SubDBs in the background. Interface:
//! `canisters/partition/partition.did` (a test proves it equals this code's).
//!
//! Ingress hardening: `canister_inspect_message` accepts an update call only if
//! [`flotilla_partition::inspect`] does (refusing, before anything runs or is charged, ingress
//! to index-only endpoints, writes by the anonymous principal, unknown methods and oversized
//! arguments), and every endpoint decodes its argument as the dispatcher does, under the
//! decoding and skipping quotas of [`flotilla_types::dispatch::decoder_config`].

use flotilla_glue::endpoints;
use flotilla_partition::Partition;
use flotilla_store::{Config, PURGE_BATCH};
use flotilla_types::partition::{
    BatchArgs, BeginExportArgs, BeginImportArgs, BeginImportError, CreateLocalArgs, DeleteArgs,
    DeleteSubDbArgs, ExportArgs, ExportDeltaArgs, ExportDeltaReply, ExportReply, GetArgs,
    GetManyArgs, GetManyError, GetManyReply, HousekeepingError, ImportChunkArgs, PartitionInit,
    PartitionStats, PutArgs, ReleaseArgs, ReleaseError, ResumeWritesError, ScanRequest,
    SetAccessArgs, SetAccessError, StatsArgs, StatsError, SubDbStatsError,
};
use flotilla_types::{
    BatchError, BatchOutcome, CreateSubDbError, DeleteError, DeleteSubDbError, GetError,
    ImportError, PutError, PutOutcome, ScanError, ScanPage, SubDbId, SubDbStats,
};
use ic_cdk::api::msg_caller;
use ic_cdk::{init, inspect_message, post_upgrade};
use ic_stable_structures::memory_manager::{MemoryManager, VirtualMemory};
use ic_stable_structures::DefaultMemoryImpl;
use serde_bytes::ByteBuf;
use std::cell::RefCell;
use std::time::Duration;

type Mem = VirtualMemory<DefaultMemoryImpl>;

/// How often the housekeeping timer runs.
const HOUSEKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// One housekeeping run takes further batches of [`PURGE_BATCH`] while work remains and it
/// has used fewer instructions than this (a twentieth of the 40 B update limit).
const HOUSEKEEP_INSTRUCTIONS: u64 = 2_000_000_000;
/// Bytes per stable memory page.
const PAGE_BYTES: u64 = 65_536;

thread_local! {
    static MEMORY: MemoryManager<DefaultMemoryImpl> = MemoryManager::init(DefaultMemoryImpl::default());
    static PARTITION: RefCell<Option<Partition<Mem>>> = const { RefCell::new(None) };
}

fn with<R>(f: impl FnOnce(&Partition<Mem>) -> R) -> R {
    PARTITION.with_borrow(|p| {
        f(p.as_ref()
            .expect("partition opened at init or post_upgrade"))
    })
}

fn with_mut<R>(f: impl FnOnce(&mut Partition<Mem>) -> R) -> R {
    PARTITION.with_borrow_mut(|p| {
        f(p.as_mut()
            .expect("partition opened at init or post_upgrade"))
    })
}

fn start(p: Partition<Mem>) {
    PARTITION.with_borrow_mut(|slot| *slot = Some(p));
    warm_codecs();
    ic_cdk_timers::set_timer_interval(HOUSEKEEP_INTERVAL, || async { housekeep() });
}

fn housekeep() {
    with_mut(|p| {
        while p.housekeep(PURGE_BATCH) > 0
            && ic_cdk::api::instruction_counter() < HOUSEKEEP_INSTRUCTIONS
        {}
    });
}

#[init]
fn init(arg: PartitionInit) {
    let p = MEMORY
        .with(|mm| Partition::install(|id| mm.get(id), &arg, Config::default()))
        .unwrap_or_else(|e| ic_cdk::trap(format!("partition install: {e}")));
    start(p);
}

#[post_upgrade]
fn post_upgrade() {
    let p = MEMORY
        .with(|mm| Partition::open(|id| mm.get(id)))
        .unwrap_or_else(|e| ic_cdk::trap(format!("partition upgrade: {e}")));
    start(p);
}

/// Runs an ingress update call only if [`flotilla_partition::inspect::inspect`] accepts it;
/// a refusal traps with its reason, which the caller gets as the reject message. The IC does
/// not inspect queries called as queries, nor the index's inter-canister calls.
#[inspect_message]
fn inspect_message() {
    let method = ic_cdk::api::msg_method_name();
    let caller = msg_caller();
    let len = ic0::msg_arg_data_size();
    match with(|p| flotilla_partition::inspect::inspect(&method, &caller, len, &p.index())) {
        Ok(()) => ic_cdk::api::accept_message(),
        Err(refusal) => ic_cdk::trap(format!("refused before execution: {refusal}")),
    }
}

endpoints! {
    // ---- user endpoints ---------------------------------------------------------------------

    query fn get(args: GetArgs) -> Result<Option<ByteBuf>, GetError> {
        with(|p| p.get(msg_caller(), &args))
    }

    query fn get_many(args: GetManyArgs) -> Result<GetManyReply, GetManyError> {
        with(|p| p.get_many(msg_caller(), &args))
    }

    query fn has(args: GetArgs) -> Result<bool, GetError> {
        with(|p| p.has(msg_caller(), &args))
    }

    query fn scan(req: ScanRequest) -> Result<ScanPage, ScanError> {
        with(|p| p.scan(msg_caller(), &req))
    }

    query fn subdb_stats(subdb: SubDbId) -> Result<SubDbStats, SubDbStatsError> {
        with(|p| p.subdb_stats(msg_caller(), subdb))
    }

    update fn put(args: PutArgs) -> Result<PutOutcome, PutError> {
        with_mut(|p| p.put(msg_caller(), &args))
    }

    update fn delete(args: DeleteArgs) -> Result<bool, DeleteError> {
        with_mut(|p| p.delete(msg_caller(), &args))
    }

    update fn batch(args: BatchArgs) -> Result<BatchOutcome, BatchError> {
        with_mut(|p| p.batch(msg_caller(), &args))
    }

    update fn delete_subdb(args: DeleteSubDbArgs) -> Result<(), DeleteSubDbError> {
        with_mut(|p| p.delete_subdb(msg_caller(), &args))
    }

    update fn set_access(args: SetAccessArgs) -> Result<(), SetAccessError> {
        with_mut(|p| p.set_access(msg_caller(), &args))
    }

    // ---- housekeeping (index only) ----------------------------------------------------------

    update fn create_subdb_local(args: CreateLocalArgs) -> Result<SubDbId, CreateSubDbError> {
        with_mut(|p| p.create_subdb_local(msg_caller(), &args))
    }

    update fn stats(args: StatsArgs) -> Result<PartitionStats, StatsError> {
        let stable_memory_bytes = ic_cdk::stable::stable_size() * PAGE_BYTES;
        with(|p| p.stats(msg_caller(), &args, stable_memory_bytes))
    }

    update fn export_chunk(args: ExportArgs) -> Result<ExportReply, HousekeepingError> {
        with_mut(|p| p.export_chunk(msg_caller(), &args))
    }

    update fn begin_export(args: BeginExportArgs) -> Result<(), HousekeepingError> {
        with_mut(|p| p.begin_export(msg_caller(), &args))
    }

    update fn export_delta(args: ExportDeltaArgs) -> Result<ExportDeltaReply, HousekeepingError> {
        with_mut(|p| p.export_delta(msg_caller(), &args))
    }

    update fn begin_import(args: BeginImportArgs) -> Result<SubDbId, BeginImportError> {
        with_mut(|p| p.begin_import(msg_caller(), &args))
    }

    update fn import_chunk(args: ImportChunkArgs) -> Result<(), ImportError> {
        with_mut(|p| p.import_chunk(msg_caller(), &args))
    }

    update fn abort_import(subdb: SubDbId) -> Result<(), ImportError> {
        with_mut(|p| p.abort_import(msg_caller(), subdb))
    }

    update fn resume_writes(subdb: SubDbId) -> Result<(), ResumeWritesError> {
        with_mut(|p| p.resume_writes(msg_caller(), subdb))
    }

    update fn release(args: ReleaseArgs) -> Result<(), ReleaseError> {
        with_mut(|p| p.release(msg_caller(), &args))
    }
}

ic_cdk::export_candid!();

#[cfg(test)]
mod tests {
    use candid::{Decode, Encode};
    use candid_parser::utils::{service_equal, CandidSource};
    use flotilla_types::limits::{
        ITEM_OVERHEAD_BYTES, MAX_BATCH_BYTES, MAX_BATCH_OPS, MAX_KEY_BYTES, MAX_MESSAGE_BYTES,
        MAX_VALUE_BYTES, OP_ID_MAX_BYTES,
    };
    use flotilla_types::partition::BatchArgs;
    use flotilla_types::{batch_budget_bytes, BatchOp, OpId};
    use serde_bytes::ByteBuf;

    fn put(k: usize, v: usize) -> BatchOp {
        BatchOp::Put {
            key: ByteBuf::from(vec![0xEE; k]),
            value: ByteBuf::from(vec![0xDD; v]),
        }
    }

    /// The `batch` endpoint's whole argument, as an agent sends it, stays under the IC's
    /// 2 MiB request limit with room for the envelope, for batches exactly at the limits.
    #[test]
    fn a_maximal_batch_argument_fits_one_message() {
        let largest = MAX_KEY_BYTES + MAX_VALUE_BYTES + ITEM_OVERHEAD_BYTES;
        let mut big: Vec<BatchOp> = (0..MAX_BATCH_BYTES / largest)
            .map(|_| put(MAX_KEY_BYTES, MAX_VALUE_BYTES))
            .collect();
        let left = MAX_BATCH_BYTES - batch_budget_bytes(&big);
        big.push(put(
            MAX_KEY_BYTES,
            left - MAX_KEY_BYTES - ITEM_OVERHEAD_BYTES,
        ));
        let each = MAX_BATCH_BYTES / MAX_BATCH_OPS - ITEM_OVERHEAD_BYTES;
        let many = (0..MAX_BATCH_OPS).map(|_| put(1, each - 1)).collect();
        for ops in [big, many] {
            assert!(batch_budget_bytes(&ops) <= MAX_BATCH_BYTES);
            let args = BatchArgs {
                subdb: u32::MAX,
                ops,
                op_id: OpId::from(vec![0xFF; OP_ID_MAX_BYTES]),
            };
            let bytes = Encode!(&args).unwrap();
            assert!(
                bytes.len() + 64 * 1024 <= MAX_MESSAGE_BYTES,
                "{} bytes leave under 64 KiB of the 2 MiB for the envelope",
                bytes.len()
            );
            assert_eq!(Decode!(&bytes, BatchArgs).unwrap(), args);
        }
    }

    /// The committed `partition.did` is exactly this code's interface. To regenerate it:
    /// `FLOTILLA_UPDATE_DID=1 cargo test -p flotilla-partition-canister`.
    #[test]
    fn committed_did_matches_the_code() {
        let generated = super::__export_service();
        if std::env::var_os("FLOTILLA_UPDATE_DID").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/partition.did");
            std::fs::write(path, &generated).expect("write partition.did");
            eprintln!("wrote {path}; the next build checks it");
            return;
        }
        let committed = include_str!("../partition.did");
        service_equal(
            CandidSource::Text(committed),
            CandidSource::Text(&generated),
        )
        .unwrap_or_else(|e| {
            panic!(
                "canisters/partition/partition.did differs from the code ({e}); \
                 regenerate it with FLOTILLA_UPDATE_DID=1 cargo test -p flotilla-partition-canister.\n\
                 The code's interface:\n{generated}"
            )
        });
    }

    /// The dispatcher the simulator, the demo endpoint and the tests call this canister
    /// through has exactly the committed interface: the same methods, kinds and types.
    #[test]
    fn dispatcher_matches_the_committed_did() {
        let committed = include_str!("../partition.did");
        let (_, (env, service)) =
            candid_parser::utils::instantiate_candid(CandidSource::Text(committed)).unwrap();
        flotilla_types::dispatch::check_against_did(
            env,
            &service,
            &flotilla_partition::dispatch::methods(),
        )
        .unwrap_or_else(|e| panic!("flotilla_partition::dispatch differs from partition.did: {e}"));
    }
}
