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

pub mod calls;
pub mod dispatch;
pub mod memory;
pub mod moves;
pub mod records;

use calls::{Call, CallId, CallResult, InstallMode, Reject, Request, Response};
use candid::Principal;
use flotilla_types::index::{
    AdminError, CreateError, CreateRequest, DeleteRequest, DeleteSubDbRequestError, IndexInit,
    IndexStats, PartitionInfo, PartitionState, Route, RouteError, RoutesPage, RoutesRequest,
    UploadProgress, UploadWasmError, WasmChunk, WasmInfo,
};
use flotilla_types::limits::{
    MAX_ACCESS_PRINCIPALS, MAX_JOB_FAILURES, MAX_OUTER_KEY_BYTES, MAX_PARTITION_WASM_BYTES,
    MAX_ROUTES_PAGE, MAX_ROUTE_BATCH, MAX_SPARE_POOL_TARGET, MAX_WASM_UPLOAD_CHUNK_BYTES,
};
use flotilla_types::partition::{
    Access, CreateLocalArgs, DeleteSubDbArgs, PartitionInit, StatsArgs, MAX_STATS_SUBDBS,
};
use flotilla_types::{DeleteSubDbError, InnerKey, OpId};
use ic_stable_structures::memory_manager::MemoryId;
use ic_stable_structures::{BTreeMap, Cell, Memory};
use records::*;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

pub const DEFAULT_SPARE_POOL_TARGET: u32 = 1;
pub const DEFAULT_MOVE_CAP_BYTES: u64 = 1 << 30;
pub const DEFAULT_PARTITION_CYCLES: u128 = 1_000_000_000_000;
/// Largest module installed inline: `install_code` travels in one ≤ 2 MiB message.
pub const DEFAULT_INLINE_INSTALL_LIMIT: u64 = 1_900_000;
/// The IC's chunk-store chunk size.
pub const WASM_CHUNK_BYTES: usize = 1024 * 1024;
pub const DEFAULT_OP_WINDOW: u64 = 100_000;
pub const DEFAULT_STATS_PERIOD_NS: u64 = 10_000_000_000;
/// Storage piece of the wasm slots.
const WASM_STORE_PIECE: usize = 1024 * 1024;

/// Who is calling, when, and who we are.
#[derive(Clone, Copy, Debug)]
pub struct Env {
    pub caller: Principal,
    pub now: u64,
    pub self_id: Principal,
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
    wasm: [BTreeMap<u32, Vec<u8>, M>; 2],
    moves: BTreeMap<String, MoveRecord, M>,
    move_chunks: BTreeMap<String, MoveChunk, M>,
    reverse: BTreeMap<Vec<u8>, String, M>,
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
fn partition_create_op(op_id: &OpId, outer_key: &str) -> OpId {
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
            wasm: [
                BTreeMap::init(mem(memory::WASM_SLOT_A)),
                BTreeMap::init(mem(memory::WASM_SLOT_B)),
            ],
            moves: BTreeMap::init(mem(memory::MOVES)),
            move_chunks: BTreeMap::init(mem(memory::MOVE_CHUNKS)),
            reverse: BTreeMap::init(mem(memory::REVERSE)),
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
        let config = Config {
            magic: ByteBuf::from(MAGIC.to_vec()),
            version: LAYOUT_VERSION,
            admins,
            spare_pool_target: init
                .spare_pool_target
                .unwrap_or(DEFAULT_SPARE_POOL_TARGET)
                .min(MAX_SPARE_POOL_TARGET),
            move_cap_bytes: init.move_cap_bytes.unwrap_or(DEFAULT_MOVE_CAP_BYTES),
            partition_cycles: init.partition_cycles.unwrap_or(DEFAULT_PARTITION_CYCLES),
            inline_install_limit: DEFAULT_INLINE_INSTALL_LIMIT,
            op_window: DEFAULT_OP_WINDOW,
            stats_period_ns: DEFAULT_STATS_PERIOD_NS,
            ..Config::default()
        };
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
        Ok(index)
    }

    fn forget_inflight(&mut self) {
        let ids: Vec<CallId> = self.inflight.keys().collect();
        for id in ids {
            self.inflight.remove(&id);
        }
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
        self.inflight.insert(id, purpose);
        Call {
            id,
            target,
            request,
        }
    }

    pub fn is_admin(&self, p: &Principal) -> bool {
        self.cfg().admins.contains(p)
    }

    // ---- admins -------------------------------------------------------------------------

    pub fn add_admin(&mut self, env: &Env, p: Principal) -> Result<(), AdminError> {
        if !self.is_admin(&env.caller) {
            return Err(AdminError::NotAuthorized);
        }
        if p == Principal::anonymous() {
            return Err(AdminError::Anonymous);
        }
        self.update_cfg(|c| {
            if !c.admins.contains(&p) {
                c.admins.push(p);
                c.admins.sort();
            }
        });
        Ok(())
    }

    pub fn remove_admin(&mut self, env: &Env, p: Principal) -> Result<(), AdminError> {
        if !self.is_admin(&env.caller) {
            return Err(AdminError::NotAuthorized);
        }
        if self.cfg().admins == [p] {
            return Err(AdminError::LastAdmin);
        }
        self.update_cfg(|c| c.admins.retain(|a| *a != p));
        Ok(())
    }

    // ---- partition wasm -----------------------------------------------------------------

    /// Receives the partition wasm in pieces, in order. Offset 0 starts a new upload into the
    /// inactive slot; the module becomes active once every byte arrived and its SHA-256
    /// matches. The active module stays in use until then.
    pub fn upload_partition_wasm(
        &mut self,
        env: &Env,
        chunk: WasmChunk,
    ) -> Result<UploadProgress, UploadWasmError> {
        if !self.is_admin(&env.caller) {
            return Err(UploadWasmError::NotAuthorized);
        }
        if chunk.total_len > MAX_PARTITION_WASM_BYTES as u64 {
            return Err(UploadWasmError::TooLarge {
                len: chunk.total_len,
                max: MAX_PARTITION_WASM_BYTES as u64,
            });
        }
        if chunk.bytes.len() > MAX_WASM_UPLOAD_CHUNK_BYTES {
            return Err(UploadWasmError::ChunkTooLarge {
                len: chunk.bytes.len() as u64,
                max: MAX_WASM_UPLOAD_CHUNK_BYTES as u64,
            });
        }
        let mut upload = match (&self.cfg().upload, chunk.offset) {
            (_, 0) => {
                let slot = self.cfg().wasm.as_ref().map_or(0, |w| w.slot ^ 1);
                self.wasm[slot as usize].clear_new();
                Upload {
                    slot,
                    total_len: chunk.total_len,
                    sha256: chunk.sha256.clone(),
                    received: 0,
                }
            }
            (Some(u), off) if off == u.received => u.clone(),
            (u, off) => {
                return Err(UploadWasmError::OutOfOrder {
                    expected: u.as_ref().map_or(0, |u| u.received),
                    got: off,
                })
            }
        };
        if upload.total_len != chunk.total_len || upload.sha256 != chunk.sha256 {
            return Err(UploadWasmError::Mismatch);
        }
        if upload.received + chunk.bytes.len() as u64 > upload.total_len {
            return Err(UploadWasmError::TooLarge {
                len: upload.received + chunk.bytes.len() as u64,
                max: upload.total_len,
            });
        }
        // Store in fixed pieces so the module is read back in order.
        let slot = &mut self.wasm[upload.slot as usize];
        let mut pos = upload.received as usize;
        for b in chunk.bytes.chunks(WASM_STORE_PIECE) {
            let mut rest = b;
            while !rest.is_empty() {
                let piece = (pos / WASM_STORE_PIECE) as u32;
                let mut cur = slot.get(&piece).unwrap_or_default();
                let room = WASM_STORE_PIECE - cur.len();
                let take = room.min(rest.len());
                cur.extend_from_slice(&rest[..take]);
                slot.insert(piece, cur);
                pos += take;
                rest = &rest[take..];
            }
        }
        upload.received = pos as u64;
        let complete = upload.received == upload.total_len;
        if complete {
            let wasm = self.read_wasm(upload.slot);
            let sha = Sha256::digest(&wasm).to_vec();
            if sha != upload.sha256.as_slice() {
                self.update_cfg(|c| c.upload = None);
                return Err(UploadWasmError::HashMismatch);
            }
            let meta = WasmMeta {
                slot: upload.slot,
                len: upload.total_len,
                sha256: upload.sha256.clone(),
            };
            self.update_cfg(|c| {
                c.wasm = Some(meta);
                c.upload = None;
            });
        } else {
            self.update_cfg(|c| c.upload = Some(upload.clone()));
        }
        Ok(UploadProgress {
            received: upload.received,
            complete,
        })
    }

    fn read_wasm(&self, slot: u8) -> Vec<u8> {
        let mut out = vec![];
        for e in self.wasm[slot as usize].iter() {
            out.extend_from_slice(&e.value());
        }
        out
    }

    #[cfg(test)]
    fn active_wasm(&self) -> Option<Vec<u8>> {
        self.cfg().wasm.as_ref().map(|w| self.read_wasm(w.slot))
    }

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
        let Some(partition) = self.place(env) else {
            if self.cfg().wasm.is_none() {
                return Step::Done(Err(CreateError::NoPartitionWasm));
            }
            return Step::Done(Err(CreateError::NoCapacity));
        };
        let owner = req.owner.unwrap_or(env.caller);
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
    fn redrive(&mut self, outer_key: &str) -> Option<Call> {
        let key = outer_key.to_string();
        let pending = self.pending.get(&key)?;
        let entry = self.directory.get(&key)?;
        let (request, purpose) = match pending {
            PendingCall::Create(a) => (Request::CreateSubDb(a), Purpose::Create { outer_key: key }),
            PendingCall::Delete(a) => (Request::DeleteSubDb(a), Purpose::Delete { outer_key: key }),
        };
        if self.inflight.iter().any(|e| e.value() == purpose) {
            return None;
        }
        Some(self.next_call(entry.partition, request, purpose))
    }

    // ---- replies ------------------------------------------------------------------------

    /// Feeds back the result of call `id`. Unknown ids (already answered, or forgotten across
    /// an upgrade) are ignored.
    pub fn on_reply(&mut self, env: &Env, id: CallId, result: CallResult) -> Reaction {
        let Some(purpose) = self.inflight.remove(&id) else {
            return Reaction::default();
        };
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
            Purpose::Stats { partition } => {
                let mut calls = vec![];
                if let Ok(Response::Stats(Ok(stats))) = result {
                    if let Some(mut rec) = self.registry.get(&partition) {
                        // Bytes of deleted or moved-away SubDBs still being reclaimed do
                        // not count: they are on their way out.
                        rec.bytes = stats.bytes.saturating_sub(stats.purging_bytes);
                        rec.items = stats.items;
                        rec.subdbs = stats.live_subdbs;
                        rec.stable_memory_bytes = stats.stable_memory_bytes;
                        rec.stats_at = env.now;
                        if rec.state == PartitionState::Active
                            && rec.bytes > self.cfg().move_cap_bytes
                        {
                            rec.state = PartitionState::Full;
                        } else if rec.state == PartitionState::Full
                            && rec.bytes <= self.cfg().move_cap_bytes
                        {
                            rec.state = PartitionState::Active;
                        }
                        self.registry.insert(partition, rec);
                        calls = self.maybe_start_move(env, partition, &stats);
                    }
                }
                Reaction {
                    calls,
                    finished: None,
                }
            }
        }
    }

    fn created(&mut self, outer_key: &str, result: CallResult) -> Result<InnerKey, CreateError> {
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
                    self.registry.insert(inner.partition, rec);
                }
                Ok(inner)
            }
            Ok(Response::SubDbCreated(Err(e))) => {
                // Refused: nothing was created; release the name and forget the op.
                self.directory.remove(&key);
                self.pending.remove(&key);
                self.forget_op(&entry.op_id);
                Err(CreateError::Partition(e))
            }
            Ok(other) => Err(CreateError::PartitionUnavailable {
                reason: format!("unexpected reply {other:?}"),
            }),
            Err(Reject { message, .. }) => {
                // Even a clean reject of this attempt says nothing of earlier ones with the same
                // op id (a lost reply, a call forgotten across an upgrade): the name stays
                // reserved and a retry or `tick` re-drives the identical call until the
                // partition answers. Only the partition's own refusal releases the name.
                Err(CreateError::PartitionUnavailable { reason: message })
            }
        }
    }

    fn deleted(
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
            index.reverse.remove(&moves::reverse_key(&entry.inner()));
            index.pending.remove(&key);
            index.finish_op(&entry.op_id, entry.inner());
            index.update_cfg(|c| c.routing_version += 1);
            if let Some(mut rec) = index.registry.get(&entry.partition) {
                rec.subdbs = rec.subdbs.saturating_sub(1);
                index.registry.insert(entry.partition, rec);
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
            Ok(other) => Err(E::PartitionUnavailable {
                reason: format!("unexpected reply {other:?}"),
            }),
            Err(Reject { message, certain }) => {
                if certain {
                    self.pending.remove(&key);
                    self.forget_op(&entry.op_id);
                    entry.state = DirState::Live;
                    entry.op_id.clear();
                    self.directory.insert(key, entry);
                }
                Err(E::PartitionUnavailable { reason: message })
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

    /// A page of the routing snapshot, in outer-key order, with the routing version.
    pub fn routes(&self, req: &RoutesRequest) -> RoutesPage {
        let limit = req
            .limit
            .unwrap_or(MAX_ROUTES_PAGE)
            .clamp(1, MAX_ROUTES_PAGE) as usize;
        let iter = match &req.start_after {
            Some(k) => self.directory.range((
                std::ops::Bound::Excluded(k.clone()),
                std::ops::Bound::Unbounded,
            )),
            None => self.directory.iter(),
        };
        let mut routes = vec![];
        let mut next = None;
        for e in iter {
            if routes.len() == limit {
                next = routes.last().map(|r: &Route| r.outer_key.clone());
                break;
            }
            let (k, v) = e.into_pair();
            if v.state != DirState::Creating {
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

    pub fn stats(&self) -> IndexStats {
        let c = self.cfg();
        IndexStats {
            routing_version: c.routing_version,
            subdbs: self.directory.len(),
            partitions: self
                .partitions_in_order()
                .into_iter()
                .map(|(id, r)| PartitionInfo {
                    id,
                    state: r.state,
                    bytes: r.bytes,
                    items: r.items,
                    subdbs: r.subdbs,
                    stable_memory_bytes: r.stable_memory_bytes,
                    stats_at: r.stats_at,
                    created_at: r.created_at,
                })
                .collect(),
            spare_pool_target: c.spare_pool_target,
            move_cap_bytes: c.move_cap_bytes,
            partitions_being_created: self.jobs.len() as u32,
            partition_wasm: c.wasm.as_ref().map(|w| WasmInfo {
                len: w.len,
                sha256: w.sha256.clone(),
            }),
            admins: c.admins.clone(),
            moves: self.moves(),
        }
    }

    // ---- placement and registry ---------------------------------------------------------

    fn partitions_in_order(&self) -> Vec<(Principal, PartitionRecord)> {
        let mut v: Vec<_> = self.registry.iter().map(|e| e.into_pair()).collect();
        v.sort_by_key(|(_, r)| r.seq);
        v
    }

    /// Where a new SubDB goes, per the placement policy; promotes a spare when needed.
    fn place(&mut self, env: &Env) -> Option<Principal> {
        match self.cfg().placement {
            Placement::LastWithRoom => self.newest_with_room(env, None, 1),
        }
    }

    /// The newest active partition (other than `exclude`) with room for `need` more bytes
    /// under the move cap, else the oldest spare, promoted to active and newest.
    pub(crate) fn newest_with_room(
        &mut self,
        env: &Env,
        exclude: Option<Principal>,
        need: u64,
    ) -> Option<Principal> {
        let cap = self.cfg().move_cap_bytes;
        let parts = self.partitions_in_order();
        if let Some((id, _)) = parts.iter().rev().find(|(id, r)| {
            Some(*id) != exclude
                && r.state == PartitionState::Active
                && r.bytes.saturating_add(need) <= cap
        }) {
            return Some(*id);
        }
        let (id, rec) = parts
            .into_iter()
            .find(|(_, r)| r.state == PartitionState::Spare)?;
        self.promote_spare(env, id, rec);
        Some(id)
    }

    /// Makes spare `id` active and the newest partition.
    pub(crate) fn promote_spare(&mut self, env: &Env, id: Principal, mut rec: PartitionRecord) {
        rec.state = PartitionState::Active;
        rec.seq = self.bump_partition_seq();
        rec.stats_at = rec.stats_at.min(env.now);
        self.registry.insert(id, rec);
    }

    fn bump_partition_seq(&mut self) -> u64 {
        let mut seq = 0;
        self.update_cfg(|c| {
            seq = c.next_partition_seq;
            c.next_partition_seq += 1;
        });
        seq
    }

    // ---- background work ----------------------------------------------------------------

    /// `tick` on an admin's request (instead of waiting for the timer).
    pub fn run_housekeeping(&mut self, env: &Env) -> Result<Vec<Call>, AdminError> {
        if !self.is_admin(&env.caller) {
            return Err(AdminError::NotAuthorized);
        }
        Ok(self.tick(env))
    }

    /// Periodic work: keep the spare pool full, drive partition-creation jobs, re-drive
    /// creates and deletes whose outcome is unknown, refresh partition stats.
    pub fn tick(&mut self, env: &Env) -> Vec<Call> {
        let mut calls = vec![];
        // Spare pool.
        if self.cfg().wasm.is_some() {
            let spares = self
                .registry
                .iter()
                .filter(|e| e.value().state == PartitionState::Spare)
                .count() as u64;
            let mut have = spares.saturating_add(self.jobs.len());
            let target = self.cfg().spare_pool_target.min(MAX_SPARE_POOL_TARGET) as u64;
            while have < target {
                self.new_job();
                have += 1;
            }
        }
        // Jobs without a call in flight.
        let idle: Vec<u64> = self
            .jobs
            .iter()
            .filter(|e| e.value().call.is_none())
            .map(|e| *e.key())
            .collect();
        for job in idle {
            calls.extend(self.job_step(env, job));
        }
        // Pending creates and deletes.
        let pending: Vec<String> = self.pending.keys().collect();
        for k in pending {
            calls.extend(self.redrive(&k));
        }
        // Moves (each waits while one of its calls is in flight).
        let moving: Vec<String> = self.moves.keys().collect();
        for k in moving {
            calls.extend(self.drive_move(&k));
        }
        // Stats.
        let period = self.cfg().stats_period_ns;
        let stale: Vec<Principal> = self
            .registry
            .iter()
            .filter(|e| {
                e.value().stats_at == 0 || env.now.saturating_sub(e.value().stats_at) >= period
            })
            .map(|e| *e.key())
            .collect();
        for p in stale {
            let purpose = Purpose::Stats { partition: p };
            if !self.inflight.iter().any(|e| e.value() == purpose) {
                let req = Request::Stats(StatsArgs {
                    from: 0,
                    limit: MAX_STATS_SUBDBS,
                });
                calls.push(self.next_call(p, req, purpose));
            }
        }
        calls
    }

    fn new_job(&mut self) -> u64 {
        let mut id = 0;
        self.update_cfg(|c| {
            id = c.next_job_id;
            c.next_job_id = c.next_job_id.wrapping_add(1);
        });
        self.jobs.insert(
            id,
            JobRecord {
                job: Job::Create,
                call: None,
                mode: InstallMode::Install,
                attempts: 0,
                module: None,
                failures: None,
            },
        );
        id
    }

    /// The call for a job's current step. Every step reads the active module afresh and
    /// compares it with the one the job pinned: after an admin's re-upload, an upload in
    /// progress starts over with the new module (the chunk hashes gathered so far are
    /// dropped), so no step ever indexes a chunk list of another module.
    fn job_step(&mut self, env: &Env, id: u64) -> Option<Call> {
        let mut rec = self.jobs.get(&id)?;
        if rec.call.is_some() {
            return None;
        }
        let purpose = Purpose::Job { job: id };
        let mgmt = Principal::management_canister();
        let arg = || {
            ByteBuf::from(
                candid::encode_one(PartitionInit { index: env.self_id }).expect("encode init"),
            )
        };
        let request = match rec.job.clone() {
            Job::Create => Request::CreateCanister {
                cycles: self.cfg().partition_cycles,
            },
            job @ (Job::Install { .. } | Job::Upload { .. } | Job::InstallChunked { .. }) => {
                let meta = self.cfg().wasm.clone()?;
                let canister = match &job {
                    Job::Install { canister }
                    | Job::Upload { canister, .. }
                    | Job::InstallChunked { canister, .. } => *canister,
                    Job::Create => unreachable!("matched above"),
                };
                let mut hashes = match job {
                    Job::Upload { hashes, .. } | Job::InstallChunked { hashes, .. } => hashes,
                    _ => vec![],
                };
                if rec.module.as_ref() != Some(&meta.sha256) {
                    // A new module (or none pinned yet): start its upload from scratch.
                    rec.module = Some(meta.sha256.clone());
                    hashes.clear();
                }
                if meta.len <= self.cfg().inline_install_limit {
                    rec.job = Job::Install { canister };
                    Request::InstallCode {
                        canister,
                        mode: rec.mode,
                        wasm: ByteBuf::from(self.read_wasm(meta.slot)),
                        arg: arg(),
                    }
                } else {
                    let pieces = meta.len.div_ceil(WASM_CHUNK_BYTES as u64) as usize;
                    if hashes.len() >= pieces {
                        hashes.truncate(pieces);
                        rec.job = Job::InstallChunked {
                            canister,
                            hashes: hashes.clone(),
                        };
                        Request::InstallChunkedCode {
                            canister,
                            mode: rec.mode,
                            chunk_hashes: hashes,
                            wasm_sha256: meta.sha256,
                            arg: arg(),
                        }
                    } else {
                        let n = hashes.len();
                        let chunk = self.wasm_piece(meta.slot, n)?;
                        rec.job = Job::Upload { canister, hashes };
                        Request::UploadChunk {
                            canister,
                            chunk: ByteBuf::from(chunk),
                        }
                    }
                }
            }
        };
        let call = self.next_call(mgmt, request, purpose);
        rec.call = Some(call.id);
        rec.attempts = rec.attempts.saturating_add(1);
        self.jobs.insert(id, rec);
        Some(call)
    }

    /// Chunk `n` (of `WASM_CHUNK_BYTES`) of the module in `slot`, if it has one.
    fn wasm_piece(&self, slot: u8, n: usize) -> Option<Vec<u8>> {
        // Storage pieces and chunk-store chunks have the same size.
        const _: () = assert!(WASM_STORE_PIECE == WASM_CHUNK_BYTES);
        self.wasm[slot as usize]
            .get(&u32::try_from(n).ok()?)
            .filter(|p| !p.is_empty())
    }

    fn job_reply(&mut self, env: &Env, id: u64, result: CallResult) -> Vec<Call> {
        let Some(mut rec) = self.jobs.get(&id) else {
            return vec![];
        };
        rec.call = None;
        let next = match (&rec.job, result) {
            (Job::Create, Ok(Response::CanisterCreated(canister))) => {
                Some(Job::Install { canister })
            }
            (
                Job::Install { canister } | Job::InstallChunked { canister, .. },
                Ok(Response::Installed),
            ) => {
                let canister = *canister;
                self.jobs.remove(&id);
                let seq = self.bump_partition_seq();
                self.registry.insert(
                    canister,
                    PartitionRecord {
                        state: PartitionState::Spare,
                        seq,
                        bytes: 0,
                        items: 0,
                        subdbs: 0,
                        stable_memory_bytes: 0,
                        stats_at: 0,
                        created_at: env.now,
                    },
                );
                return vec![];
            }
            (Job::Upload { canister, hashes }, Ok(Response::ChunkUploaded { hash })) => {
                let mut hashes = hashes.clone();
                hashes.push(hash);
                Some(Job::Upload {
                    canister: *canister,
                    hashes,
                })
            }
            // A failed step is retried by the next tick. An install may have run although its
            // reply was lost: retry it as a reinstall. A lost `create_canister` reply may leave
            // an orphan canister behind: the management canister cannot deduplicate creations.
            (Job::Install { .. } | Job::InstallChunked { .. }, _) => {
                rec.mode = InstallMode::Reinstall;
                None
            }
            _ => None,
        };
        if let Some(job) = next {
            rec.job = job;
            rec.failures = None;
            self.jobs.insert(id, rec);
            self.job_step(env, id).into_iter().collect()
        } else {
            let failures = rec.failures.unwrap_or(0).saturating_add(1);
            if failures >= MAX_JOB_FAILURES {
                // Keeps failing (out of cycles, a module the canister rejects, ...): drop it,
                // so it no longer counts toward the spare pool; the next tick starts afresh.
                self.jobs.remove(&id);
            } else {
                rec.failures = Some(failures);
                self.jobs.insert(id, rec);
            }
            vec![]
        }
    }
}

#[cfg(test)]
mod tests;
