//! The index's instructions per `tick` as the fleet grows, on the real index wasm
//! (`target/wasm/index.wasm.gz` from `scripts/build-wasm.sh index`).
//!
//! A fleet of `partitions` partitions holding `subdbs` SubDBs is built natively with the index
//! logic (`flotilla_index::Index` over a `VectorMemory`, driven through its own handlers: jobs
//! answered as a management canister would, creates answered as a partition would, each
//! partition reported full once it holds its share), written into the index canister's stable
//! memory, and opened by an upgrade. Each partition is a testbed canister running a stand-in
//! module that answers `stats` with fixed Candid bytes (the partition's totals, an empty SubDB
//! page), so 1,000 of them fit in memory.
//!
//! Then, in consecutive rounds, `run_housekeeping` (the timer's `Index::tick` on an admin's
//! request, plus the glue that performs its calls) is measured three times:
//!
//! - **stale**: every partition's stats are old, so the tick asks for `stats` (at most
//!   `MAX_STATS_CALLS_PER_TICK` partitions, most overdue first);
//! - **in flight**: the next round, those calls still out: the tick skips them and asks the
//!   next ones due, if any;
//! - **quiet**: two rounds later, after the replies: nothing due unless the fleet is larger
//!   than two ticks' worth of calls.
//!
//! `cargo test --release -p flotilla-testbed --test tick_cost -- --ignored --nocapture`
//! prints the table of `docs/testbed.md` (10, 100, 1,000 partitions, 100,000 SubDBs);
//! `TICK_COST=partitions:subdbs,...` picks other fleets, and `TICK_COST_BASELINE=<index.wasm.gz>`
//! measures another index module (an earlier build) on the same fleets and prints the ratios.
//! The test that is not ignored runs two small fleets (10 and 100 partitions, 1,000 SubDBs)
//! and checks the shape: at most `MAX_STATS_CALLS_PER_TICK` stats calls per tick, and a tick
//! that asks nothing costs about the same with ten times the partitions.

use candid::{Decode, Encode, Principal};
use flotilla_index::calls::{Request, Response};
use flotilla_index::cycles::MAX_STATUS_CALLS_PER_TICK;
use flotilla_index::{Env, Index, Step, MAX_STATS_CALLS_PER_TICK};
use flotilla_testbed::{Config, InstallMode, Testbed};
use flotilla_types::index::{AdminError, CreateRequest, IndexInit, RoutesRequest, WasmChunk};
use flotilla_types::partition::{PartitionStats, StatsError};
use flotilla_types::OpId;
use ic_stable_structures::memory_manager::MemoryManager;
use ic_stable_structures::VectorMemory;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// The move cap of the benchmark's index; every filled partition reports one byte more.
const MOVE_CAP: u64 = 1 << 30;
/// The index's cycle balance, natively and on the testbed: plenty.
const INDEX_CYCLES: u128 = 1 << 70;

fn admin() -> Principal {
    Principal::from_slice(&[0xad; 29])
}

fn owner() -> Principal {
    Principal::from_slice(&[0x0e; 29])
}

fn wasm(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/wasm")
        .join(format!("{name}.wasm.gz"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Build the canister wasm first: scripts/build-wasm.sh index",
            path.display()
        )
    })
}

/// What every stand-in partition answers to `stats`: full (over the move cap), its share of
/// SubDBs, no SubDB page (so no move starts).
fn stats_reply(share: u64) -> Vec<u8> {
    let stats: Result<PartitionStats, StatsError> = Ok(PartitionStats {
        live_subdbs: share,
        items: share * 10,
        bytes: MOVE_CAP + 1,
        purging_bytes: 0,
        op_records: share,
        stable_memory_bytes: 2 * MOVE_CAP,
        tombstones: 0,
        subdbs: vec![],
    });
    Encode!(&stats).unwrap()
}

/// A partition stand-in: `stats` replies `reply`; nothing else is exported.
fn stand_in(reply: &[u8]) -> Vec<u8> {
    let data: String = reply.iter().map(|b| format!("\\{b:02x}")).collect();
    wat::parse_str(format!(
        r#"(module
  (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
  (import "ic0" "msg_reply" (func $reply))
  (memory (export "memory") 1)
  (data (i32.const 0) "{data}")
  (func (export "canister_update stats")
    (call $append (i32.const 0) (i32.const {len}))
    (call $reply)))"#,
        len = reply.len()
    ))
    .expect("stand-in module")
}

/// The index's stable memory holding `partitions` full partitions and `subdbs` SubDBs spread
/// evenly over them, plus a spare (the pool's target), built through the index's own
/// handlers from time `now` on. `ids` names the partitions in creation order (one more than
/// `partitions`: the spare).
fn index_memory(
    self_id: Principal,
    ids: &[Principal],
    partitions: usize,
    subdbs: usize,
    module: &[u8],
    now: u64,
) -> Vec<u8> {
    let raw = VectorMemory::default();
    let mm = MemoryManager::init(raw.clone());
    let mut ix = Index::install(
        |id| mm.get(id),
        IndexInit {
            admins: vec![admin()],
            spare_pool_target: Some(1),
            move_cap_bytes: Some(MOVE_CAP),
            // One owner holds every SubDB of the fleet: no quota.
            max_subdbs_per_owner: Some(u64::MAX),
            ..IndexInit::default()
        },
    );
    let env = |caller, now| Env {
        caller,
        now,
        self_id,
        balance: INDEX_CYCLES,
    };
    let sha = ByteBuf::from(Sha256::digest(module).to_vec());
    let progress = ix
        .upload_partition_wasm(
            &env(admin(), now),
            WasmChunk {
                offset: 0,
                bytes: ByteBuf::from(module.to_vec()),
                total_len: module.len() as u64,
                sha256: sha,
            },
        )
        .expect("upload");
    assert!(progress.complete);
    // Filled partitions report themselves full, the spare empty.
    let mut filled = std::collections::BTreeSet::new();
    let mut next_partition = 0;
    // One tick at `t`, every call it leads to answered; whether `watch` was asked for stats.
    let mut tick = |ix: &mut Index<_>,
                    t: u64,
                    filled: &std::collections::BTreeSet<Principal>,
                    watch: Option<Principal>| {
        let mut asked = false;
        let mut calls = ix.tick(&env(self_id, t));
        while let Some(call) = calls.pop() {
            let reply = match &call.request {
                Request::CreateCanister { .. } => {
                    next_partition += 1;
                    Response::CanisterCreated(ids[next_partition - 1])
                }
                Request::InstallCode { .. } => Response::Installed,
                Request::Stats(_) => {
                    asked |= Some(call.target) == watch;
                    let bytes = if filled.contains(&call.target) {
                        MOVE_CAP + 1
                    } else {
                        0
                    };
                    Response::Stats(Ok(PartitionStats {
                        bytes,
                        ..PartitionStats::default()
                    }))
                }
                // Cycles care: every partition has plenty, so no top-up.
                Request::CanisterStatus { .. } => Response::Status {
                    cycles: 1 << 50,
                    module_hash: None,
                    stopped: false,
                },
                other => panic!("unexpected {other:?}"),
            };
            calls.extend(ix.on_reply(&env(self_id, t), call.id, Ok(reply)).calls);
        }
        asked
    };
    let period = 10_000_000_000;
    let mut t = now;
    // The first spare.
    tick(&mut ix, t, &filled, None);
    let mut made = 0;
    assert_eq!(ids.len(), partitions + 1);
    for (i, &target) in ids[..partitions].iter().enumerate() {
        // Its share of SubDBs (the first create promotes the spare).
        let share = subdbs / partitions + usize::from(i < subdbs % partitions);
        for local in 0..share {
            let req = CreateRequest {
                outer_key: format!("tenant-{made:06}/notes"),
                op_id: OpId::from(Sha256::digest((made as u64).to_le_bytes())[..16].to_vec()),
                hard_cap: None,
                owner: None,
                readers: vec![],
                writers: vec![],
            };
            made += 1;
            let call = match ix.create_subdb(&env(owner(), t), req) {
                Step::Await(call) => call,
                Step::Done(r) => panic!("create {made} answered at once: {r:?}"),
            };
            assert_eq!(call.target, target, "placement");
            let ok = Ok(Response::SubDbCreated(Ok(local as u32)));
            assert!(ix.on_reply(&env(self_id, t), call.id, ok).calls.is_empty());
        }
        // Full: ticks a period apart until its stats say so (the others are asked in turn,
        // at most `MAX_STATS_CALLS_PER_TICK` a tick); they also make the next spare.
        filled.insert(target);
        loop {
            t += period;
            if tick(&mut ix, t, &filled, Some(target)) {
                break;
            }
        }
    }
    assert_eq!(made, subdbs);
    let stats = ix.stats();
    assert_eq!(stats.subdbs, subdbs as u64);
    assert_eq!(stats.partitions_total, partitions as u64 + 1);
    drop(ix);
    let bytes = raw.borrow().clone();
    bytes
}

/// Instructions of `run_housekeeping` in three consecutive situations, and what it asked.
#[derive(Debug)]
struct TickCost {
    partitions: usize,
    subdbs: usize,
    stale: u64,
    in_flight: u64,
    quiet: u64,
    /// Calls each made (`u32::MAX`: it trapped).
    calls: [u32; 3],
    /// Mean instructions of a `stats` reply's callback.
    reply: u64,
    /// Bytes of the index's `stats` reply (every partition) and of a default `routes` page.
    stats_bytes: usize,
    routes_bytes: usize,
}

/// Runs `run_housekeeping` alone in one round: the calls it made, or `None` if it trapped
/// (its instructions are then the limit it hit).
fn housekeeping(tb: &mut Testbed, index: Principal) -> Option<u64> {
    let id = tb
        .submit(admin(), index, "run_housekeeping", Encode!().unwrap())
        .expect("submitted");
    tb.tick();
    let r = tb
        .ingress_status(id)
        .cloned()
        .expect("answered in its round");
    let r = r.ok()?;
    let calls = Decode!(&r, Result<u32, AdminError>)
        .unwrap()
        .expect("admin");
    Some(u64::from(calls))
}

fn measure(index_wasm: &[u8], partitions: usize, subdbs: usize) -> TickCost {
    let mut tb = Testbed::new(Config::default());
    let index = tb.create_canister(vec![admin()], INDEX_CYCLES);
    let share = subdbs.div_ceil(partitions) as u64;
    let module = stand_in(&stats_reply(share));
    let ids: Vec<Principal> = (0..=partitions)
        .map(|_| {
            let p = tb.create_canister(vec![index, admin()], 1 << 50);
            tb.install(admin(), p, InstallMode::Install, false, &module, vec![])
                .expect("stand-in installs");
            p
        })
        .collect();
    let init = IndexInit {
        admins: vec![admin()],
        spare_pool_target: Some(1),
        move_cap_bytes: Some(MOVE_CAP),
        ..IndexInit::default()
    };
    tb.install(
        admin(),
        index,
        InstallMode::Install,
        false,
        index_wasm,
        Encode!(&init).unwrap(),
    )
    .expect("index installs");
    // Built from 1 s after the epoch (ticks a stats period apart fill the partitions one by
    // one): long before the testbed's clock, so every partition's stats are stale there.
    let now = 1_000_000_000;
    let memory = index_memory(index, &ids, partitions, subdbs, &module, now);
    tb.set_stable_memory(index, memory).expect("stable memory");
    tb.install(
        admin(),
        index,
        InstallMode::Upgrade,
        false,
        index_wasm,
        Encode!(&()).unwrap(),
    )
    .expect("the index opens the fleet");

    // The timer fires every 5 s, rounds are 1 s: rounds 1–3 after the upgrade run no timer.
    let n1 = housekeeping(&mut tb, index);
    let stale = tb.last_instructions(index);
    let n2 = housekeeping(&mut tb, index);
    let in_flight = tb.last_instructions(index);
    // The stats calls' replies (queued in round 2) run as callbacks now.
    tb.start_profile(index);
    tb.tick();
    let (callbacks, _) = tb.take_profile(index);
    let n3 = housekeeping(&mut tb, index);
    let quiet = tb.last_instructions(index);
    let stats_bytes = tb
        .query(admin(), index, "stats", Encode!().unwrap())
        .expect("stats")
        .len();
    let routes_bytes = tb
        .query(
            admin(),
            index,
            "routes",
            Encode!(&RoutesRequest::default()).unwrap(),
        )
        .expect("routes")
        .len();
    TickCost {
        partitions,
        subdbs,
        stale,
        in_flight,
        quiet,
        calls: [n1, n2, n3].map(|n| n.map_or(u32::MAX, |n| n as u32)),
        reply: callbacks / n1.unwrap_or(0).max(1),
        stats_bytes,
        routes_bytes,
    }
}

fn row(c: &TickCost) -> String {
    let calls = |n: u32| match n {
        u32::MAX => "trapped".to_string(),
        n => format!("{n} calls"),
    };
    format!(
        "| {} | {} | {} ({}) | {} ({}) | {} ({}) | {} | {} | {} |",
        c.partitions,
        c.subdbs,
        c.stale,
        calls(c.calls[0]),
        c.in_flight,
        calls(c.calls[1]),
        c.quiet,
        calls(c.calls[2]),
        c.reply,
        c.stats_bytes,
        c.routes_bytes
    )
}

#[test]
fn tick_cost_is_flat_when_nothing_is_due() {
    let index_wasm = wasm("index");
    let small = measure(&index_wasm, 10, 1_000);
    let large = measure(&index_wasm, 100, 1_000);
    for c in [&small, &large] {
        println!("{}", row(c));
        // Stale: a stats call per partition (the spare too: it has no stats either), at most
        // `MAX_STATS_CALLS_PER_TICK`, and a first cycle-balance check of each, at most
        // `MAX_STATUS_CALLS_PER_TICK`; the next tick asks the rest; then nothing is due.
        let all = c.partitions + 1;
        let first = all.min(MAX_STATS_CALLS_PER_TICK);
        let first_status = all.min(MAX_STATUS_CALLS_PER_TICK);
        assert_eq!(c.calls[0] as usize, first + first_status, "{c:?}");
        let rest = (all - first).min(MAX_STATS_CALLS_PER_TICK);
        let rest_status = (all - first_status).min(MAX_STATUS_CALLS_PER_TICK);
        assert_eq!(c.calls[1] as usize, rest + rest_status, "{c:?}");
        assert_eq!(c.calls[2], 0, "{c:?}");
    }
    // Ten times the partitions: the tick that asks nothing costs about the same.
    assert!(large.quiet < small.quiet * 3 / 2, "{small:?} {large:?}");
}

#[test]
#[ignore = "a benchmark: minutes; run with --release --ignored --nocapture"]
fn tick_cost_table() {
    let index_wasm = wasm("index");
    let fleets: Vec<(usize, usize)> = match std::env::var("TICK_COST") {
        Ok(s) => s
            .split(',')
            .map(|f| {
                let (p, n) = f.split_once(':').expect("partitions:subdbs");
                (p.parse().unwrap(), n.parse().unwrap())
            })
            .collect(),
        Err(_) => vec![(10, 100_000), (100, 100_000), (1_000, 100_000)],
    };
    println!(
        "| partitions | SubDBs | stale tick (calls) | in-flight tick | quiet tick | stats reply callback | `stats` bytes | `routes` page bytes |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    // The baseline: another index module (e.g. an earlier build), measured on the same fleets.
    let baseline = std::env::var("TICK_COST_BASELINE").ok().map(|path| {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        (path, bytes)
    });
    let mut rows = vec![];
    for (p, n) in fleets {
        let started = std::time::Instant::now();
        let c = measure(&index_wasm, p, n);
        println!("{}", row(&c));
        let b = baseline.as_ref().map(|(path, wasm)| {
            let b = measure(wasm, p, n);
            println!("{} (baseline {path})", row(&b));
            b
        });
        eprintln!(
            "({p} partitions, {n} SubDBs: {:.0} s)",
            started.elapsed().as_secs_f64()
        );
        rows.push((c, b));
    }
    let first = &rows[0].0;
    println!(
        "\nAgainst the first fleet ({} partitions), this build:",
        first.partitions
    );
    println!("| partitions | stale | in flight | quiet |");
    println!("|---|---|---|---|");
    for (c, _) in &rows {
        println!(
            "| {} | ×{:.2} | ×{:.2} | ×{:.2} |",
            c.partitions,
            c.stale as f64 / first.stale as f64,
            c.in_flight as f64 / first.in_flight as f64,
            c.quiet as f64 / first.quiet as f64
        );
    }
    if baseline.is_some() {
        println!("\nThis build against the baseline, same fleet (baseline = 1):");
        println!("| partitions | stale | in flight | quiet |");
        println!("|---|---|---|---|");
        for (c, b) in &rows {
            let b = b.as_ref().expect("measured");
            println!(
                "| {} | ×{:.3} | ×{:.3} | ×{:.3} |",
                c.partitions,
                c.stale as f64 / b.stale as f64,
                c.in_flight as f64 / b.in_flight as f64,
                c.quiet as f64 / b.quiet as f64
            );
        }
    }
}
