//! Flotilla's partition logic: every endpoint of a partition canister as a plain method over
//! [`Partition`], which owns the SubDB [`Store`] and the partition's own stable state.
//!
//! # Free of IO
//!
//! A handler takes the caller's principal and the decoded arguments, reads and writes this
//! partition's stable memories, and returns a typed result. That is all it can do: this crate
//! has **no facility to make inter-canister calls** — it depends on neither `ic-cdk` nor
//! `ic0`, no handler returns calls to be made, and authorization is decided from the SubDB's
//! own access lists (see [`access`]), stored beside its data and moved with it. Values the
//! logic cannot know (the stable memory size for [`Partition::stats`]) are passed in by the
//! canister, and no handler depends on the time. The canister crate
//! (`canisters/partition`) only decodes, calls, and encodes.
//!
//! # Resolving a SubDB id
//!
//! A live SubDB goes on to authorization; an id that moved away answers `Moved { to }` from
//! its tombstone to a caller who could read the SubDB when it moved; anything else answers
//! `UnknownSubDb`. A caller who may not read a SubDB, live or moved, gets exactly the answer
//! of an id never used: it learns nothing of other users' SubDBs, not even that they exist
//! (`NotAuthorized` is for callers who may read it but lack the right the call needs). Store
//! ids are never reused, so a stale id can never reach another SubDB. A mutation on an
//! unknown id still consults the op-id log, so a retry of a `delete_subdb` that succeeded gets
//! its first result back.
//!
//! # Byte quota
//!
//! A SubDB may carry a byte quota in its metadata blob (see [`access`]); `put` and `batch`
//! refuse a write that would take it past the quota (`QuotaExceeded`), storing nothing.
//!
//! # Who may call what
//!
//! User endpoints follow the SubDB's [`Access`]: readers read, writers read and write, the
//! owner also changes the access lists. `delete_subdb` is the index's alone (owners delete
//! through the index). Housekeeping
//! endpoints accept only the index principal recorded at install; anyone else gets
//! `NotAuthorized`. A refused call changes nothing.
//!
//! Op ids of user calls are salted with the caller's principal bytes, those of
//! `create_subdb_local` with the index's, so one principal's op id never replays another's
//! call.
//!
//! Persisted formats: [`layout`] (state cell, tombstones, imports, the access kept beside
//! tombstones) and [`access`] (the per-SubDB metadata blob). Memory ids:
//! [`flotilla_store::memory`].

pub mod access;
pub mod dispatch;
pub mod inspect;
pub mod layout;

use access::AccessView;
use candid::Principal;
use flotilla_store::memory::{
    PARTITION_IMPORTS, PARTITION_STATE, PARTITION_TOMBSTONES, PARTITION_TOMB_ACCESS,
};
use flotilla_store::{Config, InitError, OpCtx, Store};
use flotilla_types::limits::{
    MAX_ACCESS_PRINCIPALS, MAX_BATCH_BYTES, MAX_BATCH_OPS, MAX_GET_MANY_KEYS, MAX_KEY_BYTES,
    MAX_SUBDB_META_BYTES, MAX_VALUE_BYTES, MIN_CHUNK_BUDGET_BYTES, REPLY_BUDGET_BYTES,
};
use flotilla_types::partition::{
    Access, BatchArgs, BeginExportArgs, BeginImportArgs, BeginImportError, CreateLocalArgs,
    DeleteArgs, DeleteSubDbArgs, ExportArgs, ExportDeltaArgs, ExportDeltaReply, ExportReply,
    GetArgs, GetManyArgs, GetManyError, GetManyReply, HousekeepingError, ImportChunkArgs,
    PartitionInit, PartitionStats, PutArgs, ReleaseArgs, ReleaseError, ResumeWritesError,
    ScanRequest, SetAccessArgs, SetAccessError, StatsArgs, StatsError, SubDbStatsError,
    MAX_STATS_SUBDBS,
};
use flotilla_types::{
    BatchError, BatchOp, BatchOutcome, CreateSubDbError, DeleteError, DeleteSubDbError,
    ExportError, GetError, ImportError, InnerKey, PutError, PutOutcome, ScanError, ScanPage,
    SubDbId, SubDbStats,
};
use ic_stable_structures::memory_manager::MemoryId;
use ic_stable_structures::{BTreeMap, Cell, Memory};
use layout::{ImportKey, RawState, State, Tomb};
use serde_bytes::ByteBuf;

/// Why a partition's stable memory cannot be opened.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PartitionInitError {
    #[error("the SubDB store cannot be opened: {0}")]
    Store(#[from] InitError),
    #[error("memory holds no partition state (magic {found:?})")]
    BadMagic { found: [u8; 4] },
    #[error("partition layout version {found} is not supported (this build reads {supported})")]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("the partition state region is malformed")]
    Corrupt,
    #[error("memory already holds a partition (index {index})")]
    AlreadyInstalled { index: Principal },
    #[error("memory holds no partition to open")]
    NotInstalled,
    #[error("the index cannot be the anonymous principal")]
    AnonymousIndex,
}

/// The magic of an ic-stable-structures `Cell` header, to tell an empty or foreign region
/// from a cell before `Cell::init` (which would overwrite a foreign region).
const CELL_MAGIC: &[u8; 3] = b"SCL";

/// One partition: the SubDB store plus the partition's own regions.
pub struct Partition<M: Memory> {
    store: Store<M>,
    index: Principal,
    tombstones: BTreeMap<SubDbId, Tomb, M>,
    /// The metadata blob each moved SubDB had when it was released (see `release`).
    tomb_access: BTreeMap<SubDbId, Vec<u8>, M>,
    imports: BTreeMap<ImportKey, SubDbId, M>,
}

/// What a user call needs from the SubDB's access lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    Read,
    Write,
    Own,
}

/// Errors of user endpoints, which all report routing and authorization the same way.
trait UserError {
    fn unknown() -> Self;
    fn moved(to: InnerKey) -> Self;
    fn not_authorized() -> Self;
}

macro_rules! user_error {
    ($($t:ident),*) => {$(
        impl UserError for $t {
            fn unknown() -> Self { $t::UnknownSubDb }
            fn moved(to: InnerKey) -> Self { $t::Moved { to } }
            fn not_authorized() -> Self { $t::NotAuthorized }
        }
    )*};
}
user_error!(
    PutError,
    DeleteError,
    BatchError,
    GetError,
    ScanError,
    DeleteSubDbError,
    SetAccessError,
    SubDbStatsError
);

/// Errors of user endpoints that mutate: they also report a write pause.
trait WriteError: UserError {
    fn writes_paused() -> Self;
}

macro_rules! write_error {
    ($($t:ident),*) => {$(
        impl WriteError for $t {
            fn writes_paused() -> Self { $t::WritesPaused }
        }
    )*};
}
write_error!(
    PutError,
    DeleteError,
    DeleteSubDbError,
    SetAccessError,
    BatchError
);

/// Errors of index-only endpoints (housekeeping, `delete_subdb`): anyone but the index is
/// refused with the operation's own `NotAuthorized`.
trait IndexOnlyError {
    fn not_authorized() -> Self;
}

macro_rules! index_only_error {
    ($($t:ident),*) => {$(
        impl IndexOnlyError for $t {
            fn not_authorized() -> Self { $t::NotAuthorized }
        }
    )*};
}
index_only_error!(
    DeleteSubDbError,
    CreateSubDbError,
    StatsError,
    HousekeepingError,
    BeginImportError,
    ImportError,
    ResumeWritesError,
    ReleaseError
);

/// Where a SubDB id leads.
enum Located {
    /// Live here, with its metadata blob.
    Live(Vec<u8>),
    Moved(InnerKey),
    Unknown,
}

/// What a user call learned of a SubDB id once authorized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    /// Live here, and the caller has what the call needs; with the SubDB's byte quota.
    Live { max_bytes: Option<u64> },
    /// Nothing here under this id (never created, deleted, or importing): a mutation still
    /// consults the op-id log, so a retry of a call that succeeded gets its answer back.
    Absent,
    /// Live here, or moved away, but the caller may not read it: the call must answer
    /// exactly as for an absent id, and must not reach the SubDB.
    Hidden,
}

/// The answer of a mutation on a SubDB the caller may not see: what the store answers for an
/// absent id and an op id this caller never used on it (`InvalidOpId` first, then
/// `UnknownSubDb`).
fn hidden<E: UserError + From<flotilla_types::InvalidOpId>>(op_id: &flotilla_types::OpId) -> E {
    match op_id.validate() {
        Err(e) => e.into(),
        Ok(()) => E::unknown(),
    }
}

impl<M: Memory> Partition<M> {
    // ---- lifecycle ------------------------------------------------------------------------

    /// Sets up a new partition in empty memories (one per [`flotilla_store::memory`] id).
    /// Refuses memories that already hold a partition, and an anonymous index.
    pub fn install(
        mut mem: impl FnMut(MemoryId) -> M,
        init: &PartitionInit,
        config: Config,
    ) -> Result<Self, PartitionInitError> {
        if init.index == Principal::anonymous() {
            return Err(PartitionInitError::AnonymousIndex);
        }
        if mem(PARTITION_STATE).size() > 0 {
            return Err(match read_state(mem(PARTITION_STATE)) {
                Ok(s) => PartitionInitError::AlreadyInstalled { index: s.index },
                Err(e) => e,
            });
        }
        let store = Store::init(&mut mem, config)?;
        let state = State { index: init.index };
        Cell::new(mem(PARTITION_STATE), state.encode());
        Ok(Self::assemble(store, state, mem))
    }

    /// Re-opens a partition from its memories (after an upgrade). Everything is in stable
    /// memory, so nothing needs saving before the upgrade.
    pub fn open(mut mem: impl FnMut(MemoryId) -> M) -> Result<Self, PartitionInitError> {
        let state = read_state(mem(PARTITION_STATE))?;
        let store = Store::init(&mut mem, Config::default())?;
        Ok(Self::assemble(store, state, mem))
    }

    fn assemble(store: Store<M>, state: State, mut mem: impl FnMut(MemoryId) -> M) -> Self {
        Partition {
            store,
            index: state.index,
            tombstones: BTreeMap::init(mem(PARTITION_TOMBSTONES)),
            tomb_access: BTreeMap::init(mem(PARTITION_TOMB_ACCESS)),
            imports: BTreeMap::init(mem(PARTITION_IMPORTS)),
        }
    }

    // ---- inspection -----------------------------------------------------------------------

    /// The only principal housekeeping endpoints accept.
    pub fn index(&self) -> Principal {
        self.index
    }

    pub fn store(&self) -> &Store<M> {
        &self.store
    }

    /// The access lists of a live SubDB (`None` if it is not live or its blob is unreadable).
    pub fn access(&self, subdb: SubDbId) -> Option<Access> {
        match self.locate(subdb) {
            Located::Live(meta) => access::decode(&meta),
            _ => None,
        }
    }

    /// Where a SubDB that moved away lives now.
    pub fn tombstone(&self, subdb: SubDbId) -> Option<InnerKey> {
        self.tombstones.get(&subdb).map(|t| t.0)
    }

    // ---- routing and authorization --------------------------------------------------------

    fn locate(&self, id: SubDbId) -> Located {
        if self.store.exists(id) {
            return Located::Live(self.store.meta(id).unwrap_or_default());
        }
        match self.tombstones.get(&id) {
            Some(Tomb(to)) => Located::Moved(to),
            None => Located::Unknown,
        }
    }

    /// Resolves `id` and checks the caller against its access lists.
    ///
    /// A caller who may not read the SubDB learns nothing of it: a live SubDB is
    /// [`Gate::Hidden`], and so is a moved one unless the access lists it had when it moved
    /// let the caller read it (only then is the answer `Moved { to }`). A caller who may read
    /// it but lacks what `need` asks gets `NotAuthorized`.
    fn authorize<E: UserError>(
        &self,
        caller: &Principal,
        id: SubDbId,
        need: Need,
    ) -> Result<Gate, E> {
        match self.locate(id) {
            Located::Live(meta) => {
                let Some(a) = AccessView::parse(&meta).filter(|a| a.may_read(caller)) else {
                    return Ok(Gate::Hidden);
                };
                let ok = match need {
                    Need::Read => true,
                    Need::Write => a.may_write(caller),
                    Need::Own => a.is_owner(caller),
                };
                if ok {
                    Ok(Gate::Live {
                        max_bytes: a.max_bytes(),
                    })
                } else {
                    Err(E::not_authorized())
                }
            }
            Located::Moved(to) => {
                let readable = self
                    .tomb_access
                    .get(&id)
                    .is_some_and(|m| AccessView::parse(&m).is_some_and(|a| a.may_read(caller)));
                if readable {
                    Err(E::moved(to))
                } else {
                    Ok(Gate::Hidden)
                }
            }
            Located::Unknown => Ok(Gate::Absent),
        }
    }

    /// The one gate of every user mutation (put, delete, batch, set_access, and any endpoint
    /// added later that writes): [`Self::authorize`], then refuses with `WritesPaused` while
    /// the SubDB's writes are paused — a move's source during the cutover, or a move's target
    /// from the moment it went live until the index, having routed the SubDB there, calls
    /// [`Partition::resume_writes`]. Reads are never paused.
    fn authorize_write<E: WriteError>(
        &self,
        caller: &Principal,
        id: SubDbId,
        need: Need,
    ) -> Result<Gate, E> {
        let gate = self.authorize::<E>(caller, id, need)?;
        if matches!(gate, Gate::Live { .. }) && self.store.is_frozen(id) {
            return Err(E::writes_paused());
        }
        Ok(gate)
    }

    fn authorize_read<E: UserError>(&self, caller: &Principal, id: SubDbId) -> Result<(), E> {
        match self.authorize::<E>(caller, id, Need::Read)? {
            Gate::Live { .. } => Ok(()),
            Gate::Absent | Gate::Hidden => Err(E::unknown()),
        }
    }

    /// Whether writing `ops` (see [`flotilla_store::ProjectedOp`]) under `op_id` would take
    /// SubDB `id` past its byte quota `max`: the bytes it would hold after them are over
    /// `max` and more than it holds now (a write that does not grow a SubDB is always
    /// admitted). An op id the log still remembers for this SubDB is never refused here: its
    /// retry replays its first answer (or conflicts) in the store. `puts_bytes` (the keys
    /// and values the ops put) bounds the growth, so a SubDB well under its quota is not
    /// projected at all.
    fn over_quota<'a>(
        &self,
        id: SubDbId,
        op_id: &flotilla_types::OpId,
        max: u64,
        puts_bytes: u64,
        ops: impl IntoIterator<Item = flotilla_store::ProjectedOp<'a>>,
    ) -> bool {
        let Some(now) = self.store.stats(id).map(|s| s.bytes) else {
            return false;
        };
        if now.saturating_add(puts_bytes) <= max || self.store.op_recorded(id, op_id) {
            return false;
        }
        self.store
            .bytes_after(id, ops)
            .is_some_and(|after| after > max && after > now)
    }

    /// The guard of every index-only endpoint: `NotAuthorized` (as `E`) unless the caller is
    /// the index recorded at install.
    fn require_index<E: IndexOnlyError>(&self, caller: &Principal) -> Result<(), E> {
        if *caller == self.index {
            Ok(())
        } else {
            Err(E::not_authorized())
        }
    }

    // ---- user endpoints -------------------------------------------------------------------

    /// Inserts or replaces an item (writers and the owner). Idempotent by op id.
    ///
    /// A put that would take the SubDB past its byte quota (see [`Self::over_quota`]) is
    /// refused with `QuotaExceeded` and stores nothing; the key, value and op id are checked
    /// first.
    pub fn put(&mut self, caller: Principal, args: &PutArgs) -> Result<PutOutcome, PutError> {
        match self.authorize_write::<PutError>(&caller, args.subdb, Need::Write)? {
            Gate::Hidden => return Err(hidden(&args.op_id)),
            Gate::Live {
                max_bytes: Some(max),
            } if args.key.len() <= MAX_KEY_BYTES
                && args.value.len() <= MAX_VALUE_BYTES
                && args.op_id.validate().is_ok() =>
            {
                let len = (args.key.len() + args.value.len()) as u64;
                let op = (&args.key[..], Some(args.value.len()));
                if self.over_quota(args.subdb, &args.op_id, max, len, [op]) {
                    return Err(PutError::QuotaExceeded { max_bytes: max });
                }
            }
            _ => {}
        }
        let op = OpCtx {
            op_id: &args.op_id,
            salt: caller.as_slice(),
        };
        self.store.put(Some(op), args.subdb, &args.key, &args.value)
    }

    /// Removes an item (writers and the owner); `true` if it was there. Idempotent by op id.
    pub fn delete(&mut self, caller: Principal, args: &DeleteArgs) -> Result<bool, DeleteError> {
        if self.authorize_write::<DeleteError>(&caller, args.subdb, Need::Write)? == Gate::Hidden {
            return Err(hidden(&args.op_id));
        }
        let op = OpCtx {
            op_id: &args.op_id,
            salt: caller.as_slice(),
        };
        self.store.delete(Some(op), args.subdb, &args.key)
    }

    /// Applies many puts and deletes to one SubDB atomically under one op id (writers and the
    /// owner), within `MAX_BATCH_OPS` ops and `MAX_BATCH_BYTES` (see `Store::batch`).
    /// Idempotent by op id. A batch that would take the SubDB past its byte quota (see
    /// [`Self::over_quota`]) is refused whole with `QuotaExceeded`, once every op is checked.
    pub fn batch(
        &mut self,
        caller: Principal,
        args: &BatchArgs,
    ) -> Result<BatchOutcome, BatchError> {
        match self.authorize_write::<BatchError>(&caller, args.subdb, Need::Write)? {
            Gate::Hidden => {
                // As the store answers for an absent id: the request's own checks first.
                if args.ops.is_empty() {
                    return Err(BatchError::EmptyBatch);
                }
                if args.ops.len() > MAX_BATCH_OPS {
                    return Err(BatchError::TooManyOps {
                        len: args.ops.len() as u64,
                        max: MAX_BATCH_OPS as u64,
                    });
                }
                return Err(hidden(&args.op_id));
            }
            Gate::Live {
                max_bytes: Some(max),
            } if batch_is_valid(args) => {
                let puts: u64 = args
                    .ops
                    .iter()
                    .map(|o| match o {
                        BatchOp::Put { key, value } => (key.len() + value.len()) as u64,
                        BatchOp::Delete { .. } => 0,
                    })
                    .sum();
                let ops = args.ops.iter().map(|o| match o {
                    BatchOp::Put { key, value } => (&key[..], Some(value.len())),
                    BatchOp::Delete { key } => (&key[..], None),
                });
                if self.over_quota(args.subdb, &args.op_id, max, puts, ops) {
                    return Err(BatchError::QuotaExceeded { max_bytes: max });
                }
            }
            _ => {}
        }
        let op = OpCtx {
            op_id: &args.op_id,
            salt: caller.as_slice(),
        };
        self.store.batch(Some(op), args.subdb, &args.ops)
    }

    /// Reads many `(SubDB, key)` pairs, each answered exactly as [`Partition::get`] answers
    /// it, in order, until the next result would take the reply past `REPLY_BUDGET_BYTES`
    /// (counted by [`GetManyReply::result_budget_bytes`]); the first result is always given.
    /// At most `MAX_GET_MANY_KEYS` pairs.
    pub fn get_many(
        &self,
        caller: Principal,
        args: &GetManyArgs,
    ) -> Result<GetManyReply, GetManyError> {
        if args.keys.len() > MAX_GET_MANY_KEYS {
            return Err(GetManyError::TooManyKeys {
                len: args.keys.len() as u64,
                max: MAX_GET_MANY_KEYS as u64,
            });
        }
        // Each SubDB is resolved and authorized once per call.
        let mut allowed: std::collections::BTreeMap<SubDbId, Result<(), GetError>> =
            Default::default();
        let mut reply = GetManyReply::default();
        let mut used = 0;
        for k in &args.keys {
            let access = allowed
                .entry(k.subdb)
                .or_insert_with(|| self.authorize_read::<GetError>(&caller, k.subdb));
            let r = match access {
                Ok(()) => self
                    .store
                    .get(k.subdb, &k.key)
                    .map(|v| v.map(ByteBuf::from)),
                Err(e) => Err(e.clone()),
            };
            let cost = GetManyReply::result_budget_bytes(&r);
            if !reply.results.is_empty() && used + cost > REPLY_BUDGET_BYTES {
                break;
            }
            used += cost;
            reply.results.push(r);
        }
        Ok(reply)
    }

    /// Reads an item (readers, writers, the owner; everyone if the SubDB is public).
    pub fn get(&self, caller: Principal, args: &GetArgs) -> Result<Option<ByteBuf>, GetError> {
        self.authorize_read::<GetError>(&caller, args.subdb)?;
        Ok(self.store.get(args.subdb, &args.key)?.map(ByteBuf::from))
    }

    pub fn has(&self, caller: Principal, args: &GetArgs) -> Result<bool, GetError> {
        self.authorize_read::<GetError>(&caller, args.subdb)?;
        self.store.has(args.subdb, &args.key)
    }

    /// One page of an ordered scan (see [`flotilla_types::ScanArgs`]).
    pub fn scan(&self, caller: Principal, req: &ScanRequest) -> Result<ScanPage, ScanError> {
        self.authorize_read::<ScanError>(&caller, req.subdb)?;
        self.store.scan(req.subdb, &req.args)
    }

    pub fn subdb_stats(
        &self,
        caller: Principal,
        subdb: SubDbId,
    ) -> Result<SubDbStats, SubDbStatsError> {
        self.authorize_read::<SubDbStatsError>(&caller, subdb)?;
        self.store.stats(subdb).ok_or(SubDbStatsError::UnknownSubDb)
    }

    /// Deletes a SubDB. The index only: a SubDB's life (its name, its route, its deletion)
    /// has one authority, the index, which owners ask (`delete_subdb` there); a delete behind
    /// its back would leave the directory routing to a dead SubDB. Idempotent by op id.
    pub fn delete_subdb(
        &mut self,
        caller: Principal,
        args: &DeleteSubDbArgs,
    ) -> Result<(), DeleteSubDbError> {
        self.require_index::<DeleteSubDbError>(&caller)?;
        if let Located::Moved(to) = self.locate(args.subdb) {
            return Err(DeleteSubDbError::Moved { to });
        }
        let op = OpCtx {
            op_id: &args.op_id,
            salt: caller.as_slice(),
        };
        self.store.delete_subdb(Some(op), args.subdb)
    }

    /// Replaces the reader and writer lists (the owner only; the owner itself never changes).
    pub fn set_access(
        &mut self,
        caller: Principal,
        args: &SetAccessArgs,
    ) -> Result<(), SetAccessError> {
        let Gate::Live { max_bytes } =
            self.authorize_write::<SetAccessError>(&caller, args.subdb, Need::Own)?
        else {
            return Err(SetAccessError::UnknownSubDb);
        };
        for list in [&args.readers, &args.writers] {
            if list.len() > MAX_ACCESS_PRINCIPALS {
                return Err(SetAccessError::TooManyPrincipals {
                    len: list.len() as u64,
                    max: MAX_ACCESS_PRINCIPALS as u64,
                });
            }
        }
        if args.writers.contains(&Principal::anonymous()) {
            return Err(SetAccessError::AnonymousWriter);
        }
        let owner = self
            .access(args.subdb)
            .expect("authorized as owner, so the blob parses")
            .owner;
        let meta = access::encode_with_quota(
            &Access {
                owner,
                readers: args.readers.clone(),
                writers: args.writers.clone(),
            },
            max_bytes,
        );
        self.store
            .set_meta(args.subdb, &meta)
            .expect("bounded access lists fit MAX_SUBDB_META_BYTES (checked at compile time)");
        Ok(())
    }

    // ---- housekeeping (index only) --------------------------------------------------------

    /// Creates a SubDB for `args.access.owner`. Idempotent by op id (salted with the index's
    /// principal). Access lists are held to `MAX_ACCESS_PRINCIPALS` here too, not only at the
    /// index, and the encoded lists must fit `MAX_SUBDB_META_BYTES`.
    pub fn create_subdb_local(
        &mut self,
        caller: Principal,
        args: &CreateLocalArgs,
    ) -> Result<SubDbId, CreateSubDbError> {
        self.require_index::<CreateSubDbError>(&caller)?;
        for list in [&args.access.readers, &args.access.writers] {
            if list.len() > MAX_ACCESS_PRINCIPALS {
                return Err(CreateSubDbError::TooManyPrincipals {
                    len: list.len() as u64,
                    max: MAX_ACCESS_PRINCIPALS as u64,
                });
            }
        }
        let len = access::encoded_len(&args.access) + args.max_bytes.map_or(0, |_| 8);
        if len > MAX_SUBDB_META_BYTES {
            return Err(CreateSubDbError::MetaTooLarge {
                len: len as u64,
                max: MAX_SUBDB_META_BYTES as u64,
            });
        }
        let op = OpCtx {
            op_id: &args.op_id,
            salt: self.index.as_slice(),
        };
        let meta = access::encode_with_quota(&args.access, args.max_bytes);
        self.store.create_subdb(Some(op), args.hard_cap, &meta)
    }

    /// Partition totals and one page of live SubDBs, in id order or largest first (see
    /// [`StatsArgs`]). `stable_memory_bytes` comes from the canister (the logic has no IO).
    pub fn stats(
        &self,
        caller: Principal,
        args: &StatsArgs,
        stable_memory_bytes: u64,
    ) -> Result<PartitionStats, StatsError> {
        self.require_index::<StatsError>(&caller)?;
        if args.limit > MAX_STATS_SUBDBS {
            return Err(StatsError::LimitTooLarge {
                requested: args.limit,
                max: MAX_STATS_SUBDBS,
            });
        }
        let t = self.store.totals();
        Ok(PartitionStats {
            live_subdbs: t.live_subdbs,
            items: t.items,
            bytes: t.bytes,
            purging_bytes: t.purging_bytes,
            op_records: t.op_records,
            stable_memory_bytes,
            tombstones: self.tombstones.len(),
            subdbs: if args.largest_first == Some(true) {
                self.store.largest_subdbs(args.limit as usize)
            } else {
                self.store.list_subdbs(args.from, args.limit as usize)
            },
        })
    }

    /// The next chunk of a live SubDB for a move. The budget must lie within
    /// `MIN_CHUNK_BUDGET_BYTES..=REPLY_BUDGET_BYTES`, so every chunk fits one reply.
    pub fn export_chunk(
        &mut self,
        caller: Principal,
        args: &ExportArgs,
    ) -> Result<ExportReply, HousekeepingError> {
        self.check_export(&caller, args.budget)?;
        let (chunk, next) = self
            .store
            .export_chunk(
                args.subdb,
                args.seq,
                args.token.as_deref().map(|t| &t[..]),
                args.budget as usize,
            )
            .map_err(housekeeping_error)?;
        Ok(ExportReply {
            chunk,
            next: next.map(ByteBuf::from),
        })
    }

    fn check_export(&self, caller: &Principal, budget: u64) -> Result<(), HousekeepingError> {
        self.require_index::<HousekeepingError>(caller)?;
        let (min, max) = (MIN_CHUNK_BUDGET_BYTES as u64, REPLY_BUDGET_BYTES as u64);
        if !(min..=max).contains(&budget) {
            return Err(HousekeepingError::InvalidBudget { budget, min, max });
        }
        Ok(())
    }

    /// Starts tracking changes to a SubDB about to be copied away (a live move). Idempotent.
    pub fn begin_export(
        &mut self,
        caller: Principal,
        args: &BeginExportArgs,
    ) -> Result<(), HousekeepingError> {
        self.require_index::<HousekeepingError>(&caller)?;
        self.store
            .begin_export(args.subdb)
            .map_err(housekeeping_error)
    }

    /// The changes made since the copy (see `Store::export_delta`); with `freeze`, the cutover
    /// (once the rest fits one chunk); with `write_budget`, the SubDB's writers are throttled.
    pub fn export_delta(
        &mut self,
        caller: Principal,
        args: &ExportDeltaArgs,
    ) -> Result<ExportDeltaReply, HousekeepingError> {
        self.check_export(&caller, args.budget)?;
        let d = self
            .store
            .export_delta(
                args.subdb,
                args.seq,
                args.ack,
                args.budget as usize,
                args.freeze,
                args.write_budget,
            )
            .map_err(housekeeping_error)?;
        Ok(ExportDeltaReply {
            chunk: d.chunk,
            version: d.version,
            more: d.more,
            frozen: Some(d.frozen),
        })
    }

    /// Opens an invisible SubDB to receive a moved one. The same op id always answers the
    /// same SubDB id (kept for good: one small entry per import), so a retry opens nothing
    /// new; a fresh attempt after `abort_import` needs a fresh op id.
    pub fn begin_import(
        &mut self,
        caller: Principal,
        args: &BeginImportArgs,
    ) -> Result<SubDbId, BeginImportError> {
        self.require_index::<BeginImportError>(&caller)?;
        args.op_id
            .validate()
            .map_err(|e| BeginImportError::InvalidOpId { len: e.len })?;
        let key = ImportKey(args.op_id.as_bytes().to_vec());
        if let Some(id) = self.imports.get(&key) {
            return Ok(id);
        }
        let id = self.store.begin_import();
        self.imports.insert(key, id);
        Ok(id)
    }

    /// Applies one chunk to an importing SubDB (in order; a repeated chunk changes nothing)
    /// and, with `finish`, makes it live in the same message.
    pub fn import_chunk(
        &mut self,
        caller: Principal,
        args: &ImportChunkArgs,
    ) -> Result<(), ImportError> {
        self.require_index::<ImportError>(&caller)?;
        self.store.import_chunk(args.subdb, &args.chunk)?;
        if args.finish {
            self.store.finish_import(args.subdb)?;
        }
        Ok(())
    }

    /// Abandons an import and reclaims what arrived.
    pub fn abort_import(&mut self, caller: Principal, subdb: SubDbId) -> Result<(), ImportError> {
        self.require_index::<ImportError>(&caller)?;
        self.store.abort_import(subdb)
    }

    /// Ends a SubDB's write pause (index only; idempotent): on a move's target once the
    /// directory routes to it, or on a source whose move was called off (its change tracking
    /// stops and its change log is dropped). A released source answers `Moved`.
    pub fn resume_writes(
        &mut self,
        caller: Principal,
        subdb: SubDbId,
    ) -> Result<(), ResumeWritesError> {
        self.require_index::<ResumeWritesError>(&caller)?;
        if let Some(to) = self.tombstone(subdb) {
            return Err(ResumeWritesError::Moved { to });
        }
        if self.store.resume_writes(subdb) {
            Ok(())
        } else {
            Err(ResumeWritesError::UnknownSubDb)
        }
    }

    /// Ends a move: records the tombstone `subdb → moved_to`, then frees the data. The SubDB
    /// must be frozen, so no acknowledged write can be lost. Idempotent: releasing again to
    /// the same place answers `Ok`.
    pub fn release(&mut self, caller: Principal, args: &ReleaseArgs) -> Result<(), ReleaseError> {
        self.require_index::<ReleaseError>(&caller)?;
        if let Some(to) = self.tombstone(args.subdb) {
            return if to == args.moved_to {
                Ok(())
            } else {
                Err(ReleaseError::ReleasedElsewhere { to })
            };
        }
        if !self.store.exists(args.subdb) {
            return Err(ReleaseError::UnknownSubDb);
        }
        if !self.store.is_frozen(args.subdb) {
            return Err(ReleaseError::NotFrozen);
        }
        // The tombstone answers `Moved` only to those who could read the SubDB when it left.
        let meta = self.store.meta(args.subdb).unwrap_or_default();
        self.tomb_access.insert(args.subdb, meta);
        self.tombstones.insert(args.subdb, Tomb(args.moved_to));
        let released = self.store.release(args.subdb);
        debug_assert!(released, "checked live above");
        Ok(())
    }

    /// Reclaims up to `max_items` items of deleted or released SubDBs; returns how many
    /// remain. The canister runs it from a timer (it is not an endpoint).
    pub fn housekeep(&mut self, max_items: usize) -> u64 {
        self.store.purge_step(max_items)
    }
}

/// Every access list of the largest SubDB access, with a byte quota, fits the metadata
/// limit, so `set_access` cannot fail on size.
const _: () = assert!(
    1 + 1
        + access::MAX_PRINCIPAL_BYTES
        + 2 * (2 + MAX_ACCESS_PRINCIPALS * (1 + access::MAX_PRINCIPAL_BYTES))
        + 8
        <= MAX_SUBDB_META_BYTES
);

/// Whether the store would accept `args`'s ops as they are (sizes within the limits, a valid
/// op id), so that a quota refusal never hides the request's own error.
fn batch_is_valid(args: &BatchArgs) -> bool {
    !args.ops.is_empty()
        && args.ops.len() <= MAX_BATCH_OPS
        && args.op_id.validate().is_ok()
        && flotilla_types::batch_budget_bytes(&args.ops) <= MAX_BATCH_BYTES
        && args.ops.iter().all(|o| {
            o.key().len() <= MAX_KEY_BYTES
                && match o {
                    BatchOp::Put { value, .. } => value.len() <= MAX_VALUE_BYTES,
                    BatchOp::Delete { .. } => true,
                }
        })
}

/// Reads the state cell without writing to the region.
fn read_state<M: Memory>(m: M) -> Result<State, PartitionInitError> {
    if m.size() == 0 {
        return Err(PartitionInitError::NotInstalled);
    }
    let mut magic = [0u8; 3];
    m.read(0, &mut magic);
    if &magic != CELL_MAGIC {
        return Err(PartitionInitError::Corrupt);
    }
    State::decode(Cell::init(m, RawState::default()).get())
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fuzz;
#[cfg(test)]
mod tests_many;
#[cfg(test)]
mod tests_quota;

fn housekeeping_error(e: ExportError) -> HousekeepingError {
    match e {
        ExportError::UnknownSubDb => HousekeepingError::UnknownSubDb,
        ExportError::InvalidToken => HousekeepingError::InvalidToken,
        ExportError::NotExporting => HousekeepingError::NotExporting,
        ExportError::ChangeLogFull { max } => HousekeepingError::ChangeLogFull { max },
    }
}
