//! The Rust client over ic-agent against the demo's IC endpoint in front of a running
//! simulated world: the same code path as against a replica, through real HTTP, signed
//! requests and certified replies. Create, put, get, scan both ways and `get_many` across a
//! move; another user and the anonymous principal refused a private SubDB.

use crate::demo_routes::DemoState;
use crate::serve::{app, channel, run_world};
use candid::Principal;
use flotilla_client::agent::{anonymous, load_identity, AgentOptions, AgentTransport, Network};
use flotilla_client::{Client, CreateOptions, Error, ScanOptions};
use flotilla_sim::{Faults, SimConfig, World};
use flotilla_types::GetError;
use futures::StreamExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn pem(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../client/tests/identities")
        .join(name)
}

struct Demo {
    url: String,
    index: Principal,
    stop: Arc<AtomicBool>,
    world: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.world.take() {
            let _ = t.join();
        }
    }
}

async fn demo(seed: u64, move_cap: u64) -> Demo {
    let (backend, jobs) = channel();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let stop_w = stop.clone();
    let world = std::thread::spawn(move || {
        let mut cfg = SimConfig::from_seed(seed, 0)
            .with_faults(Faults::NONE)
            .with_open_creates();
        cfg.clients = 0;
        cfg.move_cap_bytes = move_cap;
        cfg.spare_pool_target = 1;
        let mut w = World::new(cfg);
        w.keep_serving();
        tx.send((w.index_id(), w.admin())).unwrap();
        run_world(w, jobs, Duration::from_millis(2), &stop_w);
    });
    let (index, admin) = rx.recv().unwrap();
    let app = app(backend, DemoState { index, admin }, seed);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Demo {
        url: format!("http://{addr}"),
        index,
        stop,
        world: Some(world),
    }
}

async fn client(d: &Demo, who: Option<&str>) -> Client<AgentTransport> {
    let id = match who {
        Some(f) => load_identity(&pem(f)).unwrap(),
        None => anonymous(),
    };
    let network = Network::parse(&d.url).unwrap();
    let t = AgentTransport::connect(&network, id, AgentOptions::default())
        .await
        .unwrap();
    Client::new(t, d.index)
}

#[tokio::test(flavor = "current_thread")]
async fn the_rust_client_over_ic_agent_against_the_demo_endpoint() {
    let seed = 31;
    // A 300 KB move cap: two SubDBs of 200 KB make their partition shed one.
    let d = demo(seed, 300_000).await;
    let alice = client(&d, Some("ed25519.pem")).await;
    let bob = client(&d, Some("secp256k1.pem")).await;
    let anon = client(&d, None).await;

    for s in ["big1", "big2"] {
        alice
            .create_subdb(s, CreateOptions::default())
            .await
            .unwrap_or_else(|e| panic!("seed={seed}: create {s}: {e}"));
    }
    let before = [
        alice.cached_route("big1").unwrap(),
        alice.cached_route("big2").unwrap(),
    ];
    for s in ["big1", "big2"] {
        for i in 0..50u32 {
            alice.put(s, &i.to_be_bytes(), &[7; 4000]).await.unwrap();
        }
    }
    assert_eq!(
        alice.get("big1", &7u32.to_be_bytes()).await.unwrap(),
        Some(vec![7; 4000])
    );

    // The index moves one of them while we wait; the client keeps its stale routes.
    let started = Instant::now();
    loop {
        let st = alice.index_stats().await.unwrap();
        if st.moves_total == 0 && st.partitions.iter().filter(|p| p.subdbs > 0).count() >= 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "seed={seed}: no move in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Reads across the move: Moved followed, nothing lost.
    for s in ["big1", "big2"] {
        for i in 0..50u32 {
            let v = alice.get(s, &i.to_be_bytes()).await.unwrap();
            assert_eq!(v, Some(vec![7; 4000]), "seed={seed}: {s} key {i}");
        }
    }
    let after = [
        alice.cached_route("big1").unwrap(),
        alice.cached_route("big2").unwrap(),
    ];
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    assert_eq!(
        moved, 1,
        "seed={seed}: one SubDB moved: {before:?} -> {after:?}"
    );

    // Scans both ways, in pages of 7 (cursors followed).
    let fwd: Vec<u32> = alice
        .scan(
            "big2",
            ScanOptions {
                page: Some(7),
                ..Default::default()
            },
        )
        .map(|e| u32::from_be_bytes(e.unwrap().key[..].try_into().unwrap()))
        .collect()
        .await;
    assert_eq!(fwd, (0..50).collect::<Vec<_>>());
    let rev: Vec<u32> = alice
        .scan(
            "big1",
            ScanOptions {
                reverse: true,
                page: Some(7),
                limit: Some(20),
                ..Default::default()
            },
        )
        .map(|e| u32::from_be_bytes(e.unwrap().key[..].try_into().unwrap()))
        .collect()
        .await;
    assert_eq!(rev, (30..50).rev().collect::<Vec<_>>());

    // get_many over both partitions.
    let items: Vec<(String, Vec<u8>)> = (0..40u32)
        .map(|i| {
            (
                if i % 2 == 0 { "big1" } else { "big2" }.to_string(),
                i.to_be_bytes().to_vec(),
            )
        })
        .chain([("big1".to_string(), b"absent".to_vec())])
        .collect();
    let got = alice.get_many(&items).await;
    for (r, (s, k)) in got.iter().zip(&items) {
        let want = if k.len() == 4 {
            Some(vec![7; 4000])
        } else {
            None
        };
        assert_eq!(r.as_ref().unwrap(), &want, "{s} {k:?}");
    }

    // Private: another user and the anonymous principal are refused, and learn nothing.
    for (who, c) in [("bob", &bob), ("anonymous", &anon)] {
        let r = c.get("big1", &0u32.to_be_bytes()).await;
        assert!(
            matches!(r, Err(Error::Refused(GetError::UnknownSubDb))),
            "{who}: {r:?}"
        );
        let w = c.put("big1", b"x", b"y").await;
        assert!(w.is_err(), "{who} wrote to alice's SubDB: {w:?}");
    }
    assert_eq!(alice.get("big1", b"x").await.unwrap(), None);
}

#[tokio::test(flavor = "current_thread")]
async fn the_pages_the_observer_and_a_forced_move_over_http() {
    let seed = 32;
    let d = demo(seed, 10_000_000).await;
    let alice = client(&d, Some("ed25519.pem")).await;
    let http = reqwest::Client::new();
    let get_json = |path: &str| {
        let r = http.get(format!("{}{path}", d.url)).send();
        async move { r.await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };

    let config = get_json("/flotilla/config").await;
    assert_eq!(config["index"], d.index.to_text());
    for page in ["/", "/notes"] {
        let r = http.get(format!("{}{page}", d.url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{page}");
        assert!(r.text().await.unwrap().contains("<html"), "{page}");
    }

    alice
        .create_subdb("notes", CreateOptions::default())
        .await
        .unwrap();
    for i in 0..10u32 {
        alice.put("notes", &i.to_be_bytes(), b"note").await.unwrap();
    }
    let before = alice.cached_route("notes").unwrap();

    // The observer saw alice's writes executed at the partition, with no inter-canister call.
    let seen = get_json("/flotilla/observer?after=0").await;
    let me = alice.transport().principal().to_text();
    let puts: Vec<&serde_json::Value> = seen["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["from"] == me.as_str() && r["method"] == "put")
        .collect();
    assert_eq!(puts.len(), 10, "seed={seed}: {seen}");
    for r in &puts {
        assert_eq!(r["role"], "partition");
        assert_eq!(r["canister"], before.partition.to_text());
        assert_eq!(r["outcome"], "Ok");
        assert_eq!(r["calls"], 0);
    }
    assert_eq!(seen["calls_by_partition_writes"], 0);
    let last = seen["requests"].as_array().unwrap().last().unwrap()["seq"]
        .as_u64()
        .unwrap();
    let later = get_json(&format!("/flotilla/observer?after={last}")).await;
    assert!(later["requests"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["seq"].as_u64().unwrap() > last));

    // The demo's admin moves the SubDB; alice's stale route is refreshed by her client.
    let moved = http
        .post(format!("{}/flotilla/demo/move", d.url))
        .json(&serde_json::json!({ "outer_key": "notes" }))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200);
    let target = moved.json::<serde_json::Value>().await.unwrap()["target"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(target, before.partition.to_text());
    let started = Instant::now();
    // Alice is no admin: `stats` counts the moves but does not name them.
    while alice.index_stats().await.unwrap().moves_total > 0 {
        assert!(started.elapsed() < Duration::from_secs(60), "seed={seed}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..10u32 {
        let v = alice.get("notes", &i.to_be_bytes()).await.unwrap();
        assert_eq!(v.as_deref(), Some(&b"note"[..]), "seed={seed}: key {i}");
    }
    assert_eq!(
        alice.cached_route("notes").unwrap().partition.to_text(),
        target
    );

    // Bad requests get a clear error.
    for (body, status) in [
        (serde_json::json!({ "outer_key": "absent" }), 409),
        (
            serde_json::json!({ "outer_key": "notes", "target": "not a principal" }),
            400,
        ),
    ] {
        let r = http
            .post(format!("{}/flotilla/demo/move", d.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{body}");
        let e = r.json::<serde_json::Value>().await.unwrap();
        assert!(e["error"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
    }
}
