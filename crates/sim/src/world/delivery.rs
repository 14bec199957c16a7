//! Delivering messages: the dispatch of every due message by kind, ingress and queries
//! executed against the canisters' own dispatchers, answers queued back to their senders,
//! and the request log. The index's inter-canister calls and their replies are in
//! `calls.rs`; calls to the management canister in `mgmt.rs`.

use super::{
    guard, origin_word, principal_word, Awaiting, ClientReply, Msg, Origin, World, EXEC_BASE,
    INGRESS_BASE, INGRESS_PER_BYTE, ROUND_NS,
};
use crate::canister::{Canister, Logic};
use crate::faults::Fate;
use crate::report::ViolationKind;
use crate::requests::{Answered, Executed, Requester, Role};
use candid::Principal;
use flotilla_client::{RejectCode, TransportError};
use flotilla_index::dispatch::Outcome;
use flotilla_index::Env;
use flotilla_partition::dispatch::Ctx;
use flotilla_types::dispatch::{DispatchError, MethodKind};

/// What a canister is, for the request log of ingress and queries alike: a partition, else
/// the index (a canister without a module is answered before anything is logged).
fn role_of(c: &Canister) -> Role {
    if c.partition().is_some() {
        Role::Partition
    } else {
        Role::Index
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

impl World {
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

    pub(super) fn answer(&mut self, to: Origin, reply: ClientReply) {
        let at = self.round + self.ingress_latency();
        self.queue.push(at, Msg::ToClient { to, reply });
    }

    pub(super) fn deliver(&mut self, msg: Msg) {
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
        let index_balance = self.index_balance();
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
            balance: index_balance,
        };
        let stable_memory_bytes = c.memory_bytes();
        let calls_before = self.stats.calls_sent;
        let role = role_of(c);
        // The planted `partition_deletes_for_owners`: the index-only guard is missing.
        let as_caller = if self.cfg.bugs.partition_deletes_for_owners && method == "delete_subdb" {
            self.index_id
        } else {
            caller
        };
        if role == Role::Partition {
            c.note_request(round);
        }
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
                    caller: as_caller,
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
        let index_balance = self.index_balance();
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
            balance: index_balance,
        };
        let stable_memory_bytes = c.memory_bytes();
        let calls_before = self.stats.calls_sent;
        let role = role_of(c);
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
}
