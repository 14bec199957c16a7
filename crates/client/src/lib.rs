//! Flotilla's Rust client.
//!
//! One IO-free [`core`] (route cache, `Moved` redirects, one route refresh on
//! `UnknownSubDb`, retries of transient failures with the same op id and a bounded
//! exponential backoff) drives every call; a [`Transport`] carries the Candid bytes:
//!
//! - the simulator's in-process world (`flotilla_sim::transport`);
//! - [`cdk::CdkTransport`] (feature `cdk`): inter-canister calls from a dapp's own canister;
//! - [`agent::AgentTransport`] (feature `agent`): ic-agent over the IC's HTTP interface (a
//!   replica, mainnet).
//!
//! ```ignore
//! let client = Client::new(transport, index_id);
//! client.create_subdb("notes", CreateOptions::default()).await?;
//! client.put("notes", b"2026-11-25", b"hello").await?;
//! let v = client.get("notes", b"2026-11-25").await?;
//! ```
//!
//! A read that hits the route cache costs exactly one call, to one partition, and no call to
//! the index. Every write carries a fresh 16-byte op id from a ChaCha20 generator seeded by
//! the transport's random source (the OS, or the IC's `raw_rand`), so a retry is never
//! applied twice.

#[cfg(feature = "agent")]
pub mod agent;
#[cfg(feature = "cdk")]
pub mod cdk;
pub mod core;
pub mod counting;
pub mod load;
pub mod ops;

pub use crate::core::{
    Action, Call, CallKind, Error, Machine, Policy, RejectCode, RouteCache, Transient,
    TransportError,
};
use crate::ops::{
    Batch, CreateSubDb, Delete, DropSubDb, Get, GetMany, Has, IndexStatsOp, Operation, Put, Routes,
    ScanPageOp, SetAccess, Stats,
};
use candid::Principal;
use flotilla_types::index::{
    CreateError, CreateRequest, DeleteRequest, DeleteSubDbRequestError, FleetUpgradeInfo,
    IndexStats, RoutesPage, RoutesRequest, UpgradePartitionsArgs, UpgradePartitionsError,
    UploadProgress, UploadWasmError, WasmChunk,
};
use flotilla_types::limits::{MAX_BATCH_BYTES, MAX_BATCH_OPS, MAX_GET_MANY_KEYS, MAX_ROUTE_BATCH};
use flotilla_types::partition::{GetArgs, SetAccessError, SubDbStatsError};
use flotilla_types::{
    batch_budget_bytes, BatchError, BatchOp, BatchOutcome, DeleteError, Entry, GetError, InnerKey,
    OpId, PutError, PutOutcome, ScanArgs, ScanError, SubDbStats,
};
use futures::Stream;
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_bytes::ByteBuf;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

/// Carries Candid bytes to a canister method and back. Implementations add nothing to the
/// policy: they report each call's reply or reject, and the core decides what follows.
pub trait Transport {
    /// A query call (not replicated, not certified).
    fn query(
        &self,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>>;
    /// An update call, waiting for its reply.
    fn update(
        &self,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>>;
    /// Waits before a retry.
    fn sleep(&self, d: Duration) -> impl Future<Output = ()>;
    /// 32 random bytes from a source fit for op ids (the OS, or the IC's `raw_rand`).
    fn seed(&self) -> impl Future<Output = [u8; 32]>;
}

/// The owner and access lists of a new SubDB.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// Items past this count evict the smallest keys.
    pub hard_cap: Option<u64>,
    /// The owner; default the caller (only an index admin may name someone else).
    pub owner: Option<Principal>,
    pub readers: Vec<Principal>,
    pub writers: Vec<Principal>,
}

/// A key range and direction for [`Client::scan`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// First key of the range (inclusive).
    pub from: Option<Vec<u8>>,
    /// End of the range (exclusive).
    pub to: Option<Vec<u8>>,
    pub reverse: bool,
    /// Most items in all; `None` for the whole range.
    pub limit: Option<u64>,
    /// Items per page (the partition's default, 100, if `None`).
    pub page: Option<u32>,
}

/// One key's answer in [`Client::get_many`].
pub type GetResult = Result<Option<Vec<u8>>, Error<GetError>>;

/// A Flotilla client over one transport and one index.
pub struct Client<T: Transport> {
    transport: T,
    index: Principal,
    policy: Policy,
    cache: RefCell<RouteCache>,
    rng: RefCell<Option<ChaCha20Rng>>,
}

impl<T: Transport> Client<T> {
    pub fn new(transport: T, index: Principal) -> Self {
        Client {
            transport,
            index,
            policy: Policy::default(),
            cache: RefCell::new(RouteCache::default()),
            rng: RefCell::new(None),
        }
    }

    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    pub fn index(&self) -> Principal {
        self.index
    }

    /// The cached route of a SubDB, if any.
    pub fn cached_route(&self, outer: &str) -> Option<InnerKey> {
        self.cache.borrow().get(outer)
    }

    /// Caches a route known from elsewhere (an inner key the application stored). A stale one
    /// costs one `Moved` hop or one index query, never a wrong answer.
    pub fn remember_route(&self, outer: &str, inner: InnerKey) {
        self.cache.borrow_mut().insert(outer, inner);
    }

    /// Forgets every cached route.
    pub fn clear_routes(&self) {
        *self.cache.borrow_mut() = RouteCache::default();
    }

    async fn random(&self, bytes: &mut [u8]) {
        if self.rng.borrow().is_none() {
            let seed = self.transport.seed().await;
            let mut slot = self.rng.borrow_mut();
            if slot.is_none() {
                *slot = Some(ChaCha20Rng::from_seed(seed));
            }
        }
        self.rng
            .borrow_mut()
            .as_mut()
            .expect("seeded above")
            .fill_bytes(bytes);
    }

    /// A fresh operation id (16 random bytes).
    pub async fn new_op_id(&self) -> OpId {
        let mut b = vec![0u8; 16];
        self.random(&mut b).await;
        OpId::from(b)
    }

    /// Runs one operation to its end under the policy.
    pub async fn run<O: Operation>(&self, op: O) -> Result<O::Ok, Error<O::Err>> {
        let mut m = Machine::new(op, self.index, self.policy);
        let mut action = m.resume(&self.cache.borrow());
        loop {
            action = match action {
                Action::Done(r) => return r,
                Action::Send(call) => {
                    let r = match call.kind {
                        CallKind::Query => {
                            self.transport
                                .query(call.canister, call.method, call.arg)
                                .await
                        }
                        CallKind::Update => {
                            self.transport
                                .update(call.canister, call.method, call.arg)
                                .await
                        }
                    };
                    m.on_reply(&mut self.cache.borrow_mut(), r)
                }
                Action::Wait { attempt } => {
                    let mut j = [0u8; 8];
                    self.random(&mut j).await;
                    let wait = self.policy.backoff(attempt, u64::from_le_bytes(j));
                    self.transport.sleep(wait).await;
                    m.resume(&self.cache.borrow())
                }
            };
        }
    }

    // ---- the index --------------------------------------------------------------------

    /// Creates a SubDB named `outer` and caches its route.
    pub async fn create_subdb(
        &self,
        outer: &str,
        opts: CreateOptions,
    ) -> Result<InnerKey, Error<CreateError>> {
        let req = CreateRequest {
            outer_key: outer.to_string(),
            op_id: self.new_op_id().await,
            hard_cap: opts.hard_cap,
            owner: opts.owner,
            readers: opts.readers,
            writers: opts.writers,
        };
        let inner = self.run(CreateSubDb(req)).await?;
        self.cache.borrow_mut().insert(outer, inner);
        Ok(inner)
    }

    /// Deletes the SubDB named `outer` (its owner or an index admin).
    pub async fn delete_subdb(&self, outer: &str) -> Result<(), Error<DeleteSubDbRequestError>> {
        let req = DeleteRequest {
            outer_key: outer.to_string(),
            op_id: self.new_op_id().await,
        };
        let r = self.run(DropSubDb(req)).await;
        self.cache.borrow_mut().remove(outer);
        r
    }

    /// One page of the index's routing snapshot.
    pub async fn routes(&self, req: RoutesRequest) -> Result<RoutesPage, Error<ops::Never>> {
        self.run(Routes(req)).await
    }

    /// The index's fleet figures.
    pub async fn index_stats(&self) -> Result<IndexStats, Error<ops::Never>> {
        self.run(IndexStatsOp).await
    }

    /// Uploads one piece of a partition wasm (admins; `flotilla upload-wasm`).
    pub async fn upload_wasm_chunk(
        &self,
        chunk: WasmChunk,
    ) -> Result<UploadProgress, Error<UploadWasmError>> {
        self.run(ops::UploadWasmChunk(chunk)).await
    }

    /// Starts upgrading every partition to the uploaded wasm (admins; `flotilla upgrade`).
    pub async fn upgrade_partitions(
        &self,
        args: UpgradePartitionsArgs,
    ) -> Result<FleetUpgradeInfo, Error<UpgradePartitionsError>> {
        self.run(ops::UpgradePartitions(args)).await
    }

    // ---- one SubDB --------------------------------------------------------------------

    pub async fn put(
        &self,
        outer: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<PutOutcome, Error<PutError>> {
        let op = Put {
            outer: outer.to_string(),
            key: ByteBuf::from(key.to_vec()),
            value: ByteBuf::from(value.to_vec()),
            op_id: self.new_op_id().await,
        };
        self.run(op).await
    }

    /// Deletes one key; `true` if it existed.
    pub async fn delete(&self, outer: &str, key: &[u8]) -> Result<bool, Error<DeleteError>> {
        let op = Delete {
            outer: outer.to_string(),
            key: ByteBuf::from(key.to_vec()),
            op_id: self.new_op_id().await,
        };
        self.run(op).await
    }

    pub async fn get(&self, outer: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error<GetError>> {
        let op = Get {
            outer: outer.to_string(),
            key: ByteBuf::from(key.to_vec()),
        };
        Ok(self.run(op).await?.map(ByteBuf::into_vec))
    }

    pub async fn has(&self, outer: &str, key: &[u8]) -> Result<bool, Error<GetError>> {
        let op = Has(Get {
            outer: outer.to_string(),
            key: ByteBuf::from(key.to_vec()),
        });
        self.run(op).await
    }

    /// Items, bytes and hard cap of one SubDB.
    pub async fn stats(&self, outer: &str) -> Result<SubDbStats, Error<SubDbStatsError>> {
        self.run(Stats {
            outer: outer.to_string(),
        })
        .await
    }

    /// Replaces a SubDB's reader and writer lists (its owner only). Listing the anonymous
    /// principal as a reader makes the SubDB public.
    pub async fn set_access(
        &self,
        outer: &str,
        readers: Vec<Principal>,
        writers: Vec<Principal>,
    ) -> Result<(), Error<SetAccessError>> {
        self.run(SetAccess {
            outer: outer.to_string(),
            readers,
            writers,
        })
        .await
    }

    /// Applies `ops` to one SubDB atomically, under one op id, in one message. More ops
    /// than one message holds is `TooManyOps` or `BatchTooLarge`: split them with
    /// [`split_batch`] (or use [`Client::batch_all`]).
    pub async fn batch(
        &self,
        outer: &str,
        ops: Vec<BatchOp>,
    ) -> Result<BatchOutcome, Error<BatchError>> {
        let op_id = self.new_op_id().await;
        self.batch_with_id(outer, ops, op_id).await
    }

    /// [`Client::batch`] under a given op id: a caller that must survive its own restart (a
    /// resumable load) derives the id from what the batch is, so a repeat is never applied
    /// twice.
    pub async fn batch_with_id(
        &self,
        outer: &str,
        ops: Vec<BatchOp>,
        op_id: OpId,
    ) -> Result<BatchOutcome, Error<BatchError>> {
        self.run(Batch {
            outer: outer.to_string(),
            ops,
            op_id,
        })
        .await
    }

    /// Applies any number of ops in order, as consecutive messages under the limits (each
    /// atomic). On an error the parts before it stay applied; the error says which part.
    pub async fn batch_all(
        &self,
        outer: &str,
        ops: Vec<BatchOp>,
    ) -> Result<BatchOutcome, (usize, Error<BatchError>)> {
        let mut total = BatchOutcome::default();
        for (n, part) in split_batch(ops).into_iter().enumerate() {
            let r = self.batch(outer, part).await.map_err(|e| (n, e))?;
            total.puts_replaced += r.puts_replaced;
            total.deletes_existed += r.deletes_existed;
            total.evicted += r.evicted;
        }
        Ok(total)
    }

    /// Reads many keys of many SubDBs: routes for the SubDBs not cached come from one index
    /// query, then every partition involved gets one `get_many` call, all in parallel. Pairs
    /// whose SubDB moved or is unknown there are read again one by one through the usual
    /// redirect policy. `results[i]` answers `items[i]`.
    pub async fn get_many(&self, items: &[(String, Vec<u8>)]) -> Vec<GetResult> {
        let mut results: Vec<Option<GetResult>> = (0..items.len()).map(|_| None).collect();
        // Routes for the names the cache lacks.
        let missing: Vec<String> = {
            let cache = self.cache.borrow();
            let mut m: Vec<String> = items
                .iter()
                .filter(|(o, _)| cache.get(o).is_none())
                .map(|(o, _)| o.clone())
                .collect();
            m.sort();
            m.dedup();
            m
        };
        for names in missing.chunks(MAX_ROUTE_BATCH) {
            if let Ok(found) = self.route_many(names).await {
                let mut cache = self.cache.borrow_mut();
                for (name, r) in names.iter().zip(found) {
                    if let Some(inner) = r {
                        cache.insert(name, inner);
                    }
                }
            }
        }
        // Group by partition, in key order of the request.
        let mut groups: BTreeMap<Principal, Vec<(usize, GetArgs)>> = BTreeMap::new();
        let mut single = vec![];
        {
            let cache = self.cache.borrow();
            for (i, (outer, key)) in items.iter().enumerate() {
                match cache.get(outer) {
                    Some(inner) => groups.entry(inner.partition).or_default().push((
                        i,
                        GetArgs {
                            subdb: inner.subdb,
                            key: ByteBuf::from(key.clone()),
                        },
                    )),
                    None => single.push(i),
                }
            }
        }
        let calls = groups
            .into_iter()
            .map(|(partition, keys)| self.get_many_at(partition, keys));
        for answered in futures::future::join_all(calls).await {
            for (i, r) in answered {
                match r {
                    Ok(Ok(v)) => results[i] = Some(Ok(v.map(ByteBuf::into_vec))),
                    Ok(Err(GetError::Moved { .. } | GetError::UnknownSubDb)) | Err(()) => {
                        single.push(i)
                    }
                    Ok(Err(e)) => results[i] = Some(Err(Error::Refused(e))),
                }
            }
        }
        let one_by_one = single.iter().map(|&i| async move {
            let (outer, key) = &items[i];
            (i, self.get(outer, key).await)
        });
        for (i, r) in futures::future::join_all(one_by_one).await {
            results[i] = Some(r);
        }
        results
            .into_iter()
            .map(|r| r.expect("every item answered"))
            .collect()
    }

    /// All pairs at one partition, in calls of at most `MAX_GET_MANY_KEYS` pairs, following
    /// partial replies. `Err(())` marks pairs the partition could not be asked about (they
    /// are retried one by one).
    async fn get_many_at(
        &self,
        partition: Principal,
        keys: Vec<(usize, GetArgs)>,
    ) -> Vec<(usize, Result<Result<Option<ByteBuf>, GetError>, ()>)> {
        let mut out = Vec::with_capacity(keys.len());
        let mut rest: &[(usize, GetArgs)] = &keys;
        while !rest.is_empty() {
            let take = rest.len().min(MAX_GET_MANY_KEYS);
            let op = GetMany {
                partition,
                keys: rest[..take].iter().map(|(_, k)| k.clone()).collect(),
            };
            match self.run(op).await {
                Ok(reply) if !reply.results.is_empty() => {
                    let n = reply.results.len().min(take);
                    for ((i, _), r) in rest[..n].iter().zip(reply.results) {
                        out.push((*i, Ok(r)));
                    }
                    rest = &rest[n..];
                }
                _ => {
                    out.extend(rest.iter().map(|(i, _)| (*i, Err(()))));
                    break;
                }
            }
        }
        out
    }

    /// The index's routes of many names (one query of at most `MAX_ROUTE_BATCH` names).
    async fn route_many(&self, names: &[String]) -> Result<Vec<Option<InnerKey>>, ()> {
        let arg = flotilla_types::dispatch::encode_args((names.to_vec(),));
        for _ in 0..self.policy.max_attempts.max(1) {
            match self.transport.query(self.index, "route", arg.clone()).await {
                Ok(bytes) => {
                    return flotilla_types::dispatch::decode_args::<(
                        Result<Vec<Option<InnerKey>>, flotilla_types::index::RouteError>,
                    )>("route", &bytes)
                    .ok()
                    .and_then(|(r,)| r.ok())
                    .ok_or(());
                }
                Err(e) if e.retryable() => {
                    self.transport.sleep(self.policy.base_backoff).await;
                }
                Err(_) => return Err(()),
            }
        }
        Err(())
    }

    /// One page of a scan (`args.cursor` where it starts).
    pub async fn scan_page(
        &self,
        outer: &str,
        args: ScanArgs,
    ) -> Result<flotilla_types::ScanPage, Error<ScanError>> {
        self.run(ScanPageOp {
            outer: outer.to_string(),
            args,
        })
        .await
    }

    /// The items of a range in order, following the cursors page after page. A page that
    /// fails ends the stream with its error.
    pub fn scan<'a>(
        &'a self,
        outer: &'a str,
        opts: ScanOptions,
    ) -> impl Stream<Item = Result<Entry, Error<ScanError>>> + 'a {
        struct St {
            args: ScanArgs,
            left: Option<u64>,
            buf: std::vec::IntoIter<Entry>,
            done: bool,
        }
        let args = ScanArgs {
            start: opts.from.map(ByteBuf::from),
            end: opts.to.map(ByteBuf::from),
            reverse: opts.reverse,
            limit: opts.page,
            max_bytes: None,
            cursor: None,
        };
        let st = St {
            args,
            left: opts.limit,
            buf: Vec::new().into_iter(),
            done: false,
        };
        futures::stream::unfold(st, move |mut st| async move {
            loop {
                if st.left == Some(0) {
                    return None;
                }
                if let Some(e) = st.buf.next() {
                    st.left = st.left.map(|n| n - 1);
                    return Some((Ok(e), st));
                }
                if st.done {
                    return None;
                }
                if let (Some(left), Some(page)) = (st.left, st.args.limit) {
                    st.args.limit = Some(page.min(left.min(u32::MAX as u64) as u32));
                } else if let (Some(left), None) = (st.left, st.args.limit) {
                    let default = flotilla_types::limits::DEFAULT_SCAN_ITEMS as u64;
                    st.args.limit = Some(left.min(default) as u32);
                }
                match self.scan_page(outer, st.args.clone()).await {
                    Err(e) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                    Ok(page) => {
                        match page.next {
                            Some(c) => st.args.cursor = Some(c),
                            None => st.done = true,
                        }
                        st.buf = page.entries.into_iter();
                    }
                }
            }
        })
    }
}

/// Whether a batch part of `len` ops and `bytes` budget bytes can take one more op of
/// `next` budget bytes (an empty part takes any single op).
pub fn part_has_room(len: usize, bytes: usize, next: usize) -> bool {
    len == 0 || (len < MAX_BATCH_OPS && bytes + next <= MAX_BATCH_BYTES)
}

/// Splits ops into parts that each fit one `batch` message: at most `MAX_BATCH_OPS` ops
/// whose budget bytes sum to at most `MAX_BATCH_BYTES`, in order.
pub fn split_batch(ops: Vec<BatchOp>) -> Vec<Vec<BatchOp>> {
    let mut parts = vec![];
    let mut part: Vec<BatchOp> = vec![];
    let mut bytes = 0usize;
    for op in ops {
        let b = batch_budget_bytes(std::slice::from_ref(&op));
        if !part_has_room(part.len(), bytes, b) {
            parts.push(std::mem::take(&mut part));
            bytes = 0;
        }
        bytes += b;
        part.push(op);
    }
    if !part.is_empty() {
        parts.push(part);
    }
    parts
}

#[cfg(test)]
mod tests;
