//! Persisted records of the index and their encodings.
//!
//! Directory entries — millions of them — use a compact hand-written format (below). The rest
//! (configuration, registry, op records, jobs, in-flight calls: few and small) are Candid, which
//! tolerates added optional fields; the configuration carries the magic `FLIX` and a layout
//! version, and an unknown version is refused at open.
//!
//! Directory entry, version 1:
//! ```text
//! 0      format version (1)
//! 1      state: 1 live, 2 creating, 3 deleting
//! 2      partition principal length n (0..=29), then n bytes
//! ..     local SubDB id, u32 LE
//! ..     owner principal length m, then m bytes
//! ..     op id length k (0 or 16..=32), then k bytes: the create/delete in progress
//! ```

use crate::calls::{CallId, InstallMode};
use candid::{CandidType, Principal};
use flotilla_types::index::{CreatePolicy, PartitionState};
use flotilla_types::partition::{CreateLocalArgs, DeleteSubDbArgs};
use flotilla_types::{Chunk, InnerKey, SubDbId};
use ic_stable_structures::storable::{Bound, Storable};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::borrow::Cow;

macro_rules! candid_storable {
    ($($t:ty),*) => {$(
        impl Storable for $t {
            fn to_bytes(&self) -> Cow<'_, [u8]> {
                Cow::Owned(candid::encode_one(self).expect("encoding an index record"))
            }
            fn into_bytes(self) -> Vec<u8> {
                candid::encode_one(&self).expect("encoding an index record")
            }
            fn from_bytes(bytes: Cow<[u8]>) -> Self {
                candid::decode_one(&bytes).expect("decoding an index record")
            }
            const BOUND: Bound = Bound::Unbounded;
        }
    )*};
}

pub const MAGIC: [u8; 4] = *b"FLIX";
pub const LAYOUT_VERSION: u16 = 1;

/// How new SubDBs are placed. One policy today; the enum leaves room for others.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Placement {
    /// The most recently created active partition under the move cap, else a spare.
    #[default]
    LastWithRoom,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct WasmMeta {
    pub slot: u8,
    pub len: u64,
    pub sha256: ByteBuf,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    pub slot: u8,
    pub total_len: u64,
    pub sha256: ByteBuf,
    pub received: u64,
}

/// The index's configuration and counters (one stable cell).
///
/// Persisted as [`StoredConfig`], where every field is optional: a configuration written by
/// an older build (fewer fields) decodes with defaults for what it lacks, and one written by a
/// newer build (more fields) decodes too (Candid skips unknown record fields). Bytes that do
/// not decode at all give a configuration without magic, which `Index::open` refuses with a
/// typed error instead of trapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub magic: ByteBuf,
    pub version: u16,
    pub admins: Vec<Principal>,
    pub spare_pool_target: u32,
    pub move_cap_bytes: u64,
    pub partition_cycles: u128,
    pub placement: Placement,
    /// Modules larger than this are installed through the chunk store.
    pub inline_install_limit: u64,
    /// Op records kept for idempotent retries of create/delete.
    pub op_window: u64,
    /// A partition's stats are refreshed when older than this (ns).
    pub stats_period_ns: u64,
    pub routing_version: u64,
    pub next_call_id: CallId,
    pub next_job_id: u64,
    pub next_op_seq: u64,
    pub next_partition_seq: u64,
    pub wasm: Option<WasmMeta>,
    pub upload: Option<Upload>,
    /// The longest write pause of a move so far (ns, index time): see `MoveRecord::paused_at`.
    pub longest_write_pause_ns: u64,
    /// How moves throttle writers whose deltas do not converge (see `crate::moves`).
    pub move_tuning: MoveTuning,
    /// Cycles care: settings, the index's own balance, totals (see `crate::cycles`).
    pub cycles: CyclesCare,
    /// Who may create SubDBs, and how many one principal may own (see `crate::quotas`).
    pub create_policy: CreatePolicy,
    pub max_subdbs_per_owner: u64,
    /// The byte quota each new SubDB gets (see `crate::quotas`).
    pub max_bytes_per_subdb: u64,
    /// Called-off moves whose partial import was left on the target because the reclaim
    /// list was full (`crate::reclaims::MAX_RECLAIMS`).
    pub reclaims_dropped: u64,
    /// The fleet upgrade in progress, or the last one (see `crate::upgrades`).
    pub upgrade: Option<UpgradeRun>,
}

/// A fleet upgrade (`upgrade_partitions`), persisted in [`Config`]; the partitions it has
/// still to do are in the `UPGRADES` region. A field added later must be an `Option`.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct UpgradeRun {
    /// SHA-256 of the module the partitions are upgraded to: the active module (followed if an
    /// admin uploads another meanwhile).
    pub module: ByteBuf,
    pub started_at: u64,
    pub finished_at: Option<u64>,
    pub batch: u32,
    pub upgraded: u64,
    pub failed_total: u64,
    pub failed: Vec<flotilla_types::index::FailedUpgrade>,
}

/// Where one partition's upgrade stands.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpgradeStep {
    /// Its turn has not come.
    Waiting,
    /// Its turn came: no move may start on it, and it waits for the moves it is in to end.
    Drain,
    Stop,
    /// `install_code` in upgrade mode (inline, or chunks uploaded then installed).
    Install,
    Start,
    /// `canister_status`: which module it runs now.
    Status,
    /// Given up on and reported: it waits no more in this run (nor is it listed again when a
    /// status check finds it on its old module), unless the run follows another module.
    Failed,
}

/// A partition's record in the `UPGRADES` region.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct UpgradeProgress {
    pub step: UpgradeStep,
    /// Failed calls of the current step.
    pub failures: u32,
    /// The module its install sends (pinned when the install starts) and, for a chunked
    /// install, the chunks uploaded so far.
    pub module: Option<ByteBuf>,
    pub hashes: Vec<ByteBuf>,
    /// The step given up on and its last failure; it is then started again and reported.
    pub gave_up: Option<(String, String)>,
    /// The last failure of the current step.
    pub last_error: Option<String>,
    /// Times its check found it on another module than the run's, though nothing failed (the
    /// run's module changed meanwhile): past `MAX_UPGRADE_REQUEUES` it is reported failed.
    pub requeues: u32,
}

/// The index's cycles care, persisted in [`Config`]. A field added later must be an `Option`,
/// so that this record, written before it existed, still decodes.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct CyclesCare {
    /// A partition whose balance is below this is topped up ...
    pub threshold: u128,
    /// ... to this balance.
    pub target: u128,
    /// The index never spends its own balance below this.
    pub reserve: u128,
    /// A partition's balance is checked when its last check was asked longer ago than this.
    pub check_period_ns: u64,
    /// Top-ups confirmed, and their cycles.
    pub top_ups: u64,
    pub topped_up: u128,
    /// Partitions found stopped outside a fleet upgrade and started again (confirmed).
    pub restarts: Option<u64>,
}

impl Default for CyclesCare {
    fn default() -> Self {
        CyclesCare {
            threshold: crate::cycles::DEFAULT_CYCLES_THRESHOLD,
            target: crate::cycles::DEFAULT_CYCLES_TARGET,
            reserve: crate::cycles::DEFAULT_CYCLES_RESERVE,
            check_period_ns: crate::cycles::DEFAULT_CYCLES_CHECK_PERIOD_NS,
            top_ups: 0,
            topped_up: 0,
            restarts: None,
        }
    }
}

/// When a move throttles the writers of the SubDB it moves, and how much it lets them write.
/// Defaults: [`crate::moves::MAX_DELTA_ROUNDS`] and [`crate::moves::MOVE_WRITE_BUDGET`]; the
/// simulator varies them (`Index::set_move_tuning`, not an endpoint).
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct MoveTuning {
    /// Delta rounds (deltas shipped, cutover attempts included) after which the source
    /// throttles the SubDB's writers.
    pub max_delta_rounds: u32,
    /// Bytes of changes a throttled SubDB admits per delta round.
    pub write_budget: u64,
}

impl Default for MoveTuning {
    fn default() -> Self {
        MoveTuning {
            max_delta_rounds: crate::moves::MAX_DELTA_ROUNDS,
            write_budget: crate::moves::MOVE_WRITE_BUDGET,
        }
    }
}

impl Default for Config {
    /// Defaults of every setting; no magic (an empty memory is not an index).
    fn default() -> Self {
        Config {
            magic: ByteBuf::new(),
            version: 0,
            admins: vec![],
            spare_pool_target: crate::DEFAULT_SPARE_POOL_TARGET,
            move_cap_bytes: crate::DEFAULT_MOVE_CAP_BYTES,
            partition_cycles: crate::DEFAULT_PARTITION_CYCLES,
            placement: Placement::default(),
            inline_install_limit: crate::DEFAULT_INLINE_INSTALL_LIMIT,
            op_window: crate::DEFAULT_OP_WINDOW,
            stats_period_ns: crate::DEFAULT_STATS_PERIOD_NS,
            routing_version: 0,
            next_call_id: 0,
            next_job_id: 0,
            next_op_seq: 0,
            next_partition_seq: 0,
            wasm: None,
            upload: None,
            longest_write_pause_ns: 0,
            move_tuning: MoveTuning::default(),
            cycles: CyclesCare::default(),
            create_policy: CreatePolicy::Open,
            max_subdbs_per_owner: crate::quotas::DEFAULT_MAX_SUBDBS_PER_OWNER,
            reclaims_dropped: 0,
            upgrade: None,
            max_bytes_per_subdb: crate::quotas::DEFAULT_MAX_BYTES_PER_SUBDB,
        }
    }
}

/// The persisted form of [`Config`]: every field optional (see there).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredConfig {
    pub magic: Option<ByteBuf>,
    pub version: Option<u16>,
    pub admins: Option<Vec<Principal>>,
    pub spare_pool_target: Option<u32>,
    pub move_cap_bytes: Option<u64>,
    pub partition_cycles: Option<u128>,
    pub placement: Option<Placement>,
    pub inline_install_limit: Option<u64>,
    pub op_window: Option<u64>,
    pub stats_period_ns: Option<u64>,
    pub routing_version: Option<u64>,
    pub next_call_id: Option<CallId>,
    pub next_job_id: Option<u64>,
    pub next_op_seq: Option<u64>,
    pub next_partition_seq: Option<u64>,
    pub wasm: Option<WasmMeta>,
    pub upload: Option<Upload>,
    pub longest_write_pause_ns: Option<u64>,
    pub move_tuning: Option<MoveTuning>,
    pub cycles: Option<CyclesCare>,
    pub create_policy: Option<CreatePolicy>,
    pub max_subdbs_per_owner: Option<u64>,
    pub reclaims_dropped: Option<u64>,
    pub upgrade: Option<UpgradeRun>,
    pub max_bytes_per_subdb: Option<u64>,
}

impl From<&Config> for StoredConfig {
    fn from(c: &Config) -> Self {
        StoredConfig {
            magic: Some(c.magic.clone()),
            version: Some(c.version),
            admins: Some(c.admins.clone()),
            spare_pool_target: Some(c.spare_pool_target),
            move_cap_bytes: Some(c.move_cap_bytes),
            partition_cycles: Some(c.partition_cycles),
            placement: Some(c.placement),
            inline_install_limit: Some(c.inline_install_limit),
            op_window: Some(c.op_window),
            stats_period_ns: Some(c.stats_period_ns),
            routing_version: Some(c.routing_version),
            next_call_id: Some(c.next_call_id),
            next_job_id: Some(c.next_job_id),
            next_op_seq: Some(c.next_op_seq),
            next_partition_seq: Some(c.next_partition_seq),
            wasm: c.wasm.clone(),
            upload: c.upload.clone(),
            longest_write_pause_ns: Some(c.longest_write_pause_ns),
            move_tuning: Some(c.move_tuning),
            cycles: Some(c.cycles),
            create_policy: Some(c.create_policy),
            max_subdbs_per_owner: Some(c.max_subdbs_per_owner),
            reclaims_dropped: Some(c.reclaims_dropped),
            upgrade: c.upgrade.clone(),
            max_bytes_per_subdb: Some(c.max_bytes_per_subdb),
        }
    }
}

impl From<StoredConfig> for Config {
    fn from(s: StoredConfig) -> Self {
        let d = Config::default();
        Config {
            magic: s.magic.unwrap_or(d.magic),
            version: s.version.unwrap_or(d.version),
            admins: s.admins.unwrap_or(d.admins),
            spare_pool_target: s.spare_pool_target.unwrap_or(d.spare_pool_target),
            move_cap_bytes: s.move_cap_bytes.unwrap_or(d.move_cap_bytes),
            partition_cycles: s.partition_cycles.unwrap_or(d.partition_cycles),
            placement: s.placement.unwrap_or(d.placement),
            inline_install_limit: s.inline_install_limit.unwrap_or(d.inline_install_limit),
            op_window: s.op_window.unwrap_or(d.op_window),
            stats_period_ns: s.stats_period_ns.unwrap_or(d.stats_period_ns),
            routing_version: s.routing_version.unwrap_or(d.routing_version),
            next_call_id: s.next_call_id.unwrap_or(d.next_call_id),
            next_job_id: s.next_job_id.unwrap_or(d.next_job_id),
            next_op_seq: s.next_op_seq.unwrap_or(d.next_op_seq),
            next_partition_seq: s.next_partition_seq.unwrap_or(d.next_partition_seq),
            wasm: s.wasm,
            upload: s.upload,
            longest_write_pause_ns: s.longest_write_pause_ns.unwrap_or(d.longest_write_pause_ns),
            move_tuning: s.move_tuning.unwrap_or(d.move_tuning),
            cycles: s.cycles.unwrap_or(d.cycles),
            create_policy: s.create_policy.unwrap_or(d.create_policy),
            max_subdbs_per_owner: s.max_subdbs_per_owner.unwrap_or(d.max_subdbs_per_owner),
            reclaims_dropped: s.reclaims_dropped.unwrap_or(d.reclaims_dropped),
            upgrade: s.upgrade,
            max_bytes_per_subdb: s.max_bytes_per_subdb.unwrap_or(d.max_bytes_per_subdb),
        }
    }
}

impl Storable for Config {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(candid::encode_one(StoredConfig::from(self)).expect("encoding the config"))
    }
    fn into_bytes(self) -> Vec<u8> {
        candid::encode_one(StoredConfig::from(&self)).expect("encoding the config")
    }
    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        candid::decode_one::<StoredConfig>(&bytes)
            .map(Config::from)
            .unwrap_or_default()
    }
    const BOUND: Bound = Bound::Unbounded;
}

/// Directory state of one outer key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirState {
    Live = 1,
    /// Reserved; the partition's create call is in flight or must be re-driven.
    Creating = 2,
    /// The partition's delete call is in flight or must be re-driven.
    Deleting = 3,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub state: DirState,
    pub partition: Principal,
    /// Meaningful once the partition answered the create.
    pub subdb: SubDbId,
    pub owner: Principal,
    /// The create or delete in progress (empty when live).
    pub op_id: Vec<u8>,
}

impl DirEntry {
    pub fn inner(&self) -> InnerKey {
        InnerKey {
            partition: self.partition,
            subdb: self.subdb,
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

fn take_bytes<'a>(b: &mut &'a [u8]) -> &'a [u8] {
    let n = b[0] as usize;
    let v = &b[1..1 + n];
    *b = &b[1 + n..];
    v
}

impl Storable for DirEntry {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.clone().into_bytes())
    }

    fn into_bytes(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(80);
        out.push(1);
        out.push(self.state as u8);
        put_bytes(&mut out, self.partition.as_slice());
        out.extend_from_slice(&self.subdb.to_le_bytes());
        put_bytes(&mut out, self.owner.as_slice());
        put_bytes(&mut out, &self.op_id);
        out
    }

    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        assert_eq!(bytes[0], 1, "unknown directory entry format");
        let state = match bytes[1] {
            1 => DirState::Live,
            2 => DirState::Creating,
            _ => DirState::Deleting,
        };
        let mut b = &bytes[2..];
        let partition = Principal::from_slice(take_bytes(&mut b));
        let subdb = u32::from_le_bytes(b[..4].try_into().unwrap());
        b = &b[4..];
        let owner = Principal::from_slice(take_bytes(&mut b));
        let op_id = take_bytes(&mut b).to_vec();
        DirEntry {
            state,
            partition,
            subdb,
            owner,
            op_id,
        }
    }

    const BOUND: Bound = Bound::Unbounded;
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PartitionRecord {
    pub state: PartitionState,
    /// Creation order: placement prefers the newest partition with room.
    pub seq: u64,
    pub bytes: u64,
    pub items: u64,
    pub subdbs: u64,
    pub stable_memory_bytes: u64,
    pub stats_at: u64,
    pub created_at: u64,
    /// Cycles care (`crate::cycles`); optional so records written before it decode.
    /// Balance at the last status reply, and when (ns).
    pub cycles: Option<u128>,
    pub cycles_at: Option<u64>,
    /// When the last status check was asked (ns).
    pub cycles_asked_at: Option<u64>,
    /// Cycles sent in confirmed top-ups, in all.
    pub topped_up: Option<u128>,
    /// Cycles it burns per check period, as last measured between two status readings at
    /// least a period apart (`crate::cycles`, the runway).
    pub burn_per_period: Option<u128>,
    /// The reading the next burn measurement starts from: a balance as `canister_status`
    /// reported it, top-ups not added (unlike `cycles`).
    pub burn_base: Option<BurnBase>,
    /// SHA-256 of the module it runs, as last learned: installed by its creation job, or read
    /// by a `canister_status` (cycles care, fleet upgrades). None: not known yet.
    pub module: Option<ByteBuf>,
    /// How calls to it fare (`crate::health`); optional so records written before it decode
    /// (as healthy).
    pub health: Option<HealthRecord>,
}

/// A partition's balance as read, and when (ns): where a burn measurement starts.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct BurnBase {
    pub cycles: u128,
    pub at: u64,
}

/// A partition's health, from the calls the index makes to it (`crate::health`).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthRecord {
    /// Consecutive failed calls, imports aside; reset by any answer.
    pub failures: u32,
    /// Consecutive failed import calls (`begin_import`, `import_chunk`); reset by an answered
    /// import call.
    pub import_failures: u32,
    /// When `failures` reached `UNREACHABLE_AFTER_FAILURES` (unreachable since then).
    pub unreachable_since: Option<u64>,
    /// Refuses imports until then (`import_failures` reached `IMPORT_FAILURES_LIMIT`).
    pub imports_refused_until: Option<u64>,
    /// Times in a row it was found refusing imports: the refusal lasts twice as long each
    /// time (up to `IMPORT_REFUSAL_MAX_NS`). Reset by an answered import call.
    pub refusals: u32,
}

/// A called-off move's partial import on a target that did not answer its `abort_import`:
/// the timer retries it with backoff until the target answers (`crate::reclaims`).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReclaimRecord {
    pub target: Principal,
    /// The move's op id (the key of its record): `begin_import` with it answers the import's
    /// local id, should the move not have learnt it.
    pub op_id: ByteBuf,
    /// The import's local id on the target, once known.
    pub subdb: Option<SubDbId>,
    /// The SubDB the move was for (shown, not used).
    pub outer_key: String,
    /// When the move was called off, calls made since, and when the next is due (ns).
    pub since: u64,
    pub attempts: u32,
    pub next_at: u64,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Create,
    Delete,
}

/// What the index remembers of a create/delete op id.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OpRecord {
    pub kind: OpKind,
    pub args_hash: ByteBuf,
    pub outer_key: String,
    pub seq: u64,
    /// `Some` once applied: the created SubDB's inner key (for deletes, the deleted one).
    pub done: Option<InnerKey>,
}

/// A persisted partition-creation job.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Job {
    /// Ask the management canister for a new canister.
    Create,
    /// Install the partition wasm inline.
    Install { canister: Principal },
    /// Upload the wasm into the canister's chunk store; `hashes` of chunks uploaded so far.
    Upload {
        canister: Principal,
        hashes: Vec<ByteBuf>,
    },
    /// Install from the uploaded chunks.
    InstallChunked {
        canister: Principal,
        hashes: Vec<ByteBuf>,
    },
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    pub job: Job,
    /// The call driving the current step, if one is in flight.
    pub call: Option<CallId>,
    pub mode: InstallMode,
    /// Calls made for this job.
    pub attempts: u32,
    /// SHA-256 of the module this job installs, pinned when it starts uploading or installing.
    /// A different active module (an admin re-upload) restarts the upload with the new one.
    pub module: Option<ByteBuf>,
    /// Failed steps since the last step that succeeded; at `MAX_JOB_FAILURES` the job is
    /// dropped. (Optional so records written before it existed decode.)
    pub failures: Option<u32>,
}

/// What an in-flight call's reply is for.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Purpose {
    Create {
        outer_key: String,
    },
    Delete {
        outer_key: String,
    },
    Job {
        job: u64,
    },
    Stats {
        partition: Principal,
    },
    Move {
        outer_key: String,
        step: MoveStep,
    },
    /// `canister_status` of a partition (its cycle balance).
    Status {
        partition: Principal,
    },
    /// `deposit_cycles` of `amount` into a partition.
    TopUp {
        partition: Principal,
        amount: u128,
    },
    /// Reclaiming a called-off move's partial import (`begin_import` to learn its id, or
    /// `abort_import`), by the move's op id.
    Reclaim {
        op_id: ByteBuf,
    },
    /// The current step of a partition's upgrade (`upgrades.rs`).
    Upgrade {
        partition: Principal,
    },
    /// `start_canister` of a partition found stopped outside a fleet upgrade (`cycles.rs`).
    Restart {
        partition: Principal,
    },
}

#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoveStep {
    BeginImport,
    BeginExport,
    Export,
    Import,
    Release,
    Abort,
    Activate,
    Unwind,
}

/// Where a move is. Each phase is re-entered safely after any failure or upgrade: every call
/// it makes is idempotent on the partition side.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MovePhase {
    /// Open an invisible SubDB on the target (idempotent by the move's op id).
    BeginImport,
    /// Start change tracking on the source.
    BeginExport,
    /// Copy items and op records in chunks while the source serves reads and writes.
    Copy,
    /// Ship the changes made meanwhile, until a round brings little (or `max_delta_rounds`
    /// went by).
    Delta,
    /// Ask the source to freeze and ship the last changes, which it does once they fit one
    /// chunk; until then each answer is one more delta (throttled past `max_delta_rounds`).
    Cutover,
    /// Apply the final chunk on the target, making it live for reads with writes paused
    /// (still unrouted: the source is frozen and serves reads with identical data).
    Finish,
    /// Release the source (tombstone `Moved { to }`, free the data); on success the directory
    /// flips to the target.
    Release,
    /// The directory routes to the target: end its write pause (`resume_writes`), then forget
    /// the move. Until then the target refuses user writes with `WritesPaused`.
    Activate,
    /// Called off: reclaim the target's partial import (`abort_import`), then forget the move.
    Abort,
    /// Being called off (failure budget spent, change log full, or an admin's cancel): the
    /// source stops exporting, drops its change log and resumes writes (`resume_writes`); then
    /// `Abort`. Should the source answer that it was released, the move completes instead.
    Unwind,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MoveRecord {
    pub source: InnerKey,
    pub target: Principal,
    pub target_subdb: Option<SubDbId>,
    pub op_id: ByteBuf,
    pub phase: MovePhase,
    /// Copy resume token (the chunk after the last one the target applied).
    pub token: Option<ByteBuf>,
    /// Number of the next chunk.
    pub seq: u64,
    /// Newest change the target applied.
    pub ack: u64,
    /// Delta chunks applied (cutover attempts that did not freeze included).
    pub delta_rounds: u32,
    /// Bytes of the SubDB when the move began, from its partition's stats (0 for a move an
    /// admin started: the index keeps no per-SubDB sizes); reserved on the target until its
    /// next stats.
    pub bytes: u64,
    pub started_at: u64,
    /// Consecutive failed calls; reset by every call that succeeds. (Optional so records
    /// written before it existed decode.)
    pub failures: Option<u32>,
    /// Index time the source's freeze was confirmed (its frozen export answered); cleared when
    /// writes resume — at the target (activate) or, for a move called off, at the source
    /// (unwind) — and the pause counted in `Config::longest_write_pause_ns`.
    pub paused_at: Option<u64>,
    /// An admin named the target (`move_subdb`): the move is not retargeted should the target
    /// fail at begin-import. (Optional so records written before it existed decode.)
    pub pinned: Option<bool>,
}

/// A chunk fetched from the source and not yet applied by the target.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MoveChunk {
    pub chunk: Chunk,
    /// Copy: the token after this chunk (`None` = the copy is complete).
    pub next_token: Option<ByteBuf>,
    /// Delta: the version to acknowledge once applied, and whether changes remain.
    pub version: u64,
    pub more: bool,
}

/// A create or delete awaiting its partition's answer: the exact call, re-driven unchanged
/// (with the same op id) until answered.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum PendingCall {
    Create(CreateLocalArgs),
    Delete(DeleteSubDbArgs),
}

candid_storable!(
    PartitionRecord,
    OpRecord,
    JobRecord,
    Purpose,
    PendingCall,
    MoveRecord,
    MoveChunk,
    ReclaimRecord,
    UpgradeProgress
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_entry_round_trips() {
        let e = DirEntry {
            state: DirState::Creating,
            partition: Principal::from_slice(&[1; 29]),
            subdb: 77,
            owner: Principal::anonymous(),
            op_id: vec![5; 32],
        };
        let b = e.to_bytes();
        assert!(b.len() < 100);
        assert_eq!(DirEntry::from_bytes(b), e);
    }
}
