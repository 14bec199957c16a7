//! `flotilla bench`: the client measured in the simulator, each figure against a baseline
//! measured in the same run, as ratios. Simulated rounds stand for latency (one round is one
//! second of IC time), messages for cost; neither depends on the machine.
//!
//! - `get_many` of 1,000 keys spread over 8 partitions, parallel (one call per partition, all
//!   at once) against one by one (1,000 sequential `get`s), and against a `get_many` of 1,000
//!   keys that all live on one partition.
//! - A load of 100,000 items of 100 bytes through batched writes (one part after another)
//!   against single puts (100 writers in parallel).

use crate::Failure;
use candid::Principal;
use clap::Args;
use flotilla_client::counting::Counting;
use flotilla_client::load::{load, MemoryCheckpoint};
use flotilla_client::{Client, CreateOptions};
use flotilla_sim::transport::{block_on, SharedWorld, SimTransport};
use flotilla_sim::{Faults, SimConfig, World};
use flotilla_types::BatchOp;
use serde_bytes::ByteBuf;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::future::Future;
use std::ops::ControlFlow;
use std::rc::Rc;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Seed of the simulated world.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Items of the load comparison.
    #[arg(long, default_value_t = 100_000)]
    items: u64,
    /// Repetitions of each get_many measurement (rounds are summed).
    #[arg(long, default_value_t = 20)]
    reps: u32,
}

type C = Client<Counting<SimTransport>>;

fn world(seed: u64, move_cap: u64) -> SharedWorld {
    let mut cfg = SimConfig::from_seed(seed, 0)
        .with_faults(Faults::NONE)
        .with_open_creates();
    cfg.clients = 0;
    cfg.move_cap_bytes = move_cap;
    cfg.spare_pool_target = 1;
    cfg.ingress_latency_max = 2;
    // A benchmark counts messages and rounds; the full-content checkers (every SubDB scanned
    // against the model) would cost minutes per run at 100,000 items and change neither. The
    // per-round checkers stay on.
    cfg.full_check_every = u64::MAX;
    let mut w = World::new(cfg);
    w.set_open_ended(true);
    Rc::new(RefCell::new(w))
}

fn client(w: &SharedWorld, seed: u8) -> C {
    let index = w.borrow().index_id();
    let who = Principal::self_authenticating([seed; 32]);
    Client::new(
        Counting::new(SimTransport::new(w.clone(), who, [seed; 32])),
        index,
    )
}

fn drive<F: Future>(w: &SharedWorld, f: F) -> Result<(F::Output, u64), Failure> {
    block_on(w, 10_000_000, f).map_err(|e| Failure(format!("the simulated world stalled: {e}")))
}

/// 16 SubDBs of 125 keys, each filling most of a partition's tiny move cap, so the index
/// spreads them over at least 8 partitions.
fn spread(w: &SharedWorld, c: &C) -> Result<Vec<String>, Failure> {
    let mut names = vec![];
    for s in 0..16u8 {
        let name = format!("bench/{s:02}");
        let r = drive(w, async {
            c.create_subdb(&name, CreateOptions::default()).await?;
            let ops = (0..125u32)
                .map(|i| BatchOp::Put {
                    key: ByteBuf::from(format!("{i:04}").into_bytes()),
                    value: ByteBuf::from(vec![s; 150]),
                })
                .collect();
            c.batch(&name, ops)
                .await
                .map_err(
                    |e| flotilla_client::Error::<flotilla_types::index::CreateError>::GaveUp {
                        attempts: 0,
                        last: e.to_string(),
                    },
                )
                .map(|_| ())
        })?;
        r.0.map_err(|e| Failure(format!("setting up {name}: {e}")))?;
        names.push(name);
        for _ in 0..40 {
            w.borrow_mut().step();
        }
    }
    Ok(names)
}

pub fn run(a: BenchArgs) -> Result<(), Failure> {
    println!("flotilla bench (simulated; seed {})", a.seed);
    // ---- get_many ------------------------------------------------------------------------
    let w = world(a.seed, 20_000);
    let c = client(&w, 1);
    let names = spread(&w, &c)?;
    let _ = drive(&w, c.routes(Default::default()))?;
    let routes: Vec<_> = names
        .iter()
        .map(|n| {
            drive(&w, async {
                c.get(n, b"0000").await.map(|_| c.cached_route(n))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let homes: Vec<_> = routes
        .into_iter()
        .zip(&names)
        .map(|((r, _), n)| match r {
            Ok(Some(k)) => Ok(k.partition),
            Ok(None) => Err(Failure(format!("{n} has no cached route after a read"))),
            Err(e) => Err(Failure(format!("reading {n}: {e}"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let partitions: BTreeSet<_> = homes.iter().copied().collect();
    if partitions.len() < 8 {
        return Err(Failure(format!(
            "the SubDBs landed on {} partitions, fewer than 8: try another --seed",
            partitions.len()
        )));
    }
    // 1,000 keys over 8 partitions: from the SubDBs of the first 8 partitions.
    let eight: Vec<_> = partitions.iter().take(8).copied().collect();
    let on: Vec<&String> = names
        .iter()
        .zip(&homes)
        .filter(|(_, h)| eight.contains(h))
        .map(|(n, _)| n)
        .collect();
    let spread_keys: Vec<(String, Vec<u8>)> = (0..1000usize)
        .map(|i| {
            let n = on[i % on.len()].clone();
            (n, format!("{:04}", (i / on.len()) % 125).into_bytes())
        })
        .collect();
    let first = eight[0];
    let one: Vec<&String> = names
        .iter()
        .zip(&homes)
        .filter(|(_, h)| **h == first)
        .map(|(n, _)| n)
        .collect();
    let one_keys: Vec<(String, Vec<u8>)> = (0..1000usize)
        .map(|i| {
            (
                one[i % one.len()].clone(),
                format!("{:04}", i % 125).into_bytes(),
            )
        })
        .collect();
    let mut par = 0;
    let mut single = 0;
    for _ in 0..a.reps {
        let (r, rounds) = drive(&w, c.get_many(&spread_keys))?;
        if r.iter().any(|x| !matches!(x, Ok(Some(_)))) {
            return Err(Failure("get_many missed a key".into()));
        }
        par += rounds;
        let (_, rounds) = drive(&w, c.get_many(&one_keys))?;
        single += rounds;
    }
    let (_, seq) = drive(&w, async {
        for (n, k) in &spread_keys {
            let _ = c.get(n, k).await;
        }
    })?;
    println!("get_many of 1,000 keys ({} repetitions):", a.reps);
    println!(
        "  parallel over 8 partitions   {:>8.1} rounds per call",
        par as f64 / a.reps as f64
    );
    println!(
        "  all on one partition         {:>8.1} rounds per call",
        single as f64 / a.reps as f64
    );
    println!("  one by one (1,000 gets)      {seq:>8} rounds");
    println!(
        "  ratio 8 partitions / 1 partition: {:.2} (bound 1.5)",
        par as f64 / single.max(1) as f64
    );
    println!(
        "  ratio one-by-one / parallel: {:.0}",
        seq as f64 * a.reps as f64 / par.max(1) as f64
    );

    // ---- batched load against single puts ---------------------------------------------
    let items = a.items;
    let w = world(a.seed, 1 << 40);
    let c = client(&w, 2);
    let record = |i: u64| (format!("{i:08}").into_bytes(), vec![b'v'; 100]);
    drive(&w, async {
        c.create_subdb("batched", CreateOptions::default()).await?;
        c.create_subdb("single", CreateOptions::default()).await
    })?
    .0
    .map_err(|e| Failure(format!("creating the load SubDBs: {e}")))?;
    c.transport().take();
    let mut ck = MemoryCheckpoint::default();
    let (r, batched_rounds) = drive(
        &w,
        load(
            &c,
            "batched",
            b"bench",
            (0..items).map(|i| Ok(record(i))),
            &mut ck,
            |_| ControlFlow::Continue(()),
        ),
    )?;
    r.map_err(|e| Failure(format!("batched load: {e}")))?;
    let batched_msgs = c.transport().total();
    c.transport().take();
    // The baseline gets every advantage but batching: 100 writers at once, each putting its
    // share of the items one by one.
    const WRITERS: u64 = 100;
    let writer = |w: u64| {
        let c = &c;
        async move {
            let mut i = w;
            while i < items {
                let (k, v) = record(i);
                c.put("single", &k, &v).await?;
                i += WRITERS;
            }
            Ok::<_, flotilla_client::Error<flotilla_types::PutError>>(())
        }
    };
    let (rs, single_rounds) = drive(&w, futures::future::join_all((0..WRITERS).map(writer)))?;
    for r in rs {
        r.map_err(|e| Failure(format!("single puts: {e}")))?;
    }
    let single_msgs = c.transport().total();
    println!("load of {items} items of 100 bytes:");
    println!("  batched writes   {batched_msgs:>8} messages {batched_rounds:>8} rounds");
    println!("  single puts (100 writers in parallel) {single_msgs:>8} messages {single_rounds:>8} rounds");
    println!(
        "  ratios single / batched: messages {:.0} (bound >= 50), rounds {:.0}",
        single_msgs as f64 / batched_msgs.max(1) as f64,
        single_rounds as f64 / batched_rounds.max(1) as f64
    );
    Ok(())
}
