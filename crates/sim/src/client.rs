//! Simulated users: the client crate's own core (`flotilla_client::core`) driven one message
//! at a time.
//!
//! A user has a principal, a route cache, and one operation in flight at a time, run by a
//! [`Machine`] from `flotilla-client`: the same state machine the Rust client runs over
//! ic-agent or ic-cdk, so the swarm tests the retry and redirect policy users ship. The world
//! delivers each call it asks for as Candid bytes, feeds the reply (or reject) back, and turns
//! its backoffs into rounds. Mutations carry a random 16-byte op id; a retry keeps it.
//!
//! Each user owns the SubDBs it creates (unique outer keys, no other readers or writers), so
//! the model of their contents is exact, and every final answer is checked against it on
//! arrival (checkers 1 and 2).

use crate::hazards::BIG_VALUE_MIN_BYTES;
use crate::model::{Expect, ValueRef};
use crate::report::{ik, ViolationKind};
use crate::world::{Origin, World, ROUND_NS};
use candid::Principal;
use flotilla_client::core::{Action, CallKind, Error, Machine, Policy, RouteCache};
use flotilla_client::ops::{
    CreateSubDb, Delete, DropSubDb, Get, Operation, Put, ScanPageOp, SetAccess,
};
use flotilla_client::TransportError;
use flotilla_types::index::{CreateError, CreateRequest, DeleteRequest, DeleteSubDbRequestError};
use flotilla_types::limits::MAX_VALUE_BYTES;
use flotilla_types::partition::SetAccessError;
use flotilla_types::{OpId, PutError, ScanArgs};
use serde_bytes::ByteBuf;
use std::collections::BTreeMap;
use std::time::Duration;

pub(crate) struct Client {
    pub id: usize,
    pub principal: Principal,
    pub routes: RouteCache,
    /// Live SubDBs this client created, in creation order.
    pub owned: Vec<String>,
    pub next_name: u32,
    pub op: Option<Op>,
    /// Acts no earlier than this round (backoff).
    pub wake_at: u64,
    /// A request is on its way; its answer has not arrived.
    pub waiting: bool,
    pub completed: u64,
}

impl Client {
    pub fn new(id: usize, principal: Principal) -> Client {
        Client {
            id,
            principal,
            routes: RouteCache::default(),
            owned: vec![],
            next_name: 0,
            op: None,
            wake_at: 0,
            waiting: false,
            completed: 0,
        }
    }
}

pub(crate) struct Op {
    /// What the operation means for the model.
    pub kind: OpKind,
    /// The client core running it.
    pub machine: AnyMachine,
    pub started: u64,
    /// First round this write met a paused SubDB, if it did.
    pub paused_since: Option<u64>,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} since round {} ({} attempts)",
            self.kind,
            self.started,
            self.machine.attempts()
        )
    }
}

#[derive(Debug)]
pub(crate) enum OpKind {
    CreateSubDb {
        outer: String,
    },
    DeleteSubDb {
        outer: String,
    },
    Put {
        outer: String,
        key: Vec<u8>,
        vref: ValueRef,
    },
    Delete {
        outer: String,
        key: Vec<u8>,
    },
    Get {
        outer: String,
        key: Vec<u8>,
    },
    /// A full paginated scan; `args.cursor` is where the next page starts.
    Scan {
        outer: String,
        args: ScanArgs,
        got: Vec<(Vec<u8>, ValueRef)>,
        pages: u32,
    },
    /// The owner replaces the reader list (writers stay empty).
    SetAccess {
        outer: String,
        readers: Vec<Principal>,
        /// The SubDB was moving when the change started.
        during_move: bool,
    },
}

impl OpKind {
    pub fn outer(&self) -> &str {
        match self {
            OpKind::CreateSubDb { outer }
            | OpKind::DeleteSubDb { outer }
            | OpKind::Put { outer, .. }
            | OpKind::Delete { outer, .. }
            | OpKind::Get { outer, .. }
            | OpKind::Scan { outer, .. }
            | OpKind::SetAccess { outer, .. } => outer,
        }
    }

    pub fn is_read(&self) -> bool {
        matches!(self, OpKind::Get { .. } | OpKind::Scan { .. })
    }

    fn tag(&self) -> u64 {
        match self {
            OpKind::CreateSubDb { .. } => 1,
            OpKind::DeleteSubDb { .. } => 2,
            OpKind::Put { .. } => 3,
            OpKind::Delete { .. } => 4,
            OpKind::Get { .. } => 5,
            OpKind::Scan { .. } => 6,
            OpKind::SetAccess { .. } => 7,
        }
    }

    /// The write this op may have applied: (outer, key, value it leaves) for puts and
    /// deletes.
    pub fn pending_write(&self) -> Option<(&str, &[u8], Option<ValueRef>)> {
        match self {
            OpKind::Put {
                outer, key, vref, ..
            } => Some((outer, key, Some(*vref))),
            OpKind::Delete { outer, key } => Some((outer, key, None)),
            _ => None,
        }
    }
}

/// The client core's machine of each operation kind.
pub(crate) enum AnyMachine {
    Create(Machine<CreateSubDb>),
    Drop(Machine<DropSubDb>),
    Put(Machine<Put>),
    Delete(Machine<Delete>),
    Get(Machine<Get>),
    Scan(Machine<ScanPageOp>),
    SetAccess(Machine<SetAccess>),
}

/// A final answer, typed by operation.
enum Outcome {
    Create(Result<flotilla_types::InnerKey, Error<CreateError>>),
    Drop(Result<(), Error<DeleteSubDbRequestError>>),
    Put(Result<flotilla_types::PutOutcome, Error<PutError>>),
    Delete(Result<bool, Error<flotilla_types::DeleteError>>),
    Get(Result<Option<ByteBuf>, Error<flotilla_types::GetError>>),
    Scan(Result<flotilla_types::ScanPage, Error<flotilla_types::ScanError>>),
    SetAccess(Result<(), Error<SetAccessError>>),
}

/// An action with its typed `Done` erased into [`Outcome`].
enum Step {
    Send(flotilla_client::Call),
    Wait(u32),
    Done(Outcome),
}

fn erase<T, E>(a: Action<T, E>, done: impl FnOnce(Result<T, Error<E>>) -> Outcome) -> Step {
    match a {
        Action::Send(c) => Step::Send(c),
        Action::Wait { attempt } => Step::Wait(attempt),
        Action::Done(r) => Step::Done(done(r)),
    }
}

macro_rules! each_machine {
    ($m:expr, $x:ident => $body:expr, $wrap:ident) => {
        match $m {
            AnyMachine::Create($x) => erase($body, Outcome::Create),
            AnyMachine::Drop($x) => erase($body, Outcome::Drop),
            AnyMachine::Put($x) => erase($body, Outcome::Put),
            AnyMachine::Delete($x) => erase($body, Outcome::Delete),
            AnyMachine::Get($x) => erase($body, Outcome::Get),
            AnyMachine::Scan($x) => erase($body, Outcome::Scan),
            AnyMachine::SetAccess($x) => erase($body, Outcome::SetAccess),
        }
    };
}

impl AnyMachine {
    fn resume(&mut self, cache: &RouteCache) -> Step {
        each_machine!(self, m => m.resume(cache), wrap)
    }

    fn on_reply(&mut self, cache: &mut RouteCache, r: Result<Vec<u8>, TransportError>) -> Step {
        each_machine!(self, m => m.on_reply(cache, r), wrap)
    }

    pub fn attempts(&self) -> u32 {
        match self {
            AnyMachine::Create(m) => m.attempts(),
            AnyMachine::Drop(m) => m.attempts(),
            AnyMachine::Put(m) => m.attempts(),
            AnyMachine::Delete(m) => m.attempts(),
            AnyMachine::Get(m) => m.attempts(),
            AnyMachine::Scan(m) => m.attempts(),
            AnyMachine::SetAccess(m) => m.attempts(),
        }
    }

    /// Whether the last transient answer was a write pause.
    fn paused(&self) -> bool {
        let paused = |t: Option<&flotilla_client::Transient>| matches!(t, Some(flotilla_client::Transient::Answer(a)) if a == &PutError::WritesPaused.to_string());
        match self {
            AnyMachine::Put(m) => paused(m.last_transient()),
            AnyMachine::Delete(m) => paused(m.last_transient()),
            _ => false,
        }
    }

    /// Planted bug: a retry with a new op id.
    fn set_op_id(&mut self, id: OpId) {
        match self {
            AnyMachine::Create(m) => m.op_mut().0.op_id = id,
            AnyMachine::Drop(m) => m.op_mut().0.op_id = id,
            AnyMachine::Put(m) => m.op_mut().op_id = id,
            AnyMachine::Delete(m) => m.op_mut().op_id = id,
            AnyMachine::Get(_) | AnyMachine::Scan(_) | AnyMachine::SetAccess(_) => {}
        }
    }
}

/// Principals an owner may list as readers: `GUESTS` of them, the last one anonymous (listing
/// it makes the SubDB readable by everyone).
pub(crate) const GUESTS: u32 = 4;

pub(crate) fn guest(g: u32) -> Principal {
    if g + 1 == GUESTS {
        Principal::anonymous()
    } else {
        Principal::self_authenticating(format!("flotilla-sim guest {g}"))
    }
}

/// Rounds a backoff takes (one round is one second).
fn rounds(d: Duration) -> u64 {
    (d.as_nanos() as u64).div_ceil(ROUND_NS).max(1)
}

impl World {
    fn new_op_id(&mut self) -> OpId {
        OpId::from(self.rng.bytes(16))
    }

    /// The client core's policy under this run's knobs: one-second base backoff (one round)
    /// growing to `max_backoff` rounds, and the attempt budgets of reads and writes.
    pub(crate) fn policy(&self, read: bool) -> Policy {
        Policy {
            max_attempts: if read {
                self.cfg.max_read_attempts
            } else {
                self.cfg.max_write_attempts
            }
            .max(1),
            max_redirects: 8,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(self.cfg.max_backoff.max(1)),
        }
    }

    fn random_key(&mut self) -> Vec<u8> {
        let len = self.rng.range(1, self.cfg.key_max_len.max(1) as u64);
        (0..len)
            .map(|_| b'a' + self.rng.below(self.cfg.key_letters.max(1) as u64) as u8)
            .collect()
    }

    fn machine<O: Operation>(&self, op: O, read: bool) -> Machine<O> {
        Machine::new(op, self.index_id, self.policy(read))
    }

    fn new_op(&mut self, i: usize) -> Op {
        let mix = self.cfg.op_mix;
        let owned = self.clients[i].owned.len();
        let weights = if owned == 0 {
            [1, 0, 0, 0, 0, 0, 0]
        } else {
            [
                mix.create_subdb,
                if owned >= 2 { mix.delete_subdb } else { 0 },
                mix.put,
                mix.delete,
                mix.get,
                mix.scan,
                self.hazards.set_access,
            ]
        };
        let choice = self.rng.weighted(&weights);
        let pick = self.rng.below(owned.max(1) as u64) as usize;
        let outer = self.clients[i].owned.get(pick).cloned().unwrap_or_default();
        let (kind, machine) = match choice {
            0 => {
                let c = &mut self.clients[i];
                let outer = format!("c{}/s{}", c.id, c.next_name);
                c.next_name += 1;
                let req = CreateRequest {
                    outer_key: outer.clone(),
                    op_id: self.new_op_id(),
                    hard_cap: None,
                    owner: None,
                    readers: vec![],
                    writers: vec![],
                };
                let m = AnyMachine::Create(self.machine(CreateSubDb(req), false));
                (OpKind::CreateSubDb { outer }, m)
            }
            1 => {
                let req = DeleteRequest {
                    outer_key: outer.clone(),
                    op_id: self.new_op_id(),
                };
                let m = AnyMachine::Drop(self.machine(DropSubDb(req), false));
                (OpKind::DeleteSubDb { outer }, m)
            }
            2 => {
                let key = self.random_key();
                let big = self.rng.chance(self.hazards.big_values);
                let big_len = self
                    .rng
                    .range(BIG_VALUE_MIN_BYTES as u64, MAX_VALUE_BYTES as u64);
                let len = self.rng.below(self.cfg.max_value_bytes as u64 + 1) as usize;
                let len = if big { big_len as usize } else { len };
                let value = self.rng.bytes(len);
                let vref = ValueRef::of(&value);
                let op = Put {
                    outer: outer.clone(),
                    key: ByteBuf::from(key.clone()),
                    value: ByteBuf::from(value),
                    op_id: self.new_op_id(),
                };
                let m = AnyMachine::Put(self.machine(op, false));
                (OpKind::Put { outer, key, vref }, m)
            }
            3 => {
                let key = self.random_key();
                let op = Delete {
                    outer: outer.clone(),
                    key: ByteBuf::from(key.clone()),
                    op_id: self.new_op_id(),
                };
                let m = AnyMachine::Delete(self.machine(op, false));
                (OpKind::Delete { outer, key }, m)
            }
            4 => {
                let key = self.random_key();
                let op = Get {
                    outer: outer.clone(),
                    key: ByteBuf::from(key.clone()),
                };
                let m = AnyMachine::Get(self.machine(op, true));
                (OpKind::Get { outer, key }, m)
            }
            6 => {
                // A change of readers, preferably of a SubDB that is moving right now.
                let moving: Vec<String> = self
                    .index()
                    .moves()
                    .into_iter()
                    .map(|m| m.outer_key)
                    .filter(|o| self.clients[i].owned.contains(o))
                    .collect();
                let during_move = !moving.is_empty();
                let outer = if during_move {
                    moving[pick % moving.len()].clone()
                } else {
                    outer
                };
                let mask = self.rng.below(1 << GUESTS);
                let readers: Vec<Principal> = (0..GUESTS)
                    .filter(|g| mask & (1 << g) != 0)
                    .map(guest)
                    .collect();
                let op = SetAccess {
                    outer: outer.clone(),
                    readers: readers.clone(),
                    writers: vec![],
                };
                let m = AnyMachine::SetAccess(self.machine(op, false));
                let kind = OpKind::SetAccess {
                    outer,
                    readers,
                    during_move,
                };
                (kind, m)
            }
            _ => {
                let mut start = self.rng.chance(0.3).then(|| self.random_key());
                let mut end = self.rng.chance(0.3).then(|| self.random_key());
                if let (Some(s), Some(e)) = (&start, &end) {
                    if s > e {
                        std::mem::swap(&mut start, &mut end);
                    }
                }
                let reverse = self.rng.chance(0.5);
                let limit_max = self.cfg.scan_limit_max.max(1) as u64;
                let limit = (!self.rng.chance(0.15)).then(|| self.rng.range(1, limit_max) as u32);
                let max_bytes = self
                    .rng
                    .chance(0.2)
                    .then(|| self.rng.range(1, 6_000) as u32);
                let args = ScanArgs {
                    start: start.map(ByteBuf::from),
                    end: end.map(ByteBuf::from),
                    reverse,
                    limit,
                    max_bytes,
                    cursor: None,
                };
                let op = ScanPageOp {
                    outer: outer.clone(),
                    args: args.clone(),
                };
                let m = AnyMachine::Scan(self.machine(op, true));
                let kind = OpKind::Scan {
                    outer,
                    args,
                    got: vec![],
                    pages: 0,
                };
                (kind, m)
            }
        };
        Op {
            kind,
            machine,
            started: self.round,
            paused_since: None,
        }
    }

    /// Lets client `i` start or resume its operation, if it is idle and past its backoff.
    pub(crate) fn client_act(&mut self, i: usize) {
        let c = &self.clients[i];
        if c.waiting || c.wake_at > self.round {
            return;
        }
        let mut op = match self.clients[i].op.take() {
            Some(op) => op,
            None => {
                if !self.may_start_op() {
                    return;
                }
                self.ops_started += 1;
                self.new_op(i)
            }
        };
        let step = op.machine.resume(&self.clients[i].routes);
        self.follow(i, op, step);
    }

    /// Handles the answer to client `i`'s request.
    pub(crate) fn client_reply(&mut self, i: usize, reply: Result<Vec<u8>, TransportError>) {
        self.clients[i].waiting = false;
        let Some(mut op) = self.clients[i].op.take() else {
            self.violation(
                ViolationKind::UnexpectedReply,
                format!("client {i} got an answer with no operation in flight: {reply:?}"),
            );
            return;
        };
        let step = op.machine.on_reply(&mut self.clients[i].routes, reply);
        self.trace(&[0xc1, i as u64, op.kind.tag(), op.machine.attempts() as u64]);
        if let Some(home) = self.clients[i].routes.get(op.kind.outer()) {
            let outer = op.kind.outer().to_string();
            if self.model.live(&outer).is_some() {
                self.model.note_home(&outer, home);
            }
        }
        self.follow(i, op, step);
    }

    /// Carries out what the core decided.
    fn follow(&mut self, i: usize, mut op: Op, step: Step) {
        match step {
            Step::Send(call) => {
                self.clients[i].waiting = true;
                let caller = self.clients[i].principal;
                let from = Origin::Client(i);
                match call.kind {
                    CallKind::Query => {
                        self.send_query(from, caller, call.canister, call.method, call.arg)
                    }
                    CallKind::Update => {
                        self.send_ingress(from, caller, call.canister, call.method, call.arg)
                    }
                }
                self.clients[i].op = Some(op);
            }
            Step::Wait(attempt) => {
                if op.machine.paused() {
                    self.note_pause();
                    op.paused_since.get_or_insert(self.round);
                }
                if self.cfg.bugs.fresh_op_id_on_retry {
                    let id = self.new_op_id();
                    op.machine.set_op_id(id);
                }
                let jitter = self.rng.u64();
                let wait = rounds(self.policy(op.kind.is_read()).backoff(attempt, jitter));
                self.clients[i].wake_at = self.round + wait;
                self.clients[i].op = Some(op);
            }
            Step::Done(outcome) => {
                if let Some(since) = op.paused_since {
                    self.stats.longest_write_pause = self
                        .stats
                        .longest_write_pause
                        .max(self.round.saturating_sub(since));
                }
                self.judge(i, op, outcome)
            }
        }
    }

    fn note_pause(&mut self) {
        if self.stats.last_pause_round != Some(self.round) {
            self.stats.last_pause_round = Some(self.round);
            self.stats.write_pause_rounds += 1;
        }
    }

    /// Counts a read that could not complete, keeping the first few reasons for the report.
    fn failed_read(&mut self, i: usize, kind: &OpKind, why: &str) {
        self.stats.failed_reads += 1;
        if self.stats.failed_read_samples.len() < 10 {
            self.stats.failed_read_samples.push(format!(
                "round {}: client {i} reading {:?}: {why}",
                self.round,
                kind.outer()
            ));
        }
    }

    fn complete(&mut self, i: usize, op: &Op) {
        self.clients[i].completed += 1;
        self.stats.ops_completed += 1;
        let latency = self.round.saturating_sub(op.started);
        if op.kind.is_read() {
            self.stats.read_latencies.push(latency);
        } else {
            self.stats.write_latencies.push(latency);
        }
    }

    /// An operation that ended without a usable answer: a failed read, or a write whose
    /// outcome is unknown (its key is left out of later checks).
    fn abandon(&mut self, i: usize, op: &Op, why: String) {
        if op.kind.is_read() && self.on_dead_partition(op) {
            // Its data was on the partition stopped for good: unavailable, as it should be.
            self.hz.counts.reads_failed_on_dead += 1;
        } else if op.kind.is_read() {
            self.failed_read(i, &op.kind, &why);
        } else if let Some((outer, key, _)) = op.kind.pending_write() {
            let (outer, key) = (outer.to_string(), key.to_vec());
            self.model.mark_uncertain(&outer, &key);
        } else if let OpKind::SetAccess { outer, readers, .. } = &op.kind {
            let (outer, readers) = (outer.clone(), readers.clone());
            self.model.maybe_readers(&outer, &readers);
        }
        self.complete(i, op);
    }

    /// A write the core gave up on: stuck (a violation), outcome unknown.
    fn stuck<E: std::fmt::Debug>(&mut self, i: usize, op: &Op, e: &Error<E>) {
        self.violation(
            ViolationKind::Stuck,
            format!(
                "client {i}: {:?} on {:?} unacknowledged since round {}: {e:?}",
                op.kind.tag(),
                op.kind.outer(),
                op.started,
            ),
        );
    }

    /// Decides what a final answer means, checking it against the model.
    fn judge(&mut self, i: usize, mut op: Op, outcome: Outcome) {
        let outer = op.kind.outer().to_string();
        macro_rules! unexpected {
            ($what:expr) => {{
                let what: String = $what;
                self.violation(
                    ViolationKind::UnexpectedReply,
                    format!("client {i} on {outer:?}: {what}"),
                );
                return self.abandon(i, &op, what);
            }};
        }
        macro_rules! gave_up {
            ($e:expr) => {{
                let e = $e;
                if op.kind.is_read() {
                    let why = format!("{e}");
                    return self.abandon(i, &op, why);
                }
                self.stuck(i, &op, &e);
                return self.abandon(i, &op, format!("{e}"));
            }};
        }
        match outcome {
            Outcome::Create(r) => match r {
                Ok(inner) => {
                    if self.model.subdbs.contains_key(&outer) {
                        unexpected!(format!("created twice (now at {})", ik(&inner)));
                    }
                    self.model.create(&outer, i, inner);
                    self.stats.subdbs_created += 1;
                    let c = &mut self.clients[i];
                    c.owned.push(outer.clone());
                    c.routes.insert(&outer, inner);
                }
                Err(Error::Refused(CreateError::OuterKeyTaken)) => {
                    self.violation(
                        ViolationKind::DoubleApply,
                        format!(
                            "client {i}: create_subdb of its own fresh name {outer:?} answered \
                             OuterKeyTaken: an earlier attempt applied and this one ran again"
                        ),
                    );
                }
                Err(Error::Refused(CreateError::IndexLowOnCycles { balance, needed })) => {
                    // Right only if the index really was short: its balance only falls
                    // between the refusal and now unless the operator topped it up since the
                    // op began, so a balance enough now was enough then.
                    let topped = self.operator_topped_at.is_some_and(|r| r >= op.started);
                    if !topped && self.index_cycles() >= needed {
                        unexpected!(format!(
                            "create_subdb refused IndexLowOnCycles (told {balance}, needs \
                             {needed}) but the index holds {}",
                            self.index_cycles()
                        ));
                    }
                    self.stats.creates_refused_low_cycles += 1;
                }
                Err(Error::Refused(CreateError::SubDbQuotaExceeded { max })) => {
                    // Right only if the client owns `max` already: it creates one at a time,
                    // and its creates are all acknowledged or stuck.
                    let owned = self.clients[i].owned.len() as u64;
                    if max != self.cfg.max_subdbs_per_owner || owned < max {
                        unexpected!(format!(
                            "create_subdb refused SubDbQuotaExceeded {{ max: {max} }} but the \
                             client owns {owned} (quota {})",
                            self.cfg.max_subdbs_per_owner
                        ));
                    }
                    self.stats.creates_refused_quota += 1;
                }
                Err(e @ Error::GaveUp { .. }) => gave_up!(e),
                Err(e) => unexpected!(format!("create_subdb: {e:?}")),
            },
            Outcome::Drop(r) => match r {
                Ok(()) => {
                    self.model.delete_subdb(&outer);
                    let c = &mut self.clients[i];
                    c.owned.retain(|o| *o != outer);
                    c.routes.remove(&outer);
                }
                Err(Error::Refused(DeleteSubDbRequestError::UnknownOuterKey)) => {
                    self.violation(
                        ViolationKind::DoubleApply,
                        format!(
                            "client {i}: delete_subdb of its live SubDB {outer:?} answered \
                             UnknownOuterKey: an earlier attempt applied and this one ran again"
                        ),
                    );
                    // Whatever happened, the SubDB is gone.
                    self.model.delete_subdb(&outer);
                    let c = &mut self.clients[i];
                    c.owned.retain(|o| *o != outer);
                    c.routes.remove(&outer);
                }
                Err(e @ Error::GaveUp { .. }) => gave_up!(e),
                Err(e) => unexpected!(format!("delete_subdb: {e:?}")),
            },
            Outcome::Put(r) => {
                let OpKind::Put { key, vref, .. } = &op.kind else {
                    unexpected!("put answer to another op".into());
                };
                let (key, vref) = (key.clone(), *vref);
                match r {
                    Ok(outcome) => {
                        if let Expect::Exactly(prev) = self.model.expect(&outer, &key, None) {
                            if outcome.replaced != prev.is_some() {
                                self.violation(
                                    ViolationKind::DoubleApply,
                                    format!(
                                        "client {i}: put {:?} on {outer:?} acknowledged \
                                         replaced={} but the key was {} before this op \
                                         (applied twice?)",
                                        String::from_utf8_lossy(&key),
                                        outcome.replaced,
                                        if prev.is_some() { "present" } else { "absent" }
                                    ),
                                );
                            }
                        }
                        if outcome.evicted != 0 {
                            self.violation(
                                ViolationKind::UnexpectedReply,
                                format!(
                                    "put evicted {} items from an uncapped SubDB",
                                    outcome.evicted
                                ),
                            );
                        }
                        let max = self.cfg.max_bytes_per_subdb;
                        if let Some((before, after)) =
                            self.model.bytes_around_put(&outer, &key, vref.len)
                        {
                            if after > max && after > before {
                                self.violation(
                                    ViolationKind::QuotaWrong,
                                    format!(
                                        "client {i}: put on {outer:?} acknowledged although it \
                                         took the SubDB from {before} to {after} bytes, past its \
                                         quota of {max}"
                                    ),
                                );
                            }
                        }
                        self.stats.put_bytes += (key.len() + vref.len as usize) as u64;
                        if vref.len as usize >= BIG_VALUE_MIN_BYTES {
                            self.hz.counts.big_puts += 1;
                        }
                        self.model.put(&outer, &key, vref);
                    }
                    Err(Error::Refused(PutError::QuotaExceeded { max_bytes })) => {
                        // Right only if the put would take the SubDB past the quota it was
                        // created with (moves keep it): the model knows its bytes exactly
                        // unless an abandoned write left a key uncertain.
                        let max = self.cfg.max_bytes_per_subdb;
                        let fits = self
                            .model
                            .bytes_around_put(&outer, &key, vref.len)
                            .filter(|&(before, after)| after <= max || after <= before);
                        if max_bytes != max || fits.is_some() {
                            self.violation(
                                ViolationKind::QuotaWrong,
                                format!(
                                    "client {i}: put on {outer:?} refused QuotaExceeded \
                                     {{ max_bytes: {max_bytes} }}, but the SubDB's quota is \
                                     {max} and the put takes it {fits:?} (before, after)"
                                ),
                            );
                        }
                        self.stats.puts_refused_quota += 1;
                    }
                    Err(e @ Error::GaveUp { .. }) => gave_up!(e),
                    Err(e) => unexpected!(format!("put: {e:?}")),
                }
            }
            Outcome::Delete(r) => {
                let OpKind::Delete { key, .. } = &op.kind else {
                    unexpected!("delete answer to another op".into());
                };
                let key = key.clone();
                match r {
                    Ok(existed) => {
                        if let Expect::Exactly(prev) = self.model.expect(&outer, &key, None) {
                            if existed != prev.is_some() {
                                self.violation(
                                    ViolationKind::DoubleApply,
                                    format!(
                                        "client {i}: delete {:?} on {outer:?} acknowledged \
                                         existed={existed} but the key was {} before this op \
                                         (applied twice?)",
                                        String::from_utf8_lossy(&key),
                                        if prev.is_some() { "present" } else { "absent" }
                                    ),
                                );
                            }
                        }
                        self.model.delete(&outer, &key);
                    }
                    Err(e @ Error::GaveUp { .. }) => gave_up!(e),
                    Err(e) => unexpected!(format!("delete: {e:?}")),
                }
            }
            Outcome::Get(r) => {
                let OpKind::Get { key, .. } = &op.kind else {
                    unexpected!("get answer to another op".into());
                };
                let key = key.clone();
                match r {
                    Ok(v) => {
                        let got = v.as_deref().map(|b| ValueRef::of(b));
                        let want = self.model.expect(&outer, &key, None);
                        if !want.admits(got) {
                            let key = String::from_utf8_lossy(&key).into_owned();
                            self.value_violation(&outer, &key, want, got, "get");
                        }
                    }
                    Err(e @ Error::GaveUp { .. }) => gave_up!(e),
                    Err(e) => unexpected!(format!("get: {e:?}")),
                }
            }
            Outcome::SetAccess(r) => {
                let OpKind::SetAccess {
                    readers,
                    during_move,
                    ..
                } = &op.kind
                else {
                    unexpected!("set_access answer to another op".into());
                };
                let (readers, during_move) = (readers.clone(), *during_move);
                match r {
                    Ok(()) => {
                        self.model.set_readers(&outer, &readers);
                        self.hz.counts.access_changes += 1;
                        if during_move {
                            self.hz.counts.access_changes_during_moves += 1;
                        }
                    }
                    Err(e @ Error::GaveUp { .. }) => gave_up!(e),
                    Err(e) => unexpected!(format!("set_access: {e:?}")),
                }
            }
            Outcome::Scan(r) => match r {
                Ok(page) => {
                    if let Some(args) = self.scan_page(i, &mut op.kind, page) {
                        // The next page: a continuation, with a fresh attempt budget.
                        let next = ScanPageOp {
                            outer: outer.clone(),
                            args,
                        };
                        op.machine = AnyMachine::Scan(self.machine(next, true));
                        let step = op.machine.resume(&self.clients[i].routes);
                        return self.follow(i, op, step);
                    }
                }
                Err(e @ Error::GaveUp { .. }) => gave_up!(e),
                Err(e) => unexpected!(format!("scan: {e:?}")),
            },
        }
        self.complete(i, &op);
    }

    pub(crate) fn value_violation(
        &mut self,
        outer: &str,
        key: &str,
        want: Expect,
        got: Option<ValueRef>,
        how: &str,
    ) {
        let kind = match (want, got) {
            (Expect::Exactly(None), Some(_)) => ViolationKind::Resurrected,
            (Expect::Exactly(Some(_)), None) => ViolationKind::LostWrite,
            (Expect::Either(a, b), Some(_)) if a.is_none() && b.is_none() => {
                ViolationKind::Resurrected
            }
            (Expect::Either(..), None) => ViolationKind::LostWrite,
            _ => ViolationKind::LostWrite,
        };
        self.violation(
            kind,
            format!("{how} of {outer:?} key {key:?}: expected {want:?}, read {got:?}"),
        );
    }

    /// One scan page: checks its order and bounds, then gives the next page's arguments, or
    /// compares the whole result with the model and gives `None`.
    fn scan_page(
        &mut self,
        i: usize,
        kind: &mut OpKind,
        page: flotilla_types::ScanPage,
    ) -> Option<ScanArgs> {
        let OpKind::Scan {
            outer,
            args,
            got,
            pages,
        } = kind
        else {
            self.violation(
                ViolationKind::UnexpectedReply,
                format!("client {i}: scan page for another op"),
            );
            return None;
        };
        *pages += 1;
        let mut problems = vec![];
        let mut prev: Option<&[u8]> = args.cursor.as_deref().map(|c| &c[..]);
        for e in &page.entries {
            let k = &e.key[..];
            if let Some(p) = prev {
                let in_order = if args.reverse { k < p } else { k > p };
                if !in_order {
                    problems.push(format!("key {k:?} out of order after {p:?}"));
                }
            }
            if args.start.as_deref().is_some_and(|s| k < &s[..])
                || args.end.as_deref().is_some_and(|e| k >= &e[..])
            {
                problems.push(format!("key {k:?} outside the range"));
            }
            prev = Some(k);
        }
        if page.entries.is_empty() && page.next.is_some() {
            problems.push("empty page with a cursor".into());
        }
        if let Some(n) = &page.next {
            if page.entries.last().map(|e| &e.key) != Some(n) {
                problems.push("cursor is not the last key returned".into());
            }
        }
        got.extend(
            page.entries
                .iter()
                .map(|e| (e.key.to_vec(), ValueRef::of(&e.value))),
        );
        let outer = outer.clone();
        if !problems.is_empty() {
            self.violation(
                ViolationKind::WrongValue,
                format!(
                    "client {i}: scan of {outer:?} ({args:?}): {}",
                    problems.join("; ")
                ),
            );
        }
        if let Some(n) = page.next {
            args.cursor = Some(n);
            return Some(args.clone());
        }
        let got = std::mem::take(got);
        let args = args.clone();
        self.compare_scan(i, &outer, &args, &got);
        None
    }

    /// Compares a complete scan with the model's contents of that range.
    fn compare_scan(
        &mut self,
        i: usize,
        outer: &str,
        args: &ScanArgs,
        got: &[(Vec<u8>, ValueRef)],
    ) {
        let Some(s) = self.model.live(outer) else {
            return;
        };
        let in_range = |k: &[u8]| {
            args.start.as_deref().is_none_or(|s| k >= &s[..])
                && args.end.as_deref().is_none_or(|e| k < &e[..])
        };
        let mut want: Vec<(Vec<u8>, ValueRef)> = s
            .items
            .iter()
            .filter(|(k, _)| in_range(k) && !s.uncertain.contains(*k))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if args.reverse {
            want.reverse();
        }
        let got: Vec<(Vec<u8>, ValueRef)> = got
            .iter()
            .filter(|(k, _)| !s.uncertain.contains(k))
            .cloned()
            .collect();
        if got == want {
            return;
        }
        let want_map: BTreeMap<_, _> = want.iter().cloned().collect();
        let got_map: BTreeMap<_, _> = got.iter().cloned().collect();
        let mut diffs = vec![];
        let mut kind = ViolationKind::WrongValue;
        for (k, v) in &want_map {
            match got_map.get(k) {
                None => {
                    kind = ViolationKind::LostWrite;
                    diffs.push(format!("{:?} missing", String::from_utf8_lossy(k)));
                }
                Some(g) if g != v => {
                    kind = ViolationKind::LostWrite;
                    diffs.push(format!(
                        "{:?} stale ({g:?} != {v:?})",
                        String::from_utf8_lossy(k)
                    ));
                }
                _ => {}
            }
        }
        for k in got_map.keys().filter(|k| !want_map.contains_key(*k)) {
            if kind == ViolationKind::WrongValue {
                kind = ViolationKind::Resurrected;
            }
            diffs.push(format!("{:?} should not exist", String::from_utf8_lossy(k)));
        }
        if got_map.len() != got.len() {
            diffs.push("a key was returned twice".into());
        }
        if diffs.is_empty() {
            diffs.push("order differs".into());
        }
        diffs.truncate(6);
        self.violation(
            kind,
            format!(
                "client {i}: scan of {outer:?} ({args:?}) differs from the model: {}",
                diffs.join("; ")
            ),
        );
    }
}
