//! Flotilla's index logic, free of IO.
//!
//! The index maps outer keys (stable SubDB names) to inner keys (partition, local id), keeps
//! the registry of partitions, places new SubDBs, creates partitions through the management
//! canister (keeping a pool of spares), and publishes routes for clients.
//!
//! Every handler takes the state, an [`Env`] (caller, time, own id) and its arguments, mutates
//! the state and returns its reply plus the [`Call`]s it wants made. The reply to each call
//! comes back through [`Index::on_reply`] as another message. Multi-step work (creating a SubDB
//! on a partition, creating a partition) is persisted: a directory entry in `Creating` state, a
//! job record, an in-flight record per call. After an upgrade, calls that were in flight are
//! treated as lost and their work is re-driven idempotently by [`Index::tick`].
//!
//! Read paths ([`Index::route`], [`Index::routes`], [`Index::stats`]) take `&self` and return
//! plain values: they cannot ask for a call.
//!
//! Where the logic lives, by concern (each file adds its own `impl Index`):
//!
//! - `admin.rs`: the admins, adding and removing them;
//! - `wasm.rs`: the partition wasm, uploaded in pieces;
//! - `directory.rs`: creating and deleting SubDBs, their op records, `route` and `routes`;
//! - `registry.rs`: partitions, placement, spares, stats refresh, the index's `stats`;
//! - `cycles.rs`: partitions' cycle balances checked and topped up, the index's reserve;
//! - `settings.rs`: the settings admins change after install;
//! - `quotas.rs`: who may create SubDBs, and how many one principal may own;
//! - `jobs.rs`: partition-creation jobs (create canister, install the wasm);
//! - `upgrades.rs`: fleet upgrades (every partition to the active wasm, a batch at a time);
//! - `moves.rs`: live SubDB moves;
//! - `health.rs`: partitions' health, from how the calls to them fare;
//! - `reclaims.rs`: called-off moves' partial imports, reclaimed once their target answers;
//! - `tick.rs`: the timer's work and `run_housekeeping`;
//! - `calls.rs`: the calls the index asks to make and their replies;
//! - `inflight.rs`: the calls in flight, by id and by purpose;
//! - `fleet.rs`: heap indexes over the registry (creation order, spares, stats due);
//! - `dispatch.rs`: Candid method names to handlers, for the glue, the simulator and tests;
//! - `records.rs`, `memory.rs`: persisted records and the stable memory regions.
//!
//! This file holds the state, its install and upgrade, and the routing of replies.

mod admin;
pub mod calls;
pub mod cycles;
mod directory;
pub mod dispatch;
mod fleet;
pub mod health;
mod inflight;
pub mod inspect;
mod jobs;
pub mod memory;
pub mod moves;
pub mod quotas;
pub mod reclaims;
pub mod records;
mod registry;
mod settings;
mod tick;
mod upgrades;
mod wasm;

pub use wasm::WASM_CHUNK_BYTES;

use calls::{Call, CallId, CallResult, InstallMode, Request};
use candid::Principal;
use flotilla_types::index::{CreateError, DeleteSubDbRequestError, IndexInit, IndexSettings};
use flotilla_types::limits::MAX_SPARE_POOL_TARGET;
use flotilla_types::InnerKey;
use ic_stable_structures::memory_manager::MemoryId;
use ic_stable_structures::{BTreeMap, Cell, Memory};
use records::*;
use serde_bytes::ByteBuf;

pub const DEFAULT_SPARE_POOL_TARGET: u32 = 1;
pub const DEFAULT_MOVE_CAP_BYTES: u64 = 1 << 30;
pub const DEFAULT_PARTITION_CYCLES: u128 = 1_000_000_000_000;
/// Largest module installed inline: `install_code` travels in one ≤ 2 MiB message.
pub const DEFAULT_INLINE_INSTALL_LIMIT: u64 = 1_900_000;
pub const DEFAULT_OP_WINDOW: u64 = 100_000;
pub const DEFAULT_STATS_PERIOD_NS: u64 = 10_000_000_000;
/// Most `stats` calls one `tick` makes (most overdue partitions first), so a tick's work does
/// not grow with the fleet: with the canister's 5 s ticks, fleets of up to 100 partitions keep
/// the 10 s stats period; a larger fleet is refreshed every ⌈partitions / 100⌉ × 5 s.
pub const MAX_STATS_CALLS_PER_TICK: usize = 100;

/// Who is calling, when, who we are, and our cycle balance.
#[derive(Clone, Copy, Debug)]
pub struct Env {
    pub caller: Principal,
    pub now: u64,
    pub self_id: Principal,
    /// The index's own cycle balance as the message began.
    pub balance: u128,
}

/// A handler's answer: ready now, or after the partition answers the given call.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<R> {
    Done(R),
    Await(Call),
}

/// A client call that completes with a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finished {
    Create(Result<InnerKey, CreateError>),
    Delete(Result<(), DeleteSubDbRequestError>),
}

/// What a reply caused: follow-up calls, and maybe a client call's final answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reaction {
    pub calls: Vec<Call>,
    pub finished: Option<Finished>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    BadMagic,
    UnsupportedVersion { found: u16, supported: u16 },
}

pub struct Index<M: Memory> {
    config: Cell<Config, M>,
    directory: BTreeMap<String, DirEntry, M>,
    registry: BTreeMap<Principal, PartitionRecord, M>,
    ops: BTreeMap<Vec<u8>, OpRecord, M>,
    ops_order: BTreeMap<u64, Vec<u8>, M>,
    pending: BTreeMap<String, PendingCall, M>,
    jobs: BTreeMap<u64, JobRecord, M>,
    inflight: BTreeMap<CallId, Purpose, M>,
    inflight_by_purpose: BTreeMap<Vec<u8>, (), M>,
    wasm: [BTreeMap<u32, Vec<u8>, M>; 2],
    moves: BTreeMap<String, MoveRecord, M>,
    move_chunks: BTreeMap<String, MoveChunk, M>,
    reverse: BTreeMap<Vec<u8>, String, M>,
    owners: BTreeMap<Principal, u64, M>,
    owned_keys: BTreeMap<Vec<u8>, (), M>,
    creators: BTreeMap<Principal, (), M>,
    reclaims: BTreeMap<Vec<u8>, ReclaimRecord, M>,
    upgrades: BTreeMap<Principal, UpgradeProgress, M>,
    /// Derived from `registry` (`fleet.rs`).
    fleet: fleet::Fleet,
    /// Derived from `reclaims` (`reclaims.rs`).
    reclaims_due: reclaims::ReclaimsDue,
    /// Derived from `upgrades` (`upgrades.rs`).
    upgrade_sets: upgrades::UpgradeSets,
}

impl<M: Memory> Index<M> {
    fn with_memories(mut mem: impl FnMut(MemoryId) -> M, config: Config) -> Self {
        Index {
            config: Cell::init(mem(memory::CONFIG), config),
            directory: BTreeMap::init(mem(memory::DIRECTORY)),
            registry: BTreeMap::init(mem(memory::REGISTRY)),
            ops: BTreeMap::init(mem(memory::OPS)),
            ops_order: BTreeMap::init(mem(memory::OPS_ORDER)),
            pending: BTreeMap::init(mem(memory::PENDING)),
            jobs: BTreeMap::init(mem(memory::JOBS)),
            inflight: BTreeMap::init(mem(memory::INFLIGHT)),
            inflight_by_purpose: BTreeMap::init(mem(memory::INFLIGHT_BY_PURPOSE)),
            wasm: [
                BTreeMap::init(mem(memory::WASM_SLOT_A)),
                BTreeMap::init(mem(memory::WASM_SLOT_B)),
            ],
            moves: BTreeMap::init(mem(memory::MOVES)),
            move_chunks: BTreeMap::init(mem(memory::MOVE_CHUNKS)),
            reverse: BTreeMap::init(mem(memory::REVERSE)),
            owners: BTreeMap::init(mem(memory::OWNERS)),
            owned_keys: BTreeMap::init(mem(memory::OWNED_KEYS)),
            creators: BTreeMap::init(mem(memory::CREATORS)),
            reclaims: BTreeMap::init(mem(memory::RECLAIMS)),
            upgrades: BTreeMap::init(mem(memory::UPGRADES)),
            fleet: fleet::Fleet::default(),
            reclaims_due: reclaims::ReclaimsDue::default(),
            upgrade_sets: upgrades::UpgradeSets::default(),
        }
    }

    /// A new index (canister `init`). The anonymous principal is never an admin.
    pub fn install(mem: impl FnMut(MemoryId) -> M, init: IndexInit) -> Self {
        let mut admins: Vec<Principal> = init
            .admins
            .into_iter()
            .filter(|p| *p != Principal::anonymous())
            .collect();
        admins.sort();
        admins.dedup();
        let mut config = Config {
            magic: ByteBuf::from(MAGIC.to_vec()),
            version: LAYOUT_VERSION,
            admins,
            inline_install_limit: DEFAULT_INLINE_INSTALL_LIMIT,
            op_window: DEFAULT_OP_WINDOW,
            stats_period_ns: DEFAULT_STATS_PERIOD_NS,
            ..Config::default()
        };
        // The install argument is not refused: out-of-range values are brought in range (the
        // spare pool to its limit, a zero move cap to 1, the top-up target up to the
        // threshold), as `update_settings` would refuse them.
        let threshold = init.cycles_threshold.unwrap_or(config.cycles.threshold);
        let settings = IndexSettings {
            spare_pool_target: Some(
                init.spare_pool_target
                    .unwrap_or(DEFAULT_SPARE_POOL_TARGET)
                    .min(MAX_SPARE_POOL_TARGET),
            ),
            move_cap_bytes: Some(init.move_cap_bytes.unwrap_or(DEFAULT_MOVE_CAP_BYTES).max(1)),
            partition_cycles: Some(init.partition_cycles.unwrap_or(DEFAULT_PARTITION_CYCLES)),
            cycles_threshold: Some(threshold),
            cycles_target: Some(
                init.cycles_target
                    .unwrap_or(config.cycles.target)
                    .max(threshold),
            ),
            cycles_reserve: init.cycles_reserve,
            create_policy: init.create_policy,
            max_subdbs_per_owner: init.max_subdbs_per_owner,
            max_bytes_per_subdb: init.max_bytes_per_subdb.map(|n| n.max(1)),
        };
        settings::apply(&mut config, &settings).expect("install settings brought in range");
        let mut index = Self::with_memories(mem, config.clone());
        index.config.set(config);
        index
    }

    /// Re-opens the index from its memories (canister `post_upgrade`). Calls that were in
    /// flight are forgotten; `tick` re-drives their work idempotently.
    pub fn open(mem: impl FnMut(MemoryId) -> M) -> Result<Self, OpenError> {
        // Read back from memory; this value is only written to an empty memory (and refused).
        let placeholder = Config::default();
        let mut index = Self::with_memories(mem, placeholder);
        let c = index.config.get();
        if c.magic.as_slice() != MAGIC {
            return Err(OpenError::BadMagic);
        }
        if c.version != LAYOUT_VERSION {
            return Err(OpenError::UnsupportedVersion {
                found: c.version,
                supported: LAYOUT_VERSION,
            });
        }
        index.forget_inflight();
        index.build_fleet();
        index.build_reclaims_due();
        index.build_upgrade_sets();
        index.backfill_owned_keys();
        Ok(index)
    }

    fn forget_inflight(&mut self) {
        self.forget_all_calls();
        let jobs: Vec<(u64, JobRecord)> = self.jobs.iter().map(|e| e.into_pair()).collect();
        for (id, mut j) in jobs {
            if j.call.is_some() && matches!(j.job, Job::Install { .. } | Job::InstallChunked { .. })
            {
                j.mode = InstallMode::Reinstall;
            }
            j.call = None;
            self.jobs.insert(id, j);
        }
    }

    fn cfg(&self) -> &Config {
        self.config.get()
    }

    fn update_cfg(&mut self, f: impl FnOnce(&mut Config)) {
        let mut c = self.config.get().clone();
        f(&mut c);
        self.config.set(c);
    }

    fn next_call(&mut self, target: Principal, request: Request, purpose: Purpose) -> Call {
        let mut id = 0;
        self.update_cfg(|c| {
            id = c.next_call_id;
            c.next_call_id += 1;
        });
        self.track(id, purpose);
        Call {
            id,
            target,
            request,
        }
    }

    // ---- replies ------------------------------------------------------------------------

    /// Feeds back the result of call `id`. Unknown ids (already answered, or forgotten across
    /// an upgrade) are ignored.
    pub fn on_reply(&mut self, env: &Env, id: CallId, result: CallResult) -> Reaction {
        let Some(purpose) = self.untrack(id) else {
            return Reaction::default();
        };
        if let Some((partition, import)) = self.callee(&purpose) {
            self.note_call(env, partition, import, &result);
        }
        match purpose {
            Purpose::Create { outer_key } => Reaction {
                calls: vec![],
                finished: Some(Finished::Create(self.created(&outer_key, result))),
            },
            Purpose::Delete { outer_key } => Reaction {
                calls: vec![],
                finished: Some(Finished::Delete(self.deleted(&outer_key, result))),
            },
            Purpose::Job { job } => Reaction {
                calls: self.job_reply(env, job, result),
                finished: None,
            },
            Purpose::Move { outer_key, step } => Reaction {
                calls: self.move_reply(env, &outer_key, step, result),
                finished: None,
            },
            Purpose::Stats { partition } => Reaction {
                calls: self.stats_reply(env, partition, result),
                finished: None,
            },
            Purpose::Status { partition } => Reaction {
                calls: self.status_reply(env, partition, result),
                finished: None,
            },
            Purpose::TopUp { partition, amount } => {
                self.top_up_reply(partition, amount, result);
                Reaction::default()
            }
            Purpose::Reclaim { op_id } => Reaction {
                calls: self.reclaim_reply(env, &op_id, result),
                finished: None,
            },
            Purpose::Restart { .. } => {
                self.restart_reply(result);
                Reaction::default()
            }
            Purpose::Upgrade { partition } => Reaction {
                calls: self.upgrade_reply(env, partition, result),
                finished: None,
            },
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fuzz;
