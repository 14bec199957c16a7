//! The Rust client (`flotilla-client`) against a simulated deployment, over the in-process
//! transport: every API call, a forced move under a stale route cache, retries under
//! injected faults with nothing applied twice, `get_many` across partitions, the cost of a
//! cache hit counted call by call, and a resumable load interrupted halfway.
//!
//! Each test's world is seeded; a failure prints `seed=N`.

use candid::Principal;
use flotilla_client::counting::Counting;
use flotilla_client::load::{load, LoadError, MemoryCheckpoint, Progress};
use flotilla_client::{Client, CreateOptions, Error, ScanOptions};
use flotilla_sim::transport::{block_on, SharedWorld, SimTransport};
use flotilla_sim::{Faults, Hazards, SimConfig, World};
use flotilla_types::{BatchOp, GetError};
use futures::StreamExt;
use serde_bytes::ByteBuf;
use std::cell::RefCell;
use std::future::Future;
use std::ops::ControlFlow;
use std::rc::Rc;

const MAX_ROUNDS: u64 = 200_000;

/// A world with no simulated users of its own, open-ended, with the given faults.
fn world(seed: u64, faults: Faults, move_cap: u64) -> SharedWorld {
    // Message faults only: no partition of these worlds stops for good or traps on imports.
    let mut cfg = SimConfig::from_seed(seed, 0)
        .with_faults(faults)
        .with_hazards(Hazards::NONE)
        .with_open_creates();
    cfg.clients = 0;
    cfg.move_cap_bytes = move_cap;
    cfg.spare_pool_target = 1;
    let mut w = World::new(cfg);
    w.set_open_ended(true);
    Rc::new(RefCell::new(w))
}

fn user(n: u8) -> Principal {
    Principal::self_authenticating([n; 32])
}

fn client(w: &SharedWorld, who: Principal, seed: u8) -> Client<Counting<SimTransport>> {
    let index = w.borrow().index_id();
    Client::new(
        Counting::new(SimTransport::new(w.clone(), who, [seed; 32])),
        index,
    )
}

fn run<F: Future>(w: &SharedWorld, seed: u64, f: F) -> F::Output {
    match block_on(w, MAX_ROUNDS, f) {
        Ok((v, _)) => v,
        Err(e) => panic!(
            "seed={seed}: {e}; violations: {:?}",
            w.borrow().violations()
        ),
    }
}

/// Creates a SubDB, retrying while the index has no partition yet.
async fn create(c: &Client<Counting<SimTransport>>, name: &str) {
    c.create_subdb(name, CreateOptions::default())
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
}

#[test]
fn every_api_call_works_end_to_end() {
    let seed = 11;
    let w = world(seed, Faults::NONE, 1 << 30);
    let alice = client(&w, user(1), 1);
    let bob = client(&w, user(2), 2);
    run(&w, seed, async {
        create(&alice, "alice/notes").await;
        assert!(matches!(
            alice
                .create_subdb("alice/notes", CreateOptions::default())
                .await,
            Err(Error::Refused(
                flotilla_types::index::CreateError::OuterKeyTaken
            ))
        ));
        for i in 0..30u32 {
            let k = format!("k{i:03}");
            let r = alice
                .put("alice/notes", k.as_bytes(), &i.to_le_bytes())
                .await;
            assert!(!r.unwrap().replaced);
        }
        assert!(
            alice
                .put("alice/notes", b"k000", b"new")
                .await
                .unwrap()
                .replaced
        );
        assert_eq!(
            alice.get("alice/notes", b"k000").await.unwrap(),
            Some(b"new".to_vec())
        );
        assert!(alice.has("alice/notes", b"k001").await.unwrap());
        assert!(alice.delete("alice/notes", b"k001").await.unwrap());
        assert!(!alice.delete("alice/notes", b"k001").await.unwrap());
        assert!(!alice.has("alice/notes", b"k001").await.unwrap());
        let st = alice.stats("alice/notes").await.unwrap();
        assert_eq!(st.items, 29);

        // Scans: whole range forward, reverse with a limit, a sub-range, small pages.
        let all: Vec<_> = alice
            .scan("alice/notes", ScanOptions::default())
            .map(|e| e.unwrap().key.into_vec())
            .collect()
            .await;
        assert_eq!(all.len(), 29);
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        let last3: Vec<_> = alice
            .scan(
                "alice/notes",
                ScanOptions {
                    reverse: true,
                    limit: Some(3),
                    page: Some(2),
                    ..Default::default()
                },
            )
            .map(|e| String::from_utf8(e.unwrap().key.into_vec()).unwrap())
            .collect()
            .await;
        assert_eq!(last3, ["k029", "k028", "k027"]);
        let mid: Vec<_> = alice
            .scan(
                "alice/notes",
                ScanOptions {
                    from: Some(b"k010".to_vec()),
                    to: Some(b"k020".to_vec()),
                    page: Some(3),
                    ..Default::default()
                },
            )
            .map(|e| e.unwrap())
            .collect()
            .await;
        assert_eq!(mid.len(), 10);

        // Access: bob learns nothing of the SubDB (the answer of an absent one, after one
        // route refresh) until alice lists him as a reader; then he reads, not writes.
        assert!(matches!(
            bob.get("alice/notes", b"k000").await,
            Err(Error::Refused(GetError::UnknownSubDb))
        ));
        alice
            .set_access(
                "alice/notes",
                vec![bob.transport().inner().caller()],
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            bob.get("alice/notes", b"k000").await.unwrap(),
            Some(b"new".to_vec())
        );
        assert!(matches!(
            bob.put("alice/notes", b"x", b"y").await,
            Err(Error::Refused(flotilla_types::PutError::NotAuthorized))
        ));

        // Batches: atomic under one op id.
        let ops = (0..100u32)
            .map(|i| BatchOp::Put {
                key: ByteBuf::from(format!("b{i:03}").into_bytes()),
                value: ByteBuf::from(vec![1; 10]),
            })
            .chain([BatchOp::Delete {
                key: ByteBuf::from(b"k002".to_vec()),
            }])
            .collect();
        let out = alice.batch("alice/notes", ops).await.unwrap();
        assert_eq!((out.puts_replaced, out.deletes_existed), (0, 1));
        assert_eq!(alice.stats("alice/notes").await.unwrap().items, 128);

        // The index's view.
        let routes = alice.routes(Default::default()).await.unwrap();
        assert_eq!(routes.routes.len(), 1);
        let stats = alice.index_stats().await.unwrap();
        assert_eq!(stats.subdbs, 1);

        // Dropping: the name is free again and reads say NotFound.
        alice.delete_subdb("alice/notes").await.unwrap();
        assert!(matches!(
            alice.get("alice/notes", b"k000").await,
            Err(Error::NotFound { .. })
        ));
    });
}

#[test]
fn a_cache_hit_is_one_partition_call_and_no_index_call() {
    let seed = 12;
    let w = world(seed, Faults::NONE, 1 << 30);
    let alice = client(&w, user(1), 1);
    let index = w.borrow().index_id();
    run(&w, seed, async {
        create(&alice, "a").await;
        alice.put("a", b"k", b"v").await.unwrap();
        // A fresh client warms its cache with one route query.
        let fresh = client(&w, user(1), 9);
        fresh.get("a", b"k").await.unwrap();
        let warm = fresh.transport().take();
        assert_eq!(warm.values().sum::<u64>(), 2, "{warm:?}");
        assert_eq!(fresh.transport().calls_to(index), 0);
        let t = fresh.transport();
        t.take();
        for i in 0..20u32 {
            assert_eq!(fresh.get("a", b"k").await.unwrap(), Some(b"v".to_vec()));
            fresh.put("a", &i.to_le_bytes(), b"w").await.unwrap();
        }
        let counts = t.take();
        let partition = fresh.cached_route("a").unwrap().partition;
        assert_eq!(counts.get(&(partition, "get".to_string())), Some(&20));
        assert_eq!(counts.get(&(partition, "put".to_string())), Some(&20));
        assert_eq!(counts.values().sum::<u64>(), 40, "{counts:?}");
        assert!(
            counts.keys().all(|(c, _)| *c != index),
            "no index call: {counts:?}"
        );
    });
}

#[test]
fn a_stale_cache_follows_a_move_without_an_error() {
    let seed = 13;
    // A 300 KB move cap: two SubDBs of 200 KB make the first partition shed one.
    let w = world(seed, Faults::NONE, 300_000);
    let alice = client(&w, user(1), 1);
    let index = w.borrow().index_id();
    run(&w, seed, async {
        create(&alice, "big1").await;
        create(&alice, "big2").await;
        let before = (
            alice.cached_route("big1").unwrap(),
            alice.cached_route("big2").unwrap(),
        );
        assert_eq!(before.0.partition, before.1.partition);
        for s in ["big1", "big2"] {
            for i in 0..50u32 {
                alice.put(s, &i.to_be_bytes(), &[7; 4000]).await.unwrap();
            }
        }
    });
    // Let the index notice and move one of them (the client keeps its stale cache).
    let moved = loop {
        w.borrow_mut().step();
        let snap = w.borrow().snapshot();
        if snap.moves_completed >= 1 && snap.moves.is_empty() {
            break snap.moves_completed;
        }
        assert!(w.borrow().round() < 5_000, "seed={seed}: no move happened");
    };
    assert!(moved >= 1);
    run(&w, seed, async {
        alice.transport().take();
        let mut changed = 0;
        for s in ["big1", "big2"] {
            let stale = alice.cached_route(s).unwrap();
            for i in 0..50u32 {
                let v = alice.get(s, &i.to_be_bytes()).await.unwrap();
                assert_eq!(v, Some(vec![7; 4000]), "seed={seed}: {s} key {i}");
            }
            let now = alice.cached_route(s).unwrap();
            let routed = alice
                .routes(Default::default())
                .await
                .unwrap()
                .routes
                .into_iter()
                .find(|r| r.outer_key == s)
                .unwrap()
                .inner;
            assert_eq!(now, routed, "the cache learned the new home of {s}");
            if now != stale {
                changed += 1;
                // One `Moved` hop, then straight to the new home: no index call for reads.
                alice.put(s, b"after", b"move").await.unwrap();
                assert_eq!(
                    alice.get(s, b"after").await.unwrap(),
                    Some(b"move".to_vec())
                );
            }
        }
        assert_eq!(changed, 1, "seed={seed}: one of the two SubDBs moved");
        let counts = alice.transport().take();
        let index_calls: u64 = counts
            .iter()
            .filter(|((c, m), _)| *c == index && m != "routes")
            .map(|(_, n)| n)
            .sum();
        assert_eq!(index_calls, 0, "{counts:?}");
    });
}

#[test]
fn retries_under_faults_apply_nothing_twice() {
    for seed in 20..24 {
        let faults = Faults {
            ingress_reject: 0.1,
            ingress_trap: 0.1,
            ingress_reply_lost: 0.15,
            ..Faults::NONE
        };
        let w = world(seed, faults, 1 << 30);
        let alice = client(&w, user(1), seed as u8);
        run(&w, seed, async {
            create(&alice, "f").await;
            for i in 0..60u32 {
                // A retry of a put whose first attempt applied must still say "not replaced".
                let r = alice.put("f", &i.to_be_bytes(), b"once").await;
                assert!(!r.unwrap().replaced, "seed={seed}: put {i} applied twice");
            }
            for i in 0..60u32 {
                let r = alice.delete("f", &i.to_be_bytes()).await;
                assert!(r.unwrap(), "seed={seed}: delete {i} applied twice");
            }
            let st = alice.stats("f").await.unwrap();
            assert_eq!(st.items, 0, "seed={seed}");
        });
        let faults = w.borrow().report().faults;
        assert!(
            faults.ingress_reply_lost + faults.ingress_trap + faults.ingress_reject > 10,
            "seed={seed}: faults were injected: {faults:?}"
        );
    }
}

/// A world whose clients spread SubDBs over at least `n` partitions: a tiny move cap and one
/// SubDB per partition, filled until the index sheds.
fn spread(seed: u64, n: usize) -> (SharedWorld, Client<Counting<SimTransport>>, Vec<String>) {
    let w = world(seed, Faults::NONE, 20_000);
    let alice = client(&w, user(1), 1);
    let mut names = vec![];
    for s in 0..(n * 2) {
        let name = format!("s{s}");
        run(&w, seed, async {
            create(&alice, &name).await;
            let ops = (0..100u32)
                .map(|i| BatchOp::Put {
                    key: ByteBuf::from(format!("{i:04}").into_bytes()),
                    value: ByteBuf::from(vec![s as u8; 200]),
                })
                .collect();
            alice.batch(&name, ops).await.unwrap();
        });
        names.push(name);
        // Let the index notice the cap and shed.
        for _ in 0..40 {
            w.borrow_mut().step();
        }
    }
    (w, alice, names)
}

#[test]
fn get_many_reads_across_partitions_in_parallel() {
    let seed = 14;
    let (w, alice, names) = spread(seed, 4);
    alice.clear_routes();
    let items: Vec<(String, Vec<u8>)> = names
        .iter()
        .flat_map(|n| (0..100u32).map(move |i| (n.clone(), format!("{i:04}").into_bytes())))
        .chain([("s0".to_string(), b"missing".to_vec())])
        .collect();
    let (results, _) = block_on(&w, MAX_ROUNDS, alice.get_many(&items)).unwrap();
    let partitions: std::collections::BTreeSet<_> = names
        .iter()
        .map(|n| alice.cached_route(n).unwrap().partition)
        .collect();
    assert!(
        partitions.len() >= 4,
        "seed={seed}: SubDBs on {} partitions",
        partitions.len()
    );
    for ((name, _), r) in items.iter().zip(&results).take(items.len() - 1) {
        let want = vec![name[1..].parse::<u8>().unwrap(); 200];
        assert_eq!(r.as_ref().unwrap().as_ref(), Some(&want), "seed={seed}");
    }
    assert_eq!(results.last().unwrap(), &Ok(None));
    // One route query for all the names, then one get_many per partition.
    let counts = alice.transport().take();
    let gm: u64 = counts
        .iter()
        .filter(|((_, m), _)| m == "get_many")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(gm, partitions.len() as u64, "{counts:?}");
    assert_eq!(counts.iter().filter(|((_, m), _)| m == "route").count(), 1);
}

#[test]
fn an_interrupted_load_resumes_without_loss_or_duplicates() {
    let seed = 15;
    let w = world(seed, Faults::NONE, 1 << 30);
    let alice = client(&w, user(1), 1);
    const N: u64 = 100_000;
    let records = || (0..N).map(|i| Ok((format!("{i:08}").into_bytes(), vec![b'x'; 100])));
    let mut ck = MemoryCheckpoint::default();
    run(&w, seed, async {
        create(&alice, "bulk").await;
        // Interrupted halfway (as a Ctrl-C after the checkpoint of a part would).
        let r = load(&alice, "bulk", b"load-1", records(), &mut ck, |p| {
            if p.records >= N / 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await;
        let stopped = match r {
            Err(LoadError::Stopped(p)) => p,
            other => panic!("seed={seed}: {other:?}"),
        };
        assert!(stopped.records >= N / 2 && stopped.records < N);
        // A crash after the last part applied but before its checkpoint was saved: the
        // re-run starts one part behind and sends that part again, under the same op id.
        // (The probe replays the load from the start to learn where that part began: its
        // parts are answered from the op log, applied once.)
        let mut probe = MemoryCheckpoint::default();
        let mut prev = Progress::default();
        let _ = load(&alice, "bulk", b"load-1", records(), &mut probe, |p| {
            if p.parts + 1 == stopped.parts {
                prev = p;
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await;
        assert_eq!(prev.parts + 1, stopped.parts, "seed={seed}");
        let mut behind = MemoryCheckpoint(prev);
        let done = load(&alice, "bulk", b"load-1", records(), &mut behind, |_| {
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
        assert_eq!(done.records, N, "seed={seed}");
        let st = alice.stats("bulk").await.unwrap();
        assert_eq!(st.items, N, "seed={seed}: exactly {N} items");
        let mut seen = 0u64;
        let mut keys = std::pin::pin!(alice.scan("bulk", ScanOptions::default()));
        let mut last: Option<Vec<u8>> = None;
        while let Some(e) = keys.next().await {
            let e = e.unwrap();
            assert_eq!(e.key.to_vec(), format!("{seen:08}").into_bytes());
            assert!(last.as_ref().is_none_or(|l| *l < e.key.to_vec()));
            last = Some(e.key.into_vec());
            seen += 1;
        }
        assert_eq!(seen, N, "each item once");
    });
}

/// Regression: 100 operations under one `join_all` (which, past 30 futures, polls only the
/// futures that were woken) never finished, since nothing in the world woke them; `flotilla
/// bench`'s 100-writer baseline stalled for ten million rounds. Then, woken by themselves, they
/// ran two per round; now every waiting one is looked at once per round.
#[test]
fn a_hundred_concurrent_operations_finish() {
    let seed = 41;
    let w = world(seed, Faults::NONE, 1 << 30);
    let alice = client(&w, user(1), 1);
    run(&w, seed, create(&alice, "many"));
    let before = w.borrow().round();
    run(&w, seed, async {
        let puts = (0..100u32).map(|i| {
            let c = &alice;
            async move { c.put("many", &i.to_be_bytes(), b"v").await }
        });
        for r in futures::future::join_all(puts).await {
            r.unwrap();
        }
    });
    // Side by side: each put is looked at every round, so all of them take a put's latency,
    // not a hundred times it.
    let took = w.borrow().round() - before;
    assert!(
        took <= 10,
        "seed={seed}: 100 concurrent puts took {took} rounds"
    );
    let stats = run(&w, seed, alice.stats("many")).unwrap();
    assert_eq!(stats.items, 100, "seed={seed}");
}
