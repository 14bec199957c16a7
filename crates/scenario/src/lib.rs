//! One end-to-end scenario of a Flotilla deployment, written once against the small [`World`]
//! trait, and three worlds to run it in:
//!
//! - [`sim::SimWorld`]: the deterministic simulator (`flotilla_sim::World`), the real index and
//!   partition logic compiled natively, without faults;
//! - [`testbed::TestbedWorld`]: the testbed (`flotilla_testbed`), the real `index.wasm.gz` and
//!   `partition.wasm.gz` of `scripts/build-wasm.sh` in wasmtime behind the System API;
//! - PocketIC: not implemented, [`pocket_ic::skip_reason`] says why.
//!
//! The scenario ([`run`]): install the index with its init argument; upload the partition
//! module in chunks; create SubDBs for three users (one with a reader and a writer) until the
//! index has created at least three partitions, driving any move the small move cap causes
//! while the client keeps reading and writing; put, get, has, batched writes, scans both ways
//! with cursors; a move forced with the admin's `move_subdb` while the client keeps reading and
//! writing (no read fails, no acknowledged write is lost), with an upgrade of the index and of
//! every partition in its middle, and everything intact afterwards; a retried put answered from
//! the op log at the SubDB's new home; a fleet upgrade from the index (`upgrade_partitions`)
//! to a new module that traps in `post_upgrade` on the partition holding the most SubDBs,
//! which the index reports and restarts on its old module, with all its data, while every
//! other partition is upgraded; access refused to a stranger, to the anonymous principal
//! and to a reader who writes; every admin endpoint of the index refused to non-admins and
//! every housekeeping endpoint of every partition refused to callers other than the index.
//! Every acknowledged write is kept in a model, and every SubDB is compared with it, scanned
//! both ways, after each stage.

mod client;
pub mod pocket_ic;
mod refusals;
pub mod sim;
mod stages;
pub mod testbed;

use candid::{CandidType, Principal};
use client::Run;
use flotilla_types::index::{IndexInit, UploadProgress, UploadWasmError, WasmChunk};
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// A call that got no reply: the IC's reject code (1 `SYS_FATAL` … 6 `SYS_UNKNOWN`; 0 for a
/// failure of the world's own transport) and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub code: u32,
    pub message: String,
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reject code {}: {}", self.code, self.message)
    }
}

/// What the scenario needs from an environment. Methods are called by name with Candid
/// bytes, so one scenario drives native logic and wasm alike.
pub trait World {
    /// A short name for messages (`sim`, `testbed`, `pocket-ic`).
    fn name(&self) -> &str;
    /// The principal that installs the index and is its admin.
    fn admin(&self) -> Principal;
    /// Installs the index with `init` (whose `admins` are `[self.admin()]`) and answers its
    /// id. A world whose index exists from the start (the simulator builds it with the world)
    /// checks that it was installed with this very argument instead.
    fn install_index(&mut self, init: &IndexInit) -> Result<Principal, String>;
    /// The partition module the admin uploads to the index (raw or gzipped wasm; the
    /// simulator's partitions run native logic whatever the module, so its module is filler).
    fn partition_module(&self) -> Vec<u8>;
    /// An update call from `caller`, answered once it has run (rounds pass meanwhile).
    fn update(
        &mut self,
        caller: Principal,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<Vec<u8>, Reject>;
    /// A query call from `caller`.
    fn query(
        &mut self,
        caller: Principal,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<Vec<u8>, Reject>;
    /// One round: time passes, timers fire, queued messages are delivered.
    fn tick(&mut self);
    /// Upgrades `canister` (the index, or a partition the index created) to the module it
    /// runs, as its controller, between messages.
    fn upgrade(&mut self, canister: Principal) -> Result<(), String>;
    /// Another partition module: the same code, another SHA-256 (what an admin uploads to roll
    /// a new build out).
    fn next_partition_module(&self) -> Vec<u8>;
    /// Makes upgrading `partition` to `module` trap in `post_upgrade`, as a module that cannot
    /// read that partition's stable memory does.
    fn break_post_upgrade(&mut self, partition: Principal, module: &[u8]) -> Result<(), String>;
    /// SHA-256 of the module `canister` runs, as the world knows it.
    fn module_hash(&self, canister: Principal) -> Option<Vec<u8>>;
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
    /// Bytes of one upload chunk of the partition module.
    pub upload_chunk_bytes: usize,
    /// Rounds any waiting step may take before the scenario fails.
    pub max_rounds: u32,
    /// Forced moves tried until one is caught in its `copy` or `delta` phase for the
    /// upgrade (after that many, the upgrade happens in whatever phase the last one shows).
    pub forced_move_attempts: usize,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        ScenarioConfig {
            move_cap_bytes: 40 * 1024,
            value_bytes: 2000,
            items_per_subdb: 12,
            upload_chunk_bytes: 128 * 1024,
            max_rounds: 3000,
            forced_move_attempts: 4,
        }
    }
}

/// Figures of a finished run.
#[derive(Clone, Debug, Default)]
pub struct ScenarioReport {
    /// Partitions at the end.
    pub partitions: usize,
    pub subdbs: usize,
    /// Items in all SubDBs at the end (the model's count, checked against the scans).
    pub items: usize,
    /// Chunks the partition module was uploaded in.
    pub upload_chunks: usize,
    /// Moves the move cap caused while the SubDBs were filled.
    pub cap_moves: usize,
    /// Forced moves (`move_subdb`) run to the end.
    pub forced_moves: usize,
    /// The forced move in whose middle everything was upgraded: outer key, source, target
    /// (principals as text).
    pub forced_move: Option<(String, String, String)>,
    /// The move's phase when the index and the partitions were upgraded.
    pub upgraded_during_move_phase: Option<String>,
    pub upgrades: usize,
    pub move_phases_seen: BTreeSet<String>,
    pub redirects_followed: usize,
    pub writes_paused_retries: usize,
    pub reads_during_moves: usize,
    pub writes_during_moves: usize,
    pub batches: usize,
    /// Retries of recorded operations answered from the op log.
    pub op_retries_checked: usize,
    /// The fleet upgrade (`upgrade_partitions`): partitions upgraded, and the one whose new
    /// module trapped in `post_upgrade`, reported failed with that step.
    pub fleet_upgraded: u64,
    pub fleet_failed: Vec<(String, String)>,
    pub refusals_checked: usize,
    /// Rounds the scenario asked for with [`World::tick`] (not counting the rounds that
    /// calls took meanwhile).
    pub scenario_ticks: u64,
}

/// The admin principal of the worlds that let the scenario choose it.
pub fn scenario_admin() -> Principal {
    Principal::from_slice(&[0xad; 29])
}

/// The three users who own SubDBs.
pub fn users() -> [Principal; 3] {
    [
        Principal::from_slice(&[0x01; 29]),
        Principal::from_slice(&[0x02; 29]),
        Principal::from_slice(&[0x03; 29]),
    ]
}

/// A principal with no rights anywhere.
pub fn stranger() -> Principal {
    Principal::from_slice(&[0x5e; 29])
}

pub(crate) fn enc<A: CandidType>(a: A) -> Vec<u8> {
    candid::encode_one(a).expect("candid encode")
}

pub(crate) fn dec<R: DeserializeOwned + CandidType>(what: &str, b: Result<Vec<u8>, Reject>) -> R {
    let b = b.unwrap_or_else(|e| panic!("{what}: call rejected: {e}"));
    candid::decode_one(&b).unwrap_or_else(|e| panic!("{what}: undecodable reply: {e}"))
}

/// Is `bytes` the Candid encoding of `Err(<variant named want>)`?
pub(crate) fn is_err_variant(bytes: &[u8], want: &str) -> bool {
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

/// Uploads `module` to the index as `admin` in chunks of `chunk` bytes, checking the
/// progress the index reports after each; answers the number of chunks.
pub fn upload_partition_module<W: World + ?Sized>(
    w: &mut W,
    admin: Principal,
    index: Principal,
    module: &[u8],
    chunk: usize,
) -> usize {
    let sha256 = ByteBuf::from(Sha256::digest(module).to_vec());
    let mut offset = 0;
    let mut chunks = 0;
    while offset < module.len() {
        let end = (offset + chunk).min(module.len());
        let c = WasmChunk {
            sha256: sha256.clone(),
            offset: offset as u64,
            total_len: module.len() as u64,
            bytes: ByteBuf::from(module[offset..end].to_vec()),
        };
        let r = w.update(admin, index, "upload_partition_wasm_chunk", enc(c));
        let r: Result<UploadProgress, UploadWasmError> = dec("upload_partition_wasm_chunk", r);
        let p = r.unwrap_or_else(|e| panic!("{}: upload at {offset}: {e:?}", w.name()));
        assert_eq!(p.received, end as u64, "{}: upload progress", w.name());
        assert_eq!(p.complete, end == module.len(), "{}: upload end", w.name());
        offset = end;
        chunks += 1;
    }
    chunks
}

/// Runs the scenario in `w` (see the crate documentation). Panics, naming the world, at the
/// first thing that goes wrong.
pub fn run<W: World>(w: &mut W, cfg: ScenarioConfig) -> ScenarioReport {
    let admin = w.admin();
    let init = IndexInit {
        admins: vec![admin],
        spare_pool_target: Some(1),
        move_cap_bytes: Some(cfg.move_cap_bytes),
        ..IndexInit::default()
    };
    let index = w
        .install_index(&init)
        .unwrap_or_else(|e| panic!("{}: installing the index: {e}", w.name()));
    let module = w.partition_module();
    let upload_chunks = upload_partition_module(w, admin, index, &module, cfg.upload_chunk_bytes);
    let mut r = Run::new(w, cfg, admin, index);
    r.report.upload_chunks = upload_chunks;
    r.wait_for("a first partition", |r| !r.stats().partitions.is_empty());

    r.fill_until_three_partitions();
    r.check_all("after the SubDBs were created and filled");
    r.basic_operations();
    r.check_all("after put, get, has and batches");
    r.forced_moves();
    r.check_all("after the forced move and the upgrades");
    r.after_moves();
    r.op_log_retries();
    r.check_all("after the op-log retries");
    r.fleet_upgrade();
    r.check_all("after the fleet upgrade");
    refusals::check(&mut r);
    r.check_all("after the refusals");
    r.finish()
}
