//! A wasm testbed: runs canister wasm modules in wasmtime behind the IC System API, with a
//! management canister, explicit rounds and seeded faults. See `docs/testbed.md`.
//!
//! Messages are queued and delivered in order, one round per [`Testbed::tick`]. Each message
//! is atomic: a trap rolls the heap, the mutable globals and stable memory back to the
//! message start, and drops the calls and the reply it made. Instruction limits are wasmtime
//! fuel. Queries run at once and never commit.

pub mod bench;
pub mod host;
pub mod ic0;
pub mod instrument;
pub mod limits;
mod mgmt;

use crate::host::{Entry, Exec, Host, Kind, Response};
use crate::instrument::{global_export, prepare, TABLE_EXPORT};
use crate::limits::*;
use candid::Principal;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock};
use wasmtime::{Engine, Instance, Linker, Memory, Module, Store, Val};

pub use host::ApiStats;
pub use host::Kind as MessageKind;
pub use mgmt::InstallMode;

/// Reject codes of the IC interface specification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectCode {
    SysFatal = 1,
    SysTransient = 2,
    DestinationInvalid = 3,
    CanisterReject = 4,
    CanisterError = 5,
    SysUnknown = 6,
}

/// A call that did not get a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub code: RejectCode,
    pub message: String,
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for Reject {}

fn reject(code: RejectCode, message: impl Into<String>) -> Reject {
    Reject {
        code,
        message: message.into(),
    }
}

/// The outcome of a call: the reply's bytes or the reject.
pub type CallResult = Result<Vec<u8>, Reject>;

/// Knobs of a testbed.
#[derive(Clone, Debug)]
pub struct Config {
    /// Seeds the fault knobs.
    pub seed: u64,
    /// Per mille of inter-canister calls rejected (SYS_TRANSIENT) before reaching the callee.
    pub reject_calls_permille: u32,
    /// Per mille of replies to inter-canister calls lost after the callee ran: the caller gets
    /// a SYS_UNKNOWN reject instead.
    pub lose_replies_permille: u32,
    /// Time a round takes, in nanoseconds.
    pub round_ns: u64,
    /// Time of round 0, in nanoseconds since the epoch.
    pub start_time_ns: u64,
    /// Instruction limits per message.
    pub limits: InstructionLimits,
}

/// Instructions a message may execute before it traps; the IC's figures by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstructionLimits {
    pub update: u64,
    pub query: u64,
    pub install: u64,
}

impl Default for InstructionLimits {
    fn default() -> Self {
        InstructionLimits {
            update: UPDATE_INSTRUCTIONS,
            query: QUERY_INSTRUCTIONS,
            install: INSTALL_INSTRUCTIONS,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 0,
            reject_calls_permille: 0,
            lose_replies_permille: 0,
            round_ns: 1_000_000_000,
            start_time_ns: 1_700_000_000_000_000_000,
            limits: InstructionLimits::default(),
        }
    }
}

/// Running, stopping or stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Running,
    Stopping,
    Stopped,
}

/// A compiled, prepared module, shared by every canister running it.
#[derive(Clone)]
struct Code {
    module: Module,
    hash: [u8; 32],
    mutable_globals: Arc<Vec<u32>>,
    wasm_len: usize,
}

/// A running instance: its store (which holds stable memory) and the handles the testbed
/// needs to save and restore it.
struct Live {
    store: Store<Host>,
    instance: Instance,
    memory: Memory,
    code: Code,
}

struct Canister {
    controllers: Vec<Principal>,
    cycles: u128,
    status: Status,
    live: Option<Live>,
    timer: u64,
    version: u64,
    chunks: BTreeMap<[u8; 32], Vec<u8>>,
    /// `stop_canister` calls waiting for the canister to stop.
    stop_waiters: Vec<Origin>,
    certified_data: Vec<u8>,
}

/// Who awaits the answer of a call context.
#[derive(Clone, Debug)]
enum Origin {
    Ingress(u64),
    Canister {
        caller: Principal,
        callback: u64,
    },
    /// A timer or install: nobody.
    System,
}

struct CallContext {
    canister: Principal,
    origin: Origin,
    answered: bool,
    outstanding: usize,
    /// The canister was reinstalled or upgraded since: responses run no callback.
    deleted: bool,
    instructions: u64,
    api: ApiStats,
}

struct Callback {
    canister: Principal,
    context: u64,
    reply: Entry,
    reject: Entry,
    cleanup: Option<Entry>,
}

enum Msg {
    Call {
        origin: Origin,
        caller: Principal,
        callee: Principal,
        method: String,
        arg: Vec<u8>,
        cycles: u128,
    },
    Response {
        callback: u64,
        result: CallResult,
        refund: u128,
    },
    Timer(Principal),
}

/// The result of running one piece of wasm.
struct Run {
    exec: Exec,
    trap: Option<String>,
    instructions: u64,
    api: ApiStats,
}

/// Per operation instruction figures (see [`Testbed::last_instructions`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Instructions {
    /// Instructions of the last message executed by the canister.
    pub last: u64,
}

/// The wasmtime engine (fuel on) and the compiled-module cache every testbed shares.
struct Shared {
    engine: Engine,
    linker: Linker<Host>,
    modules: Mutex<HashMap<[u8; 32], Code>>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let mut cfg = wasmtime::Config::new();
        cfg.consume_fuel(true);
        cfg.max_wasm_stack(MAX_WASM_STACK_BYTES);
        let engine = Engine::new(&cfg).expect("wasmtime engine");
        let mut linker = Linker::new(&engine);
        ic0::define(&mut linker).expect("System API definitions");
        Shared {
            engine,
            linker,
            modules: Mutex::new(HashMap::new()),
        }
    })
}

/// Gunzips `bytes` if they are gzip, as the IC does with a module.
pub fn decompress(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_WASM_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("bad gzip: {e}"))?;
        if out.len() > MAX_WASM_BYTES {
            return Err(format!("the module exceeds {MAX_WASM_BYTES} bytes"));
        }
        Ok(out)
    } else {
        Ok(bytes.to_vec())
    }
}

/// Compiles (once per process) a module given as wasm, gzipped wasm or WAT text.
fn compile(bytes: &[u8]) -> Result<Code, String> {
    let hash: [u8; 32] = Sha256::digest(bytes).into();
    let s = shared();
    if let Some(c) = s.modules.lock().expect("module cache").get(&hash) {
        return Ok(c.clone());
    }
    let wasm = decompress(bytes)?;
    let wasm = if wasm.starts_with(b"\0asm") {
        wasm
    } else {
        let text = std::str::from_utf8(&wasm).map_err(|_| "not wasm, gzip or WAT".to_string())?;
        wat::parse_str(text).map_err(|e| format!("bad WAT: {e}"))?
    };
    let prepared = prepare(&wasm).map_err(|e| e.to_string())?;
    let module =
        Module::new(&s.engine, &prepared.wasm).map_err(|e| format!("invalid module: {e:#}"))?;
    let code = Code {
        module,
        // As on the IC, the hash of the module as given: a gzipped module's is that of the
        // compressed bytes (interface specification, "Canister module format").
        hash,
        mutable_globals: Arc::new(prepared.mutable_globals),
        wasm_len: wasm.len(),
    };
    s.modules
        .lock()
        .expect("module cache")
        .insert(hash, code.clone());
    Ok(code)
}

/// Makes an instance of `code` whose store holds `stable`.
fn instantiate(code: &Code, stable: Vec<u8>) -> Result<Live, String> {
    let s = shared();
    let mut store = Store::new(&s.engine, Host::with_stable(stable));
    store.set_fuel(0).expect("fuel is on");
    let instance = s
        .linker
        .instantiate(&mut store, &code.module)
        .map_err(|e| format!("instantiation failed: {e:#}"))?;
    let memory = instance
        .get_memory(&mut store, "memory")
        .ok_or("the module exports no memory named `memory`")?;
    Ok(Live {
        store,
        instance,
        memory,
        code: code.clone(),
    })
}

/// Heap and globals at a message start.
#[derive(Default)]
struct Snapshot {
    heap: Vec<u8>,
    globals: Vec<Val>,
}

impl Live {
    fn snapshot(&mut self, into: &mut Snapshot) {
        into.heap.clear();
        into.heap.extend_from_slice(self.memory.data(&self.store));
        into.globals.clear();
        for &g in self.code.mutable_globals.iter() {
            let global = self
                .instance
                .get_global(&mut self.store, &global_export(g))
                .expect("prepared module exports its globals");
            into.globals.push(global.get(&mut self.store));
        }
    }

    /// Puts heap, globals and stable memory back as they were at the message start.
    fn restore(&mut self, snap: &Snapshot) {
        self.store.data_mut().rollback_stable();
        self.store.data_mut().exec = None;
        if self.memory.data_size(&self.store) != snap.heap.len() {
            // Memory cannot shrink: start a fresh instance and load the snapshot into it.
            let stable = std::mem::take(&mut self.store.data_mut().stable);
            let log = std::mem::take(&mut self.store.data_mut().log);
            let profile = self.store.data_mut().profile.take();
            *self = instantiate(&self.code, stable).expect("the module instantiated before");
            self.store.data_mut().log = log;
            self.store.data_mut().profile = profile;
            let have = self.memory.data_size(&self.store) as u64;
            let want = snap.heap.len() as u64;
            if want > have {
                self.memory
                    .grow(&mut self.store, (want - have) / WASM_PAGE_BYTES)
                    .expect("regrow to the snapshot's size");
            }
        }
        self.memory
            .data_mut(&mut self.store)
            .copy_from_slice(&snap.heap);
        for (&g, v) in self.code.mutable_globals.iter().zip(&snap.globals) {
            let global = self
                .instance
                .get_global(&mut self.store, &global_export(g))
                .expect("prepared module exports its globals");
            global.set(&mut self.store, *v).expect("same type");
        }
    }

    fn has_export(&mut self, name: &str) -> bool {
        self.instance.get_func(&mut self.store, name).is_some()
    }

    /// Calls `entry` with `limit` fuel. On a trap everything is rolled back.
    fn run(&mut self, entry: &Entry, mut exec: Exec, limit: u64, snap: &mut Snapshot) -> Run {
        self.snapshot(snap);
        exec.limit = limit;
        self.store.data_mut().exec = Some(exec);
        self.store.data_mut().api = ApiStats::default();
        if let Some(p) = self.store.data_mut().profile.as_mut() {
            p.last_fuel = limit;
        }
        self.store.set_fuel(limit).expect("fuel is on");
        let result = match entry {
            Entry::Export(name) => match self
                .instance
                .get_typed_func::<(), ()>(&mut self.store, name)
            {
                Ok(f) => f.call(&mut self.store, ()),
                Err(e) => Err(e),
            },
            Entry::Table(fun, env) => {
                match self.instance.get_table(&mut self.store, TABLE_EXPORT) {
                    None => Err(wasmtime::Error::msg("the module has no function table")),
                    Some(t) => match t.get(&mut self.store, u64::from(*fun)) {
                        Some(wasmtime::Ref::Func(Some(f))) => {
                            match f.typed::<i32, ()>(&self.store) {
                                Ok(f) => f.call(&mut self.store, *env as i32),
                                Err(e) => Err(e),
                            }
                        }
                        _ => Err(wasmtime::Error::msg(format!(
                            "callback {fun} is not a function in the table"
                        ))),
                    },
                }
            }
        };
        let fuel = self.store.get_fuel().expect("fuel is on");
        let instructions = limit - fuel;
        let api = self.store.data().api;
        if let Some(p) = self.store.data_mut().profile.as_mut() {
            // From the last System API call to the end of the message.
            let name = match entry {
                Entry::Export(n) => n.clone(),
                Entry::Table(f, _) => format!("callback {f}"),
            };
            p.charge(
                &[format!("<after the last System API call of {name}>")],
                p.last_fuel.saturating_sub(fuel),
            );
        }
        match result {
            Ok(()) => {
                let exec = self.store.data_mut().exec.take().expect("exec set");
                self.store.data_mut().commit_stable();
                Run {
                    exec,
                    trap: None,
                    instructions,
                    api,
                }
            }
            Err(e) => {
                let mut exec = self.store.data_mut().exec.take().expect("exec set");
                let msg = trap_message(&e, limit);
                self.restore(snap);
                exec.calls.clear();
                exec.pending = None;
                exec.response = None;
                Run {
                    exec,
                    trap: Some(msg),
                    instructions,
                    api,
                }
            }
        }
    }
}

fn trap_message(e: &wasmtime::Error, limit: u64) -> String {
    if let Some(t) = e.downcast_ref::<ic0::CanisterTrap>() {
        return t.0.clone();
    }
    if let Some(wasmtime::Trap::OutOfFuel) = e.downcast_ref::<wasmtime::Trap>() {
        return format!(
            "instruction limit exceeded: the message used more than {limit} instructions"
        );
    }
    format!("{e:#}")
}

/// Canister ids as the IC forms them: 8 bytes of a counter, then 0x01 0x01.
fn canister_id(n: u64) -> Principal {
    let mut b = n.to_be_bytes().to_vec();
    b.extend_from_slice(&[1, 1]);
    Principal::from_slice(&b)
}

/// splitmix64: a small seeded generator for the fault knobs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn permille(&mut self, p: u32) -> bool {
        p > 0 && self.next() % 1000 < u64::from(p)
    }
}

/// The testbed: canisters, the message queue, time.
pub struct Testbed {
    config: Config,
    rng: Rng,
    time: u64,
    round: u64,
    canisters: BTreeMap<Principal, Canister>,
    next_canister: u64,
    queue: VecDeque<Msg>,
    contexts: HashMap<u64, CallContext>,
    callbacks: HashMap<u64, Callback>,
    next_id: u64,
    ingress: HashMap<u64, Option<CallResult>>,
    snap: Snapshot,
    last_instructions: HashMap<Principal, u64>,
    last_api: HashMap<Principal, ApiStats>,
    ingress_cost: HashMap<u64, (u64, ApiStats)>,
    last_update_cost: (u64, ApiStats),
    /// Calls rejected and replies lost by the fault knobs.
    faults: (u64, u64),
    log: Vec<(Principal, String)>,
    /// Modules installed in place of others, by the SHA-256 of the module asked for
    /// ([`Testbed::substitute_module`]).
    substitutes: HashMap<[u8; 32], Arc<Vec<u8>>>,
    /// Print `debug_print` lines to stderr as they come.
    pub echo_log: bool,
}

impl Testbed {
    pub fn new(config: Config) -> Testbed {
        Testbed {
            rng: Rng(config.seed),
            time: config.start_time_ns,
            config,
            round: 0,
            canisters: BTreeMap::new(),
            next_canister: 0,
            queue: VecDeque::new(),
            contexts: HashMap::new(),
            callbacks: HashMap::new(),
            next_id: 1,
            ingress: HashMap::new(),
            snap: Snapshot::default(),
            last_instructions: HashMap::new(),
            last_api: HashMap::new(),
            ingress_cost: HashMap::new(),
            last_update_cost: (0, ApiStats::default()),
            faults: (0, 0),
            log: Vec::new(),
            substitutes: HashMap::new(),
            echo_log: std::env::var_os("TESTBED_LOG").is_some(),
        }
    }

    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// Current time, ns since the epoch.
    pub fn time(&self) -> u64 {
        self.time
    }

    pub fn round(&self) -> u64 {
        self.round
    }

    /// Moves time forward without running a round.
    pub fn advance_time(&mut self, ns: u64) {
        self.time += ns;
    }

    /// `debug_print` lines so far, with the printing canister.
    pub fn take_log(&mut self) -> Vec<(Principal, String)> {
        std::mem::take(&mut self.log)
    }

    /// Instructions the last message (update, query, callback, timer, install) executed by
    /// `canister` used.
    pub fn last_instructions(&self, canister: Principal) -> u64 {
        self.last_instructions.get(&canister).copied().unwrap_or(0)
    }

    /// Starts (or restarts) the function profile of `canister` (see [`host::Profile`]).
    pub fn start_profile(&mut self, canister: Principal) {
        if let Some(l) = self
            .canisters
            .get_mut(&canister)
            .and_then(|c| c.live.as_mut())
        {
            l.store.data_mut().profile = Some(host::Profile::default());
        }
    }

    /// Stops the function profile of `canister` and answers it: total instructions and
    /// `(function, self, inclusive)` by inclusive instructions, largest first.
    pub fn take_profile(&mut self, canister: Principal) -> (u64, Vec<(String, u64, u64)>) {
        let Some(p) = self
            .canisters
            .get_mut(&canister)
            .and_then(|c| c.live.as_mut())
            .and_then(|l| l.store.data_mut().profile.take())
        else {
            return (0, vec![]);
        };
        let mut v: Vec<(String, u64, u64)> =
            p.funcs.into_iter().map(|(k, (s, i))| (k, s, i)).collect();
        v.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)));
        (p.total, v)
    }

    /// How many inter-canister calls the fault knobs rejected and how many replies they lost.
    pub fn faults_injected(&self) -> (u64, u64) {
        self.faults
    }

    /// The System API profile of the last message `canister` executed.
    pub fn last_api_stats(&self, canister: Principal) -> ApiStats {
        self.last_api.get(&canister).copied().unwrap_or_default()
    }

    /// Instructions and System API profile of the call context of the last ingress update
    /// [`Testbed::await_ingress`] returned (every message of it: the method and any
    /// callbacks up to its answer), whatever else ran in the same rounds.
    pub fn last_update_cost(&self) -> (u64, ApiStats) {
        self.last_update_cost
    }

    pub fn status(&self, canister: Principal) -> Option<Status> {
        self.canisters.get(&canister).map(|c| c.status)
    }

    pub fn cycles(&self, canister: Principal) -> Option<u128> {
        self.canisters.get(&canister).map(|c| c.cycles)
    }

    pub fn controllers(&self, canister: Principal) -> Option<Vec<Principal>> {
        self.canisters.get(&canister).map(|c| c.controllers.clone())
    }

    /// Canisters in id order.
    pub fn canister_ids(&self) -> Vec<Principal> {
        self.canisters.keys().copied().collect()
    }

    /// Stable memory size in bytes.
    pub fn stable_size(&self, canister: Principal) -> Option<u64> {
        let c = self.canisters.get(&canister)?;
        Some(
            c.live
                .as_ref()
                .map_or(0, |l| l.store.data().stable.len() as u64),
        )
    }

    /// Heap (wasm memory) size in bytes.
    pub fn heap_size(&self, canister: Principal) -> Option<u64> {
        let c = self.canisters.get(&canister)?;
        Some(
            c.live
                .as_ref()
                .map_or(0, |l| l.memory.data_size(&l.store) as u64),
        )
    }

    /// Reads `len` bytes of a canister's heap at `addr` (for tests).
    pub fn read_heap(&self, canister: Principal, addr: usize, len: usize) -> Option<Vec<u8>> {
        let l = self.canisters.get(&canister)?.live.as_ref()?;
        l.memory
            .data(&l.store)
            .get(addr..addr + len)
            .map(<[u8]>::to_vec)
    }

    /// Reads `len` bytes of a canister's stable memory at `addr` (for tests).
    pub fn read_stable(&self, canister: Principal, addr: usize, len: usize) -> Option<Vec<u8>> {
        let l = self.canisters.get(&canister)?.live.as_ref()?;
        l.store
            .data()
            .stable
            .get(addr..addr + len)
            .map(<[u8]>::to_vec)
    }

    /// The module hash installed on a canister: SHA-256 of the module as it was given to
    /// `install_code` (for a gzipped module, of the compressed bytes), as the IC reports it.
    pub fn module_hash(&self, canister: Principal) -> Option<[u8; 32]> {
        self.canisters
            .get(&canister)?
            .live
            .as_ref()
            .map(|l| l.code.hash)
    }

    fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Creates an empty canister with `cycles` and these controllers (the provisional API).
    pub fn create_canister(&mut self, controllers: Vec<Principal>, cycles: u128) -> Principal {
        let mut id = canister_id(self.next_canister);
        while self.canisters.contains_key(&id) {
            self.next_canister += 1;
            id = canister_id(self.next_canister);
        }
        self.next_canister += 1;
        self.insert_canister(id, controllers, cycles);
        id
    }

    /// Creates an empty canister with the id given (as PocketIC's `create_canister_with_id`),
    /// for a test that rebuilds a deployment whose state names its canisters. Refused if a
    /// canister has that id. Later [`Testbed::create_canister`] ids pass over it.
    pub fn create_canister_with_id(
        &mut self,
        id: Principal,
        controllers: Vec<Principal>,
        cycles: u128,
    ) -> Result<(), String> {
        if self.canisters.contains_key(&id) {
            return Err(format!("canister {id} already exists"));
        }
        self.insert_canister(id, controllers, cycles);
        Ok(())
    }

    fn insert_canister(&mut self, id: Principal, controllers: Vec<Principal>, cycles: u128) {
        self.canisters.insert(
            id,
            Canister {
                controllers,
                cycles,
                status: Status::Running,
                live: None,
                timer: 0,
                version: 0,
                chunks: BTreeMap::new(),
                stop_waiters: Vec::new(),
                certified_data: Vec::new(),
            },
        );
    }

    /// Replaces the whole stable memory of an installed canister (as PocketIC's
    /// `set_stable_memory`), between messages: `bytes` padded with zeros to whole 64 KiB
    /// pages. The heap is left alone; upgrading the canister next runs `post_upgrade` over
    /// these bytes.
    pub fn set_stable_memory(&mut self, canister: Principal, bytes: Vec<u8>) -> Result<(), String> {
        let c = self
            .canisters
            .get_mut(&canister)
            .ok_or_else(|| format!("canister {canister} not found"))?;
        let live = c
            .live
            .as_mut()
            .ok_or_else(|| format!("canister {canister} is empty: install a module first"))?;
        if bytes.len() > MAX_STABLE_BYTES as usize {
            return Err(format!(
                "{} bytes exceed the stable memory limit",
                bytes.len()
            ));
        }
        let page = WASM_PAGE_BYTES as usize;
        let mut stable = bytes;
        stable.resize(stable.len().div_ceil(page) * page, 0);
        live.store.data_mut().stable = stable;
        Ok(())
    }

    /// From now on, whenever a module equal to `stand_in` (byte for byte, as given to
    /// `install_code`, `install_chunked_code` or [`Testbed::install`]) is installed, `real` is
    /// installed instead. A test uses it to let the index hold a tiny module in its stable
    /// memory while the partitions it creates run the real one. The installed canister's
    /// module hash is `real`'s.
    pub fn substitute_module(&mut self, stand_in: &[u8], real: &[u8]) {
        self.substitutes
            .insert(Sha256::digest(stand_in).into(), Arc::new(real.to_vec()));
    }

    /// The module to install when `wasm` is asked for.
    fn substitute(&self, wasm: &[u8]) -> Option<Arc<Vec<u8>>> {
        if self.substitutes.is_empty() {
            return None;
        }
        let h: [u8; 32] = Sha256::digest(wasm).into();
        self.substitutes.get(&h).cloned()
    }

    // ---- ingress ------------------------------------------------------------------------

    /// Queues an update call; it runs at the next [`Testbed::tick`]. The returned id is for
    /// [`Testbed::ingress_status`] and [`Testbed::await_ingress`].
    pub fn submit(
        &mut self,
        sender: Principal,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<u64, Reject> {
        if arg.len() > MAX_PAYLOAD_BYTES {
            return Err(reject(
                RejectCode::CanisterReject,
                format!("the ingress payload exceeds {MAX_PAYLOAD_BYTES} bytes"),
            ));
        }
        let id = self.fresh_id();
        self.ingress.insert(id, None);
        self.queue.push_back(Msg::Call {
            origin: Origin::Ingress(id),
            caller: sender,
            callee: canister,
            method: method.to_string(),
            arg,
            cycles: 0,
        });
        Ok(id)
    }

    /// The result of an ingress message once it has one.
    pub fn ingress_status(&self, id: u64) -> Option<&CallResult> {
        self.ingress.get(&id).and_then(Option::as_ref)
    }

    /// Runs rounds until ingress message `id` has its result.
    pub fn await_ingress(&mut self, id: u64) -> CallResult {
        for _ in 0..MAX_AWAIT_ROUNDS {
            if let Some(Some(r)) = self.ingress.get(&id) {
                let r = r.clone();
                self.ingress.remove(&id);
                self.last_update_cost = self.ingress_cost.remove(&id).unwrap_or_default();
                return r;
            }
            self.tick();
        }
        panic!("ingress message {id} got no answer in {MAX_AWAIT_ROUNDS} rounds");
    }

    /// An update call: queued, then rounds run until it is answered.
    pub fn update(
        &mut self,
        sender: Principal,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> CallResult {
        let id = self.submit(sender, canister, method, arg)?;
        self.await_ingress(id)
    }

    /// A query call: runs now, answers now, changes nothing.
    pub fn query(
        &mut self,
        sender: Principal,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> CallResult {
        let time = self.time;
        let Some(c) = self.canisters.get_mut(&canister) else {
            return Err(reject(
                RejectCode::DestinationInvalid,
                format!("canister {canister} not found"),
            ));
        };
        if c.status != Status::Running {
            return Err(reject(
                RejectCode::CanisterError,
                format!("canister {canister} is not running"),
            ));
        }
        let Some(live) = c.live.as_mut() else {
            return Err(reject(
                RejectCode::CanisterError,
                format!("canister {canister} is empty"),
            ));
        };
        let name = format!("canister_query {method}");
        if !live.has_export(&name) {
            return Err(reject(
                RejectCode::CanisterError,
                format!("canister {canister} has no query method '{method}'"),
            ));
        }
        let mut exec = exec_for(
            Kind::Query,
            canister,
            c.controllers.clone(),
            c.cycles,
            c.timer,
            c.version,
            c.status,
            time,
            sender,
            method,
            arg,
        );
        exec.needs_reply = true;
        let run = live.run(
            &Entry::Export(name),
            exec,
            self.config.limits.query,
            &mut self.snap,
        );
        // A query never commits: put everything back even when it succeeded.
        if run.trap.is_none() {
            live.restore(&self.snap);
        }
        self.last_instructions.insert(canister, run.instructions);
        self.last_api.insert(canister, run.api);
        self.drain_log(canister);
        if let Some(t) = run.trap {
            return Err(reject(RejectCode::CanisterError, t));
        }
        match run.exec.response {
            Some(Response::Reply(b)) => Ok(b),
            Some(Response::Reject(m)) => Err(reject(RejectCode::CanisterReject, m)),
            None => Err(reject(
                RejectCode::CanisterError,
                format!("canister {canister} did not reply to '{method}'"),
            )),
        }
    }

    fn drain_log(&mut self, canister: Principal) {
        if let Some(l) = self
            .canisters
            .get_mut(&canister)
            .and_then(|c| c.live.as_mut())
        {
            let lines = std::mem::take(&mut l.store.data_mut().log);
            if self.echo_log {
                for (p, line) in &lines {
                    eprintln!("[{p}] {line}");
                }
            }
            self.log.extend(lines);
        }
    }

    // ---- rounds -------------------------------------------------------------------------

    /// One round: time advances by `round_ns`, due global timers fire, and every message
    /// queued before the round is delivered, in order. Messages they send wait for the next
    /// round.
    pub fn tick(&mut self) {
        self.round += 1;
        self.time += self.config.round_ns;
        let due: Vec<Principal> = self
            .canisters
            .iter()
            .filter(|(_, c)| {
                c.timer != 0
                    && c.timer <= self.time
                    && c.status == Status::Running
                    && c.live.is_some()
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.canisters.get_mut(&id).expect("listed").timer = 0;
            self.queue.push_back(Msg::Timer(id));
        }
        for _ in 0..self.queue.len() {
            let m = self.queue.pop_front().expect("counted");
            self.deliver(m);
        }
        self.settle_stops();
    }

    /// Runs `n` rounds.
    pub fn ticks(&mut self, n: u32) {
        for _ in 0..n {
            self.tick();
        }
    }

    /// Runs rounds until no message is queued (at most `max` rounds); answers whether the
    /// queue emptied.
    pub fn run_until_idle(&mut self, max: u32) -> bool {
        for _ in 0..max {
            if self.queue.is_empty() {
                return true;
            }
            self.tick();
        }
        self.queue.is_empty()
    }

    fn deliver(&mut self, m: Msg) {
        match m {
            Msg::Call {
                origin,
                caller,
                callee,
                method,
                arg,
                cycles,
            } => {
                if callee == Principal::management_canister() {
                    self.management(origin, caller, &method, &arg, cycles);
                } else {
                    self.call(origin, caller, callee, method, arg, cycles);
                }
            }
            Msg::Response {
                callback,
                result,
                refund,
            } => self.respond(callback, result, refund),
            Msg::Timer(id) => self.timer(id),
        }
    }

    /// Sends the answer of a call context to whoever awaits it.
    fn answer(&mut self, origin: Origin, result: CallResult, refund: u128) {
        match origin {
            Origin::Ingress(id) => {
                self.ingress.insert(id, Some(result));
            }
            Origin::Canister { callback, .. } => {
                let result = if self.rng.permille(self.config.lose_replies_permille) {
                    self.faults.1 += 1;
                    Err(reject(
                        RejectCode::SysUnknown,
                        "the reply was lost (testbed fault knob)",
                    ))
                } else {
                    result
                };
                self.queue.push_back(Msg::Response {
                    callback,
                    result,
                    refund,
                });
            }
            Origin::System => {}
        }
    }

    fn call(
        &mut self,
        origin: Origin,
        caller: Principal,
        callee: Principal,
        method: String,
        arg: Vec<u8>,
        cycles: u128,
    ) {
        let time = self.time;
        let Some(c) = self.canisters.get_mut(&callee) else {
            let r = Err(reject(
                RejectCode::DestinationInvalid,
                format!("canister {callee} not found"),
            ));
            return self.answer(origin, r, cycles);
        };
        if c.status != Status::Running {
            let r = Err(reject(
                RejectCode::CanisterError,
                format!("canister {callee} is {:?}", c.status).to_lowercase(),
            ));
            return self.answer(origin, r, cycles);
        }
        let Some(live) = c.live.as_mut() else {
            let r = Err(reject(
                RejectCode::CanisterError,
                format!("canister {callee} is empty"),
            ));
            return self.answer(origin, r, cycles);
        };
        let update = format!("canister_update {method}");
        let query = format!("canister_query {method}");
        let (entry, kind) = if live.has_export(&update) {
            (update, Kind::Update)
        } else if live.has_export(&query) {
            (query, Kind::Query)
        } else {
            let r = Err(reject(
                RejectCode::CanisterError,
                format!("canister {callee} has no update method '{method}'"),
            ));
            return self.answer(origin, r, cycles);
        };
        let mut exec = exec_for(
            kind,
            callee,
            c.controllers.clone(),
            c.cycles,
            c.timer,
            c.version,
            c.status,
            time,
            caller,
            &method,
            arg,
        );
        exec.cycles_available = cycles;
        exec.needs_reply = true;
        let limit = if kind == Kind::Query {
            self.config.limits.query
        } else {
            self.config.limits.update
        };
        let run = live.run(&Entry::Export(entry), exec, limit, &mut self.snap);
        if kind == Kind::Query && run.trap.is_none() {
            // A query method called as an update runs, answers, and changes nothing.
            live.restore(&self.snap);
        }
        let ctx = self.fresh_id();
        self.contexts.insert(
            ctx,
            CallContext {
                canister: callee,
                origin,
                answered: false,
                outstanding: 0,
                deleted: false,
                instructions: 0,
                api: ApiStats::default(),
            },
        );
        let mut run = run;
        if kind == Kind::Query {
            run.exec.calls.clear();
            run.exec.balance = self.canisters[&callee].cycles;
            run.exec.timer = self.canisters[&callee].timer;
        }
        self.finish(callee, ctx, run, cycles);
    }

    fn timer(&mut self, id: Principal) {
        let time = self.time;
        let Some(c) = self.canisters.get_mut(&id) else {
            return;
        };
        let Some(live) = c.live.as_mut() else { return };
        let name = "canister_global_timer".to_string();
        if !live.has_export(&name) {
            return;
        }
        let exec = exec_for(
            Kind::Timer,
            id,
            c.controllers.clone(),
            c.cycles,
            c.timer,
            c.version,
            c.status,
            time,
            id,
            "",
            Vec::new(),
        );
        let run = live.run(
            &Entry::Export(name),
            exec,
            self.config.limits.update,
            &mut self.snap,
        );
        let ctx = self.fresh_id();
        self.contexts.insert(
            ctx,
            CallContext {
                canister: id,
                origin: Origin::System,
                answered: true,
                outstanding: 0,
                deleted: false,
                instructions: 0,
                api: ApiStats::default(),
            },
        );
        self.finish(id, ctx, run, 0);
    }

    /// Applies the outcome of a message run in call context `ctx`: state already committed
    /// or rolled back by [`Live::run`]; here the cycles, timer, calls and the answer.
    fn finish(&mut self, id: Principal, ctx: u64, run: Run, available: u128) {
        self.last_instructions.insert(id, run.instructions);
        self.drain_log(id);
        self.last_api.insert(id, run.api);
        let Run {
            exec,
            trap,
            instructions,
            api,
        } = run;
        let c = self.canisters.get_mut(&id).expect("the canister ran");
        if trap.is_none() {
            c.cycles = exec.balance;
            c.timer = exec.timer;
            if let Some(d) = exec.certified_data {
                c.certified_data = d;
            }
        }
        let refund = available
            - if trap.is_none() {
                exec.cycles_accepted
            } else {
                0
            };
        let context = self.contexts.get_mut(&ctx).expect("context exists");
        context.instructions += instructions;
        context.api.add(&api);
        for call in exec.calls {
            let callback = self.next_id;
            self.next_id += 1;
            self.callbacks.insert(
                callback,
                Callback {
                    canister: id,
                    context: ctx,
                    reply: call.reply,
                    reject: call.reject,
                    cleanup: call.cleanup,
                },
            );
            context.outstanding += 1;
            if self.rng.permille(self.config.reject_calls_permille) {
                self.faults.0 += 1;
                self.queue.push_back(Msg::Response {
                    callback,
                    result: Err(reject(
                        RejectCode::SysTransient,
                        "the call was rejected (testbed fault knob)",
                    )),
                    refund: call.cycles,
                });
            } else {
                self.queue.push_back(Msg::Call {
                    origin: Origin::Canister {
                        caller: id,
                        callback,
                    },
                    caller: id,
                    callee: call.callee,
                    method: call.method,
                    arg: call.arg,
                    cycles: call.cycles,
                });
            }
        }
        let answer = match (exec.response, &trap) {
            (Some(Response::Reply(b)), _) => Some(Ok(b)),
            (Some(Response::Reject(m)), _) => Some(Err(reject(RejectCode::CanisterReject, m))),
            (None, Some(t)) if !context.answered && context.outstanding == 0 => {
                Some(Err(reject(RejectCode::CanisterError, t.clone())))
            }
            (None, _) if !context.answered && context.outstanding == 0 => Some(Err(reject(
                RejectCode::CanisterError,
                format!("canister {id} did not reply to the call"),
            ))),
            _ => None,
        };
        if let Some(a) = answer {
            context.answered = true;
            let origin = context.origin.clone();
            if let Origin::Ingress(m) = origin {
                self.ingress_cost
                    .insert(m, (context.instructions, context.api));
            }
            self.answer(origin, a, refund);
        }
        let context = &self.contexts[&ctx];
        if context.outstanding == 0 {
            self.contexts.remove(&ctx);
        }
    }

    fn respond(&mut self, callback: u64, result: CallResult, refund: u128) {
        let Some(cb) = self.callbacks.remove(&callback) else {
            return;
        };
        let id = cb.canister;
        let Some(context) = self.contexts.get_mut(&cb.context) else {
            return;
        };
        context.outstanding -= 1;
        let time = self.time;
        let c = self
            .canisters
            .get_mut(&id)
            .expect("callbacks belong to canisters");
        c.cycles += refund;
        if context.deleted || c.live.is_none() {
            let (answered, outstanding) = (context.answered, context.outstanding);
            if outstanding == 0 {
                let ctx = self.contexts.remove(&cb.context).expect("exists");
                if !answered {
                    self.answer(
                        ctx.origin,
                        Err(reject(
                            RejectCode::CanisterError,
                            format!("canister {id} was reinstalled or upgraded before it replied"),
                        )),
                        0,
                    );
                }
            }
            return;
        }
        let live = c.live.as_mut().expect("checked");
        let (kind, entry) = match &result {
            Ok(_) => (Kind::Reply, cb.reply.clone()),
            Err(_) => (Kind::Reject, cb.reject.clone()),
        };
        let caller = match &context.origin {
            Origin::Canister { caller, .. } => *caller,
            _ => id,
        };
        let mut exec = exec_for(
            kind,
            id,
            c.controllers.clone(),
            c.cycles,
            c.timer,
            c.version,
            c.status,
            time,
            caller,
            "",
            Vec::new(),
        );
        match result {
            Ok(b) => exec.arg = b,
            Err(r) => exec.reject = Some((r.code as u32, r.message)),
        }
        exec.cycles_refunded = refund;
        exec.needs_reply = !context.answered;
        exec.context_instructions = context.instructions;
        let mut run = live.run(&entry, exec, self.config.limits.update, &mut self.snap);
        if run.trap.is_some() {
            if let Some(cleanup) = cb.cleanup {
                let mut e = exec_for(
                    Kind::Cleanup,
                    id,
                    c.controllers.clone(),
                    c.cycles,
                    c.timer,
                    c.version,
                    c.status,
                    time,
                    caller,
                    "",
                    Vec::new(),
                );
                e.needs_reply = false;
                let clean = live.run(&cleanup, e, self.config.limits.update, &mut self.snap);
                if clean.trap.is_none() {
                    c.timer = clean.exec.timer;
                }
                run.instructions += clean.instructions;
            }
        }
        self.finish(id, cb.context, run, 0);
    }

    /// Marks every open call context of `id` deleted (the canister got new code).
    fn delete_contexts(&mut self, id: Principal) {
        for ctx in self.contexts.values_mut() {
            if ctx.canister == id {
                ctx.deleted = true;
            }
        }
    }

    fn open_contexts(&self, id: Principal) -> usize {
        self.contexts.values().filter(|c| c.canister == id).count()
    }

    fn settle_stops(&mut self) {
        let stopping: Vec<Principal> = self
            .canisters
            .iter()
            .filter(|(_, c)| c.status == Status::Stopping)
            .map(|(id, _)| *id)
            .collect();
        for id in stopping {
            if self.open_contexts(id) == 0 {
                let c = self.canisters.get_mut(&id).expect("listed");
                c.status = Status::Stopped;
                let waiters = std::mem::take(&mut c.stop_waiters);
                for w in waiters {
                    self.answer(w, Ok(candid::encode_args(()).expect("encode")), 0);
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn exec_for(
    kind: Kind,
    self_id: Principal,
    controllers: Vec<Principal>,
    balance: u128,
    timer: u64,
    version: u64,
    status: Status,
    time: u64,
    caller: Principal,
    method: &str,
    arg: Vec<u8>,
) -> Exec {
    Exec {
        kind,
        self_id,
        caller,
        method: method.to_string(),
        arg,
        reject: None,
        needs_reply: false,
        reply_data: Vec::new(),
        response: None,
        pending: None,
        calls: Vec::new(),
        time,
        balance,
        cycles_available: 0,
        cycles_accepted: 0,
        cycles_refunded: 0,
        timer,
        controllers,
        version,
        status: match status {
            Status::Running => 1,
            Status::Stopping => 2,
            Status::Stopped => 3,
        },
        limit: 0,
        context_instructions: 0,
        certified_data: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canister_ids_are_ic_shaped() {
        assert_eq!(canister_id(0).to_text(), "rwlgt-iiaaa-aaaaa-aaaaa-cai");
        assert_eq!(canister_id(1).to_text(), "rrkah-fqaaa-aaaaa-aaaaq-cai");
    }

    #[test]
    fn fault_rng_is_seeded() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut r = Rng(7);
                move |_| r.next()
            })
            .collect();
        let b: Vec<u64> = (0..5)
            .map({
                let mut r = Rng(7);
                move |_| r.next()
            })
            .collect();
        assert_eq!(a, b);
        let mut r = Rng(1);
        assert!(!(0..100).any(|_| r.permille(0)));
        assert!((0..100).all(|_| r.permille(1000)));
    }
}
