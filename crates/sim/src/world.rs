//! The world: canisters running the real index and partition logic, the management canister,
//! clients, one PRNG and a message queue, stepped round by round.
//!
//! # Message semantics
//!
//! Every message executes atomically against one canister's logic at its delivery round.
//! A trap rolls the canister back to the message start; since all logic state lives in stable
//! memory, the simulator models it by not executing the message, and the caller gets a reject
//! with `certain: false`. A reject before execution (`certain: true`) models a stopped
//! destination, missing cycles or a full queue. A lost reply means the message executed but
//! the caller only learns `certain: false` (a best-effort timeout). Replies to the index are
//! always delivered (a stopping canister still receives the replies to its own calls), and
//! reply callbacks never trap.
//!
//! Queries (client reads, the index's routing query) execute at delivery without faults,
//! except that a stopped canister rejects them.
//!
//! # A round
//!
//! 1. lifecycle: stopped canisters whose time is up start again; maybe one canister is
//!    stopped; maybe one is upgraded (its heap dropped, its logic re-opened from memory);
//! 2. timers: the index's `tick` every `tick_every` rounds, each partition's purge timer
//!    every `housekeep_every` rounds;
//! 3. every message due this round is delivered, in (round, sequence) order; anything they
//!    send is due one round later at the earliest;
//! 4. clients that are idle and past their backoff act (start or resume an operation);
//! 5. the per-round checkers run; full-content checkers every `full_check_every` rounds.
//!
//! # Where the logic lives
//!
//! `World` and its state are here, with its construction and the calls from outside;
//! `lifecycle.rs` steps it (rounds, phases, stops, upgrades, timers); `delivery.rs` delivers
//! ingress messages, queries and answers; `calls.rs` carries the index's inter-canister
//! calls and their replies; `mgmt.rs` is the management canister; `snapshot.rs` builds the
//! report and the dashboard's snapshot.

mod calls;
mod cycles;
mod delivery;
mod hazards;
mod lifecycle;
mod mgmt;
mod rolling;
mod snapshot;

pub use snapshot::{IndexSnapshot, PartitionSnapshot, Snapshot};

use crate::canister::{canister_id, Canister, Logic, Mem};
use crate::client::Client;
use crate::config::SimConfig;
use crate::faults::{FaultCounts, Faults};
use crate::hazards::Hazards;
use crate::model::Model;
use crate::queue::Queue;
use crate::report::{Violation, ViolationKind};
use crate::requests::RequestLog;
use crate::rng::SimRng;
use candid::Principal;
use flotilla_client::TransportError;
use flotilla_index::calls::{Call, CallId, CallResult};
use flotilla_index::dispatch::Pending;
use flotilla_index::records::MoveTuning;
use flotilla_index::{Env, Index};
use flotilla_partition::Partition;
use flotilla_types::dispatch::MethodKind;
use flotilla_types::index::{CreatePolicy, IndexInit, WasmChunk};
use flotilla_types::limits::MAX_WASM_UPLOAD_CHUNK_BYTES;
use flotilla_types::InnerKey;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// One round is one second of IC time.
pub const ROUND_NS: u64 = 1_000_000_000;
/// Cycles: creating a canister, taken out of the cycles the caller attaches (as on the IC);
/// the new canister starts with the rest.
pub const CREATION_FEE: u128 = 500_000_000_000;
/// Cycles the caller pays per inter-canister call, and per request byte.
pub const CALL_BASE: u128 = 260_000;
pub const CALL_PER_BYTE: u128 = 1_000;
/// Cycles a canister pays per ingress message it accepts, and per byte.
pub const INGRESS_BASE: u128 = 1_200_000;
pub const INGRESS_PER_BYTE: u128 = 2_000;
/// Cycles a canister pays per update message it executes (instructions folded in).
pub const EXEC_BASE: u128 = 590_000;

/// Who sent an ingress message or a query, and gets its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// One of the world's simulated users.
    Client(usize),
    /// A caller outside the world (a transport), by ticket.
    External(u64),
}

pub(crate) type ClientReply = Result<Vec<u8>, TransportError>;

#[derive(Debug)]
pub(crate) enum Msg {
    /// An update call from outside the IC: Candid bytes to a method.
    Ingress {
        from: Origin,
        caller: Principal,
        to: Principal,
        method: String,
        arg: Vec<u8>,
    },
    Query {
        from: Origin,
        caller: Principal,
        to: Principal,
        method: String,
        arg: Vec<u8>,
    },
    ToClient {
        to: Origin,
        reply: ClientReply,
    },
    Call(Call),
    Reply {
        call_id: CallId,
        result: CallResult,
    },
}

/// An ingress call to the index that awaits a partition call's outcome.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Awaiting {
    pub from: Origin,
    pub pending: Pending,
    pub lost: bool,
}

/// Move traffic the world observed (at execution, whether or not the reply arrived).
#[derive(Default)]
pub(crate) struct Observed {
    /// `begin_import` executed: (target, local id).
    pub imports: BTreeSet<InnerKey>,
    /// `import_chunk { finish: true }` executed successfully.
    pub finished_imports: BTreeSet<InnerKey>,
    /// `release` executed successfully: (source, local id).
    pub released: BTreeSet<InnerKey>,
}

#[derive(Default)]
pub(crate) struct Stats {
    pub ops_completed: u64,
    /// Key and value bytes of acknowledged puts.
    pub put_bytes: u64,
    pub faults: FaultCounts,
    pub chunk_messages: u64,
    pub chunk_bytes: u64,
    pub max_chunk_message_bytes: u64,
    pub max_message_bytes: u64,
    pub write_pause_rounds: u64,
    pub last_pause_round: Option<u64>,
    pub failed_reads: u64,
    pub failed_read_samples: Vec<String>,
    pub subdbs_created: u64,
    /// Last round the index sent a call other than upkeep (`Request::is_upkeep`).
    pub last_work_round: u64,
    pub messages: u64,
    /// Rounds from a write's first `WritesPaused` to its answer, the longest.
    pub longest_write_pause: u64,
    /// Rounds from start to answer of each completed client operation.
    pub read_latencies: Vec<u64>,
    pub write_latencies: Vec<u64>,
    /// Inter-canister calls sent, in all.
    pub calls_sent: u64,
    /// Client reads and writes executed at partitions, and the inter-canister calls they
    /// caused (the design says none: a partition cannot call).
    pub partition_reads: u64,
    pub partition_writes: u64,
    pub calls_by_partition_reads: u64,
    pub calls_by_partition_writes: u64,
    /// `deposit_cycles` executed, and their cycles.
    pub top_ups: u64,
    pub topped_up: u128,
    /// Creates refused with `IndexLowOnCycles`.
    pub creates_refused_low_cycles: u64,
    /// Creates refused with `SubDbQuotaExceeded`.
    pub creates_refused_quota: u64,
    /// Puts refused with `QuotaExceeded` (checked against the model: checker 12).
    pub puts_refused_quota: u64,
    /// Partitions whose charge was refused for want of cycles (per partition, once each round).
    pub partition_dry_rounds: u64,
    /// Times the world's operator topped the index up.
    pub operator_top_ups: u64,
}

/// Phases of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Clients issue operations until `ops` have completed.
    Running,
    /// No new operations, faults off: clients finish what they started.
    Draining,
    /// Waiting for the index to have nothing left to do.
    Quiescing,
    Done,
}

pub struct World {
    pub(crate) cfg: SimConfig,
    /// The fault knobs in force (off during the end phase).
    pub(crate) faults: Faults,
    /// The hazard knobs in force (off during the end phase), and what the hazards hold.
    pub(crate) hazards: Hazards,
    pub(crate) hz: hazards::HazardState,
    /// The admin's rolling upgrades (`--rolling-upgrades`).
    pub(crate) rolling: rolling::RollingState,
    pub(crate) rng: SimRng,
    pub(crate) round: u64,
    pub(crate) queue: Queue<Msg>,
    pub(crate) index_id: Principal,
    pub(crate) admin: Principal,
    pub(crate) canisters: BTreeMap<Principal, Canister>,
    next_canister: u64,
    pub(crate) clients: Vec<Client>,
    pub(crate) model: Model,
    pub(crate) awaiting: BTreeMap<CallId, Awaiting>,
    pub(crate) observed: Observed,
    pub(crate) stats: Stats,
    pub(crate) violations: Vec<Violation>,
    violation_keys: BTreeSet<(ViolationKind, String)>,
    /// Each canister's `ran_dry` count as the cycles checker last saw it.
    dry_seen: BTreeMap<Principal, u64>,
    /// Since when the index is too low on cycles to create a partition (the operator's clock).
    index_low_since: Option<u64>,
    /// Since when the index holds enough for its reserve and a full top-up (the dry-partition
    /// checker's clock).
    index_could_pay_since: Option<u64>,
    /// The last round a `canister_status` or `deposit_cycles` about each partition failed.
    cycles_call_failed_at: BTreeMap<Principal, u64>,
    /// Until when the index was last stopped or upgraded (0: never).
    index_disturbed_until: u64,
    /// The round of the operator's last top-up of the index.
    pub(crate) operator_topped_at: Option<u64>,
    trace: u64,
    /// Clients may start new operations.
    pub(crate) issuing: bool,
    pub(crate) ops_started: u64,
    /// A logic panic ended the run.
    pub(crate) halted: bool,
    pub(crate) phase: Phase,
    quiet_for: u64,
    phase_started: u64,
    verbose: bool,
    /// The last calls the index made and what became of them, for failure reports.
    pub(crate) call_log: VecDeque<String>,
    /// Answers to calls from outside the world, by ticket, until taken.
    pub(crate) external: BTreeMap<u64, ClientReply>,
    /// Tasks waiting on the world, woken by the driver after the next round.
    pub(crate) parked: Vec<std::task::Waker>,
    next_ticket: u64,
    /// The world never ends by itself (a demo or a transport drives it).
    open_ended: bool,
    /// Requests from users and from outside, as the canisters executed them.
    pub(crate) requests: RequestLog,
    /// While serving live: the simulated users start an operation at most once per this many
    /// rounds (all users together).
    live_pace: Option<u64>,
    next_live_start: u64,
}

/// Runs logic that may panic (a trap the logic did not intend).
fn guard<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "non-string panic".into())
    })
}

fn mix(h: u64, x: u64) -> u64 {
    (h ^ x)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(29)
        .wrapping_add(0x632b_e59b_d9b4_e019)
}

fn origin_word(o: Origin) -> u64 {
    match o {
        Origin::Client(i) => i as u64,
        Origin::External(t) => (1 << 63) | t,
    }
}

fn principal_word(p: &Principal) -> u64 {
    p.as_slice()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| mix(h, *b as u64))
}

/// The principal of simulated client `i`.
fn client_principal(i: usize) -> Principal {
    Principal::self_authenticating(format!("flotilla-sim client {i}"))
}

impl World {
    /// Builds the world: the index installed, the partition wasm uploaded by the admin, the
    /// clients created. No partition exists yet; the index creates them on its first ticks.
    pub fn new(cfg: SimConfig) -> World {
        let mut rng = SimRng::new(cfg.seed);
        let index_id = canister_id(0);
        let admin = Principal::self_authenticating(b"flotilla-sim admin");
        let mut index = Canister::new(index_id, cfg.index_cycles, 0);
        let mut logic = Index::install(
            index.memories(),
            IndexInit {
                admins: vec![admin],
                spare_pool_target: Some(cfg.spare_pool_target),
                move_cap_bytes: Some(cfg.move_cap_bytes),
                partition_cycles: Some(cfg.cycles.partition_cycles),
                cycles_threshold: Some(cfg.cycles.threshold),
                cycles_target: Some(cfg.cycles.target),
                cycles_reserve: Some(cfg.cycles.reserve),
                create_policy: Some(cfg.create_policy),
                max_subdbs_per_owner: Some(cfg.max_subdbs_per_owner),
                max_bytes_per_subdb: Some(if cfg.bugs.lax_byte_quota {
                    cfg.max_bytes_per_subdb.saturating_mul(2)
                } else if cfg.bugs.strict_byte_quota {
                    (cfg.max_bytes_per_subdb / 2).max(1)
                } else {
                    cfg.max_bytes_per_subdb
                }),
            },
        );
        logic.set_cycles_check_period(cfg.cycles.check_period_rounds * ROUND_NS);
        if let Some(write_budget) = cfg.throttle_moves {
            logic.set_move_tuning(MoveTuning {
                max_delta_rounds: 0,
                write_budget,
            });
        }
        if cfg.create_policy == CreatePolicy::AllowList {
            let env = Env {
                caller: admin,
                now: 0,
                self_id: index_id,
                balance: cfg.index_cycles,
            };
            let who = (0..cfg.clients).map(client_principal).collect();
            logic
                .allow_creators(&env, who)
                .expect("the world's admin puts its clients on the allow-list");
        }
        index.logic = Logic::Index(Box::new(logic));
        let clients: Vec<Client> = (0..cfg.clients)
            .map(|i| Client::new(i, client_principal(i)))
            .collect();
        let mut w = World {
            faults: cfg.faults,
            hazards: cfg.hazards,
            hz: hazards::HazardState::default(),
            rolling: rolling::RollingState::new(cfg.seed),
            cfg,
            rng: SimRng::new(0),
            round: 0,
            queue: Queue::new(),
            index_id,
            admin,
            canisters: BTreeMap::new(),
            next_canister: 1,
            clients,
            model: Model::default(),
            awaiting: BTreeMap::new(),
            observed: Observed::default(),
            stats: Stats::default(),
            violations: vec![],
            violation_keys: BTreeSet::new(),
            dry_seen: BTreeMap::new(),
            index_low_since: None,
            index_could_pay_since: None,
            cycles_call_failed_at: BTreeMap::new(),
            index_disturbed_until: 0,
            operator_topped_at: None,
            trace: 0,
            issuing: true,
            ops_started: 0,
            halted: false,
            phase: Phase::Running,
            quiet_for: 0,
            phase_started: 0,
            call_log: VecDeque::new(),
            verbose: false,
            external: BTreeMap::new(),
            parked: Vec::new(),
            next_ticket: 0,
            open_ended: false,
            requests: RequestLog::default(),
            live_pace: None,
            next_live_start: 0,
        };
        w.canisters.insert(index_id, index);
        // The admin uploads a (fake) partition module in ≤ 1.9 MB pieces.
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        wasm.extend(rng.bytes(w.cfg.wasm_bytes.saturating_sub(wasm.len())));
        w.rng = rng;
        w.upload_wasm(&wasm);
        w.hz.first_module = Sha256::digest(&wasm).to_vec();
        w
    }

    fn upload_wasm(&mut self, wasm: &[u8]) {
        let sha = Sha256::digest(wasm).to_vec();
        let env = Env {
            caller: self.admin,
            now: 0,
            self_id: self.index_id,
            balance: self.index_balance(),
        };
        let mut complete = false;
        for (i, piece) in wasm.chunks(MAX_WASM_UPLOAD_CHUNK_BYTES).enumerate() {
            let chunk = WasmChunk {
                offset: (i * MAX_WASM_UPLOAD_CHUNK_BYTES) as u64,
                bytes: ByteBuf::from(piece.to_vec()),
                total_len: wasm.len() as u64,
                sha256: ByteBuf::from(sha.clone()),
            };
            let index = self.index_mut();
            match index.upload_partition_wasm(&env, chunk) {
                Ok(p) => complete = p.complete,
                Err(e) => {
                    self.violation(
                        ViolationKind::UnexpectedReply,
                        format!("partition wasm upload refused: {e}"),
                    );
                    return;
                }
            }
        }
        if !complete {
            self.violation(
                ViolationKind::UnexpectedReply,
                "partition wasm upload did not complete".into(),
            );
        }
    }

    // ---- calls from outside the world ------------------------------------------------------

    /// Keeps the world running after its simulated users are done (no drain, no end phase):
    /// for a transport or a demo that drives it.
    pub fn set_open_ended(&mut self, on: bool) {
        self.open_ended = on;
    }

    /// After a finished run (its report taken), keeps the world going for calls from outside:
    /// rounds advance again, timers (the index's tick, moves) run, the simulated users start
    /// no new operations, and no end phase is entered.
    pub fn keep_serving(&mut self) {
        self.open_ended = true;
        if self.phase == Phase::Done {
            self.phase = Phase::Draining;
        }
    }

    /// After a finished run (its report taken), keeps the world going with its simulated
    /// users writing on: one new operation at most every `pace` rounds (all users together),
    /// without end and without faults, for a demo that shows a live deployment.
    pub fn keep_serving_live(&mut self, pace: u64) {
        self.keep_serving();
        self.phase = Phase::Running;
        self.issuing = true;
        self.faults = Faults::NONE;
        self.end_hazards();
        self.live_pace = Some(pace.max(1));
        self.next_live_start = self.round;
    }

    /// A user may start an operation now (always, but while live and ahead of the pace).
    pub(crate) fn may_start_op(&mut self) -> bool {
        if !self.issuing {
            return false;
        }
        match self.live_pace {
            None => self.ops_started < self.cfg.ops,
            Some(pace) if self.round >= self.next_live_start => {
                self.next_live_start = self.round + pace;
                true
            }
            Some(_) => false,
        }
    }

    /// Requests from the simulated users and from outside, as executed.
    pub fn requests(&self) -> &RequestLog {
        &self.requests
    }

    /// Sends a call from outside the world (an ingress message or a query of `caller`), with
    /// the world's latencies and faults; its answer becomes available to
    /// [`World::take_reply`] with the returned ticket.
    pub fn submit(
        &mut self,
        caller: Principal,
        canister: Principal,
        method: &str,
        kind: MethodKind,
        arg: Vec<u8>,
    ) -> u64 {
        let t = self.next_ticket;
        self.next_ticket += 1;
        let from = Origin::External(t);
        match kind {
            MethodKind::Query => self.send_query(from, caller, canister, method, arg),
            MethodKind::Update => self.send_ingress(from, caller, canister, method, arg),
        }
        t
    }

    /// Parks a task waiting on the world (an answer, a round): whoever steps the world wakes
    /// it after the next round ([`World::take_parked`]).
    pub fn park(&mut self, waker: &std::task::Waker) {
        self.parked.push(waker.clone());
    }

    /// The tasks parked since the last call, to wake after a round.
    pub fn take_parked(&mut self) -> Vec<std::task::Waker> {
        std::mem::take(&mut self.parked)
    }

    /// The answer to an outside call, once it has arrived.
    pub fn take_reply(&mut self, ticket: u64) -> Option<Result<Vec<u8>, TransportError>> {
        self.external.remove(&ticket)
    }

    /// The principal of the admin who installed the index (and uploaded the partition wasm).
    pub fn admin(&self) -> Principal {
        self.admin
    }

    // ---- accessors ------------------------------------------------------------------------

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    pub fn round(&self) -> u64 {
        self.round
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// A logic panic or too many violations ended the run early.
    pub fn halted(&self) -> bool {
        self.halted
    }

    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    pub fn index_id(&self) -> Principal {
        self.index_id
    }

    pub(crate) fn index(&self) -> &Index<Mem> {
        self.canisters[&self.index_id]
            .index()
            .expect("the index canister runs the index")
    }

    fn index_mut(&mut self) -> &mut Index<Mem> {
        self.canisters
            .get_mut(&self.index_id)
            .and_then(|c| c.index_mut())
            .expect("the index canister runs the index")
    }

    /// Partition canisters (installed), in id order.
    pub(crate) fn partitions(&self) -> impl Iterator<Item = (&Principal, &Partition<Mem>)> {
        self.canisters
            .iter()
            .filter_map(|(id, c)| c.partition().map(|p| (id, p)))
    }

    pub(crate) fn now(&self) -> u64 {
        self.round * ROUND_NS
    }

    pub(crate) fn self_env(&self) -> Env {
        Env {
            caller: self.index_id,
            now: self.now(),
            self_id: self.index_id,
            balance: self.index_balance(),
        }
    }

    /// The index canister's cycle balance as the index is told it (its `Env::balance`).
    pub(crate) fn index_balance(&self) -> u128 {
        let inflation = if self.cfg.bugs.inflated_balance {
            10_000_000_000_000
        } else {
            0
        };
        self.index_cycles() + inflation
    }

    /// The index canister's true cycle balance.
    pub(crate) fn index_cycles(&self) -> u128 {
        self.canisters.get(&self.index_id).map_or(0, |c| c.cycles)
    }

    /// Records a violation, once per distinct (kind, message): a broken state that persists
    /// is reported when first seen, not again at every later check.
    pub(crate) fn violation(&mut self, kind: ViolationKind, message: String) {
        if !self.violation_keys.insert((kind, message.clone())) {
            return;
        }
        self.violations.push(Violation {
            round: self.round,
            kind,
            message,
        });
        if self.violations.len() >= self.cfg.halt_after_violations.max(1) {
            self.halted = true;
        }
    }

    fn panicked(&mut self, what: &str, msg: String) {
        self.violation(ViolationKind::LogicPanic, format!("{what} panicked: {msg}"));
        self.halted = true;
    }

    pub(crate) fn trace(&mut self, words: &[u64]) {
        for w in words {
            self.trace = mix(self.trace, *w);
        }
    }

    /// Prints every event of this world to stderr (for reproducing one seed).
    pub fn set_verbose(&mut self, on: bool) {
        self.verbose = on;
    }

    pub(crate) fn say(&self, what: impl FnOnce() -> String) {
        if self.verbose {
            let mut line = what();
            if line.len() > 300 {
                let mut cut = 300;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
                line.push('…');
            }
            eprintln!("[seed={} r{}] {line}", self.cfg.seed, self.round);
        }
    }
}
