//! The scenario's client: SubDBs it knows (route, owner, model of every acknowledged write)
//! and its operations, each retried with the same op id through redirects and write pauses.
//! The stages of [`crate::run`] are in `stages.rs`.

use crate::{dec, enc, ScenarioConfig, ScenarioReport, World};
use candid::{CandidType, Principal};
use flotilla_types::index::{AdminError, CreateError, CreateRequest, IndexStats, RouteError};
use flotilla_types::partition::{BatchArgs, DeleteArgs, GetArgs, PutArgs, ScanRequest};
use flotilla_types::{
    BatchError, BatchOp, BatchOutcome, DeleteError, GetError, InnerKey, OpId, PutError, PutOutcome,
    ScanArgs, ScanError, ScanPage, SubDbId,
};
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;
use std::collections::BTreeMap;

/// A SubDB the client knows.
pub(crate) struct Sub {
    pub owner: Principal,
    pub at: InnerKey,
    pub model: BTreeMap<Vec<u8>, Vec<u8>>,
    pub readers: Vec<Principal>,
    pub writers: Vec<Principal>,
}

/// An acknowledged mutation kept to be retried later with the same op id.
pub(crate) enum Recorded {
    Put {
        outer: String,
        args: PutArgs,
        outcome: PutOutcome,
    },
    Batch {
        outer: String,
        args: BatchArgs,
        outcome: BatchOutcome,
    },
}

/// The errors of the mutating endpoints, as far as the retry loop cares.
pub(crate) trait WriteError: std::fmt::Debug {
    fn moved(&self) -> Option<InnerKey>;
    fn paused(&self) -> bool;
}

macro_rules! write_error {
    ($($t:ty),*) => {$(
        impl WriteError for $t {
            fn moved(&self) -> Option<InnerKey> {
                match self {
                    Self::Moved { to } => Some(*to),
                    _ => None,
                }
            }
            fn paused(&self) -> bool {
                matches!(self, Self::WritesPaused)
            }
        }
    )*};
}
write_error!(PutError, BatchError, DeleteError);

pub(crate) struct Run<'w, W: World> {
    pub w: &'w mut W,
    pub cfg: ScenarioConfig,
    pub admin: Principal,
    pub index: Principal,
    pub subs: BTreeMap<String, Sub>,
    pub report: ScenarioReport,
    pub recorded: Vec<Recorded>,
    op: u64,
    /// Every SubDB seen moving, with its home before the move.
    pub moved: BTreeMap<String, InnerKey>,
    pub upgraded: bool,
    /// Keys written during moves are numbered from here.
    pub next_key: usize,
}

pub(crate) fn key(i: usize) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

/// A deterministic printable value of `len` bytes.
pub(crate) fn value(seed: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(b'a' + (x % 26) as u8);
    }
    v
}

impl<'w, W: World> Run<'w, W> {
    pub fn new(w: &'w mut W, cfg: ScenarioConfig, admin: Principal, index: Principal) -> Self {
        Run {
            w,
            cfg,
            admin,
            index,
            subs: BTreeMap::new(),
            report: ScenarioReport::default(),
            recorded: Vec::new(),
            op: 0,
            moved: BTreeMap::new(),
            upgraded: false,
            next_key: 10_000,
        }
    }

    pub fn name(&self) -> String {
        self.w.name().to_string()
    }

    pub fn op_id(&mut self) -> OpId {
        self.op += 1;
        OpId(ByteBuf::from(
            format!("scenario-op-{:08}", self.op).into_bytes(),
        ))
    }

    pub fn tick(&mut self) {
        self.w.tick();
        self.report.scenario_ticks += 1;
    }

    pub fn stats(&mut self) -> IndexStats {
        let r = self.w.query(self.admin, self.index, "stats", enc(()));
        dec("index stats", r)
    }

    pub fn housekeeping(&mut self) {
        let r = self
            .w
            .update(self.admin, self.index, "run_housekeeping", enc(()));
        let r: Result<u32, AdminError> = dec("run_housekeeping", r);
        r.unwrap_or_else(|e| panic!("{}: run_housekeeping: {e:?}", self.name()));
    }

    /// Runs rounds (with housekeeping) until `done` holds.
    pub fn wait_for(&mut self, what: &str, mut done: impl FnMut(&mut Self) -> bool) {
        for round in 0..self.cfg.max_rounds {
            if done(self) {
                return;
            }
            if round % 5 == 0 {
                self.housekeeping();
            }
            self.tick();
        }
        panic!(
            "{}: {what}: not reached in {} rounds",
            self.name(),
            self.cfg.max_rounds
        );
    }

    pub fn route(&mut self, outer: &str) -> InnerKey {
        let r = self.w.query(
            self.admin,
            self.index,
            "route",
            enc(vec![outer.to_string()]),
        );
        let r: Result<Vec<Option<InnerKey>>, RouteError> = dec("route", r);
        r.expect("route")[0].unwrap_or_else(|| panic!("{}: no route for {outer}", self.name()))
    }

    /// Follows a `Moved { to }` answer: the redirect itself is authoritative (the directory
    /// may flip a little after the source answers it).
    pub fn follow(&mut self, outer: &str, to: InnerKey) {
        self.report.redirects_followed += 1;
        self.subs.get_mut(outer).expect("known").at = to;
    }

    /// Creates `outer` for `owner` (retrying `NoCapacity` / `InProgress` with the same op id).
    pub fn create(
        &mut self,
        owner: Principal,
        outer: &str,
        readers: Vec<Principal>,
        writers: Vec<Principal>,
    ) {
        let req = CreateRequest {
            outer_key: outer.to_string(),
            op_id: self.op_id(),
            hard_cap: None,
            owner: None,
            readers: readers.clone(),
            writers: writers.clone(),
        };
        for _ in 0..self.cfg.max_rounds {
            let r = self
                .w
                .update(owner, self.index, "create_subdb", enc(req.clone()));
            let r: Result<InnerKey, CreateError> = dec("create_subdb", r);
            match r {
                Ok(at) => {
                    let sub = Sub {
                        owner,
                        at,
                        model: BTreeMap::new(),
                        readers,
                        writers,
                    };
                    self.subs.insert(outer.to_string(), sub);
                    return;
                }
                Err(CreateError::NoCapacity | CreateError::InProgress) => {
                    self.housekeeping();
                    self.tick();
                }
                Err(e) => panic!("{}: create_subdb({outer}): {e:?}", self.name()),
            }
        }
        panic!("{}: create_subdb({outer}) never succeeded", self.name());
    }

    /// A mutation that must land: sent as `caller` to the SubDB's current home, following
    /// redirects and waiting out write pauses with the same op id (built into `arg`).
    fn mutate<R, E>(
        &mut self,
        outer: &str,
        caller: Principal,
        method: &str,
        arg: impl Fn(SubDbId) -> Vec<u8>,
    ) -> R
    where
        R: CandidType + DeserializeOwned,
        E: CandidType + DeserializeOwned + WriteError,
    {
        for _ in 0..self.cfg.max_rounds {
            let at = self.subs[outer].at;
            let r = self.w.update(caller, at.partition, method, arg(at.subdb));
            let r: Result<R, E> = dec(method, r);
            match r {
                Ok(o) => return o,
                Err(e) => {
                    if let Some(to) = e.moved() {
                        self.follow(outer, to);
                    } else if e.paused() {
                        self.report.writes_paused_retries += 1;
                        self.tick();
                    } else {
                        panic!("{}: {method} on {outer}: {e:?}", self.name());
                    }
                }
            }
        }
        panic!("{}: {method} on {outer} never landed", self.name());
    }

    /// A put by the owner; recorded in the model once acknowledged.
    pub fn put(&mut self, outer: &str, k: Vec<u8>, v: Vec<u8>) -> PutOutcome {
        let owner = self.subs[outer].owner;
        self.put_as(owner, outer, k, v).1
    }

    /// A put by `caller`; answers its arguments (as last sent) and outcome.
    pub fn put_as(
        &mut self,
        caller: Principal,
        outer: &str,
        k: Vec<u8>,
        v: Vec<u8>,
    ) -> (PutArgs, PutOutcome) {
        let mut args = PutArgs {
            subdb: 0,
            key: ByteBuf::from(k.clone()),
            value: ByteBuf::from(v.clone()),
            op_id: self.op_id(),
        };
        let o: PutOutcome = self.mutate::<_, PutError>(outer, caller, "put", |subdb| {
            enc(PutArgs {
                subdb,
                ..args.clone()
            })
        });
        let sub = self.subs.get_mut(outer).expect("known");
        assert_eq!(
            o.replaced,
            sub.model.contains_key(&k),
            "{}: put's `replaced` on {outer}",
            self.w.name()
        );
        sub.model.insert(k, v);
        args.subdb = sub.at.subdb;
        (args, o)
    }

    /// A batch by the owner, applied to the model once acknowledged.
    pub fn batch(&mut self, outer: &str, ops: Vec<BatchOp>) -> (BatchArgs, BatchOutcome) {
        let owner = self.subs[outer].owner;
        let mut args = BatchArgs {
            subdb: 0,
            ops,
            op_id: self.op_id(),
        };
        let o: BatchOutcome = self.mutate::<_, BatchError>(outer, owner, "batch", |subdb| {
            enc(BatchArgs {
                subdb,
                ..args.clone()
            })
        });
        let sub = self.subs.get_mut(outer).expect("known");
        let (mut replaced, mut existed) = (0, 0);
        for op in &args.ops {
            match op {
                BatchOp::Put { key, value } => {
                    replaced += u32::from(sub.model.insert(key.to_vec(), value.to_vec()).is_some())
                }
                BatchOp::Delete { key } => {
                    existed += u32::from(sub.model.remove(key.as_slice()).is_some())
                }
            }
        }
        assert_eq!(
            (o.puts_replaced, o.deletes_existed, o.evicted),
            (replaced, existed, 0),
            "{}: batch outcome on {outer}",
            self.w.name()
        );
        args.subdb = sub.at.subdb;
        self.report.batches += 1;
        (args, o)
    }

    /// A delete of one key by the owner.
    pub fn delete(&mut self, outer: &str, k: Vec<u8>) -> bool {
        let owner = self.subs[outer].owner;
        let op_id = self.op_id();
        let existed: bool = self.mutate::<_, DeleteError>(outer, owner, "delete", |subdb| {
            enc(DeleteArgs {
                subdb,
                key: ByteBuf::from(k.clone()),
                op_id: op_id.clone(),
            })
        });
        let had = self
            .subs
            .get_mut(outer)
            .expect("known")
            .model
            .remove(&k)
            .is_some();
        assert_eq!(existed, had, "{}: delete on {outer}", self.w.name());
        existed
    }

    /// A get by the owner that must answer: a `Moved` is followed, any other error fails.
    pub fn get(&mut self, outer: &str, k: &[u8]) -> Option<Vec<u8>> {
        let owner = self.subs[outer].owner;
        self.get_as(owner, outer, k)
    }

    pub fn get_as(&mut self, caller: Principal, outer: &str, k: &[u8]) -> Option<Vec<u8>> {
        for _ in 0..8 {
            let at = self.subs[outer].at;
            let args = GetArgs {
                subdb: at.subdb,
                key: ByteBuf::from(k.to_vec()),
            };
            let r = self.w.query(caller, at.partition, "get", enc(args));
            let r: Result<Option<ByteBuf>, GetError> = dec("get", r);
            match r {
                Ok(v) => return v.map(ByteBuf::into_vec),
                Err(GetError::Moved { to }) => self.follow(outer, to),
                Err(e) => panic!("{}: get from {outer} failed: {e:?}", self.name()),
            }
        }
        panic!("{}: get from {outer}: redirected in circles", self.name());
    }

    pub fn has(&mut self, outer: &str, k: &[u8]) -> bool {
        let owner = self.subs[outer].owner;
        for _ in 0..8 {
            let at = self.subs[outer].at;
            let args = GetArgs {
                subdb: at.subdb,
                key: ByteBuf::from(k.to_vec()),
            };
            let r = self.w.query(owner, at.partition, "has", enc(args));
            let r: Result<bool, GetError> = dec("has", r);
            match r {
                Ok(b) => return b,
                Err(GetError::Moved { to }) => self.follow(outer, to),
                Err(e) => panic!("{}: has on {outer}: {e:?}", self.name()),
            }
        }
        panic!("{}: has on {outer}: redirected in circles", self.name());
    }

    /// A whole scan by the owner in pages of `limit`, following cursors. A `Moved` answer
    /// (the SubDB moved between two pages) is followed and the scan starts over there.
    pub fn scan(&mut self, outer: &str, reverse: bool, limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        let owner = self.subs[outer].owner;
        let mut at = self.subs[outer].at;
        let mut out = Vec::new();
        let mut cursor = None;
        for _ in 0..100_000 {
            let req = ScanRequest {
                subdb: at.subdb,
                args: ScanArgs {
                    start: None,
                    end: None,
                    reverse,
                    limit: Some(limit),
                    max_bytes: None,
                    cursor: cursor.take(),
                },
            };
            let r = self.w.query(owner, at.partition, "scan", enc(req));
            let r: Result<ScanPage, ScanError> = dec("scan", r);
            let page = match r {
                Ok(page) => page,
                Err(ScanError::Moved { to }) => {
                    self.follow(outer, to);
                    at = to;
                    out.clear();
                    continue;
                }
                Err(e) => panic!("{}: scan of {outer}: {e:?}", self.name()),
            };
            assert!(page.entries.len() <= limit as usize);
            out.extend(
                page.entries
                    .into_iter()
                    .map(|e| (e.key.into_vec(), e.value.into_vec())),
            );
            match page.next {
                Some(n) => cursor = Some(n),
                None => return out,
            }
        }
        panic!("{}: scan of {outer} does not end", self.name());
    }

    /// Every SubDB holds exactly its model, scanned both ways with cursors.
    pub fn check_all(&mut self, when: &str) {
        let names: Vec<String> = self.subs.keys().cloned().collect();
        for outer in names {
            // A route may be stale after a move: refresh it from the index first.
            let routed = self.route(&outer);
            self.subs.get_mut(&outer).expect("known").at = routed;
            let model: Vec<(Vec<u8>, Vec<u8>)> = self.subs[&outer]
                .model
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let fwd = self.scan(&outer, false, 5);
            assert!(
                fwd == model,
                "{}: {when}: forward scan of {outer}: {} items, the model has {}",
                self.name(),
                fwd.len(),
                model.len()
            );
            let mut rev = self.scan(&outer, true, 7);
            rev.reverse();
            assert!(
                rev == model,
                "{}: {when}: reverse scan of {outer}: {} items, the model has {}",
                self.name(),
                rev.len(),
                model.len()
            );
        }
    }
}
