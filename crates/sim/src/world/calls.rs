//! The index's inter-canister calls: sent (measured, charged, queued), executed at a
//! partition through its own dispatcher (or at the management canister, `mgmt.rs`), and
//! their replies fed back to the index.

use super::{guard, Msg, World, CALL_BASE, CALL_PER_BYTE, EXEC_BASE};
use crate::faults::Fate;
use crate::report::ViolationKind;
use candid::Principal;
use flotilla_client::{RejectCode, TransportError};
use flotilla_index::calls::{Call, CallId, CallResult, Reject, Request, Response, Sender};
use flotilla_partition::dispatch::Ctx;
use flotilla_types::limits::MAX_MESSAGE_BYTES;
use flotilla_types::{InnerKey, SubDbId};

/// Calls kept in [`World::call_log`].
const CALL_LOG: usize = 12;

/// The index's own identity on the wire (the sender of its calls).
fn sender(index: Principal) -> Sender {
    Sender {
        id: index,
        canister_version: None,
    }
}

impl World {
    fn call_latency(&mut self) -> u64 {
        self.rng.range(1, self.cfg.latency_max.max(1))
    }

    /// Sends one call the index asked for: measures it, charges the index, queues it.
    pub(super) fn send_call(&mut self, mut call: Call) {
        self.stats.calls_sent += 1;
        self.check_spending(&call);
        if self.cfg.bugs.double_import_chunks {
            if let Request::ImportChunk(a) = &mut call.request {
                let again = a.chunk.puts.clone();
                a.chunk.puts.extend(again);
            }
        }
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
        if !call.request.is_upkeep() {
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

    pub(super) fn deliver_call(&mut self, call: Call) {
        let fate = self.faults.decide(&mut self.rng, false);
        let result = if call.target == Principal::management_canister() {
            self.exec_management(&call, fate)
        } else {
            self.exec_partition_call(&call, fate)
        };
        if self.halted {
            return;
        }
        if self.swallows(&call) {
            self.say(|| format!("  call {} {} swallowed", call.id, call.request.method()));
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
        let stopped = self
            .canisters
            .get(&call.target)
            .is_some_and(|c| c.is_stopped());
        if !stopped && self.traps_import(call) {
            return reject(false, "trapped on import (hazard)");
        }
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
        let source = |subdb: SubDbId| InnerKey {
            partition: call.target,
            subdb,
        };
        match (&call.request, &mut response) {
            (Request::ExportChunk(a), Response::Exported(Ok(r))) => {
                self.stats.max_chunk_message_bytes = self.stats.max_chunk_message_bytes.max(bytes);
                if let Some(h) = &r.chunk.header {
                    self.hz.first_meta.insert(source(a.subdb), h.meta.clone());
                }
            }
            (Request::ExportDelta(a), Response::DeltaExported(Ok(r))) => {
                self.stats.max_chunk_message_bytes = self.stats.max_chunk_message_bytes.max(bytes);
                if self.cfg.bugs.drop_delta_puts {
                    r.chunk.puts.clear();
                }
                if self.cfg.bugs.stale_access_on_cutover {
                    let first = self.hz.first_meta.get(&source(a.subdb));
                    if let (Some(h), Some(first)) = (&mut r.chunk.header, first) {
                        h.meta = first.clone();
                    }
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

    pub(super) fn deliver_reply(&mut self, call_id: CallId, result: CallResult) {
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
}
