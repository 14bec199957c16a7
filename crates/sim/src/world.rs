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

use crate::canister::{canister_id, Canister, Logic, Mem};
use crate::client::Client;
use crate::config::SimConfig;
use crate::faults::{Fate, FaultCounts, Faults};
use crate::model::Model;
use crate::queue::Queue;
use crate::report::{Report, Violation, ViolationKind};
use crate::requests::{Answered, Executed, RequestLog, Requester, Role};
use crate::rng::SimRng;
use candid::Principal;
use flotilla_client::{RejectCode, TransportError};
use flotilla_index::calls::{
    Call, CallId, CallResult, InstallMode, Reject, Request, Response, Sender,
};
use flotilla_index::dispatch::{Outcome, Pending};
use flotilla_index::{Env, Index};
use flotilla_partition::dispatch::Ctx;
use flotilla_partition::Partition;
use flotilla_store::{Config as StoreConfig, SubDbStatus, PURGE_BATCH};
use flotilla_types::dispatch::{DispatchError, MethodKind};
use flotilla_types::index::{IndexInit, MoveInfo, PartitionState, RoutesRequest, WasmChunk};
use flotilla_types::limits::{MAX_MESSAGE_BYTES, MAX_WASM_UPLOAD_CHUNK_BYTES};
use flotilla_types::partition::PartitionInit;
use flotilla_types::{InnerKey, SubDbId};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// One round is one second of IC time.
pub const ROUND_NS: u64 = 1_000_000_000;
/// Cycles: creating a canister (taken from the index besides the cycles it attaches).
pub const CREATION_FEE: u128 = 500_000_000_000;
/// Cycles the caller pays per inter-canister call, and per request byte.
pub const CALL_BASE: u128 = 260_000;
pub const CALL_PER_BYTE: u128 = 1_000;
/// Cycles a canister pays per ingress message it accepts, and per byte.
pub const INGRESS_BASE: u128 = 1_200_000;
pub const INGRESS_PER_BYTE: u128 = 2_000;
/// Cycles a canister pays per update message it executes (instructions folded in).
pub const EXEC_BASE: u128 = 590_000;
/// Partition purge batches one timer run takes at most.
const HOUSEKEEP_BATCHES: usize = 4;

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
    /// Last round the index sent a call other than `stats`.
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

/// Calls kept in [`World::call_log`].
const CALL_LOG: usize = 12;

/// Runs logic that may panic (a trap the logic did not intend).
fn guard<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "non-string panic".into())
    })
}

/// The index's own identity on the wire (the sender of its calls).
fn sender(index: Principal) -> Sender {
    Sender {
        id: index,
        canister_version: None,
    }
}

/// A dispatcher's refusal as the reject the IC gives: no such method is an invalid
/// destination, an argument that does not decode traps the canister.
fn dispatch_reject(e: DispatchError) -> TransportError {
    let code = match e {
        DispatchError::NoSuchMethod { .. } | DispatchError::NotAQuery { .. } => {
            RejectCode::DestinationInvalid
        }
        DispatchError::BadArgument { .. } => RejectCode::CanisterError,
    };
    TransportError::new(code, e.to_string())
}

fn mix(h: u64, x: u64) -> u64 {
    (h ^ x)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(29)
        .wrapping_add(0x632b_e59b_d9b4_e019)
}

/// p50 and p99 of some figures (0 for none).
fn percentiles(v: &[u64]) -> (u64, u64) {
    if v.is_empty() {
        return (0, 0);
    }
    let mut v = v.to_vec();
    v.sort_unstable();
    let at = |q: usize| v[((v.len() - 1) * q).div_ceil(100)];
    (at(50), at(99))
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

impl World {
    /// Builds the world: the index installed, the partition wasm uploaded by the admin, the
    /// clients created. No partition exists yet; the index creates them on its first ticks.
    pub fn new(cfg: SimConfig) -> World {
        let mut rng = SimRng::new(cfg.seed);
        let index_id = canister_id(0);
        let admin = Principal::self_authenticating(b"flotilla-sim admin");
        let mut index = Canister::new(index_id, cfg.index_cycles, 0);
        let logic = Index::install(
            index.memories(),
            IndexInit {
                admins: vec![admin],
                spare_pool_target: Some(cfg.spare_pool_target),
                move_cap_bytes: Some(cfg.move_cap_bytes),
                partition_cycles: None,
            },
        );
        index.logic = Logic::Index(Box::new(logic));
        let clients = (0..cfg.clients)
            .map(|i| {
                let p = Principal::self_authenticating(format!("flotilla-sim client {i}"));
                Client::new(i, p)
            })
            .collect();
        let mut w = World {
            faults: cfg.faults,
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
        w
    }

    fn upload_wasm(&mut self, wasm: &[u8]) {
        let sha = Sha256::digest(wasm).to_vec();
        let env = Env {
            caller: self.admin,
            now: 0,
            self_id: self.index_id,
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
        }
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

    // ---- sending --------------------------------------------------------------------------

    fn call_latency(&mut self) -> u64 {
        self.rng.range(1, self.cfg.latency_max.max(1))
    }

    fn ingress_latency(&mut self) -> u64 {
        self.rng.range(1, self.cfg.ingress_latency_max.max(1))
    }

    pub(crate) fn send_ingress(
        &mut self,
        from: Origin,
        caller: Principal,
        to: Principal,
        method: &str,
        arg: Vec<u8>,
    ) {
        let at = self.round + self.ingress_latency();
        let method = method.to_string();
        let msg = Msg::Ingress {
            from,
            caller,
            to,
            method,
            arg,
        };
        self.queue.push(at, msg);
    }

    pub(crate) fn send_query(
        &mut self,
        from: Origin,
        caller: Principal,
        to: Principal,
        method: &str,
        arg: Vec<u8>,
    ) {
        let at = self.round + self.ingress_latency();
        let method = method.to_string();
        let msg = Msg::Query {
            from,
            caller,
            to,
            method,
            arg,
        };
        self.queue.push(at, msg);
    }

    fn answer(&mut self, to: Origin, reply: ClientReply) {
        let at = self.round + self.ingress_latency();
        self.queue.push(at, Msg::ToClient { to, reply });
    }

    /// Sends one call the index asked for: measures it, charges the index, queues it.
    fn send_call(&mut self, call: Call) {
        self.stats.calls_sent += 1;
        let to_partition = call.target != Principal::management_canister();
        let bytes = call.request.encode(sender(self.index_id)).len() as u64;
        if to_partition {
            self.stats.max_message_bytes = self.stats.max_message_bytes.max(bytes);
            if bytes > MAX_MESSAGE_BYTES as u64 {
                self.violation(
                    ViolationKind::MessageTooLarge,
                    format!(
                        "{} request to {} is {bytes} bytes (limit {MAX_MESSAGE_BYTES})",
                        call.request.method(),
                        call.target
                    ),
                );
            }
        }
        if let Request::ImportChunk(_) = &call.request {
            self.stats.chunk_messages += 1;
            self.stats.chunk_bytes += bytes;
            self.stats.max_chunk_message_bytes = self.stats.max_chunk_message_bytes.max(bytes);
        }
        if !matches!(call.request, Request::Stats(_)) {
            self.stats.last_work_round = self.round;
        }
        let cost = CALL_BASE + CALL_PER_BYTE * bytes as u128;
        let paid = self
            .canisters
            .get_mut(&self.index_id)
            .is_some_and(|c| c.charge(cost));
        let at = self.round + self.call_latency();
        if !paid {
            let result = Err(Reject {
                message: "the index is out of cycles".into(),
                certain: true,
            });
            self.queue.push(
                at,
                Msg::Reply {
                    call_id: call.id,
                    result,
                },
            );
            return;
        }
        self.queue.push(at, Msg::Call(call));
    }

    // ---- stepping -------------------------------------------------------------------------

    /// Advances the world by one round (see the module docs for what a round does).
    pub fn step(&mut self) {
        if self.halted || self.phase == Phase::Done {
            return;
        }
        self.round += 1;
        self.lifecycle();
        self.timers();
        while let Some((_, seq, msg)) = self.queue.pop_due(self.round) {
            self.stats.messages += 1;
            self.trace(&[self.round, seq]);
            self.deliver(msg);
            if self.halted {
                return;
            }
        }
        for i in 0..self.clients.len() {
            self.client_act(i);
        }
        self.check_round();
        if self.round.is_multiple_of(self.cfg.full_check_every.max(1)) {
            self.check_full();
        }
        self.advance_phase();
    }

    /// Runs the whole scenario: operations, then drain, quiescence and the final checks.
    pub fn run_to_end(&mut self) {
        while self.phase != Phase::Done && !self.halted {
            self.step();
        }
    }

    fn advance_phase(&mut self) {
        if self.open_ended {
            return;
        }
        let elapsed = self.round - self.phase_started;
        match self.phase {
            Phase::Running => {
                let cap = self.cfg.ops.saturating_mul(self.cfg.max_rounds_per_op) + 2_000;
                if self.stats.ops_completed >= self.cfg.ops || elapsed > cap {
                    if elapsed > cap {
                        self.violation(
                            ViolationKind::NoQuiescence,
                            format!(
                                "only {} of {} operations completed in {elapsed} rounds",
                                self.stats.ops_completed, self.cfg.ops
                            ),
                        );
                    }
                    self.enter(Phase::Draining);
                }
            }
            Phase::Draining => {
                if self.clients.iter().all(|c| c.op.is_none()) {
                    self.enter(Phase::Quiescing);
                } else if elapsed > self.cfg.end_phase_max_rounds {
                    let busy: Vec<String> = self
                        .clients
                        .iter()
                        .filter_map(|c| c.op.as_ref().map(|o| format!("client {}: {o:?}", c.id)))
                        .collect();
                    self.violation(
                        ViolationKind::NoQuiescence,
                        format!("clients still busy after {elapsed} fault-free rounds: {busy:?}"),
                    );
                    self.finish();
                }
            }
            Phase::Quiescing => {
                if self.quiet_now() {
                    self.quiet_for += 1;
                } else {
                    self.quiet_for = 0;
                }
                if self.quiet_for >= self.cfg.quiet_rounds {
                    self.finish();
                } else if elapsed > self.cfg.end_phase_max_rounds {
                    let why = self.busy_reason();
                    let log: Vec<&String> = self.call_log.iter().collect();
                    self.violation(
                        ViolationKind::NoQuiescence,
                        format!(
                            "the index never went quiet in {elapsed} fault-free rounds: {why}; \
                             last calls: {log:#?}"
                        ),
                    );
                    self.finish();
                }
            }
            Phase::Done => {}
        }
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.phase_started = self.round;
        if phase == Phase::Draining {
            self.issuing = false;
            self.faults = Faults::NONE;
            for c in self.canisters.values_mut() {
                c.stopped_until = None;
            }
        }
    }

    fn finish(&mut self) {
        self.check_full();
        self.check_final();
        self.phase = Phase::Done;
    }

    /// Nothing left for the index to do: no partition being created, no client call awaiting
    /// a partition, no call but `stats` sent recently or on its way, nothing being purged.
    fn quiet_now(&self) -> bool {
        self.busy_reason().is_empty()
    }

    fn busy_reason(&self) -> String {
        let mut why = vec![];
        let jobs = self.index().stats().partitions_being_created;
        if jobs > 0 {
            why.push(format!("{jobs} partition creation job(s)"));
        }
        let moves = self.index().moves();
        if !moves.is_empty() {
            let phases: Vec<String> = moves
                .iter()
                .map(|m| format!("{} ({})", m.outer_key, m.phase))
                .collect();
            why.push(format!("move(s) in progress: {phases:?}"));
        }
        if !self.awaiting.is_empty() {
            why.push(format!("{} client call(s) awaiting", self.awaiting.len()));
        }
        if self.stats.last_work_round + 1 >= self.round {
            why.push("index sent work calls this round".into());
        }
        let busy_msgs: BTreeSet<&'static str> = self
            .queue
            .iter()
            .filter_map(|(_, _, m)| match m {
                Msg::Call(c) if !matches!(c.request, Request::Stats(_)) => Some(c.request.method()),
                Msg::Ingress { .. } | Msg::Query { .. } | Msg::ToClient { .. } => Some("client"),
                _ => None,
            })
            .collect();
        if !busy_msgs.is_empty() {
            why.push(format!("in flight: {busy_msgs:?}"));
        }
        let purging: u64 = self
            .partitions()
            .map(|(_, p)| p.store().totals().purging_items)
            .sum();
        if purging > 0 {
            why.push(format!("{purging} item(s) being purged"));
        }
        why.join(", ")
    }

    fn lifecycle(&mut self) {
        let round = self.round;
        for c in self.canisters.values_mut() {
            if c.stopped_until.is_some_and(|r| r <= round) {
                c.stopped_until = None;
            }
        }
        // Always draw the same values, so knob settings never shift later decisions.
        let stop = self.rng.chance(self.faults.stop);
        let stop_pick = self.rng.u64();
        let stop_for = self.rng.range(1, self.faults.stop_rounds_max.max(1));
        let upgrade = self.rng.chance(self.faults.upgrade);
        let upgrade_pick = self.rng.u64();
        if stop {
            let ids: Vec<Principal> = self.canisters.keys().copied().collect();
            let id = ids[(stop_pick % ids.len() as u64) as usize];
            let c = self.canisters.get_mut(&id).expect("listed");
            if !c.is_stopped() {
                c.stopped_until = Some(round + stop_for);
                self.say(|| format!("stop {id} for {stop_for} rounds"));
                self.stats.faults.stops += 1;
                self.trace(&[0x5709, principal_word(&id)]);
            }
        }
        if upgrade {
            let ids: Vec<Principal> = self
                .canisters
                .iter()
                .filter(|(_, c)| !c.is_empty())
                .map(|(id, _)| *id)
                .collect();
            let id = ids[(upgrade_pick % ids.len() as u64) as usize];
            self.upgrade(id);
        }
    }

    /// Upgrades one canister: drops its heap and re-opens its logic from stable memory.
    /// Client calls awaiting the index get an uncertain reject (their call contexts are gone).
    pub fn upgrade(&mut self, id: Principal) {
        let Some(c) = self.canisters.get_mut(&id) else {
            return;
        };
        self.stats.faults.upgrades += 1;
        let r = guard(|| c.upgrade());
        self.say(|| format!("upgrade {id}"));
        self.trace(&[0x0b6a, principal_word(&id)]);
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.violation(
                    ViolationKind::UnexpectedReply,
                    format!("canister {id} failed to re-open after an upgrade: {e}"),
                );
                self.halted = true;
                return;
            }
            Err(p) => return self.panicked("re-opening after an upgrade", p),
        }
        if id == self.index_id {
            let waiting = std::mem::take(&mut self.awaiting);
            for (_, a) in waiting {
                let e = TransportError::new(
                    RejectCode::SysUnknown,
                    "index upgraded while the call was open",
                );
                self.answer(a.from, Err(e));
            }
        }
    }

    /// Stops a canister for `rounds` rounds (calls, ingress and queries are rejected).
    pub fn stop(&mut self, id: Principal, rounds: u64) {
        if let Some(c) = self.canisters.get_mut(&id) {
            c.stopped_until = Some(self.round + rounds.max(1));
        }
    }

    fn timers(&mut self) {
        let round = self.round;
        if round.is_multiple_of(self.cfg.tick_every.max(1)) {
            let env = self.self_env();
            let idx = self
                .canisters
                .get_mut(&self.index_id)
                .expect("index exists");
            if !idx.is_stopped() && idx.charge(EXEC_BASE) {
                let index = idx.index_mut().expect("index logic");
                match guard(|| index.tick(&env)) {
                    Ok(calls) => {
                        for c in calls {
                            self.send_call(c);
                        }
                    }
                    Err(p) => return self.panicked("index tick", p),
                }
            }
        }
        if round.is_multiple_of(self.cfg.housekeep_every.max(1)) {
            let ids: Vec<Principal> = self
                .canisters
                .iter()
                .filter(|(_, c)| c.partition().is_some() && !c.is_stopped())
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                let c = self.canisters.get_mut(&id).expect("listed");
                if !c.charge(EXEC_BASE) {
                    continue;
                }
                let p = c.partition_mut().expect("listed as partition");
                let r = guard(|| {
                    for _ in 0..HOUSEKEEP_BATCHES {
                        if p.housekeep(PURGE_BATCH) == 0 {
                            break;
                        }
                    }
                });
                if let Err(e) = r {
                    return self.panicked("partition housekeep", e);
                }
            }
        }
    }

    // ---- delivery -------------------------------------------------------------------------

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

    fn deliver(&mut self, msg: Msg) {
        self.say(|| format!("deliver {msg:?}"));
        match msg {
            Msg::Ingress {
                from,
                caller,
                to,
                method,
                arg,
            } => {
                self.trace(&[1, origin_word(from), principal_word(&to)]);
                self.deliver_ingress(from, caller, to, &method, &arg)
            }
            Msg::Query {
                from,
                caller,
                to,
                method,
                arg,
            } => {
                self.trace(&[2, origin_word(from), principal_word(&to)]);
                self.deliver_query(from, caller, to, &method, &arg)
            }
            Msg::ToClient { to, reply } => {
                self.trace(&[3, origin_word(to)]);
                match to {
                    Origin::Client(i) => self.client_reply(i, reply),
                    Origin::External(t) => {
                        self.external.insert(t, reply);
                    }
                }
            }
            Msg::Call(call) => {
                self.trace(&[4, call.id, principal_word(&call.target)]);
                self.deliver_call(call)
            }
            Msg::Reply { call_id, result } => {
                self.trace(&[5, call_id, result.is_ok() as u64]);
                self.deliver_reply(call_id, result)
            }
        }
    }

    fn deliver_ingress(
        &mut self,
        from: Origin,
        caller: Principal,
        to: Principal,
        method: &str,
        arg: &[u8],
    ) {
        let fate = self.faults.decide(&mut self.rng, true);
        let round = self.round;
        let reject = |code, message: &str| Err(TransportError::new(code, message));
        let Some(c) = self.canisters.get_mut(&to) else {
            return self.answer(
                from,
                reject(RejectCode::DestinationInvalid, "no such canister"),
            );
        };
        if c.is_stopped() {
            self.stats.faults.stopped_rejects += 1;
            return self.answer(from, reject(RejectCode::CanisterError, "canister stopped"));
        }
        if c.is_empty() {
            return self.answer(
                from,
                reject(RejectCode::DestinationInvalid, "canister has no module"),
            );
        }
        let fee = INGRESS_BASE + INGRESS_PER_BYTE * arg.len() as u128 + EXEC_BASE;
        if !c.charge(fee) {
            return self.answer(
                from,
                reject(RejectCode::SysTransient, "canister out of cycles"),
            );
        }
        self.stats.faults.record(true, fate);
        match fate {
            Fate::RejectBefore => {
                return self.answer(from, reject(RejectCode::SysTransient, "injected reject"))
            }
            Fate::Trap => {
                return self.answer(from, reject(RejectCode::CanisterError, "injected trap"))
            }
            Fate::Deliver | Fate::ReplyLost => {}
        }
        let lost = fate == Fate::ReplyLost;
        let env = Env {
            caller,
            now: round * ROUND_NS,
            self_id: self.index_id,
        };
        let stable_memory_bytes = c.memory_bytes();
        let calls_before = self.stats.calls_sent;
        let role = if c.partition().is_some() {
            c.note_request(round);
            Role::Partition
        } else {
            Role::Index
        };
        let result = match &mut c.logic {
            Logic::Index(index) => {
                match guard(|| flotilla_index::dispatch::update(index, &env, method, arg)) {
                    Err(p) => return self.panicked(&format!("index {method}"), p),
                    Ok(Err(e)) => Err(e),
                    Ok(Ok(Outcome::Reply { reply, calls })) => {
                        for call in calls {
                            self.send_call(call);
                        }
                        Ok(reply)
                    }
                    Ok(Ok(Outcome::Await { call, pending })) => {
                        let a = Awaiting {
                            from,
                            pending,
                            lost,
                        };
                        self.awaiting.insert(call.id, a);
                        self.send_call(call);
                        let calls = self.stats.calls_sent - calls_before;
                        let e = self.executed(from, caller, to, role, method, calls);
                        return self.requests.record(e, Answered::Waiting);
                    }
                }
            }
            Logic::Partition(p) => {
                let ctx = Ctx {
                    caller,
                    stable_memory_bytes,
                };
                match guard(|| flotilla_partition::dispatch::update(p, &ctx, method, arg)) {
                    Err(e) => return self.panicked(&format!("partition {method}"), e),
                    Ok(r) => {
                        self.stats.partition_writes += 1;
                        self.stats.calls_by_partition_writes +=
                            self.stats.calls_sent - calls_before;
                        r
                    }
                }
            }
            Logic::Empty => unreachable!("checked above"),
        };
        let reply = match result {
            Ok(bytes) => Ok(bytes),
            Err(e) => {
                self.dispatch_refused(from, &e);
                Err(dispatch_reject(e))
            }
        };
        let calls = self.stats.calls_sent - calls_before;
        self.log_request(
            from,
            caller,
            to,
            role,
            method,
            MethodKind::Update,
            calls,
            &reply,
        );
        if lost {
            return self.answer(from, reject(RejectCode::SysUnknown, "injected lost reply"));
        }
        self.answer(from, reply);
    }

    /// A simulated user never sends a call the canister cannot dispatch.
    fn dispatch_refused(&mut self, from: Origin, e: &DispatchError) {
        if let Origin::Client(i) = from {
            self.violation(
                ViolationKind::UnexpectedReply,
                format!("client {i}'s call was not dispatched: {e}"),
            );
        }
    }

    fn deliver_query(
        &mut self,
        from: Origin,
        caller: Principal,
        to: Principal,
        method: &str,
        arg: &[u8],
    ) {
        let round = self.round;
        let reject = |code, message: &str| Err(TransportError::new(code, message));
        let Some(c) = self.canisters.get_mut(&to) else {
            return self.answer(
                from,
                reject(RejectCode::DestinationInvalid, "no such canister"),
            );
        };
        if c.is_stopped() {
            self.stats.faults.stopped_queries += 1;
            return self.answer(from, reject(RejectCode::CanisterError, "canister stopped"));
        }
        let env = Env {
            caller,
            now: round * ROUND_NS,
            self_id: self.index_id,
        };
        let stable_memory_bytes = c.memory_bytes();
        let calls_before = self.stats.calls_sent;
        let role = if c.partition().is_some() {
            Role::Partition
        } else {
            Role::Index
        };
        let result = match &c.logic {
            Logic::Index(i) => {
                match guard(|| flotilla_index::dispatch::query(i, &env, method, arg)) {
                    Err(p) => return self.panicked(&format!("index {method}"), p),
                    Ok(r) => r,
                }
            }
            Logic::Partition(p) => {
                let ctx = Ctx {
                    caller,
                    stable_memory_bytes,
                };
                match guard(|| flotilla_partition::dispatch::query(p, &ctx, method, arg)) {
                    Err(e) => return self.panicked(&format!("partition {method}"), e),
                    Ok(r) => {
                        c.note_request(round);
                        self.stats.partition_reads += 1;
                        self.stats.calls_by_partition_reads += self.stats.calls_sent - calls_before;
                        r
                    }
                }
            }
            Logic::Empty => {
                return self.answer(
                    from,
                    reject(RejectCode::DestinationInvalid, "canister has no module"),
                )
            }
        };
        let reply = match result {
            Ok(bytes) => Ok(bytes),
            Err(e) => {
                self.dispatch_refused(from, &e);
                Err(dispatch_reject(e))
            }
        };
        let calls = self.stats.calls_sent - calls_before;
        self.log_request(
            from,
            caller,
            to,
            role,
            method,
            MethodKind::Query,
            calls,
            &reply,
        );
        self.answer(from, reply);
    }

    fn executed<'a>(
        &self,
        from: Origin,
        caller: Principal,
        canister: Principal,
        role: Role,
        method: &'a str,
        calls: u64,
    ) -> Executed<'a> {
        Executed {
            round: self.round,
            from: match from {
                Origin::Client(i) => Requester::User(i),
                Origin::External(_) => Requester::External(caller),
            },
            canister,
            role,
            method,
            kind: MethodKind::Update,
            calls,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn log_request(
        &mut self,
        from: Origin,
        caller: Principal,
        canister: Principal,
        role: Role,
        method: &str,
        kind: MethodKind,
        calls: u64,
        reply: &Result<Vec<u8>, TransportError>,
    ) {
        let e = Executed {
            kind,
            ..self.executed(from, caller, canister, role, method, calls)
        };
        match reply {
            Ok(bytes) => self.requests.record(e, Answered::Reply(bytes)),
            Err(t) => self.requests.record(e, Answered::Reject(&t.message)),
        }
    }

    fn deliver_call(&mut self, call: Call) {
        let fate = self.faults.decide(&mut self.rng, false);
        let result = if call.target == Principal::management_canister() {
            self.exec_management(&call, fate)
        } else {
            self.exec_partition_call(&call, fate)
        };
        if self.halted {
            return;
        }
        self.say(|| format!("  call {} {} → {result:?}", call.id, call.request.method()));
        if !matches!(call.request, Request::Stats(_)) {
            let outcome = match &result {
                Ok(r) => {
                    let s = format!("{r:?}");
                    s.chars().take(160).collect::<String>()
                }
                Err(e) => format!("{e:?}"),
            };
            self.call_log.push_back(format!(
                "round {} call {} {} → {}: {outcome}",
                self.round,
                call.id,
                call.request.method(),
                call.target
            ));
            if self.call_log.len() > CALL_LOG {
                self.call_log.pop_front();
            }
        }
        let at = self.round + self.call_latency();
        self.queue.push(
            at,
            Msg::Reply {
                call_id: call.id,
                result,
            },
        );
    }

    fn exec_partition_call(&mut self, call: &Call, fate: Fate) -> CallResult {
        let reject = |certain: bool, message: &str| {
            Err(Reject {
                message: message.to_string(),
                certain,
            })
        };
        let index = self.index_id;
        let Some(c) = self.canisters.get_mut(&call.target) else {
            return reject(true, "no such canister");
        };
        if c.is_stopped() {
            self.stats.faults.stopped_rejects += 1;
            return reject(true, "canister stopped");
        }
        if c.partition().is_none() {
            return reject(true, "canister has no partition module");
        }
        if !c.charge(EXEC_BASE) {
            return reject(true, "canister out of cycles");
        }
        self.stats.faults.record(false, fate);
        match fate {
            Fate::RejectBefore => return reject(true, "injected reject"),
            Fate::Trap => return reject(false, "injected trap"),
            Fate::Deliver | Fate::ReplyLost => {}
        }
        let ctx = Ctx {
            caller: index,
            stable_memory_bytes: c.memory_bytes(),
        };
        let p = c.partition_mut().expect("checked above");
        // The bytes the canister glue sends, through the partition's own dispatcher, and
        // the reply decoded as the glue decodes it.
        let method = call.request.method();
        let arg = call.request.encode(sender(index));
        let reply = match guard(|| flotilla_partition::dispatch::update(p, &ctx, method, &arg)) {
            Err(e) => {
                self.panicked(&format!("partition {method}"), e);
                return reject(false, "trapped");
            }
            Ok(Err(e)) => {
                self.violation(
                    ViolationKind::UnexpectedReply,
                    format!(
                        "the index's {method} call to {} was not dispatched: {e}",
                        call.target
                    ),
                );
                return reject(true, "not dispatched");
            }
            Ok(Ok(r)) => r,
        };
        let bytes = reply.len() as u64;
        let response = match call.request.decode_reply(&reply) {
            Ok(r) => r,
            Err(e) => {
                self.violation(
                    ViolationKind::UnexpectedReply,
                    format!(
                        "the reply to {method} from {} does not decode: {e}",
                        call.target
                    ),
                );
                return reject(false, "undecodable reply");
            }
        };
        self.observe(call, &response);
        self.stats.max_message_bytes = self.stats.max_message_bytes.max(bytes);
        if bytes > MAX_MESSAGE_BYTES as u64 {
            self.violation(
                ViolationKind::MessageTooLarge,
                format!(
                    "{} reply from {} is {bytes} bytes (limit {MAX_MESSAGE_BYTES})",
                    call.request.method(),
                    call.target
                ),
            );
        }
        let mut response = response;
        match &mut response {
            Response::Exported(Ok(_)) => {
                self.stats.max_chunk_message_bytes = self.stats.max_chunk_message_bytes.max(bytes);
            }
            Response::DeltaExported(Ok(r)) => {
                self.stats.max_chunk_message_bytes = self.stats.max_chunk_message_bytes.max(bytes);
                if self.cfg.bugs.drop_delta_puts {
                    r.chunk.puts.clear();
                }
            }
            _ => {}
        }
        if fate == Fate::ReplyLost {
            return reject(false, "injected lost reply");
        }
        Ok(response)
    }

    /// Records move traffic as it executes.
    fn observe(&mut self, call: &Call, response: &Response) {
        let at = |subdb: SubDbId| InnerKey {
            partition: call.target,
            subdb,
        };
        match (&call.request, response) {
            (Request::BeginImport(_), Response::ImportBegun(Ok(id))) => {
                self.observed.imports.insert(at(*id));
            }
            (Request::ImportChunk(a), Response::Imported(Ok(()))) if a.finish => {
                self.observed.finished_imports.insert(at(a.subdb));
            }
            (Request::Release(a), Response::Released(Ok(()))) => {
                self.observed.released.insert(at(a.subdb));
            }
            _ => {}
        }
    }

    fn exec_management(&mut self, call: &Call, fate: Fate) -> CallResult {
        let reject = |certain: bool, message: String| Err(Reject { message, certain });
        self.stats.faults.record(false, fate);
        match fate {
            Fate::RejectBefore => return reject(true, "injected reject".into()),
            Fate::Trap => return reject(false, "injected trap".into()),
            Fate::Deliver | Fate::ReplyLost => {}
        }
        let result = match &call.request {
            Request::CreateCanister { cycles } => {
                let paid = self
                    .canisters
                    .get_mut(&self.index_id)
                    .is_some_and(|c| c.charge(cycles + CREATION_FEE));
                if paid {
                    let id = canister_id(self.next_canister);
                    self.next_canister += 1;
                    self.canisters
                        .insert(id, Canister::new(id, *cycles, self.round));
                    self.trace(&[0xc4ea, principal_word(&id)]);
                    self.say(|| format!("created canister {id}"));
                    Ok(Response::CanisterCreated(id))
                } else {
                    reject(true, "the index cannot pay for a new canister".into())
                }
            }
            Request::InstallCode {
                canister,
                mode,
                arg,
                ..
            } => self.install(*canister, *mode, arg),
            Request::UploadChunk { canister, chunk } => match self.canisters.get_mut(canister) {
                Some(c) => {
                    let hash = Sha256::digest(chunk).to_vec();
                    c.chunk_store.insert(hash.clone(), chunk.to_vec());
                    Ok(Response::ChunkUploaded {
                        hash: ByteBuf::from(hash),
                    })
                }
                None => reject(true, format!("no canister {canister}")),
            },
            Request::InstallChunkedCode {
                canister,
                mode,
                chunk_hashes,
                wasm_sha256,
                arg,
            } => {
                let assembled = match self.canisters.get(canister) {
                    None => Err(format!("no canister {canister}")),
                    Some(c) => chunk_hashes
                        .iter()
                        .map(|h| {
                            c.chunk_store
                                .get(h.as_slice())
                                .ok_or_else(|| "a chunk hash is not in the chunk store".to_string())
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map(|parts| {
                            let mut module =
                                Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
                            for p in parts {
                                module.extend_from_slice(p);
                            }
                            module
                        }),
                };
                match assembled {
                    Err(e) => reject(true, e),
                    Ok(module) if Sha256::digest(&module).as_slice() != wasm_sha256.as_slice() => {
                        reject(true, "wasm_module_hash does not match the chunks".into())
                    }
                    Ok(_) => self.install(*canister, *mode, arg),
                }
            }
            other => reject(
                true,
                format!("the management canister has no method {}", other.method()),
            ),
        };
        if fate == Fate::ReplyLost {
            return reject(false, "injected lost reply".into());
        }
        result
    }

    /// `install_code` of the partition module: install into an empty canister, or upgrade.
    fn install(&mut self, canister: Principal, mode: InstallMode, arg: &ByteBuf) -> CallResult {
        let reject = |message: String| {
            Err(Reject {
                message,
                certain: true,
            })
        };
        let init: PartitionInit = match candid::decode_one(arg) {
            Ok(i) => i,
            Err(e) => return reject(format!("install argument does not decode: {e}")),
        };
        let Some(c) = self.canisters.get_mut(&canister) else {
            return reject(format!("no canister {canister}"));
        };
        if mode == InstallMode::Reinstall {
            c.wipe();
        }
        match mode {
            InstallMode::Install | InstallMode::Reinstall => {
                if !c.is_empty() {
                    return reject(format!(
                        "canister {canister} is not empty; install mode needs an empty canister"
                    ));
                }
                let r = guard(|| Partition::install(c.memories(), &init, StoreConfig::default()));
                match r {
                    Err(p) => {
                        self.panicked("partition install", p);
                        reject("trapped".into())
                    }
                    Ok(Err(e)) => reject(format!("partition install trapped: {e}")),
                    Ok(Ok(p)) => {
                        c.logic = Logic::Partition(Box::new(p));
                        Ok(Response::Installed)
                    }
                }
            }
            InstallMode::Upgrade => match c.upgrade() {
                Ok(()) => Ok(Response::Installed),
                Err(e) => reject(format!("upgrade failed: {e}")),
            },
        }
    }

    fn deliver_reply(&mut self, call_id: CallId, result: CallResult) {
        let env = self.self_env();
        let idx = self
            .canisters
            .get_mut(&self.index_id)
            .expect("index exists");
        // Reply callbacks are paid for by the caller's reservation; never refused.
        idx.cycles_spent += EXEC_BASE;
        idx.cycles = idx.cycles.saturating_sub(EXEC_BASE);
        let index = idx.index_mut().expect("index logic");
        let reaction = match guard(|| index.on_reply(&env, call_id, result)) {
            Ok(r) => r,
            Err(p) => return self.panicked("index on_reply", p),
        };
        for c in reaction.calls {
            self.send_call(c);
        }
        if let Some(a) = self.awaiting.remove(&call_id) {
            // As the canister glue does: the reply the index finished, or `InProgress`.
            let reply = if a.lost {
                Err(TransportError::new(
                    RejectCode::SysUnknown,
                    "injected lost reply",
                ))
            } else {
                Ok(a.pending.reply(reaction.finished))
            };
            self.answer(a.from, reply);
        }
    }

    // ---- report and snapshot --------------------------------------------------------------

    pub fn report(&self) -> Report {
        Report {
            seed: self.cfg.seed,
            config: self.cfg.clone(),
            ops: self.stats.ops_completed,
            put_bytes: self.stats.put_bytes,
            rounds: self.round,
            messages: self.stats.messages,
            moves: self.observed.released.len() as u64,
            imports_finished: self.observed.finished_imports.len() as u64,
            faults: self.stats.faults,
            chunk_messages: self.stats.chunk_messages,
            chunk_bytes: self.stats.chunk_bytes,
            max_chunk_message_bytes: self.stats.max_chunk_message_bytes,
            max_message_bytes: self.stats.max_message_bytes,
            write_pause_rounds: self.stats.write_pause_rounds,
            longest_write_pause: self.stats.longest_write_pause,
            partition_reads: self.stats.partition_reads,
            partition_writes: self.stats.partition_writes,
            calls_by_partition_reads: self.stats.calls_by_partition_reads,
            calls_by_partition_writes: self.stats.calls_by_partition_writes,
            read_latency: percentiles(&self.stats.read_latencies),
            write_latency: percentiles(&self.stats.write_latencies),
            failed_reads: self.stats.failed_reads,
            failed_read_samples: self.stats.failed_read_samples.clone(),
            partitions: self.partitions().count() as u64,
            subdbs_created: self.stats.subdbs_created,
            cycles_spent: self.canisters.values().map(|c| c.cycles_spent).sum(),
            memory_bytes: self.canisters.values().map(|c| c.memory_bytes()).sum(),
            trace_hash: self.trace,
            violations: self.violations.clone(),
        }
    }

    /// What the dashboard shows: the index, every partition, moves in progress.
    pub fn snapshot(&self) -> Snapshot {
        let index = self.index();
        let istats = index.stats();
        let states: BTreeMap<Principal, PartitionState> =
            istats.partitions.iter().map(|p| (p.id, p.state)).collect();
        let partitions = self
            .canisters
            .iter()
            .filter(|(id, _)| **id != self.index_id)
            .map(|(id, c)| {
                let (totals, subdbs) = match c.partition() {
                    Some(p) => (p.store().totals(), c.live_subdbs()),
                    None => (Default::default(), vec![]),
                };
                PartitionSnapshot {
                    id: *id,
                    installed: c.partition().is_some(),
                    state: states.get(id).copied(),
                    stopped: c.is_stopped(),
                    bytes: totals.bytes,
                    items: totals.items,
                    purging_bytes: totals.purging_bytes,
                    live_subdbs: subdbs.len() as u64,
                    frozen_subdbs: subdbs.iter().filter(|s| s.2).count() as u64,
                    largest_subdb_bytes: subdbs.iter().map(|s| s.1).max().unwrap_or(0),
                    memory_bytes: c.memory_bytes(),
                    cycles: c.cycles,
                    recent_requests: c.recent_requests(self.round),
                    requests: c.requests,
                }
            })
            .collect();
        let open_imports = self
            .observed
            .imports
            .iter()
            .filter(|k| {
                self.canisters
                    .get(&k.partition)
                    .and_then(|c| c.partition())
                    .is_some_and(|p| p.store().status(k.subdb) == SubDbStatus::Importing)
            })
            .copied()
            .collect();
        let idx = &self.canisters[&self.index_id];
        Snapshot {
            round: self.round,
            phase: self.phase,
            index: IndexSnapshot {
                id: self.index_id,
                stopped: idx.is_stopped(),
                cycles: idx.cycles,
                memory_bytes: idx.memory_bytes(),
                subdbs: istats.subdbs,
                routing_version: istats.routing_version,
                partitions_being_created: istats.partitions_being_created,
                move_cap_bytes: istats.move_cap_bytes,
            },
            partitions,
            moves: index.moves(),
            open_imports,
            clients: self.clients.len(),
            ops_completed: self.stats.ops_completed,
            messages_in_flight: self.queue.len(),
            moves_completed: self.observed.released.len() as u64,
            violations: self.violations.len(),
            partition_reads: self.stats.partition_reads,
            partition_writes: self.stats.partition_writes,
            calls_by_partition_reads: self.stats.calls_by_partition_reads,
            calls_by_partition_writes: self.stats.calls_by_partition_writes,
        }
    }

    /// Every directory route (paged through the index's routing query).
    pub(crate) fn all_routes(&self) -> Vec<(String, InnerKey)> {
        let index = self.index();
        let mut out = vec![];
        let mut req = RoutesRequest::default();
        loop {
            let page = index.routes(&req);
            out.extend(page.routes.into_iter().map(|r| (r.outer_key, r.inner)));
            match page.next {
                Some(n) => req.start_after = Some(n),
                None => return out,
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub round: u64,
    pub phase: Phase,
    pub index: IndexSnapshot,
    pub partitions: Vec<PartitionSnapshot>,
    /// Moves in progress, as the index reports them.
    pub moves: Vec<MoveInfo>,
    /// Invisible SubDBs being imported (target partition and local id).
    pub open_imports: Vec<InnerKey>,
    pub clients: usize,
    pub ops_completed: u64,
    pub messages_in_flight: usize,
    pub moves_completed: u64,
    pub violations: usize,
    /// Client reads and writes executed at partitions, and the inter-canister calls their
    /// executions made.
    pub partition_reads: u64,
    pub partition_writes: u64,
    pub calls_by_partition_reads: u64,
    pub calls_by_partition_writes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexSnapshot {
    pub id: Principal,
    pub stopped: bool,
    pub cycles: u128,
    pub memory_bytes: u64,
    pub subdbs: u64,
    pub routing_version: u64,
    pub partitions_being_created: u32,
    pub move_cap_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionSnapshot {
    pub id: Principal,
    /// False while the index is still creating it.
    pub installed: bool,
    /// The index's view (`None` until the index registers it).
    pub state: Option<PartitionState>,
    pub stopped: bool,
    pub bytes: u64,
    pub items: u64,
    pub purging_bytes: u64,
    pub live_subdbs: u64,
    pub frozen_subdbs: u64,
    pub largest_subdb_bytes: u64,
    pub memory_bytes: u64,
    pub cycles: u128,
    /// Client requests routed here in the last `RECENT_ROUNDS` rounds.
    pub recent_requests: u64,
    pub requests: u64,
}
