//! Flotilla's Rust client.
//!
//! One IO-free [`core`] (route cache, `Moved` redirects, one route refresh on
//! `UnknownSubDb`, retries of transient failures with the same op id and a bounded
//! exponential backoff) drives every call; a [`Transport`] carries the Candid bytes:
//!
//! - `agent` feature: [`agent::AgentTransport`], ic-agent over HTTP (a local replica, mainnet,
//!   or the demo's IC endpoint), identity from a PEM file or anonymous;
//! - `cdk` feature: [`cdk::CdkTransport`], inter-canister calls from a dapp's own canister;
//! - the simulator's in-process world (`flotilla_sim::transport`).
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

pub mod core;
pub mod counting;
pub mod ops;
#[cfg(feature = "agent")]
pub mod agent;
#[cfg(feature = "cdk")]
pub mod cdk;

pub use crate::core::{
    Action, Call, CallKind, Error, Machine, Policy, RejectCode, RouteCache, Transient,
    TransportError,
};
use crate::ops::{
    CreateSubDb, Delete, DropSubDb, Get, Has, IndexStatsOp, Operation, Put, Routes, ScanPageOp,
    SetAccess, Stats,
};
use candid::Principal;
use flotilla_types::index::{
    CreateError, CreateRequest, DeleteRequest, DeleteSubDbRequestError, IndexStats, RoutesPage,
    RoutesRequest,
};
use flotilla_types::partition::SetAccessError;
use flotilla_types::partition::SubDbStatsError;
use flotilla_types::{
    DeleteError, Entry, GetError, InnerKey, OpId, PutError, PutOutcome, ScanArgs, ScanError,
    SubDbStats,
};
use futures::Stream;
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_bytes::ByteBuf;
use std::cell::RefCell;
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

#[cfg(test)]
mod tests;
