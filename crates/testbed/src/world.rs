//! One end-to-end scenario over the real index and partition canisters, written against a
//! small [`World`] trait so that any environment able to install wasm, call methods by name
//! with Candid bytes, run rounds and upgrade can run it: this testbed ([`Testbed`] implements
//! it), the simulator, PocketIC.
//!
//! The scenario: install the index; upload the partition wasm in chunks; create SubDBs for
//! three users until the index has created at least three partitions; put, get, has, scan
//! both ways with cursors; a move forced by a small move cap while the client keeps reading
//! and writing (no read fails, no write is lost); an upgrade of the index and of every
//! partition in the middle of the move; access refused to a stranger and to the anonymous
//! principal; every housekeeping endpoint refused to a caller that is not the index. Every
//! acknowledged write is kept in a model and the final contents are checked against it.

use crate::{CallResult, InstallMode, Reject, Testbed};
use candid::{CandidType, Principal};
use flotilla_types::index::{
    CreateError, CreateRequest, IndexInit, IndexStats, RouteError, UploadProgress, UploadWasmError,
    WasmChunk,
};
use flotilla_types::partition::{GetArgs, PutArgs, ScanRequest};
use flotilla_types::{
    GetError, InnerKey, OpId, PutError, PutOutcome, ScanArgs, ScanError, ScanPage,
};
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

/// What the scenario needs from an environment.
pub trait World {
    /// A short name for messages (`testbed`, `sim`, `pocket-ic`).
    fn name(&self) -> &str;
    /// Creates a canister controlled by `controller`, with plenty of cycles, and installs
    /// `wasm` (raw or gzipped) with the Candid-encoded `arg`.
    fn install(&mut self, controller: Principal, wasm: &[u8], arg: Vec<u8>) -> Principal;
    /// Upgrades `canister` to `wasm`, as `controller`.
    fn upgrade(
        &mut self,
        controller: Principal,
        canister: Principal,
        wasm: &[u8],
        arg: Vec<u8>,
    ) -> Result<(), Reject>;
    /// An update call, answered once it has run (rounds pass meanwhile).
    fn update(
        &mut self,
        sender: Principal,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> CallResult;
    /// A query call.
    fn query(
        &mut self,
        sender: Principal,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> CallResult;
    /// One round (time passes; timers fire; queued messages are delivered).
    fn tick(&mut self);
}

/// Cycles the testbed gives the index (it pays for the partitions it creates).
const INDEX_CYCLES: u128 = 1_000_000_000_000_000;

impl World for Testbed {
    fn name(&self) -> &str {
        "testbed"
    }

    fn install(&mut self, controller: Principal, wasm: &[u8], arg: Vec<u8>) -> Principal {
        let id = self.create_canister(vec![controller], INDEX_CYCLES);
        Testbed::install(self, controller, id, InstallMode::Install, false, wasm, arg)
            .unwrap_or_else(|e| panic!("install: {e}"));
        id
    }

    fn upgrade(
        &mut self,
        controller: Principal,
        canister: Principal,
        wasm: &[u8],
        arg: Vec<u8>,
    ) -> Result<(), Reject> {
        Testbed::install(
            self,
            controller,
            canister,
            InstallMode::Upgrade,
            false,
            wasm,
            arg,
        )
    }

    fn update(
        &mut self,
        sender: Principal,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> CallResult {
        Testbed::update(self, sender, canister, method, arg)
    }

    fn query(
        &mut self,
        sender: Principal,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> CallResult {
        Testbed::query(self, sender, canister, method, arg)
    }

    fn tick(&mut self) {
        Testbed::tick(self)
    }
}

/// Knobs of the scenario.
#[derive(Clone, Debug)]
pub struct ScenarioConfig {
    /// The index's move cap: small, so partitions fill and SubDBs move.
    pub move_cap_bytes: u64,
    /// Bytes of one value written while filling SubDBs.
    pub value_bytes: usize,
    /// Items written to each SubDB before the next is created.
    pub items_per_subdb: usize,
    /// Bytes of one upload chunk of the partition wasm.
    pub upload_chunk_bytes: usize,
    /// Rounds any waiting step may take before the scenario fails.
    pub max_rounds: u32,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        ScenarioConfig {
            move_cap_bytes: 40 * 1024,
            value_bytes: 2000,
            items_per_subdb: 12,
            upload_chunk_bytes: 1024 * 1024,
            max_rounds: 3000,
        }
    }
}

/// Figures of a finished run.
#[derive(Clone, Debug, Default)]
pub struct ScenarioReport {
    pub partitions: usize,
    pub subdbs: usize,
    pub items: usize,
    pub moves_seen: usize,
    pub redirects_followed: usize,
    pub writes_paused_retries: usize,
    pub reads_during_move: usize,
    pub writes_during_move: usize,
    pub upgrades: usize,
    /// The move's phase when the index and partitions were upgraded (`None`: no move was
    /// in progress then).
    pub upgraded_during_move_phase: Option<String>,
    pub move_phases_seen: std::collections::BTreeSet<String>,
    pub refusals_checked: usize,
}

/// The principals of the scenario.
pub fn admin() -> Principal {
    Principal::from_slice(&[0xad; 29])
}

pub fn users() -> [Principal; 3] {
    [
        Principal::from_slice(&[0x01; 29]),
        Principal::from_slice(&[0x02; 29]),
        Principal::from_slice(&[0x03; 29]),
    ]
}

pub fn stranger() -> Principal {
    Principal::from_slice(&[0x5e; 29])
}

fn enc<A: CandidType>(a: A) -> Vec<u8> {
    candid::encode_one(a).expect("candid encode")
}

fn dec<R: DeserializeOwned + CandidType>(what: &str, b: CallResult) -> R {
    let b = b.unwrap_or_else(|e| panic!("{what}: call rejected: {e}"));
    candid::decode_one(&b).unwrap_or_else(|e| panic!("{what}: undecodable reply: {e}"))
}

/// A SubDB the client knows: its owner, its route, its model.
struct Sub {
    owner: Principal,
    at: InnerKey,
    model: BTreeMap<Vec<u8>, Vec<u8>>,
}

struct Run<'w, W: World> {
    w: &'w mut W,
    cfg: ScenarioConfig,
    index: Principal,
    subs: BTreeMap<String, Sub>,
    op: u64,
    report: ScenarioReport,
}

fn key(i: usize) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

fn value(seed: u64, len: usize) -> Vec<u8> {
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

impl<W: World> Run<'_, W> {
    fn op_id(&mut self) -> OpId {
        self.op += 1;
        let mut b = format!("scenario-op-{:08}", self.op).into_bytes();
        b.truncate(32);
        OpId(ByteBuf::from(b))
    }

    fn stats(&mut self) -> IndexStats {
        let r = self.w.query(admin(), self.index, "stats", enc(()));
        dec("index stats", r)
    }

    fn housekeeping(&mut self) {
        let r = self
            .w
            .update(admin(), self.index, "run_housekeeping", enc(()));
        let _: Result<u32, flotilla_types::index::AdminError> = dec("run_housekeeping", r);
    }

    /// Runs rounds (with housekeeping) until `done` holds.
    fn wait_for(&mut self, what: &str, mut done: impl FnMut(&mut Self) -> bool) {
        for round in 0..self.cfg.max_rounds {
            if done(self) {
                return;
            }
            if round % 5 == 0 {
                self.housekeeping();
            }
            self.w.tick();
        }
        panic!(
            "{}: {what}: not reached in {} rounds",
            self.w.name(),
            self.cfg.max_rounds
        );
    }

    fn route(&mut self, outer: &str) -> InnerKey {
        let r = self
            .w
            .query(admin(), self.index, "route", enc(vec![outer.to_string()]));
        let r: Result<Vec<Option<InnerKey>>, RouteError> = dec("route", r);
        r.expect("route")[0].unwrap_or_else(|| panic!("no route for {outer}"))
    }

    fn follow(&mut self, outer: &str, to: InnerKey) {
        self.report.redirects_followed += 1;
        let routed = self.route(outer);
        // The directory may flip a little after the source answers `Moved`; the
        // redirect itself is authoritative.
        let sub = self.subs.get_mut(outer).expect("known");
        sub.at = if routed == to { routed } else { to };
    }

    fn create(&mut self, owner: Principal, outer: &str) {
        let op_id = self.op_id();
        let req = CreateRequest {
            outer_key: outer.to_string(),
            op_id,
            hard_cap: None,
            owner: None,
            readers: vec![],
            writers: vec![],
        };
        for _ in 0..self.cfg.max_rounds {
            let r = self
                .w
                .update(owner, self.index, "create_subdb", enc(req.clone()));
            let r: Result<InnerKey, CreateError> = dec("create_subdb", r);
            match r {
                Ok(at) => {
                    self.subs.insert(
                        outer.to_string(),
                        Sub {
                            owner,
                            at,
                            model: BTreeMap::new(),
                        },
                    );
                    return;
                }
                Err(CreateError::NoCapacity | CreateError::InProgress) => {
                    self.housekeeping();
                    self.w.tick();
                }
                Err(e) => panic!("{}: create_subdb({outer}): {e:?}", self.w.name()),
            }
        }
        panic!("create_subdb({outer}) never succeeded");
    }

    /// A put that must land: follows redirects and waits out a paused SubDB, retrying with
    /// the same op id. Records it in the model once acknowledged.
    fn put(&mut self, outer: &str, k: Vec<u8>, v: Vec<u8>) -> PutOutcome {
        let op_id = self.op_id();
        let owner = self.subs[outer].owner;
        for _ in 0..self.cfg.max_rounds {
            let at = self.subs[outer].at;
            let args = PutArgs {
                subdb: at.subdb,
                key: ByteBuf::from(k.clone()),
                value: ByteBuf::from(v.clone()),
                op_id: op_id.clone(),
            };
            let r = self.w.update(owner, at.partition, "put", enc(args));
            let r: Result<PutOutcome, PutError> = dec("put", r);
            match r {
                Ok(o) => {
                    self.subs.get_mut(outer).expect("known").model.insert(k, v);
                    return o;
                }
                Err(PutError::Moved { to }) => self.follow(outer, to),
                Err(PutError::WritesPaused) => {
                    self.report.writes_paused_retries += 1;
                    self.w.tick();
                }
                Err(e) => panic!("{}: put to {outer}: {e:?}", self.w.name()),
            }
        }
        panic!("put to {outer} never landed");
    }

    /// A get that must answer: a `Moved` is followed, anything else fails the scenario.
    fn get(&mut self, outer: &str, k: &[u8]) -> Option<Vec<u8>> {
        let owner = self.subs[outer].owner;
        for _ in 0..8 {
            let at = self.subs[outer].at;
            let args = GetArgs {
                subdb: at.subdb,
                key: ByteBuf::from(k.to_vec()),
            };
            let r = self.w.query(owner, at.partition, "get", enc(args));
            let r: Result<Option<ByteBuf>, GetError> = dec("get", r);
            match r {
                Ok(v) => return v.map(ByteBuf::into_vec),
                Err(GetError::Moved { to }) => self.follow(outer, to),
                Err(e) => panic!("{}: get from {outer} failed: {e:?}", self.w.name()),
            }
        }
        panic!("get from {outer}: redirected in circles");
    }

    fn has(&mut self, outer: &str, k: &[u8]) -> bool {
        let owner = self.subs[outer].owner;
        let at = self.subs[outer].at;
        let args = GetArgs {
            subdb: at.subdb,
            key: ByteBuf::from(k.to_vec()),
        };
        let r = self.w.query(owner, at.partition, "has", enc(args));
        let r: Result<bool, GetError> = dec("has", r);
        r.unwrap_or_else(|e| panic!("has on {outer}: {e:?}"))
    }

    /// A whole scan in pages of `limit`, following cursors.
    fn scan(&mut self, outer: &str, reverse: bool, limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        let owner = self.subs[outer].owner;
        let at = self.subs[outer].at;
        let mut out = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
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
            let page = r.unwrap_or_else(|e| panic!("scan of {outer}: {e:?}"));
            assert!(page.entries.len() <= limit as usize);
            pages += 1;
            out.extend(
                page.entries
                    .into_iter()
                    .map(|e| (e.key.into_vec(), e.value.into_vec())),
            );
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
            assert!(pages < 100_000, "scan does not end");
        }
        out
    }

    /// Every SubDB holds exactly its model, read both ways with cursors.
    fn check_all(&mut self, when: &str) {
        let names: Vec<String> = self.subs.keys().cloned().collect();
        for outer in names {
            let fwd = self.scan(&outer, false, 5);
            let model: Vec<(Vec<u8>, Vec<u8>)> = self.subs[&outer]
                .model
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(
                fwd,
                model,
                "{}: {when}: forward scan of {outer}",
                self.w.name()
            );
            let mut rev = self.scan(&outer, true, 7);
            rev.reverse();
            assert_eq!(
                rev,
                model,
                "{}: {when}: reverse scan of {outer}",
                self.w.name()
            );
        }
    }
}

/// Uploads `wasm` to the index in chunks of `chunk` bytes.
pub fn upload_partition_wasm<W: World>(w: &mut W, index: Principal, wasm: &[u8], chunk: usize) {
    let sha256 = ByteBuf::from(Sha256::digest(wasm).to_vec());
    let mut offset = 0;
    while offset < wasm.len() {
        let end = (offset + chunk).min(wasm.len());
        let c = WasmChunk {
            sha256: sha256.clone(),
            offset: offset as u64,
            total_len: wasm.len() as u64,
            bytes: ByteBuf::from(wasm[offset..end].to_vec()),
        };
        let r = w.update(admin(), index, "upload_partition_wasm_chunk", enc(c));
        let r: Result<UploadProgress, UploadWasmError> = dec("upload_partition_wasm_chunk", r);
        let p = r.unwrap_or_else(|e| panic!("upload at {offset}: {e:?}"));
        assert_eq!(p.received, end as u64);
        assert_eq!(p.complete, end == wasm.len());
        offset = end;
    }
}

/// Is `bytes` the Candid encoding of `Err(<variant named want>)`?
fn is_err_variant(bytes: &[u8], want: &str) -> bool {
    let Ok(args) = candid::IDLArgs::from_bytes(bytes) else {
        return false;
    };
    let Some(candid::IDLValue::Variant(v)) = args.args.first() else {
        return false;
    };
    let outer = &v.0;
    if outer.id.get_id() != candid::idl_hash("Err") {
        return false;
    }
    match &outer.val {
        candid::IDLValue::Variant(inner) => inner.0.id.get_id() == candid::idl_hash(want),
        _ => false,
    }
}

/// Runs the scenario. `index_wasm` and `partition_wasm` may be gzipped.
pub fn run<W: World>(
    w: &mut W,
    index_wasm: &[u8],
    partition_wasm: &[u8],
    cfg: ScenarioConfig,
) -> ScenarioReport {
    let init = IndexInit {
        admins: vec![admin()],
        spare_pool_target: Some(1),
        move_cap_bytes: Some(cfg.move_cap_bytes),
        partition_cycles: None,
    };
    let index = w.install(admin(), index_wasm, enc(init));
    upload_partition_wasm(w, index, partition_wasm, cfg.upload_chunk_bytes);
    let mut r = Run {
        w,
        cfg,
        index,
        subs: BTreeMap::new(),
        op: 0,
        report: ScenarioReport::default(),
    };
    r.wait_for("a spare partition", |r| !r.stats().partitions.is_empty());

    // ---- SubDBs for three users until the index has created three partitions ------------
    let [u1, u2, u3] = users();
    let owners = [u1, u2, u3];
    let mut n = 0;
    let mut moved: HashMap<String, InnerKey> = HashMap::new();
    let mut upgraded = false;
    loop {
        let owner = owners[n % 3];
        let outer = format!("user{}-db{}", n % 3 + 1, n / 3);
        r.create(owner, &outer);
        n += 1;
        let items = r.cfg.items_per_subdb;
        let vb = r.cfg.value_bytes;
        for i in 0..items {
            let v = value((n * 1000 + i) as u64, vb);
            r.put(&outer, key(i), v);
        }
        // Let stats refresh so the index sees the partition's size and sheds or fills. While
        // a move runs, keep writing and reading the moving SubDB every round, and upgrade the
        // index and every partition in the middle of it (once).
        let mut quiet = 0;
        let mut st = r.stats();
        while quiet < 12 {
            let Some(m) = st.moves.first().cloned() else {
                quiet += 1;
                if quiet % 4 == 1 {
                    r.housekeeping();
                }
                r.w.tick();
                st = r.stats();
                continue;
            };
            quiet = 0;
            r.report.move_phases_seen.insert(m.phase.clone());
            moved.insert(m.outer_key.clone(), m.source);
            let outer = m.outer_key.clone();
            for _ in 0..3 {
                let i = 10_000 + r.report.writes_during_move;
                let v = value(i as u64 * 7 + 3, 300);
                r.put(&outer, key(i), v.clone());
                r.report.writes_during_move += 1;
                let got = r.get(&outer, &key(i));
                assert_eq!(
                    got.as_deref(),
                    Some(&v[..]),
                    "{}: read-your-write during a move",
                    r.w.name()
                );
                r.report.reads_during_move += 1;
            }
            let k0 = r.subs[&outer]
                .model
                .keys()
                .next()
                .cloned()
                .expect("non-empty");
            let want = r.subs[&outer].model[&k0].clone();
            assert_eq!(r.get(&outer, &k0), Some(want));
            r.report.reads_during_move += 1;
            // Mid-way: while items or changes are being copied.
            if !upgraded && (m.phase == "copy" || m.phase == "delta") {
                upgraded = true;
                r.report.upgraded_during_move_phase = Some(m.phase.clone());
                upgrade_all(&mut r, index_wasm, partition_wasm);
            }
            r.w.tick();
            st = r.stats();
        }
        let created = st.partitions.len();
        if created >= 3 && !moved.is_empty() && n >= 3 {
            break;
        }
        assert!(
            n < 40,
            "{}: 40 SubDBs and still {created} partitions, {} moves",
            r.w.name(),
            moved.len()
        );
    }
    r.report.moves_seen = moved.len();
    if !upgraded {
        // The move ended before a chunk was counted: upgrade now, between operations.
        upgrade_all(&mut r, index_wasm, partition_wasm);
    }
    r.check_all("after creation, moves and upgrades");

    // ---- every moved SubDB now lives elsewhere; writes and reads go on there -------------
    for (outer, source) in moved.clone() {
        let now = r.route(&outer);
        assert_ne!(now.partition, source.partition, "{outer} moved");
        r.subs.get_mut(&outer).expect("known").at = now;
        r.put(&outer, b"after-move".to_vec(), b"yes".to_vec());
        assert_eq!(r.get(&outer, b"after-move"), Some(b"yes".to_vec()));
    }

    // ---- put / get / has / scan on every SubDB ------------------------------------------
    let names: Vec<String> = r.subs.keys().cloned().collect();
    for outer in &names {
        let o = r.put(outer, key(0), b"replaced".to_vec());
        assert!(o.replaced);
        assert!(r.has(outer, &key(0)));
        assert!(!r.has(outer, b"absent"));
        assert_eq!(r.get(outer, b"absent"), None);
    }
    r.check_all("final");

    // ---- access refused ------------------------------------------------------------------
    let outer = names[0].clone();
    let at = r.subs[&outer].at;
    for who in [stranger(), Principal::anonymous()] {
        let g = GetArgs {
            subdb: at.subdb,
            key: ByteBuf::from(key(1)),
        };
        let res = r.w.query(who, at.partition, "get", enc(g.clone()));
        assert!(
            is_err_variant(&res.expect("get answers"), "NotAuthorized"),
            "get by {who}"
        );
        let p = PutArgs {
            subdb: at.subdb,
            key: ByteBuf::from(key(1)),
            value: ByteBuf::from(b"x".to_vec()),
            op_id: OpId(ByteBuf::from(vec![9u8; 16])),
        };
        let res = r.w.update(who, at.partition, "put", enc(p));
        assert!(
            is_err_variant(&res.expect("put answers"), "NotAuthorized"),
            "put by {who}"
        );
        let s = ScanRequest {
            subdb: at.subdb,
            args: ScanArgs::default(),
        };
        let res = r.w.query(who, at.partition, "scan", enc(s));
        assert!(
            is_err_variant(&res.expect("scan answers"), "NotAuthorized"),
            "scan by {who}"
        );
        let res = r.w.update(who, index, "run_housekeeping", enc(()));
        assert!(
            is_err_variant(&res.expect("answers"), "NotAuthorized"),
            "run_housekeeping by {who}"
        );
        let req = CreateRequest {
            outer_key: "intruder".into(),
            op_id: OpId(ByteBuf::from(vec![7u8; 16])),
            hard_cap: None,
            owner: Some(users()[0]),
            readers: vec![],
            writers: vec![],
        };
        let res = r.w.update(who, index, "create_subdb", enc(req));
        assert!(
            is_err_variant(&res.expect("answers"), "NotAuthorized"),
            "create_subdb by {who}"
        );
        r.report.refusals_checked += 5;
    }
    // The anonymous principal may not even create a SubDB for itself.
    let req = CreateRequest {
        outer_key: "anon".into(),
        op_id: OpId(ByteBuf::from(vec![8u8; 16])),
        hard_cap: None,
        owner: None,
        readers: vec![],
        writers: vec![],
    };
    let res =
        r.w.update(Principal::anonymous(), index, "create_subdb", enc(req));
    assert!(is_err_variant(&res.expect("answers"), "NotAuthorized"));
    r.report.refusals_checked += 1;

    // ---- every housekeeping endpoint refused to a caller that is not the index -----------
    let st = r.stats();
    for p in st.partitions.iter().map(|p| p.id) {
        for (method, arg) in housekeeping_calls(at) {
            for who in [admin(), users()[0], Principal::anonymous()] {
                let res = r.w.update(who, p, method, arg.clone());
                let b = res.unwrap_or_else(|e| panic!("{method} by {who}: rejected: {e}"));
                assert!(
                    is_err_variant(&b, "NotAuthorized"),
                    "{method} by {who} on {p}"
                );
                r.report.refusals_checked += 1;
            }
        }
    }
    r.check_all("after the refusals");

    r.report.partitions = st.partitions.len();
    r.report.subdbs = r.subs.len();
    r.report.items = r.subs.values().map(|s| s.model.len()).sum();
    r.report
}

fn upgrade_all<W: World>(r: &mut Run<'_, W>, index_wasm: &[u8], partition_wasm: &[u8]) {
    let index = r.index;
    r.w.upgrade(admin(), index, index_wasm, enc(()))
        .unwrap_or_else(|e| panic!("{}: index upgrade: {e}", r.w.name()));
    r.report.upgrades += 1;
    let parts: Vec<Principal> = r.stats().partitions.iter().map(|p| p.id).collect();
    for p in parts {
        // The partitions' controller is the index.
        r.w.upgrade(index, p, partition_wasm, enc(()))
            .unwrap_or_else(|e| panic!("{}: partition {p} upgrade: {e}", r.w.name()));
        r.report.upgrades += 1;
    }
    r.check_all("right after the upgrades");
}

/// Each housekeeping endpoint of a partition with a well-formed argument.
fn housekeeping_calls(at: InnerKey) -> Vec<(&'static str, Vec<u8>)> {
    use flotilla_types::partition::*;
    use flotilla_types::{Chunk, SubDbId};
    let op = OpId(ByteBuf::from(vec![5u8; 16]));
    let chunk = Chunk {
        seq: 0,
        header: None,
        puts: vec![],
        deletes: vec![],
        ops: vec![],
    };
    let s: SubDbId = at.subdb;
    vec![
        (
            "create_subdb_local",
            enc(CreateLocalArgs {
                access: Access {
                    owner: users()[0],
                    readers: vec![],
                    writers: vec![],
                },
                op_id: op.clone(),
                hard_cap: None,
            }),
        ),
        ("stats", enc(StatsArgs { from: 0, limit: 1 })),
        (
            "export_chunk",
            enc(ExportArgs {
                subdb: s,
                seq: 0,
                token: None,
                budget: 2_000_000,
            }),
        ),
        ("begin_export", enc(BeginExportArgs { subdb: s })),
        (
            "export_delta",
            enc(ExportDeltaArgs {
                subdb: s,
                seq: 0,
                ack: 0,
                freeze: false,
                budget: 2_000_000,
                write_budget: None,
            }),
        ),
        ("begin_import", enc(BeginImportArgs { op_id: op })),
        (
            "import_chunk",
            enc(ImportChunkArgs {
                subdb: s,
                chunk,
                finish: false,
            }),
        ),
        ("abort_import", enc(s)),
        ("resume_writes", enc(s)),
        (
            "release",
            enc(ReleaseArgs {
                subdb: s,
                moved_to: at,
            }),
        ),
    ]
}
