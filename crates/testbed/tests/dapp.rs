//! The Rust client's ic-cdk transport on real wasm: the example dapp canister
//! (`canisters/example-dapp`) holds a `flotilla_client::Client` and serves its callers by
//! calling the index and the partitions itself, on the testbed, with the real index and
//! partition wasm.

use candid::{CandidType, Decode, Deserialize, Encode, Principal};
use flotilla_testbed::{Config, InstallMode, Testbed};
use flotilla_types::index::{IndexInit, UploadProgress, UploadWasmError, WasmChunk};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

fn admin() -> Principal {
    Principal::from_slice(&[0xad; 29])
}

/// Creates a canister controlled by the admin and installs `wasm` with `arg`.
fn install(tb: &mut Testbed, wasm: &[u8], arg: Vec<u8>) -> Principal {
    let id = tb.create_canister(vec![admin()], 1_000_000_000_000_000);
    tb.install(admin(), id, InstallMode::Install, false, wasm, arg)
        .unwrap_or_else(|e| panic!("install: {e}"));
    id
}

/// The admin uploads the partition module to the index in one chunk.
fn upload_partition_wasm(tb: &mut Testbed, index: Principal, wasm: &[u8]) {
    let c = WasmChunk {
        sha256: ByteBuf::from(Sha256::digest(wasm).to_vec()),
        offset: 0,
        total_len: wasm.len() as u64,
        bytes: ByteBuf::from(wasm.to_vec()),
    };
    let r = tb
        .update(
            admin(),
            index,
            "upload_partition_wasm_chunk",
            Encode!(&c).unwrap(),
        )
        .expect("upload replies");
    let p = Decode!(&r, Result<UploadProgress, UploadWasmError>)
        .unwrap()
        .expect("upload");
    assert!(p.complete);
}

fn wasm(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/wasm")
        .join(format!("{name}.wasm.gz"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Build the canister wasm first: scripts/build-wasm.sh",
            path.display()
        )
    })
}

/// The dapp's error (`canisters/example-dapp/example-dapp.did`).
#[derive(CandidType, Deserialize, Debug)]
enum DappError {
    Seed(String),
    Flotilla(String),
}

#[derive(CandidType, Deserialize, Debug, Clone, PartialEq, Eq)]
struct CallCount {
    canister: Principal,
    method: String,
    count: u64,
}

fn calls(tb: &mut Testbed, dapp: Principal) -> Vec<CallCount> {
    let r = tb
        .query(admin(), dapp, "calls", Encode!().unwrap())
        .expect("calls");
    Decode!(&r, Vec<CallCount>).unwrap()
}

/// Calls made since `before`, as (canister, method, count).
fn since(before: &[CallCount], after: &[CallCount]) -> Vec<(Principal, String, u64)> {
    after
        .iter()
        .filter_map(|a| {
            let old = before
                .iter()
                .find(|b| b.canister == a.canister && b.method == a.method)
                .map_or(0, |b| b.count);
            (a.count > old).then(|| (a.canister, a.method.clone(), a.count - old))
        })
        .collect()
}

#[test]
fn a_dapp_canister_reads_and_writes_through_the_cdk_transport() {
    let mut tb = Testbed::new(Config::default());
    let init = IndexInit {
        admins: vec![admin()],
        spare_pool_target: Some(1),
        move_cap_bytes: None,
        ..IndexInit::default()
    };
    let index = install(&mut tb, &wasm("index"), Encode!(&init).unwrap());
    upload_partition_wasm(&mut tb, index, &wasm("partition"));
    let dapp = install(&mut tb, &wasm("example-dapp"), Encode!(&index).unwrap());

    // The index makes its first partition in the background; until then a create is refused.
    let mut created = None;
    for _ in 0..100 {
        let r = tb
            .update(admin(), dapp, "create", Encode!(&"dapp/notes").unwrap())
            .expect("create replies");
        match Decode!(&r, Result<(), DappError>).unwrap() {
            Ok(()) => {
                created = Some(());
                break;
            }
            Err(e) => {
                println!("create: {e:?}; waiting for a partition");
                tb.ticks(5);
            }
        }
    }
    created.expect("the dapp created its SubDB once the index had a partition");

    let put = |tb: &mut Testbed, k: &str, v: &str| {
        let arg = Encode!(&"dapp/notes", &ByteBuf::from(k), &ByteBuf::from(v)).unwrap();
        let r = tb.update(admin(), dapp, "put", arg).expect("put replies");
        Decode!(&r, Result<(), DappError>).unwrap().expect("put");
    };
    let get = |tb: &mut Testbed, k: &str| {
        let arg = Encode!(&"dapp/notes", &ByteBuf::from(k)).unwrap();
        let r = tb.update(admin(), dapp, "get", arg).expect("get replies");
        Decode!(&r, Result<Option<ByteBuf>, DappError>)
            .unwrap()
            .expect("get")
            .map(|b| String::from_utf8(b.into_vec()).unwrap())
    };
    for i in 0..10 {
        put(&mut tb, &format!("k{i}"), &format!("v{i}"));
    }
    for i in 0..10 {
        assert_eq!(get(&mut tb, &format!("k{i}")), Some(format!("v{i}")));
    }
    assert_eq!(get(&mut tb, "absent"), None);

    // Warm: one read is one call, to the partition, none to the index; one write likewise.
    let before = calls(&mut tb, dapp);
    assert_eq!(get(&mut tb, "k3").as_deref(), Some("v3"));
    let read = since(&before, &calls(&mut tb, dapp));
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!((read[0].1.as_str(), read[0].2), ("get", 1), "{read:?}");
    assert_ne!(read[0].0, index, "a cached read does not ask the index");
    let partition = read[0].0;

    let before = calls(&mut tb, dapp);
    put(&mut tb, "k3", "v3'");
    let write = since(&before, &calls(&mut tb, dapp));
    assert_eq!(write, vec![(partition, "put".to_string(), 1)]);
    assert_eq!(get(&mut tb, "k3").as_deref(), Some("v3'"));

    // The index was called to create the SubDB (retried while it had no partition yet),
    // never for a read or a write.
    let all = calls(&mut tb, dapp);
    for c in &all {
        println!("the dapp called {} {} × {}", c.canister, c.method, c.count);
    }
    assert!(
        all.iter()
            .all(|c| c.canister != index || c.method == "create_subdb"),
        "{all:?}"
    );
}
