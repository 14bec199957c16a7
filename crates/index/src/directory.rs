//! The directory: outer keys to inner keys. Creating and deleting SubDBs (one call to the
//! partition each, idempotent by op id, re-driven until the partition answers), the op
//! records that deduplicate them, and the routing queries clients read.

use crate::calls::{Call, CallResult, Reject, Request, Response};
use crate::records::*;
use crate::{moves, Env, Index, Step};
use candid::Principal;
use flotilla_types::index::{
    CreateError, CreateRequest, DeleteRequest, DeleteSubDbRequestError, Route, RouteError,
    RoutesPage, RoutesRequest,
};
use flotilla_types::limits::{
    MAX_ACCESS_PRINCIPALS, MAX_OUTER_KEY_BYTES, MAX_ROUTES_PAGE, MAX_ROUTE_BATCH,
    ROUTES_REPLY_BUDGET_BYTES, ROUTE_OVERHEAD_BYTES,
};
use flotilla_types::partition::{Access, CreateLocalArgs, DeleteSubDbArgs};
use flotilla_types::{DeleteSubDbError, InnerKey, OpId};
use ic_stable_structures::Memory;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

/// The `reason` of a `PartitionUnavailable` a client gets: one of three fixed texts. The
/// partition's reject message is not passed on: the IC's own texts name canisters and
/// cycle balances, internal state a client has no use for (it retries either way).
fn unavailable(reject: Option<&Reject>) -> String {
    match reject {
        Some(r) if r.certain => "the partition refused the call; retry shortly",
        Some(_) => "the partition's answer was lost; retry with the same op id",
        None => "the partition answered another call; retry shortly",
    }
    .to_string()
}

fn args_hash(parts: &[&[u8]]) -> ByteBuf {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    ByteBuf::from(h.finalize()[..16].to_vec())
}

/// The op id a create carries to its partition: a hash of the caller's op id and the outer
/// key. The partition deduplicates creates by op id and arguments (access lists, cap), which do
/// not name the SubDB; were the caller's op id passed on as is, a create of another name
/// reusing it after the index forgot it (its op window) would be answered with the first
/// name's SubDB. Deterministic, so a re-driven create carries the same id.
pub(crate) fn partition_create_op(op_id: &OpId, outer_key: &str) -> OpId {
    let mut h = Sha256::new();
    h.update(b"flotilla-create");
    h.update((outer_key.len() as u64).to_le_bytes());
    h.update(outer_key.as_bytes());
    h.update(op_id.as_bytes());
    OpId::from(h.finalize().to_vec())
}

fn principals_bytes(ps: &[Principal]) -> Vec<u8> {
    ps.iter()
        .flat_map(|p| {
            let mut v = vec![p.as_slice().len() as u8];
            v.extend_from_slice(p.as_slice());
            v
        })
        .collect()
}

impl<M: Memory> Index<M> {
    // ---- op records ---------------------------------------------------------------------

    fn record_op(&mut self, op_id: &OpId, mut rec: OpRecord) {
        let mut seq = 0;
        self.update_cfg(|c| {
            seq = c.next_op_seq;
            c.next_op_seq += 1;
        });
        rec.seq = seq;
        self.ops.insert(op_id.as_bytes().to_vec(), rec);
        self.ops_order.insert(seq, op_id.as_bytes().to_vec());
        while self.ops_order.len() > self.cfg().op_window {
            if let Some((_, old)) = self.ops_order.pop_first() {
                self.ops.remove(&old);
            }
        }
    }

    fn forget_op(&mut self, op_id: &[u8]) {
        if let Some(rec) = self.ops.remove(&op_id.to_vec()) {
            self.ops_order.remove(&rec.seq);
        }
    }

    fn finish_op(&mut self, op_id: &[u8], inner: InnerKey) {
        if let Some(mut rec) = self.ops.get(&op_id.to_vec()) {
            rec.done = Some(inner);
            self.ops.insert(op_id.to_vec(), rec);
        }
    }

    // ---- create / delete SubDB ----------------------------------------------------------

    /// Creates a SubDB named `outer_key` on a partition with room: one call to that partition.
    /// Idempotent by op id: a retry gets the first answer, or re-drives the call when its
    /// outcome is unknown (the partition deduplicates by the same op id).
    pub fn create_subdb(
        &mut self,
        env: &Env,
        req: CreateRequest,
    ) -> Step<Result<InnerKey, CreateError>> {
        let hash = match self.check_create(env, &req) {
            Ok(h) => h,
            Err(e) => return Step::Done(Err(e)),
        };
        if let Some(rec) = self.ops.get(&req.op_id.as_bytes().to_vec()) {
            if rec.kind != OpKind::Create || rec.args_hash != hash {
                return Step::Done(Err(CreateError::OpIdConflict));
            }
            if let Some(inner) = rec.done {
                return Step::Done(Ok(inner));
            }
            return match self.redrive(&rec.outer_key) {
                Some(call) => Step::Await(call),
                None => Step::Done(Err(CreateError::InProgress)),
            };
        }
        if self.directory.contains_key(&req.outer_key) {
            return Step::Done(Err(CreateError::OuterKeyTaken));
        }
        let owner = req.owner.unwrap_or(env.caller);
        if let Err(e) = self.check_quota(env, owner) {
            return Step::Done(Err(e));
        }
        let Some(partition) = self.place(env) else {
            if self.cfg().wasm.is_none() {
                return Step::Done(Err(CreateError::NoPartitionWasm));
            }
            if !self.can_afford_partition(env) {
                return Step::Done(Err(CreateError::IndexLowOnCycles {
                    balance: env.balance,
                    needed: self
                        .cfg()
                        .cycles
                        .reserve
                        .saturating_add(self.partition_cost()),
                }));
            }
            return Step::Done(Err(CreateError::NoCapacity));
        };
        self.note_owned(owner, &req.outer_key, true);
        self.directory.insert(
            req.outer_key.clone(),
            DirEntry {
                state: DirState::Creating,
                partition,
                subdb: 0,
                owner,
                op_id: req.op_id.as_bytes().to_vec(),
            },
        );
        let args = CreateLocalArgs {
            op_id: partition_create_op(&req.op_id, &req.outer_key),
            access: Access {
                owner,
                readers: req.readers,
                writers: req.writers,
            },
            hard_cap: req.hard_cap,
            max_bytes: Some(self.cfg().max_bytes_per_subdb),
        };
        self.pending
            .insert(req.outer_key.clone(), PendingCall::Create(args));
        self.record_op(
            &req.op_id,
            OpRecord {
                kind: OpKind::Create,
                args_hash: hash,
                outer_key: req.outer_key.clone(),
                seq: 0,
                done: None,
            },
        );
        Step::Await(self.redrive(&req.outer_key).expect("just reserved"))
    }

    fn check_create(&self, env: &Env, req: &CreateRequest) -> Result<ByteBuf, CreateError> {
        if let Err(e) = req.op_id.validate() {
            return Err(CreateError::InvalidOpId { len: e.len });
        }
        let len = req.outer_key.len();
        if len == 0 || len > MAX_OUTER_KEY_BYTES {
            return Err(CreateError::InvalidOuterKey {
                len: len as u64,
                max: MAX_OUTER_KEY_BYTES as u64,
            });
        }
        for list in [&req.readers, &req.writers] {
            if list.len() > MAX_ACCESS_PRINCIPALS {
                return Err(CreateError::TooManyPrincipals {
                    len: list.len() as u64,
                    max: MAX_ACCESS_PRINCIPALS as u64,
                });
            }
        }
        let owner = req.owner.unwrap_or(env.caller);
        let may_name_owner = owner == env.caller || self.is_admin(&env.caller);
        if env.caller == Principal::anonymous()
            || owner == Principal::anonymous()
            || !may_name_owner
        {
            return Err(CreateError::NotAuthorized);
        }
        Ok(args_hash(&[
            b"create",
            env.caller.as_slice(),
            req.outer_key.as_bytes(),
            &req.hard_cap.map_or(vec![], |c| c.to_le_bytes().to_vec()),
            owner.as_slice(),
            &principals_bytes(&req.readers),
            &principals_bytes(&req.writers),
        ]))
    }

    /// Deletes the SubDB named `outer_key`: one call to its partition. Owner or admin only.
    pub fn delete_subdb(
        &mut self,
        env: &Env,
        req: DeleteRequest,
    ) -> Step<Result<(), DeleteSubDbRequestError>> {
        use DeleteSubDbRequestError as E;
        if let Err(e) = req.op_id.validate() {
            return Step::Done(Err(E::InvalidOpId { len: e.len }));
        }
        let hash = args_hash(&[b"delete", env.caller.as_slice(), req.outer_key.as_bytes()]);
        if let Some(rec) = self.ops.get(&req.op_id.as_bytes().to_vec()) {
            if rec.kind != OpKind::Delete || rec.args_hash != hash {
                return Step::Done(Err(E::OpIdConflict));
            }
            if rec.done.is_some() {
                return Step::Done(Ok(()));
            }
            return match self.redrive(&rec.outer_key) {
                Some(call) => Step::Await(call),
                None => Step::Done(Err(E::InProgress)),
            };
        }
        let Some(mut entry) = self.directory.get(&req.outer_key) else {
            return Step::Done(Err(E::UnknownOuterKey));
        };
        if entry.owner != env.caller && !self.is_admin(&env.caller) {
            return Step::Done(Err(E::NotAuthorized));
        }
        if entry.state != DirState::Live || self.is_moving(&req.outer_key) {
            return Step::Done(Err(E::InProgress));
        }
        entry.state = DirState::Deleting;
        entry.op_id = req.op_id.as_bytes().to_vec();
        let args = DeleteSubDbArgs {
            subdb: entry.subdb,
            op_id: req.op_id.clone(),
        };
        self.directory.insert(req.outer_key.clone(), entry);
        self.pending
            .insert(req.outer_key.clone(), PendingCall::Delete(args));
        self.record_op(
            &req.op_id,
            OpRecord {
                kind: OpKind::Delete,
                args_hash: hash,
                outer_key: req.outer_key.clone(),
                seq: 0,
                done: None,
            },
        );
        Step::Await(self.redrive(&req.outer_key).expect("just marked"))
    }

    /// The call that completes a pending create or delete, unless one is in flight.
    pub(crate) fn redrive(&mut self, outer_key: &str) -> Option<Call> {
        let key = outer_key.to_string();
        let pending = self.pending.get(&key)?;
        let entry = self.directory.get(&key)?;
        let (request, purpose) = match pending {
            PendingCall::Create(a) => (Request::CreateSubDb(a), Purpose::Create { outer_key: key }),
            PendingCall::Delete(a) => (Request::DeleteSubDb(a), Purpose::Delete { outer_key: key }),
        };
        if self.in_flight(&purpose) {
            return None;
        }
        Some(self.next_call(entry.partition, request, purpose))
    }

    pub(crate) fn created(
        &mut self,
        outer_key: &str,
        result: CallResult,
    ) -> Result<InnerKey, CreateError> {
        let key = outer_key.to_string();
        let Some(mut entry) = self.directory.get(&key) else {
            return Err(CreateError::InProgress);
        };
        match result {
            Ok(Response::SubDbCreated(Ok(subdb))) => {
                entry.state = DirState::Live;
                entry.subdb = subdb;
                let op = std::mem::take(&mut entry.op_id);
                let inner = entry.inner();
                self.directory.insert(key.clone(), entry);
                self.reverse.insert(moves::reverse_key(&inner), key.clone());
                self.pending.remove(&key);
                self.finish_op(&op, inner);
                self.update_cfg(|c| c.routing_version += 1);
                if let Some(mut rec) = self.registry.get(&inner.partition) {
                    rec.subdbs = rec.subdbs.saturating_add(1);
                    self.put_partition(inner.partition, rec);
                }
                Ok(inner)
            }
            Ok(Response::SubDbCreated(Err(e))) => {
                // Refused: nothing was created; release the name and forget the op.
                self.directory.remove(&key);
                self.note_owned(entry.owner, &key, false);
                self.pending.remove(&key);
                self.forget_op(&entry.op_id);
                Err(CreateError::Partition(e))
            }
            Ok(_) => Err(CreateError::PartitionUnavailable {
                reason: unavailable(None),
            }),
            Err(reject) => {
                // Even a clean reject of this attempt says nothing of earlier ones with the same
                // op id (a lost reply, a call forgotten across an upgrade): the name stays
                // reserved and a retry or `tick` re-drives the identical call until the
                // partition answers. Only the partition's own refusal releases the name.
                Err(CreateError::PartitionUnavailable {
                    reason: unavailable(Some(&reject)),
                })
            }
        }
    }

    pub(crate) fn deleted(
        &mut self,
        outer_key: &str,
        result: CallResult,
    ) -> Result<(), DeleteSubDbRequestError> {
        use DeleteSubDbRequestError as E;
        let key = outer_key.to_string();
        let Some(mut entry) = self.directory.get(&key) else {
            return Ok(());
        };
        let finish = |index: &mut Self, entry: &DirEntry| {
            index.directory.remove(&key);
            index.note_owned(entry.owner, &key, false);
            index.reverse.remove(&moves::reverse_key(&entry.inner()));
            index.pending.remove(&key);
            index.finish_op(&entry.op_id, entry.inner());
            index.update_cfg(|c| c.routing_version += 1);
            if let Some(mut rec) = index.registry.get(&entry.partition) {
                rec.subdbs = rec.subdbs.saturating_sub(1);
                index.put_partition(entry.partition, rec);
            }
        };
        match result {
            // Already gone at the partition counts as deleted.
            Ok(Response::SubDbDeleted(Ok(()) | Err(DeleteSubDbError::UnknownSubDb))) => {
                finish(self, &entry);
                Ok(())
            }
            Ok(Response::SubDbDeleted(Err(e))) => {
                // Refused (e.g. a write pause): back to live, the op is not recorded.
                self.pending.remove(&key);
                self.forget_op(&entry.op_id);
                entry.state = DirState::Live;
                entry.op_id.clear();
                self.directory.insert(key, entry);
                Err(E::Partition(e))
            }
            Ok(_) => Err(E::PartitionUnavailable {
                reason: unavailable(None),
            }),
            Err(reject) => {
                if reject.certain {
                    self.pending.remove(&key);
                    self.forget_op(&entry.op_id);
                    entry.state = DirState::Live;
                    entry.op_id.clear();
                    self.directory.insert(key, entry);
                }
                Err(E::PartitionUnavailable {
                    reason: unavailable(Some(&reject)),
                })
            }
        }
    }

    // ---- routing ------------------------------------------------------------------------

    /// Inner keys of live SubDBs, in the order asked; `None` for unknown or not-yet-live names.
    pub fn route(&self, outer_keys: &[String]) -> Result<Vec<Option<InnerKey>>, RouteError> {
        if outer_keys.len() > MAX_ROUTE_BATCH {
            return Err(RouteError::TooMany {
                len: outer_keys.len() as u64,
                max: MAX_ROUTE_BATCH as u64,
            });
        }
        Ok(outer_keys
            .iter()
            .map(|k| {
                self.directory
                    .get(k)
                    .filter(|e| e.state != DirState::Creating)
                    .map(|e| e.inner())
            })
            .collect())
    }

    /// A page of the routing snapshot, in outer-key order, with the routing version: at most
    /// `limit` routes (default and most `MAX_ROUTES_PAGE`) and `ROUTES_REPLY_BUDGET_BYTES` of
    /// reply; `next` is set whenever routes may remain. Every route: what an admin sees.
    pub fn routes(&self, req: &RoutesRequest) -> RoutesPage {
        let iter = match &req.start_after {
            Some(k) => self.directory.range((
                std::ops::Bound::Excluded(k.clone()),
                std::ops::Bound::Unbounded,
            )),
            None => self.directory.iter(),
        };
        self.routes_page(req, iter.map(|e| e.into_pair()))
    }

    /// The `routes` query as `caller` may see it: an admin, every route; anyone else, the
    /// routes of the SubDBs it owns (walked from `OWNED_KEYS`, never the whole directory), so
    /// no one learns other principals' outer keys from a listing. A SubDB shared with the
    /// caller is found by name with `route`, which answers any name (the index does not know
    /// the readers a partition keeps; the name is what the owner shares, and the partition
    /// decides every read).
    pub fn routes_for(&self, caller: &Principal, req: &RoutesRequest) -> RoutesPage {
        if self.is_admin(caller) {
            return self.routes(req);
        }
        let owned = self
            .owned_names(caller, req.start_after.as_deref())
            .filter_map(|k| self.directory.get(&k).map(|e| (k, e)));
        self.routes_page(req, owned)
    }

    fn routes_page(
        &self,
        req: &RoutesRequest,
        iter: impl Iterator<Item = (String, DirEntry)>,
    ) -> RoutesPage {
        let limit = req
            .limit
            .unwrap_or(MAX_ROUTES_PAGE)
            .clamp(1, MAX_ROUTES_PAGE) as usize;
        let mut routes = vec![];
        let mut next = None;
        let mut bytes = 0;
        for (k, v) in iter {
            if routes.len() == limit {
                next = routes.last().map(|r: &Route| r.outer_key.clone());
                break;
            }
            if v.state != DirState::Creating {
                let cost = k.len() + v.partition.as_slice().len() + ROUTE_OVERHEAD_BYTES;
                if !routes.is_empty() && bytes + cost > ROUTES_REPLY_BUDGET_BYTES {
                    next = routes.last().map(|r: &Route| r.outer_key.clone());
                    break;
                }
                bytes += cost;
                routes.push(Route {
                    outer_key: k,
                    inner: v.inner(),
                });
            }
        }
        RoutesPage {
            version: self.cfg().routing_version,
            routes,
            next,
        }
    }
}
