//! Store vs a bare `StableBTreeMap<Vec<u8>, Vec<u8>>` holding the same keys and values on the
//! same memory type (a `MemoryManager` virtual memory over `VectorMemory`), in the same run.
//!
//! `cargo bench -p flotilla-store --bench store` prints, after criterion's own report, the
//! ratio store/bare for put, get, a 100-item forward scan and put-with-op-id, and the memory
//! bytes per item of both. It also compares one batch of 100 fresh puts under one op id with
//! 100 single puts with an op id each (`batch100`).

use criterion::{black_box, Criterion};
use flotilla_store::{Config, OpCtx, Store};
use flotilla_types::{BatchOp, OpId, ScanArgs};
use ic_stable_structures::memory_manager::{MemoryId, MemoryManager, VirtualMemory};
use ic_stable_structures::{BTreeMap, Memory, VectorMemory};
use serde_bytes::ByteBuf;
use std::cell::Cell;
use std::time::Duration;

const ITEMS: u64 = 100_000;
const KEY_BYTES: usize = 24;
const VALUE_BYTES: usize = 100;
const SCAN_ITEMS: u32 = 100;

type Mem = VirtualMemory<VectorMemory>;

/// splitmix64: a fixed, seedable sequence of keys shared by both sides.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn key(i: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(KEY_BYTES);
    for j in 0..KEY_BYTES as u64 / 8 {
        k.extend_from_slice(&mix(i * 3 + j).to_be_bytes());
    }
    k
}

fn value(i: u64) -> Vec<u8> {
    vec![i as u8; VALUE_BYTES]
}

fn store_on(mut mem: impl FnMut(MemoryId) -> Mem) -> Store<Mem> {
    let mut s = Store::init(&mut mem, Config::default()).unwrap();
    let id = s.create_subdb(None, None, b"").unwrap();
    for i in 0..ITEMS {
        s.put(None, id, &key(i), &value(i)).unwrap();
    }
    s
}

fn bare_on(mem: Mem) -> BTreeMap<Vec<u8>, Vec<u8>, Mem> {
    let mut m = BTreeMap::init(mem);
    for i in 0..ITEMS {
        m.insert(key(i), value(i));
    }
    m
}

fn bench(c: &mut Criterion) {
    let mm = MemoryManager::init(VectorMemory::default());
    let mut store = store_on(|id| mm.get(id));
    let bare_mm = MemoryManager::init(VectorMemory::default());
    let mut bare = bare_on(bare_mm.get(MemoryId::new(0)));
    let db = 0;

    // Fresh keys for puts, existing ones for reads; both sides walk the same sequence.
    let next = Cell::new(ITEMS);
    let mut g = c.benchmark_group("put");
    g.bench_function("store", |b| {
        b.iter(|| {
            let i = next.get();
            next.set(i + 1);
            store.put(None, db, &key(i), &value(i)).unwrap()
        })
    });
    next.set(ITEMS);
    g.bench_function("bare", |b| {
        b.iter(|| {
            let i = next.get();
            next.set(i + 1);
            bare.insert(key(i), value(i))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("get");
    let r = Cell::new(0u64);
    let pick = || {
        let i = mix(r.get()) % ITEMS;
        r.set(r.get() + 1);
        key(i)
    };
    g.bench_function("store", |b| b.iter(|| store.get(db, &pick()).unwrap()));
    g.bench_function("bare", |b| b.iter(|| bare.get(&pick())));
    g.finish();

    let mut g = c.benchmark_group("scan100");
    g.bench_function("store", |b| {
        b.iter(|| {
            let args = ScanArgs {
                start: Some(ByteBuf::from(pick())),
                limit: Some(SCAN_ITEMS),
                ..Default::default()
            };
            store.scan(db, &args).unwrap()
        })
    });
    g.bench_function("bare", |b| {
        b.iter(|| {
            bare.range(pick()..)
                .take(SCAN_ITEMS as usize)
                .map(|e| e.into_pair())
                .collect::<Vec<_>>()
        })
    });
    g.finish();

    // Put with op id vs the bare put: a fresh op id each time, as distinct client writes are.
    let mut g = c.benchmark_group("put_op");
    let base = next.get() + 1_000_000;
    next.set(base);
    g.bench_function("store", |b| {
        b.iter(|| {
            let i = next.get();
            next.set(i + 1);
            let op = OpId::from([mix(i).to_le_bytes(), mix(!i).to_le_bytes()].concat());
            let ctx = OpCtx {
                op_id: &op,
                salt: b"bench-caller",
            };
            store.put(Some(ctx), db, &key(i), &value(i)).unwrap()
        })
    });
    next.set(base);
    g.bench_function("bare", |b| {
        b.iter(|| {
            let i = next.get();
            next.set(i + 1);
            bare.insert(key(i), value(i))
        })
    });
    g.finish();

    // 100 fresh puts: one batch under one op id vs 100 single puts with an op id each.
    let mut g = c.benchmark_group("batch100");
    let op_of = |i: u64| OpId::from([mix(i).to_le_bytes(), mix(!i).to_le_bytes()].concat());
    let seq = Cell::new(base + 10_000_000);
    g.bench_function("batch", |b| {
        b.iter(|| {
            let i = seq.get();
            seq.set(i + BATCH_OPS);
            let ops: Vec<BatchOp> = (i..i + BATCH_OPS)
                .map(|j| BatchOp::Put {
                    key: ByteBuf::from(key(j)),
                    value: ByteBuf::from(value(j)),
                })
                .collect();
            let op = op_of(i);
            let ctx = OpCtx {
                op_id: &op,
                salt: b"bench-caller",
            };
            store.batch(Some(ctx), db, &ops).unwrap()
        })
    });
    g.bench_function("singles", |b| {
        b.iter(|| {
            let i = seq.get();
            seq.set(i + BATCH_OPS);
            for j in i..i + BATCH_OPS {
                let op = op_of(j);
                let ctx = OpCtx {
                    op_id: &op,
                    salt: b"bench-caller",
                };
                store.put(Some(ctx), db, &key(j), &value(j)).unwrap();
            }
        })
    });
    g.finish();
    black_box((&store, &bare));
}

/// Puts per batch in the `batch100` group.
const BATCH_OPS: u64 = 100;

/// Bytes of memory per item: every region each side uses, on plain `VectorMemory`s so that
/// size is counted in 64 KiB pages rather than the manager's 8 MiB buckets.
fn memory_per_item() -> (f64, f64) {
    // One small-bucket manager per region the store asks for.
    let mut mms: Vec<(MemoryId, MemoryManager<VectorMemory>)> = vec![];
    let store = store_on(|id| {
        let mm = MemoryManager::init_with_bucket_size(VectorMemory::default(), 1);
        let m = mm.get(MemoryId::new(0));
        mms.push((id, mm));
        m
    });
    let mm: Vec<_> = mms.into_iter().map(|(_, m)| m).collect();
    let bare_raw = VectorMemory::default();
    let bare_mm = MemoryManager::init_with_bucket_size(bare_raw.clone(), 1);
    let bare = bare_on(bare_mm.get(MemoryId::new(0)));
    let pages = |mm: &MemoryManager<VectorMemory>| mm.get(MemoryId::new(0)).size();
    let store_pages: u64 = mm.iter().map(pages).sum();
    black_box((store, bare));
    let page = 65536.0;
    (
        store_pages as f64 * page / ITEMS as f64,
        pages(&bare_mm) as f64 * page / ITEMS as f64,
    )
}

fn estimate_ns(group: &str, side: &str) -> Option<f64> {
    let path = format!(
        "{}/criterion/{group}/{side}/new/estimates.json",
        std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../target").to_string()
        })
    );
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    // The figure criterion reports: the slope of its linear sampling, else the mean.
    v["slope"]["point_estimate"]
        .as_f64()
        .or(v["mean"]["point_estimate"].as_f64())
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
    println!("\n== store / bare StableBTreeMap, 100,000 items, 24-byte keys, 100-byte values ==");
    for (group, bound) in [
        ("put", 1.3),
        ("get", 1.3),
        ("scan100", 1.3),
        ("put_op", 2.5),
    ] {
        match (estimate_ns(group, "store"), estimate_ns(group, "bare")) {
            (Some(s), Some(b)) => println!(
                "{group:<8} store {s:>10.0} ns  bare {b:>10.0} ns  ratio {:.2} (bound {bound})",
                s / b
            ),
            _ => println!("{group:<8} (no estimate: run without a filter)"),
        }
    }
    if let (Some(b), Some(s)) = (
        estimate_ns("batch100", "batch"),
        estimate_ns("batch100", "singles"),
    ) {
        println!(
            "batch100 one batch {b:>10.0} ns  100 puts with op ids {s:>10.0} ns  ratio {:.2}",
            b / s
        );
    }
    let (s, b) = memory_per_item();
    println!(
        "memory   store {s:.1} B/item  bare {b:.1} B/item  ratio {:.2} (bound 1.2)",
        s / b
    );
}
