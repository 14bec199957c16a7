//! Simulated clients: a faithful state machine of what the Rust client will do.
//!
//! A client has a principal, a route cache (outer key → inner key) refreshed only when a
//! partition says so (`Moved { to }`: use `to` directly; `UnknownSubDb`: ask the index's
//! routing query, after a backoff), and one operation in flight at a time. Mutations carry a
//! random 16-byte op id and are retried with the SAME op id after transient failures (reject,
//! trap, lost reply, `WritesPaused`, `InProgress`, `NoCapacity`), after a random backoff.
//!
//! Each client owns the SubDBs it creates (unique outer keys, no other readers or writers),
//! so the model of their contents is exact, and every acknowledged answer is checked against
//! it on arrival (checkers 1 and 2).

use crate::model::{Expect, ValueRef};
use crate::report::{ik, ViolationKind};
use crate::world::{ClientReply, IngressCall, QueryCall, World};
use candid::Principal;
use flotilla_types::index::{CreateError, CreateRequest, DeleteRequest, DeleteSubDbRequestError};
use flotilla_types::partition::{DeleteArgs, GetArgs, PutArgs, ScanRequest};
use flotilla_types::{
    DeleteError, DeleteSubDbError, GetError, InnerKey, OpId, PutError, ScanArgs, ScanError,
};
use serde_bytes::ByteBuf;
use std::collections::BTreeMap;

pub(crate) struct Client {
    pub id: usize,
    pub principal: Principal,
    pub routes: BTreeMap<String, InnerKey>,
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
            routes: BTreeMap::new(),
            owned: vec![],
            next_name: 0,
            op: None,
            wake_at: 0,
            waiting: false,
            completed: 0,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Op {
    pub kind: OpKind,
    /// Mutations only.
    pub op_id: Option<OpId>,
    pub attempts: u32,
    pub started: u64,
    /// What the last attempt ran into (for stuck-operation reports).
    pub last: String,
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
        value: ByteBuf,
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
}

impl OpKind {
    pub fn outer(&self) -> &str {
        match self {
            OpKind::CreateSubDb { outer }
            | OpKind::DeleteSubDb { outer }
            | OpKind::Put { outer, .. }
            | OpKind::Delete { outer, .. }
            | OpKind::Get { outer, .. }
            | OpKind::Scan { outer, .. } => outer,
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

/// What a client does after an answer.
enum Next {
    Done,
    /// Retry after a backoff (transient failure).
    Retry(String),
    /// Send again now (route resolved, `Moved` followed, next scan page).
    Now,
    /// Forget the cached route, then retry after a backoff.
    Reroute(String),
    /// Give up: a failed read, or a violation already recorded for a write.
    Abandon(String),
}

impl World {
    fn new_op_id(&mut self) -> OpId {
        OpId::from(self.rng.bytes(16))
    }

    fn random_key(&mut self) -> Vec<u8> {
        let len = self.rng.range(1, self.cfg.key_max_len.max(1) as u64);
        (0..len)
            .map(|_| b'a' + self.rng.below(self.cfg.key_letters.max(1) as u64) as u8)
            .collect()
    }

    fn new_op(&mut self, i: usize) -> Op {
        let mix = self.cfg.op_mix;
        let owned = self.clients[i].owned.len();
        let weights = if owned == 0 {
            [1, 0, 0, 0, 0, 0]
        } else {
            [
                mix.create_subdb,
                if owned >= 2 { mix.delete_subdb } else { 0 },
                mix.put,
                mix.delete,
                mix.get,
                mix.scan,
            ]
        };
        let choice = self.rng.weighted(&weights);
        let pick = self.rng.below(owned.max(1) as u64) as usize;
        let outer = self.clients[i].owned.get(pick).cloned().unwrap_or_default();
        let (kind, op_id) = match choice {
            0 => {
                let c = &mut self.clients[i];
                let outer = format!("c{}/s{}", c.id, c.next_name);
                c.next_name += 1;
                (OpKind::CreateSubDb { outer }, Some(self.new_op_id()))
            }
            1 => (OpKind::DeleteSubDb { outer }, Some(self.new_op_id())),
            2 => {
                let key = self.random_key();
                let len = self.rng.below(self.cfg.max_value_bytes as u64 + 1) as usize;
                let value = self.rng.bytes(len);
                let vref = ValueRef::of(&value);
                let kind = OpKind::Put {
                    outer,
                    key,
                    value: ByteBuf::from(value),
                    vref,
                };
                (kind, Some(self.new_op_id()))
            }
            3 => {
                let key = self.random_key();
                (OpKind::Delete { outer, key }, Some(self.new_op_id()))
            }
            4 => {
                let key = self.random_key();
                (OpKind::Get { outer, key }, None)
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
                let kind = OpKind::Scan {
                    outer,
                    args,
                    got: vec![],
                    pages: 0,
                };
                (kind, None)
            }
        };
        Op {
            kind,
            op_id,
            attempts: 0,
            started: self.round,
            last: String::new(),
        }
    }

    /// Lets client `i` start or resume its operation, if it is idle and past its backoff.
    pub(crate) fn client_act(&mut self, i: usize) {
        let c = &self.clients[i];
        if c.waiting || c.wake_at > self.round {
            return;
        }
        if c.op.is_none() {
            if !self.issuing || self.ops_started >= self.cfg.ops {
                return;
            }
            let op = self.new_op(i);
            self.ops_started += 1;
            self.clients[i].op = Some(op);
        }
        self.send_op(i);
    }

    fn send_op(&mut self, i: usize) {
        let index = self.index_id;
        let c = &self.clients[i];
        let op = c.op.as_ref().expect("an op to send");
        let op_id = || op.op_id.clone().expect("mutations carry an op id");
        let route = c.routes.get(op.kind.outer()).copied();
        enum Send {
            Ingress(Principal, IngressCall),
            Query(Principal, QueryCall),
        }
        let send = match (&op.kind, route) {
            (OpKind::CreateSubDb { outer }, _) => Send::Ingress(
                index,
                IngressCall::CreateSubDb(CreateRequest {
                    outer_key: outer.clone(),
                    op_id: op_id(),
                    hard_cap: None,
                    owner: None,
                    readers: vec![],
                    writers: vec![],
                }),
            ),
            (OpKind::DeleteSubDb { outer }, _) => Send::Ingress(
                index,
                IngressCall::DeleteSubDb(DeleteRequest {
                    outer_key: outer.clone(),
                    op_id: op_id(),
                }),
            ),
            (kind, None) => Send::Query(index, QueryCall::Route(kind.outer().to_string())),
            (OpKind::Put { key, value, .. }, Some(r)) => Send::Ingress(
                r.partition,
                IngressCall::Put(PutArgs {
                    subdb: r.subdb,
                    key: ByteBuf::from(key.clone()),
                    value: value.clone(),
                    op_id: op_id(),
                }),
            ),
            (OpKind::Delete { key, .. }, Some(r)) => Send::Ingress(
                r.partition,
                IngressCall::Delete(DeleteArgs {
                    subdb: r.subdb,
                    key: ByteBuf::from(key.clone()),
                    op_id: op_id(),
                }),
            ),
            (OpKind::Get { key, .. }, Some(r)) => Send::Query(
                r.partition,
                QueryCall::Get(GetArgs {
                    subdb: r.subdb,
                    key: ByteBuf::from(key.clone()),
                }),
            ),
            (OpKind::Scan { args, .. }, Some(r)) => Send::Query(
                r.partition,
                QueryCall::Scan(ScanRequest {
                    subdb: r.subdb,
                    args: args.clone(),
                }),
            ),
        };
        self.clients[i].waiting = true;
        match send {
            Send::Ingress(to, call) => self.send_ingress(i, to, call),
            Send::Query(to, call) => self.send_query(i, to, call),
        }
    }

    fn backoff(&mut self, attempts: u32) -> u64 {
        let cap = (1u64 << attempts.min(4)).min(self.cfg.max_backoff.max(1));
        1 + self.rng.below(cap)
    }

    fn note_pause(&mut self) {
        if self.stats.last_pause_round != Some(self.round) {
            self.stats.last_pause_round = Some(self.round);
            self.stats.write_pause_rounds += 1;
        }
    }

    /// Handles the answer to client `i`'s request.
    pub(crate) fn client_reply(&mut self, i: usize, reply: ClientReply) {
        self.clients[i].waiting = false;
        let Some(mut op) = self.clients[i].op.take() else {
            self.violation(
                ViolationKind::UnexpectedReply,
                format!("client {i} got an answer with no operation in flight: {reply:?}"),
            );
            return;
        };
        let next = self.judge(i, &mut op, reply);
        let reroute = matches!(next, Next::Reroute(_));
        self.trace(&[0xc1, i as u64, op.kind.tag(), op.attempts as u64]);
        match next {
            Next::Done => self.complete(i),
            Next::Now => {
                op.attempts += 1;
                self.clients[i].op = Some(op);
                self.clients[i].wake_at = self.round;
                self.check_attempts(i);
            }
            Next::Retry(why) | Next::Reroute(why) => {
                if reroute {
                    self.clients[i].routes.remove(op.kind.outer());
                }
                op.attempts += 1;
                op.last = why;
                if self.cfg.bugs.fresh_op_id_on_retry && op.op_id.is_some() {
                    op.op_id = Some(self.new_op_id());
                }
                let wait = self.backoff(op.attempts);
                self.clients[i].op = Some(op);
                self.clients[i].wake_at = self.round + wait;
                self.check_attempts(i);
            }
            Next::Abandon(why) => {
                if op.kind.is_read() {
                    self.failed_read(i, &op, &why);
                } else if let Some((outer, key, _)) = op.kind.pending_write() {
                    let (outer, key) = (outer.to_string(), key.to_vec());
                    self.model.mark_uncertain(&outer, &key);
                }
                self.complete(i);
            }
        }
    }

    /// Counts a read that could not complete, keeping the first few reasons for the report.
    fn failed_read(&mut self, i: usize, op: &Op, why: &str) {
        self.stats.failed_reads += 1;
        if self.stats.failed_read_samples.len() < 10 {
            self.stats.failed_read_samples.push(format!(
                "round {}: client {i} reading {:?}: {why}",
                self.round,
                op.kind.outer()
            ));
        }
    }

    fn complete(&mut self, i: usize) {
        self.clients[i].completed += 1;
        self.stats.ops_completed += 1;
    }

    /// Gives up on an operation that has tried too often.
    fn check_attempts(&mut self, i: usize) {
        let Some(op) = &self.clients[i].op else {
            return;
        };
        let (limit, read) = if op.kind.is_read() {
            (self.cfg.max_read_attempts, true)
        } else {
            (self.cfg.max_write_attempts, false)
        };
        if op.attempts <= limit {
            return;
        }
        let op = self.clients[i].op.take().expect("checked");
        if read {
            let why = format!("gave up after {} attempts (last: {})", op.attempts, op.last);
            self.failed_read(i, &op, &why);
        } else {
            self.violation(
                ViolationKind::Stuck,
                format!(
                    "client {i}: {:?} on {:?} unacknowledged after {} attempts since round {} \
                     (last: {})",
                    op.kind.tag(),
                    op.kind.outer(),
                    op.attempts,
                    op.started,
                    op.last
                ),
            );
            if let Some((outer, key, _)) = op.kind.pending_write() {
                let (outer, key) = (outer.to_string(), key.to_vec());
                self.model.mark_uncertain(&outer, &key);
            }
        }
        self.complete(i);
    }

    /// Decides what an answer means for the operation, checking it against the model.
    fn judge(&mut self, i: usize, op: &mut Op, reply: ClientReply) -> Next {
        let outer = op.kind.outer().to_string();
        let unexpected = |w: &mut World, what: String| {
            w.violation(
                ViolationKind::UnexpectedReply,
                format!("client {i} on {outer:?}: {what}"),
            );
            Next::Abandon(what)
        };
        match reply {
            ClientReply::Rejected { certain, reason } => {
                Next::Retry(format!("rejected (certain: {certain}): {reason}"))
            }
            ClientReply::Lost => Next::Retry("reply lost".into()),
            ClientReply::Route(Some(inner)) => {
                self.clients[i].routes.insert(outer.clone(), inner);
                self.model.note_home(&outer, inner);
                Next::Now
            }
            ClientReply::Route(None) => Next::Retry("the index routes the name nowhere".into()),
            ClientReply::Create(r) => match r {
                Ok(inner) => {
                    if self.model.subdbs.contains_key(&outer) {
                        return unexpected(self, format!("created twice (now at {})", ik(&inner)));
                    }
                    self.model.create(&outer, i, inner);
                    self.stats.subdbs_created += 1;
                    let c = &mut self.clients[i];
                    c.owned.push(outer.clone());
                    c.routes.insert(outer, inner);
                    Next::Done
                }
                Err(
                    CreateError::InProgress
                    | CreateError::NoCapacity
                    | CreateError::PartitionUnavailable { .. },
                ) => Next::Retry(format!("{r:?}")),
                Err(CreateError::OuterKeyTaken) => {
                    self.violation(
                        ViolationKind::DoubleApply,
                        format!(
                            "client {i}: create_subdb of its own fresh name {outer:?} answered \
                             OuterKeyTaken: an earlier attempt applied and this one ran again"
                        ),
                    );
                    Next::Abandon("OuterKeyTaken".into())
                }
                Err(e) => unexpected(self, format!("create_subdb: {e:?}")),
            },
            ClientReply::DeleteSubDb(r) => match r {
                Ok(()) => {
                    self.model.delete_subdb(&outer);
                    let c = &mut self.clients[i];
                    c.owned.retain(|o| *o != outer);
                    c.routes.remove(&outer);
                    Next::Done
                }
                Err(
                    DeleteSubDbRequestError::InProgress
                    | DeleteSubDbRequestError::PartitionUnavailable { .. }
                    | DeleteSubDbRequestError::Partition(
                        DeleteSubDbError::WritesPaused | DeleteSubDbError::Moved { .. },
                    ),
                ) => Next::Retry(format!("{r:?}")),
                Err(DeleteSubDbRequestError::UnknownOuterKey) => {
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
                    Next::Abandon("UnknownOuterKey".into())
                }
                Err(e) => unexpected(self, format!("delete_subdb: {e:?}")),
            },
            ClientReply::Put(r) => {
                let OpKind::Put { key, vref, .. } = &op.kind else {
                    return unexpected(self, "put answer to another op".into());
                };
                match r {
                    Ok(outcome) => {
                        if let Expect::Exactly(prev) = self.model.expect(&outer, key, None) {
                            if outcome.replaced != prev.is_some() {
                                self.violation(
                                    ViolationKind::DoubleApply,
                                    format!(
                                        "client {i}: put {:?} on {outer:?} acknowledged \
                                         replaced={} but the key was {} before this op \
                                         (applied twice?)",
                                        String::from_utf8_lossy(key),
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
                        let (key, vref) = (key.clone(), *vref);
                        self.stats.put_bytes += (key.len() + vref.len as usize) as u64;
                        self.model.put(&outer, &key, vref);
                        Next::Done
                    }
                    Err(PutError::Moved { to }) => self.moved(i, &outer, to),
                    Err(PutError::UnknownSubDb) => Next::Reroute("UnknownSubDb".into()),
                    Err(PutError::WritesPaused) => {
                        self.note_pause();
                        Next::Retry("WritesPaused".into())
                    }
                    Err(e) => unexpected(self, format!("put: {e:?}")),
                }
            }
            ClientReply::Delete(r) => {
                let OpKind::Delete { key, .. } = &op.kind else {
                    return unexpected(self, "delete answer to another op".into());
                };
                match r {
                    Ok(existed) => {
                        if let Expect::Exactly(prev) = self.model.expect(&outer, key, None) {
                            if existed != prev.is_some() {
                                self.violation(
                                    ViolationKind::DoubleApply,
                                    format!(
                                        "client {i}: delete {:?} on {outer:?} acknowledged \
                                         existed={existed} but the key was {} before this op \
                                         (applied twice?)",
                                        String::from_utf8_lossy(key),
                                        if prev.is_some() { "present" } else { "absent" }
                                    ),
                                );
                            }
                        }
                        let key = key.clone();
                        self.model.delete(&outer, &key);
                        Next::Done
                    }
                    Err(DeleteError::Moved { to }) => self.moved(i, &outer, to),
                    Err(DeleteError::UnknownSubDb) => Next::Reroute("UnknownSubDb".into()),
                    Err(DeleteError::WritesPaused) => {
                        self.note_pause();
                        Next::Retry("WritesPaused".into())
                    }
                    Err(e) => unexpected(self, format!("delete: {e:?}")),
                }
            }
            ClientReply::Get(r) => {
                let OpKind::Get { key, .. } = &op.kind else {
                    return unexpected(self, "get answer to another op".into());
                };
                match r {
                    Ok(v) => {
                        let got = v.as_deref().map(|b| ValueRef::of(b));
                        let want = self.model.expect(&outer, key, None);
                        if !want.admits(got) {
                            let key = String::from_utf8_lossy(key).into_owned();
                            self.value_violation(&outer, &key, want, got, "get");
                        }
                        Next::Done
                    }
                    Err(GetError::Moved { to }) => self.moved(i, &outer, to),
                    Err(GetError::UnknownSubDb) => Next::Reroute("UnknownSubDb".into()),
                    Err(e) => unexpected(self, format!("get: {e:?}")),
                }
            }
            ClientReply::Scan(r) => match r {
                Ok(page) => self.scan_page(i, op, page),
                Err(ScanError::Moved { to }) => self.moved(i, &outer, to),
                Err(ScanError::UnknownSubDb) => Next::Reroute("UnknownSubDb".into()),
                Err(e) => unexpected(self, format!("scan: {e:?}")),
            },
        }
    }

    fn moved(&mut self, i: usize, outer: &str, to: InnerKey) -> Next {
        self.clients[i].routes.insert(outer.to_string(), to);
        self.model.note_home(outer, to);
        Next::Now
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

    /// One scan page: checks its order and bounds, then asks for the next page or compares
    /// the whole result with the model.
    fn scan_page(&mut self, i: usize, op: &mut Op, page: flotilla_types::ScanPage) -> Next {
        let OpKind::Scan {
            outer,
            args,
            got,
            pages,
        } = &mut op.kind
        else {
            self.violation(
                ViolationKind::UnexpectedReply,
                format!("client {i}: scan page for another op"),
            );
            return Next::Abandon("scan page for another op".into());
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
            // A continuation, not a retry.
            op.attempts = op.attempts.saturating_sub(1);
            return Next::Now;
        }
        let got = std::mem::take(got);
        let args = args.clone();
        self.compare_scan(i, &outer, &args, &got);
        Next::Done
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
