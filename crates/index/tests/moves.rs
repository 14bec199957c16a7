//! The move protocol end to end: the real index logic and real partitions, wired by a small
//! synchronous network. A fault is injected at every single call of a move in turn — a lost
//! reply, a clean reject, an index upgrade, an upgrade of the callee — while a writer keeps
//! writing; every run must end with the SubDB at its new home holding every acknowledged write,
//! the source answering `Moved`, and the index idle.

use candid::Principal;
use flotilla_index::calls::{Call, CallResult, Reject, Request, Response, Sender};
use flotilla_index::{Env, Index, Step};
use flotilla_partition::dispatch::{self, Ctx};
use flotilla_partition::Partition;
use flotilla_store::{Config, SubDbStatus};
use flotilla_types::index::{
    CreateRequest, IndexInit, MoveRequest, MoveSubDbError, PartitionState, WasmChunk,
};
use flotilla_types::partition::{DeleteSubDbArgs, GetArgs, PartitionInit, PutArgs, SetAccessArgs};
use flotilla_types::{GetError, InnerKey, OpId, PutError};
use ic_stable_structures::memory_manager::{MemoryManager, VirtualMemory};
use ic_stable_structures::VectorMemory;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, VecDeque};

type Mem = VirtualMemory<VectorMemory>;
/// The index's cycle balance: plenty.
const BALANCE: u128 = 1_000_000_000_000_000;
const ROUND_NS: u64 = 1_000_000_000;

fn p(n: u8) -> Principal {
    Principal::from_slice(&[n; 10])
}
const ADMIN: u8 = 1;
const OWNER: u8 = 2;
const INDEX: u8 = 200;

fn mm(raw: &VectorMemory) -> MemoryManager<VectorMemory> {
    MemoryManager::init_with_bucket_size(raw.clone(), 1)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    None,
    LostReply,
    CleanReject,
    UpgradeIndex,
    UpgradeCallee,
}

struct Net {
    raw: VectorMemory,
    index: Index<Mem>,
    parts: BTreeMap<Principal, (VectorMemory, Partition<Mem>)>,
    queue: VecDeque<Call>,
    round: u64,
    next_canister: u8,
    /// Move calls delivered so far (faults are aimed by this count).
    move_calls: usize,
    /// Partitions that trap on every call whose method is listed (a permanent failure).
    broken: BTreeMap<Principal, Vec<&'static str>>,
}

fn is_move_call(r: &Request) -> bool {
    matches!(
        r,
        Request::BeginImport(_)
            | Request::BeginExport(_)
            | Request::ExportChunk(_)
            | Request::ExportDelta(_)
            | Request::ImportChunk(_)
            | Request::Release(_)
            | Request::AbortImport(_)
            | Request::ResumeWrites(_)
    )
}

impl Net {
    fn new(move_cap: u64) -> Net {
        let raw = VectorMemory::default();
        let m = mm(&raw);
        let mut index = Index::install(
            |id| m.get(id),
            IndexInit {
                admins: vec![p(ADMIN)],
                spare_pool_target: Some(1),
                move_cap_bytes: Some(move_cap),
                ..IndexInit::default()
            },
        );
        let wasm = b"\0asm-test".to_vec();
        index
            .upload_partition_wasm(
                &Env {
                    caller: p(ADMIN),
                    now: 0,
                    self_id: p(INDEX),
                    balance: BALANCE,
                },
                WasmChunk {
                    offset: 0,
                    total_len: wasm.len() as u64,
                    sha256: ByteBuf::from(Sha256::digest(&wasm).to_vec()),
                    bytes: ByteBuf::from(wasm),
                },
            )
            .unwrap();
        Net {
            raw,
            index,
            parts: BTreeMap::new(),
            queue: VecDeque::new(),
            round: 1,
            next_canister: 100,
            move_calls: 0,
            broken: BTreeMap::new(),
        }
    }

    fn env(&self, caller: Principal) -> Env {
        Env {
            caller,
            now: self.round * ROUND_NS,
            self_id: p(INDEX),
            balance: BALANCE,
        }
    }

    fn upgrade_index(&mut self) {
        let m = mm(&self.raw);
        self.index = Index::open(|id| m.get(id)).unwrap();
    }

    fn upgrade_partition(&mut self, id: Principal) {
        if let Some((raw, part)) = self.parts.get_mut(&id) {
            let m = mm(raw);
            *part = Partition::open(|i| m.get(i)).unwrap();
        }
    }

    fn execute(&mut self, call: &Call) -> Response {
        let me = p(INDEX);
        if call.target == Principal::management_canister() {
            return match &call.request {
                Request::CreateCanister { .. } => {
                    self.next_canister += 1;
                    Response::CanisterCreated(p(self.next_canister))
                }
                Request::InstallCode { canister, arg, .. } => {
                    let init: PartitionInit = candid::decode_one(arg).unwrap();
                    assert_eq!(init.index, me);
                    let raw = VectorMemory::default();
                    let m = mm(&raw);
                    let part = Partition::install(|i| m.get(i), &init, Config::default()).unwrap();
                    self.parts.insert(*canister, (raw, part));
                    Response::Installed
                }
                // Every partition has plenty: no top-up in these tests.
                Request::CanisterStatus { .. } => Response::Status {
                    cycles: 1_000_000_000_000,
                    module_hash: None,
                    stopped: false,
                },
                other => panic!("unexpected management call {other:?}"),
            };
        }
        let (_, part) = self.parts.get_mut(&call.target).expect("partition exists");
        // The wire form the canister glue sends, through the partition's own dispatcher.
        let sender = Sender {
            id: me,
            canister_version: None,
        };
        let ctx = Ctx {
            caller: me,
            stable_memory_bytes: 0,
        };
        let arg = call.request.encode(sender);
        let reply = dispatch::update(part, &ctx, call.request.method(), &arg)
            .unwrap_or_else(|e| panic!("partition refused {}: {e}", call.request.method()));
        call.request.decode_reply(&reply).unwrap()
    }

    /// Delivers one queued call, with `fault` if it is the move call aimed at.
    fn deliver(&mut self, aim: Option<(usize, Fault)>) {
        let Some(call) = self.queue.pop_front() else {
            return;
        };
        let mut fault = Fault::None;
        if is_move_call(&call.request) {
            if let Some((k, f)) = aim {
                if k == self.move_calls {
                    fault = f;
                }
            }
            self.move_calls += 1;
        }
        let trapped = self
            .broken
            .get(&call.target)
            .is_some_and(|ms| ms.contains(&call.request.method()));
        let result: CallResult = match fault {
            _ if trapped => Err(Reject {
                message: "the callee trapped".into(),
                certain: true,
            }),
            Fault::CleanReject => Err(Reject {
                message: "injected reject".into(),
                certain: true,
            }),
            Fault::UpgradeCallee => {
                self.upgrade_partition(call.target);
                Ok(self.execute(&call))
            }
            _ => Ok(self.execute(&call)),
        };
        let result = if fault == Fault::LostReply {
            Err(Reject {
                message: "injected lost reply".into(),
                certain: false,
            })
        } else {
            result
        };
        if fault == Fault::UpgradeIndex {
            self.upgrade_index();
        }
        let env = self.env(p(INDEX));
        let reaction = self.index.on_reply(&env, call.id, result);
        self.queue.extend(reaction.calls);
    }

    /// One round: the index's tick, then every call queued now.
    fn round(&mut self, aim: Option<(usize, Fault)>) {
        self.round += 1;
        let env = self.env(p(INDEX));
        let calls = self.index.tick(&env);
        self.queue.extend(calls);
        for _ in 0..self.queue.len() {
            self.deliver(aim);
        }
    }

    fn create(&mut self, name: &str, n: u8) -> InnerKey {
        for _ in 0..50 {
            let env = self.env(p(OWNER));
            let req = CreateRequest {
                outer_key: name.into(),
                op_id: OpId::from(vec![n; 16]),
                hard_cap: None,
                owner: None,
                readers: vec![],
                writers: vec![],
            };
            match self.index.create_subdb(&env, req) {
                Step::Done(Ok(inner)) => return inner,
                Step::Done(Err(_)) => self.round(None),
                Step::Await(call) => {
                    let r = self.execute(&call);
                    let env = self.env(p(INDEX));
                    let out = self.index.on_reply(&env, call.id, Ok(r));
                    self.queue.extend(out.calls);
                }
            }
        }
        panic!("could not create {name}");
    }

    fn route(&self, name: &str) -> InnerKey {
        self.index.route(&[name.to_string()]).unwrap()[0].expect("routable")
    }

    /// A client write: follows `Moved`, refreshes on `UnknownSubDb`; `Err` when it must wait.
    fn put(
        &mut self,
        cache: &mut InnerKey,
        name: &str,
        key: &[u8],
        value: &[u8],
        op: u64,
    ) -> Result<(), PutError> {
        for _ in 0..4 {
            let args = PutArgs {
                subdb: cache.subdb,
                key: ByteBuf::from(key.to_vec()),
                value: ByteBuf::from(value.to_vec()),
                op_id: OpId::from([op.to_le_bytes(), [7; 8]].concat()),
            };
            let part = &mut self.parts.get_mut(&cache.partition).unwrap().1;
            match part.put(p(OWNER), &args) {
                Ok(_) => return Ok(()),
                Err(PutError::Moved { to }) => *cache = to,
                Err(PutError::UnknownSubDb) => *cache = self.route(name),
                Err(e) => return Err(e),
            }
        }
        Err(PutError::UnknownSubDb)
    }

    fn get(&self, name: &str, key: &[u8]) -> Option<Vec<u8>> {
        let mut at = self.route(name);
        for _ in 0..3 {
            let part = &self.parts[&at.partition].1;
            let args = GetArgs {
                subdb: at.subdb,
                key: ByteBuf::from(key.to_vec()),
            };
            match part.get(p(OWNER), &args) {
                Ok(v) => return v.map(|b| b.into_vec()),
                Err(GetError::Moved { to }) => at = to,
                Err(e) => panic!("read failed: {e:?}"),
            }
        }
        panic!("read did not settle");
    }
}

/// Runs a full move of SubDB "big" while a writer writes every round; returns the number of
/// move calls made and checks the outcome.
fn run(aim: Option<(usize, Fault)>) -> usize {
    let mut net = Net::new(6_000_000);
    // Provision the first partition.
    for _ in 0..3 {
        net.round(None);
    }
    let small = net.create("small", 1);
    let big = net.create("big", 2);
    assert_eq!(small.partition, big.partition);
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut cache = big;
    let mut op = 0u64;
    for i in 0..400u32 {
        let (k, v) = (i.to_be_bytes().to_vec(), vec![i as u8; 20_000]);
        net.put(&mut cache, "big", &k, &v, op).unwrap();
        op += 1;
        model.insert(k, v);
    }
    let mut small_cache = small;
    net.put(&mut small_cache, "small", b"s", b"1", 9_999)
        .unwrap();
    // Run until the move is done, writing (overwrites, new keys) all along.
    let mut paused_rounds = 0;
    let mut saw_move = false;
    for r in 0..400u32 {
        net.round(aim);
        let moving = !net.index.moves().is_empty();
        saw_move |= moving;
        let (k, v) = (
            ((r * 7) % 450).to_be_bytes().to_vec(),
            format!("r{r}").into_bytes(),
        );
        match net.put(&mut cache, "big", &k, &v, op) {
            Ok(()) => {
                model.insert(k, v);
                op += 1;
            }
            Err(PutError::WritesPaused) => paused_rounds += 1,
            Err(e) => panic!("write failed: {e:?} (aim {aim:?})"),
        }
        if saw_move && !moving && net.queue.is_empty() && r > 30 {
            break;
        }
    }
    assert!(saw_move, "no move happened (aim {aim:?})");
    assert!(
        net.index.moves().is_empty(),
        "move unfinished (aim {aim:?})"
    );
    let home = net.route("big");
    assert_ne!(
        home.partition, big.partition,
        "big did not move (aim {aim:?})"
    );
    for (k, v) in &model {
        assert_eq!(
            net.get("big", k).as_ref(),
            Some(v),
            "key {k:?} (aim {aim:?})"
        );
    }
    let stats = net.parts[&home.partition]
        .1
        .store()
        .stats(home.subdb)
        .unwrap();
    assert_eq!(stats.items, model.len() as u64, "aim {aim:?}");
    // The source answers Moved, never a wrong SubDB.
    let src = &net.parts[&big.partition].1;
    let stale = GetArgs {
        subdb: big.subdb,
        key: ByteBuf::from(vec![0]),
    };
    assert_eq!(src.get(p(OWNER), &stale), Err(GetError::Moved { to: home }));
    if aim.is_none() {
        // Cutover delta, finish, release, resume at the target: at most three rounds in
        // which a write is refused.
        assert!(
            paused_rounds <= 3,
            "writes paused for {paused_rounds} rounds"
        );
        println!(
            "fault-free move: {} move calls, writes paused {paused_rounds} round(s), {} items moved",
            net.move_calls,
            model.len()
        );
    }
    net.move_calls
}

#[test]
fn a_move_survives_a_fault_at_every_call() {
    let calls = run(None);
    assert!(
        calls > 12,
        "only {calls} move calls: the copy should take several chunks"
    );
    for fault in [
        Fault::LostReply,
        Fault::CleanReject,
        Fault::UpgradeIndex,
        Fault::UpgradeCallee,
    ] {
        for k in 0..calls {
            run(Some((k, fault)));
        }
    }
    println!("every one of {calls} move calls survived each of 4 faults");
}

/// A SubDB of 200 MiB moves while a client writes and reads every round: the copy takes at
/// most 1.1 × ceil(200 MiB / 1.9 MiB) chunk messages, each under 2 MiB encoded; writes pause
/// at most 3 rounds; no read fails.
#[test]
fn a_200_mib_subdb_moves_in_full_chunks_with_a_short_pause() {
    const MIB: u64 = 1024 * 1024;
    const VALUE: usize = 64 * 1024;
    let total = 200 * MIB;
    let items = (total / VALUE as u64) as u32;
    let mut net = Net::new(150 * MIB);
    for _ in 0..3 {
        net.round(None);
    }
    let small = net.create("small", 1);
    let big = net.create("big", 2);
    let mut cache = big;
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for i in 0..items {
        let (k, v) = (i.to_be_bytes().to_vec(), vec![i as u8; VALUE]);
        net.put(&mut cache, "big", &k, &v, i as u64).unwrap();
        model.insert(k, v);
    }
    let mut sc = small;
    net.put(&mut sc, "small", b"s", b"1", 1 << 40).unwrap();
    let bytes = net.parts[&big.partition]
        .1
        .store()
        .stats(big.subdb)
        .unwrap()
        .bytes;
    assert!(bytes >= total, "{bytes}");

    let budget = flotilla_types::limits::REPLY_BUDGET_BYTES as u64;
    let max_chunks = (bytes.div_ceil(budget) as f64 * 1.1) as usize;
    let (mut chunk_msgs, mut max_msg, mut paused, mut failed_reads) = (0usize, 0usize, 0u32, 0u32);
    let mut copy_msgs = 0usize;
    let mut saw_move = false;
    let mut op = 1u64 << 41;
    for r in 0..2_000u32 {
        // Count the chunk messages this round will deliver.
        net.round += 1;
        let env = net.env(p(INDEX));
        let calls = net.index.tick(&env);
        net.queue.extend(calls);
        let copying = net.index.moves().first().is_some_and(|m| m.phase == "copy");
        for c in net.queue.iter() {
            if let Request::ImportChunk(a) = &c.request {
                if !a.chunk.puts.is_empty() || !a.chunk.deletes.is_empty() {
                    chunk_msgs += 1;
                    copy_msgs += copying as usize;
                }
                max_msg = max_msg.max(candid::encode_one(a).unwrap().len());
            }
        }
        for _ in 0..net.queue.len() {
            net.deliver(None);
        }
        let moving = !net.index.moves().is_empty();
        saw_move |= moving;
        // One write and one read per round.
        let (k, v) = (
            (r % items).to_be_bytes().to_vec(),
            vec![(r % 251) as u8 + 1; 1024],
        );
        match net.put(&mut cache, "big", &k, &v, op) {
            Ok(()) => {
                model.insert(k.clone(), v);
                op += 1;
            }
            Err(PutError::WritesPaused) => paused += 1,
            Err(e) => panic!("write failed in round {r}: {e:?}"),
        }
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| net.get("big", &k)));
        match read {
            Ok(v) if v.as_ref() == model.get(&k) => {}
            _ => failed_reads += 1,
        }
        if saw_move && !moving && net.queue.is_empty() {
            break;
        }
    }
    assert!(saw_move);
    let home = net.route("big");
    assert_ne!(home.partition, big.partition);
    let moved = net.parts[&home.partition]
        .1
        .store()
        .stats(home.subdb)
        .unwrap();
    assert_eq!(moved.items, model.len() as u64);
    for k in [0u32, items / 2, items - 1] {
        let k = k.to_be_bytes().to_vec();
        assert_eq!(net.get("big", &k).as_ref(), model.get(&k));
    }
    println!(
        "200 MiB move: {bytes} bytes at the start ({} after the writes), {chunk_msgs} chunk messages ({copy_msgs} copy, {} delta; bound \
         {max_chunks}), largest {max_msg} B encoded, writes paused {paused} round(s), \
         {failed_reads} failed reads",
        moved.bytes,
        chunk_msgs - copy_msgs
    );
    assert!(
        chunk_msgs <= max_chunks,
        "{chunk_msgs} chunk messages > {max_chunks}"
    );
    assert!(max_msg < flotilla_types::limits::MAX_MESSAGE_BYTES);
    assert!(paused <= 3, "writes paused {paused} rounds");
    assert_eq!(failed_reads, 0);
}

/// A net with SubDBs "small" and "big" (400 × 20 KB) on one partition, over its 6 MB cap.
fn loaded() -> (Net, InnerKey) {
    loaded_with_cap(6_000_000)
}

/// "small" and "big" (400 × 20 KB, value `[i; 20_000]` at key `i`) on one partition under
/// `move_cap`; no spare is left (the first one took them).
fn loaded_with_cap(move_cap: u64) -> (Net, InnerKey) {
    let mut net = Net::new(move_cap);
    let big = load_small_and_big(&mut net);
    (net, big)
}

/// Provisions `net` and creates "small" and "big" (400 × 20 KB) as [`loaded_with_cap`]
/// describes; returns big's inner key.
fn load_small_and_big(net: &mut Net) -> InnerKey {
    for _ in 0..3 {
        net.round(None);
    }
    net.create("small", 1);
    let big = net.create("big", 2);
    let mut cache = big;
    for i in 0..400u32 {
        let (k, v) = (i.to_be_bytes().to_vec(), vec![i as u8; 20_000]);
        net.put(&mut cache, "big", &k, &v, i as u64).unwrap();
    }
    big
}

/// Runs rounds until the move has ended, calling `at_phase` once when it is in `phase`
/// (after its second chunk, for "copy").
fn run_move_with(net: &mut Net, phase: &str, mut at_phase: impl FnMut(&mut Net)) -> Principal {
    let (mut done, mut saw, mut target) = (false, false, None);
    for _ in 0..300u32 {
        net.round(None);
        let m = net.index.moves().first().cloned();
        saw |= m.is_some();
        if let Some(m) = m {
            target = Some(m.target);
            if !done && m.phase == phase && (phase != "copy" || m.chunks >= 2) {
                at_phase(net);
                done = true;
            }
        } else if saw && net.queue.is_empty() {
            break;
        }
    }
    assert!(done, "the move never reached {phase}");
    assert!(net.index.moves().is_empty(), "the move did not end");
    target.unwrap()
}

/// An owner cannot delete a SubDB at its partition behind the index's back (mid-move or not):
/// the partition refuses, and the move completes.
#[test]
fn an_owner_cannot_delete_at_the_partition_mid_move() {
    let (mut net, big) = loaded();
    run_move_with(&mut net, "copy", |net| {
        let part = &mut net.parts.get_mut(&big.partition).unwrap().1;
        let args = DeleteSubDbArgs {
            subdb: big.subdb,
            op_id: OpId::from(vec![77; 16]),
        };
        assert_eq!(
            part.delete_subdb(p(OWNER), &args),
            Err(flotilla_types::DeleteSubDbError::NotAuthorized)
        );
    });
    let home = net.route("big");
    assert_ne!(home.partition, big.partition);
    assert_eq!(net.get("big", &7u32.to_be_bytes()), Some(vec![7u8; 20_000]));
}

/// Should the SubDB vanish from the source mid-move anyway (the protocol gives no way: the
/// index refuses deletes while a SubDB moves, and only the index deletes at partitions), the
/// move is called off cleanly.
#[test]
fn a_subdb_deleted_at_the_source_mid_move_calls_the_move_off_cleanly() {
    for phase in ["copy", "cutover"] {
        let (mut net, big) = loaded();
        let target = run_move_with(&mut net, phase, |net| {
            let part = &mut net.parts.get_mut(&big.partition).unwrap().1;
            let args = DeleteSubDbArgs {
                subdb: big.subdb,
                op_id: OpId::from(vec![77; 16]),
            };
            part.delete_subdb(p(INDEX), &args).unwrap();
        });
        // The target's partial import is reclaimed.
        let t = &mut net.parts.get_mut(&target).unwrap().1;
        while t.housekeep(1_000) > 0 {}
        assert_eq!(t.store().totals().bytes, 0, "{phase}");
    }
}

#[test]
fn access_changed_during_the_copy_moves_with_the_subdb() {
    let (mut net, big) = loaded();
    run_move_with(&mut net, "copy", |net| {
        let part = &mut net.parts.get_mut(&big.partition).unwrap().1;
        let args = SetAccessArgs {
            subdb: big.subdb,
            readers: vec![p(55)],
            writers: vec![],
        };
        part.set_access(p(OWNER), &args).unwrap();
    });
    let home = net.route("big");
    assert_ne!(home.partition, big.partition);
    let access = net.parts[&home.partition].1.access(home.subdb).unwrap();
    assert_eq!(access.readers, vec![p(55)]);
}

/// Between the target going live (`finish`) and the directory flipping to it, a caller who
/// guesses the target's local id cannot write there, nor can the owner delete it or change its
/// access: the target answers `WritesPaused` until the index, after flipping, resumes writes.
#[test]
fn the_target_refuses_user_writes_until_the_directory_flips() {
    for phase in ["release", "activate"] {
        let (mut net, big) = loaded();
        let mut probed = false;
        run_move_with(&mut net, phase, |net| {
            let m = net.index.moves()[0].clone();
            let t = &mut net.parts.get_mut(&m.target).unwrap().1;
            let live = t.store().list_subdbs(0, 10);
            assert_eq!(live.len(), 1, "the finished import is live for reads");
            let guess = live[0].id;
            let put = PutArgs {
                subdb: guess,
                key: ByteBuf::from(b"guessed".to_vec()),
                value: ByteBuf::from(b"x".to_vec()),
                op_id: OpId::from(vec![66; 16]),
            };
            assert_eq!(
                t.put(p(OWNER), &put),
                Err(PutError::WritesPaused),
                "{phase}"
            );
            let del = DeleteSubDbArgs {
                subdb: guess,
                op_id: OpId::from(vec![67; 16]),
            };
            assert!(t.delete_subdb(p(OWNER), &del).is_err(), "{phase}");
            let acc = SetAccessArgs {
                subdb: guess,
                readers: vec![],
                writers: vec![p(9)],
            };
            assert!(t.set_access(p(OWNER), &acc).is_err(), "{phase}");
            probed = true;
        });
        assert!(probed);
        // After the flip and the resume, the new home takes writes; nothing was lost.
        let home = net.route("big");
        assert_ne!(home.partition, big.partition);
        let mut cache = home;
        net.put(&mut cache, "big", b"after", b"y", 5_000).unwrap();
        assert_eq!(net.get("big", b"after"), Some(b"y".to_vec()));
        assert_eq!(net.get("big", &7u32.to_be_bytes()), Some(vec![7u8; 20_000]));
    }
}

/// A move whose target stays broken ends within the failure budget. The target traps on every
/// `import_chunk`, from the copy on or only at the cutover's final chunk (the source frozen by
/// then): either way the move is called off within `MAX_MOVE_FAILURES` failed calls and a few
/// more rounds, the source resumes writes and drops its change log, the target's partial
/// import is reclaimed once it answers again, and nothing acknowledged is lost.
#[test]
fn a_move_whose_target_stays_broken_ends_within_the_budget() {
    use flotilla_types::limits::MAX_MOVE_FAILURES;
    for (phase, methods) in [
        ("copy", vec!["begin_import", "import_chunk"]),
        ("finish", vec!["begin_import", "import_chunk"]),
        ("copy", vec!["begin_import", "import_chunk", "abort_import"]),
    ] {
        let (mut net, big) = loaded();
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = (0..400u32)
            .map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; 20_000]))
            .collect();
        let mut target = None;
        let mut broke_at = None;
        let mut cache = big;
        let mut op = 10_000u64;
        let mut ended_after = None;
        let mut started = None;
        for r in 0..400u32 {
            net.round(None);
            // The broken move, while it lasts. (The source is still over the cap, so the index
            // soon tries another move; the test looks at the broken one only.)
            let m = net
                .index
                .moves()
                .into_iter()
                .find(|m| started.is_none_or(|s| s == m.started_at));
            if let Some(m) = &m {
                target = Some(m.target);
                if broke_at.is_none() && m.phase == phase {
                    net.broken.insert(m.target, methods.clone());
                    broke_at = Some(r);
                    started = Some(m.started_at);
                }
            } else if let Some(b) = broke_at {
                ended_after = Some(r - b);
                break;
            }
            // The writer keeps writing at the source; pauses are retried.
            let (k, v) = (
                (r % 450).to_be_bytes().to_vec(),
                format!("w{r}").into_bytes(),
            );
            match net.put(&mut cache, "big", &k, &v, op) {
                Ok(()) => {
                    model.insert(k, v);
                    op += 1;
                }
                Err(PutError::WritesPaused) => {}
                Err(e) => panic!("write failed: {e:?}"),
            }
        }
        let rounds = ended_after.unwrap_or_else(|| panic!("the move never ended ({phase})"));
        // Each failed call costs a round; unwinding and aborting take a few more; a target
        // that also refuses `abort_import` spends the budget a second time.
        let budgets = if methods.contains(&"abort_import") {
            2
        } else {
            1
        };
        assert!(
            rounds <= budgets * MAX_MOVE_FAILURES + 6,
            "{phase}: ended {rounds} rounds after the target broke"
        );
        // The SubDB stayed home, writable, with every acknowledged write.
        let home = net.route("big");
        assert_eq!(home, big, "{phase}");
        let mut c = home;
        net.put(&mut c, "big", b"after", b"ok", 99_999).unwrap();
        model.insert(b"after".to_vec(), b"ok".to_vec());
        for (k, v) in &model {
            assert_eq!(net.get("big", k).as_ref(), Some(v), "{phase}: key {k:?}");
        }
        let src = &net.parts[&big.partition].1;
        assert!(!src.store().is_exporting(big.subdb), "{phase}");
        assert_eq!(src.store().pending_changes(big.subdb), 0, "{phase}");
        // The target's partial import: reclaimed, unless the target refused that too.
        let t = &mut net.parts.get_mut(&target.unwrap()).unwrap().1;
        while t.housekeep(1_000) > 0 {}
        if !methods.contains(&"abort_import") {
            assert_eq!(
                t.store().totals().bytes,
                0,
                "{phase}: partial import reclaimed"
            );
        } else {
            // The abort was given up with the move, but not forgotten: once the target
            // answers again, a reclaim (retried with backoff) aborts the partial import.
            let target = target.unwrap();
            let ids: Vec<u32> = net
                .index
                .reclaims()
                .iter()
                .filter(|r| r.target == target)
                .filter_map(|r| r.subdb)
                .collect();
            assert_eq!(ids.len(), 1, "{phase}: one reclaim, its import id known");
            let importing =
                |net: &Net| net.parts[&target].1.store().status(ids[0]) == SubDbStatus::Importing;
            assert!(importing(&net));
            net.broken.remove(&target);
            for _ in 0..400 {
                net.round(None);
                if net.index.reclaims_pending() == 0 {
                    break;
                }
            }
            assert_eq!(net.index.reclaims_pending(), 0, "{phase}");
            assert!(
                !importing(&net),
                "{phase}: partial import reclaimed once the target answered"
            );
        }
        println!("{phase} {methods:?}: the move ended {rounds} rounds after the target broke");
    }
}

/// An admin lists moves and calls one off; the SubDB stays home and writable.
#[test]
fn an_admin_cancels_a_move() {
    use flotilla_types::index::CancelMoveError;
    let (mut net, big) = loaded();
    let mut cancelled = false;
    run_move_with(&mut net, "copy", |net| {
        let env = net.env(p(OWNER));
        assert_eq!(
            net.index.cancel_move(&env, "big"),
            Err(CancelMoveError::NotAuthorized)
        );
        let env = net.env(p(ADMIN));
        assert_eq!(
            net.index.cancel_move(&env, "nope"),
            Err(CancelMoveError::UnknownMove)
        );
        assert_eq!(net.index.list_moves().len(), 1);
        let calls = net.index.cancel_move(&env, "big").unwrap();
        net.queue.extend(calls);
        assert_eq!(net.index.list_moves()[0].phase, "unwind");
        cancelled = true;
    });
    assert!(cancelled);
    assert_eq!(net.route("big"), big);
    let mut c = big;
    net.put(&mut c, "big", b"after", b"ok", 99_999).unwrap();
    assert_eq!(net.get("big", &9u32.to_be_bytes()), Some(vec![9u8; 20_000]));
    assert!(!net.parts[&big.partition].1.store().is_exporting(big.subdb));
}

// ---- moves an admin starts (`move_subdb`) ------------------------------------------------

/// A cap the index's own moves never reach: only `move_subdb` moves anything.
const NO_CAP: u64 = 1 << 40;

fn move_req(key: &str, target: Option<Principal>) -> MoveRequest {
    MoveRequest {
        outer_key: key.into(),
        target,
    }
}

/// Runs rounds until a spare partition is ready; returns it.
fn spare(net: &mut Net) -> Principal {
    for _ in 0..10 {
        let spare = net
            .index
            .stats()
            .partitions
            .into_iter()
            .find(|p| p.state == PartitionState::Spare);
        if let Some(s) = spare {
            return s.id;
        }
        net.round(None);
    }
    panic!("no spare partition");
}

/// Runs the move of "big" (from `big` to `target`) to its end while a writer keeps writing,
/// then checks: the directory routes to `target`, every acknowledged write is there, the
/// source answers `Moved`, "small" stayed home.
fn finish_admin_move(net: &mut Net, big: InnerKey, target: Principal) {
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = (0..400u32)
        .map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; 20_000]))
        .collect();
    let mut cache = big;
    let mut op = 50_000u64;
    for r in 0..300u32 {
        net.round(None);
        let (k, v) = (
            ((r * 7) % 450).to_be_bytes().to_vec(),
            format!("r{r}").into_bytes(),
        );
        match net.put(&mut cache, "big", &k, &v, op) {
            Ok(()) => {
                model.insert(k, v);
                op += 1;
            }
            Err(PutError::WritesPaused) => {}
            Err(e) => panic!("write failed: {e:?}"),
        }
        if net.index.moves().is_empty() && net.queue.is_empty() {
            break;
        }
    }
    assert!(net.index.moves().is_empty(), "the move did not end");
    let home = net.route("big");
    assert_eq!(home.partition, target);
    net.put(&mut cache, "big", b"after", b"ok", op).unwrap();
    model.insert(b"after".to_vec(), b"ok".to_vec());
    for (k, v) in &model {
        assert_eq!(net.get("big", k).as_ref(), Some(v), "key {k:?}");
    }
    let stats = net.parts[&target].1.store().stats(home.subdb).unwrap();
    assert_eq!(stats.items, model.len() as u64);
    let stale = GetArgs {
        subdb: big.subdb,
        key: ByteBuf::from(vec![0]),
    };
    let src = &net.parts[&big.partition].1;
    assert_eq!(src.get(p(OWNER), &stale), Err(GetError::Moved { to: home }));
    assert_eq!(net.route("small").partition, big.partition);
}

/// An admin moves a SubDB without naming a target: with no partition but its own, the index
/// answers `NoTarget` and starts one; once it is ready, the move goes there and completes.
#[test]
fn an_admin_moves_a_subdb_where_the_index_chooses() {
    let (mut net, big) = loaded_with_cap(NO_CAP);
    let owner = net.env(p(OWNER));
    assert_eq!(
        net.index.move_subdb(&owner, &move_req("big", None)),
        Err(MoveSubDbError::NotAuthorized)
    );
    let admin = net.env(p(ADMIN));
    assert_eq!(
        net.index.move_subdb(&admin, &move_req("big", None)),
        Err(MoveSubDbError::NoTarget)
    );
    assert_eq!(net.index.stats().partitions_being_created, 1);
    let spare = spare(&mut net);
    let admin = net.env(p(ADMIN));
    let (target, calls) = net
        .index
        .move_subdb(&admin, &move_req("big", None))
        .unwrap();
    assert_eq!(target, spare);
    net.queue.extend(calls);
    assert_eq!(
        net.index.move_subdb(&admin, &move_req("big", None)),
        Err(MoveSubDbError::AlreadyMoving)
    );
    finish_admin_move(&mut net, big, target);
}

/// An admin moves a SubDB to the partition they name; its own partition is refused.
#[test]
fn an_admin_moves_a_subdb_to_the_partition_named() {
    let (mut net, big) = loaded_with_cap(NO_CAP);
    let spare = spare(&mut net);
    let admin = net.env(p(ADMIN));
    assert_eq!(
        net.index
            .move_subdb(&admin, &move_req("big", Some(big.partition))),
        Err(MoveSubDbError::SameAsSource)
    );
    let (target, calls) = net
        .index
        .move_subdb(&admin, &move_req("big", Some(spare)))
        .unwrap();
    assert_eq!(target, spare);
    net.queue.extend(calls);
    finish_admin_move(&mut net, big, spare);
}

/// A move an admin started is called off like any other: the SubDB stays home and writable,
/// the target's partial import is reclaimed.
#[test]
fn an_admin_cancels_a_move_an_admin_started() {
    let (mut net, big) = loaded_with_cap(NO_CAP);
    let spare = spare(&mut net);
    let admin = net.env(p(ADMIN));
    let (_, calls) = net
        .index
        .move_subdb(&admin, &move_req("big", Some(spare)))
        .unwrap();
    net.queue.extend(calls);
    run_move_with(&mut net, "copy", |net| {
        let env = net.env(p(ADMIN));
        let calls = net.index.cancel_move(&env, "big").unwrap();
        net.queue.extend(calls);
    });
    assert_eq!(net.route("big"), big);
    let mut c = big;
    net.put(&mut c, "big", b"after", b"ok", 99_999).unwrap();
    assert_eq!(net.get("big", &9u32.to_be_bytes()), Some(vec![9u8; 20_000]));
    assert!(!net.parts[&big.partition].1.store().is_exporting(big.subdb));
    let t = &mut net.parts.get_mut(&spare).unwrap().1;
    while t.housekeep(1_000) > 0 {}
    assert_eq!(t.store().totals().bytes, 0, "partial import reclaimed");
}

// ---- the write pause is bounded by construction ------------------------------------------

/// Whether "big" (moving from `src`) is writable nowhere: its source is frozen, or a live
/// SubDB on the move's target is (a finished import waiting for the directory to flip).
fn frozen_somewhere(net: &Net, src: InnerKey, target: Option<Principal>) -> bool {
    let source = net.parts[&src.partition].1.store().is_frozen(src.subdb);
    let at_target = target.is_some_and(|t| {
        let s = net.parts[&t].1.store();
        s.list_subdbs(0, 100).iter().any(|d| s.is_frozen(d.id))
    });
    source || at_target
}

/// A writer that writes far faster than deltas can ship (about 2 MB of 20 KB overwrites per
/// round, while one delta round takes two calls for at most 1.9 MiB) cannot stretch the
/// cutover: the source freezes only once what remains fits in one chunk, so writes are paused
/// for the four calls of the cutover (freeze with the last delta, finish, release, resume at
/// the target; one call per round here, the SubDB frozen at the end of three rounds), however
/// large the backlog. Meanwhile the writer is throttled, not stopped: writes keep being
/// acknowledged until the freeze. Every acknowledged write reaches the new home.
#[test]
fn a_fast_writer_cannot_stretch_the_write_pause() {
    const PUTS_PER_ROUND: u32 = 100;
    const PAUSE_BOUND_ROUNDS: u32 = 3;
    let (mut net, big) = loaded();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = (0..400u32)
        .map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; 20_000]))
        .collect();
    let mut cache = big;
    let mut op = 1u64 << 30;
    let (mut saw, mut target) = (false, None);
    let (mut frozen_run, mut longest_frozen) = (0u32, 0u32);
    let (mut acked_in_deltas, mut delta_rounds_seen) = (0u64, 0u32);
    let (mut throttled, mut delta_rounds) = (false, 0);
    let mut n = 0u32;
    for r in 0..600u32 {
        net.round(None);
        let m = net.index.moves().first().cloned();
        saw |= m.is_some();
        if let Some(m) = &m {
            target = Some(m.target);
            throttled |= m.throttled;
            delta_rounds = m.delta_rounds;
            // The index reports the pause while it lasts.
            let frozen_at_source = net.parts[&big.partition].1.store().is_frozen(big.subdb);
            if frozen_at_source {
                assert!(m.paused_at.is_some() || m.phase == "cutover", "{m:?}");
            }
        }
        if frozen_somewhere(&net, big, target) {
            frozen_run += 1;
            longest_frozen = longest_frozen.max(frozen_run);
        } else {
            frozen_run = 0;
        }
        let in_deltas = m
            .as_ref()
            .is_some_and(|m| m.phase == "delta" || m.phase == "cutover");
        delta_rounds_seen += in_deltas as u32;
        for _ in 0..PUTS_PER_ROUND {
            let (k, v) = (
                (n % 400).to_be_bytes().to_vec(),
                vec![(r % 251) as u8; 20_000],
            );
            match net.put(&mut cache, "big", &k, &v, op) {
                Ok(()) => {
                    model.insert(k, v);
                    op += 1;
                    n += 1;
                    acked_in_deltas += in_deltas as u64;
                }
                Err(PutError::WritesPaused) => break,
                Err(e) => panic!("write failed in round {r}: {e:?}"),
            }
        }
        if saw && m.is_none() && net.queue.is_empty() {
            break;
        }
    }
    assert!(saw, "no move happened");
    assert!(net.index.moves().is_empty(), "the move did not end");
    let home = net.route("big");
    assert_ne!(home.partition, big.partition, "big did not move");
    for (k, v) in &model {
        assert_eq!(net.get("big", k).as_ref(), Some(v), "key {k:?}");
    }
    let reported = net.index.stats().longest_write_pause_ns;
    println!(
        "fast writer: {delta_rounds_seen} rounds of deltas ({delta_rounds} delta chunks) with \
         {acked_in_deltas} writes acknowledged meanwhile, writes paused (frozen) \
         {longest_frozen} round(s) at most; the index reports {} s",
        reported as f64 / ROUND_NS as f64
    );
    assert!(throttled, "the deltas never needed the throttle");
    assert!(delta_rounds > flotilla_index::moves::MAX_DELTA_ROUNDS);
    assert!(acked_in_deltas > 0, "the writer was stopped, not throttled");
    assert!(reported > 0 && reported <= PAUSE_BOUND_ROUNDS as u64 * ROUND_NS);
    assert!(
        longest_frozen <= PAUSE_BOUND_ROUNDS,
        "writes paused {longest_frozen} rounds in a row (bound {PAUSE_BOUND_ROUNDS})"
    );
}

/// The byte quota the index gives a SubDB at creation travels in its metadata: the partition
/// refuses a put past it (storing nothing) before and after a move, with no call to the index;
/// the old home answers `Moved` only to those who could read the SubDB.
#[test]
fn the_byte_quota_survives_a_move() {
    const QUOTA: u64 = 9_000_000;
    let mut net = Net::new(6_000_000);
    let env = net.env(p(ADMIN));
    net.index
        .update_settings(
            &env,
            flotilla_types::index::IndexSettings {
                max_bytes_per_subdb: Some(QUOTA),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(net.index.stats().max_bytes_per_subdb, QUOTA);
    let big = load_small_and_big(&mut net);
    let mut cache = big;
    let held = 400 * (4 + 20_000);
    let refuse = |net: &mut Net, cache: &mut InnerKey, op| {
        let before = net.parts[&cache.partition].1.store().stats(cache.subdb);
        assert_eq!(
            net.put(cache, "big", b"over", &vec![1; 1_000_000], op),
            Err(PutError::QuotaExceeded { max_bytes: QUOTA })
        );
        let after = net.parts[&cache.partition].1.store().stats(cache.subdb);
        assert_eq!(before, after, "nothing stored");
    };
    refuse(&mut net, &mut cache, 1_000);
    // Over the move cap: the index moves "big" (the largest) away.
    for _ in 0..300 {
        net.round(None);
        if net.route("big").partition != big.partition && net.index.moves().is_empty() {
            break;
        }
    }
    let home = net.route("big");
    assert_ne!(home.partition, big.partition, "moved");
    let mut cache = home;
    refuse(&mut net, &mut cache, 1_001);
    assert_eq!(cache, home);
    let room = QUOTA - held - 5;
    net.put(&mut cache, "big", b"fits", &vec![2; room as usize], 1_002)
        .unwrap();
    let stats = net.parts[&home.partition]
        .1
        .store()
        .stats(home.subdb)
        .unwrap();
    assert_eq!(stats.bytes, QUOTA - 1);
    // The old home: `Moved` for the owner, the answer of an absent SubDB for a stranger and
    // for the anonymous principal.
    let old = &net.parts[&big.partition].1;
    let g = GetArgs {
        subdb: big.subdb,
        key: ByteBuf::from(b"k".to_vec()),
    };
    assert_eq!(old.get(p(OWNER), &g), Err(GetError::Moved { to: home }));
    for who in [p(99), Principal::anonymous()] {
        assert_eq!(old.get(who, &g), Err(GetError::UnknownSubDb));
        let absent = GetArgs {
            subdb: 4_000,
            ..g.clone()
        };
        assert_eq!(old.get(who, &absent), Err(GetError::UnknownSubDb));
    }
}
