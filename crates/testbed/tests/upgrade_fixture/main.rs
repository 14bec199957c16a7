//! Upgrade safety on wasm: the current `index.wasm.gz` and `partition.wasm.gz` must read the
//! stable memory that earlier builds wrote.
//!
//! `fixtures/deployment-index<I>-store<S>-partition<P>.bin.gz` holds the stable memory of a
//! whole small deployment (the index and each of its partitions) written by the wasm of the
//! layout versions in its name, with a manifest of what is in it: SubDBs, items, access lists,
//! the op ids of creates, puts, deletes and batches with their first answers, a SubDB that
//! moved (its old home keeps a tombstone), one that was deleted. The test rebuilds the
//! deployment on a fresh testbed — every canister at its recorded id, the current wasm
//! installed, the fixture's bytes loaded into its stable memory, then an upgrade to the current
//! wasm, so `post_upgrade` opens them — and reads everything back through the canisters'
//! endpoints. Every fixture in the directory is checked, old ones included: a build must read
//! every layout it claims to support.
//!
//! `FLOTILLA_UPDATE_FIXTURES=1 cargo test -p flotilla-testbed --test upgrade_fixture` writes
//! the fixture of the current layout versions (from the current wasm) before checking. When a
//! persisted layout changes: bump its version, teach `open` to read the old one, regenerate, and
//! commit the new fixture beside the old ones.

mod check;
mod fixture;
mod generate;

use candid::{CandidType, Principal};
use check::{check, restore};
use fixture::{fixture_path, fixtures_dir, layouts, read_fixture, write_fixture};
use flotilla_testbed::Testbed;
use flotilla_types::index::{AdminError, CreateError, CreateRequest, IndexStats, RouteError};
use flotilla_types::partition::{PutArgs, ScanRequest};
use flotilla_types::{InnerKey, OpId, PutError, PutOutcome, ScanArgs, ScanError, ScanPage};
use generate::generate;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;
use std::path::PathBuf;
use std::time::Instant;

/// `<name>.wasm.gz` from `target/wasm` (`scripts/build-wasm.sh`), or from the directory
/// `FLOTILLA_WASM_DIR` names (to check another build against the fixtures).
fn wasm(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("FLOTILLA_WASM_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/wasm"),
        PathBuf::from,
    );
    let path = dir.join(format!("{name}.wasm.gz"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Build the canister wasm first: scripts/build-wasm.sh",
            path.display()
        )
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn enc<A: CandidType>(a: A) -> Vec<u8> {
    candid::encode_one(a).expect("candid encode")
}

fn update<R: DeserializeOwned + CandidType>(
    tb: &mut Testbed,
    caller: Principal,
    canister: Principal,
    method: &str,
    arg: Vec<u8>,
) -> R {
    let r = tb
        .update(caller, canister, method, arg)
        .unwrap_or_else(|e| panic!("{method}: rejected: {e}"));
    candid::decode_one(&r).unwrap_or_else(|e| panic!("{method}: undecodable reply: {e}"))
}

fn query<R: DeserializeOwned + CandidType>(
    tb: &mut Testbed,
    caller: Principal,
    canister: Principal,
    method: &str,
    arg: Vec<u8>,
) -> R {
    let r = tb
        .query(caller, canister, method, arg)
        .unwrap_or_else(|e| panic!("{method}: rejected: {e}"));
    candid::decode_one(&r).unwrap_or_else(|e| panic!("{method}: undecodable reply: {e}"))
}

const INDEX_CYCLES: u128 = 1_000_000_000_000_000;
const PARTITION_CYCLES: u128 = 1_000_000_000_000;

fn admin() -> Principal {
    Principal::from_slice(&[0xad; 29])
}
fn alice() -> Principal {
    Principal::from_slice(&[0xa1; 29])
}
fn bob() -> Principal {
    Principal::from_slice(&[0xb0; 29])
}
fn carol() -> Principal {
    Principal::from_slice(&[0xc0; 29])
}
fn stranger() -> Principal {
    Principal::from_slice(&[0x5e; 29])
}

/// The smallest valid module, with a custom section naming it: what the index stores as the
/// partition wasm in the fixture's deployment.
fn stand_in_module() -> Vec<u8> {
    let name = b"flotilla-fixture";
    let payload = b"partition stand-in";
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    m.push(0); // custom section
    m.push((1 + name.len() + payload.len()) as u8);
    m.push(name.len() as u8);
    m.extend_from_slice(name);
    m.extend_from_slice(payload);
    m
}

fn stats(tb: &mut Testbed, index: Principal) -> IndexStats {
    query(tb, admin(), index, "stats", enc(()))
}

fn housekeeping(tb: &mut Testbed, index: Principal) {
    let r: Result<u32, AdminError> = update(tb, admin(), index, "run_housekeeping", enc(()));
    r.expect("run_housekeeping");
}

fn route(tb: &mut Testbed, index: Principal, outer: &str) -> Option<InnerKey> {
    let r: Result<Vec<Option<InnerKey>>, RouteError> =
        query(tb, admin(), index, "route", enc(vec![outer.to_string()]));
    r.expect("route")[0]
}

fn scan_all(
    tb: &mut Testbed,
    caller: Principal,
    at: InnerKey,
    reverse: bool,
    limit: u32,
) -> Vec<(ByteBuf, ByteBuf)> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let req = ScanRequest {
            subdb: at.subdb,
            args: ScanArgs {
                reverse,
                limit: Some(limit),
                cursor: cursor.take(),
                ..ScanArgs::default()
            },
        };
        let r: Result<ScanPage, ScanError> = query(tb, caller, at.partition, "scan", enc(req));
        let page = r.expect("scan");
        out.extend(page.entries.into_iter().map(|e| (e.key, e.value)));
        match page.next {
            Some(n) => cursor = Some(n),
            None => return out,
        }
    }
}

#[test]
fn the_current_wasm_reads_every_committed_fixture() {
    let (index_wasm, partition_wasm) = (wasm("index"), wasm("partition"));
    let current = fixture_path(&layouts());
    if std::env::var_os("FLOTILLA_UPDATE_FIXTURES").is_some() {
        let started = Instant::now();
        let f = generate(&index_wasm, &partition_wasm);
        let size = write_fixture(&current, &f);
        for c in &f.canisters {
            let stored: usize = c.runs.iter().map(|r| r.bytes.len()).sum();
            println!(
                "{} {}: {} bytes of stable memory, {stored} in non-zero pages",
                c.kind, c.id, c.stable_bytes
            );
        }
        println!(
            "wrote {}: {size} bytes gzipped ({:.1} s)",
            current.display(),
            started.elapsed().as_secs_f64()
        );
    }
    assert!(
        current.exists(),
        "no fixture for the current layouts ({}): the layout versions changed. Keep the old \
         fixtures (the new build must still read them) and write this one with \
         FLOTILLA_UPDATE_FIXTURES=1 cargo test -p flotilla-testbed --test upgrade_fixture",
        current.display()
    );
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("deployment-") && n.ends_with(".bin.gz"))
        })
        .collect();
    paths.sort();
    for path in paths {
        let started = Instant::now();
        let f = read_fixture(&path);
        let name = path
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .to_string();
        let mut tb = restore(&f, &index_wasm, &partition_wasm);
        check(&mut tb, &f, &format!("{name}, after post_upgrade"));

        // The restored deployment works on: timers run, a write lands, a new SubDB is
        // created, and another upgrade keeps everything.
        tb.ticks(20);
        let s = &f.subdbs[0];
        let p = PutArgs {
            subdb: s.at.subdb,
            key: ByteBuf::from(b"after-restore".to_vec()),
            value: ByteBuf::from(b"yes".to_vec()),
            op_id: OpId(ByteBuf::from(vec![0x42; 16])),
        };
        let r: Result<PutOutcome, PutError> =
            update(&mut tb, s.owner, s.at.partition, "put", enc(p));
        assert!(r.is_ok(), "{name}: a write after the restore: {r:?}");
        let req = CreateRequest {
            outer_key: "after-restore".into(),
            op_id: OpId(ByteBuf::from(vec![0x43; 16])),
            hard_cap: None,
            owner: None,
            readers: vec![],
            writers: vec![],
        };
        let r: Result<InnerKey, CreateError> =
            update(&mut tb, alice(), f.index, "create_subdb", enc(req));
        assert!(r.is_ok(), "{name}: a create after the restore: {r:?}");
        let log = tb.take_log();
        assert!(log.is_empty(), "{name}: the canisters printed {log:?}");
        println!(
            "{name}: {} canisters, {} SubDBs, {} items, {} creates and {} writes retried; \
             written by index {} / partition {}; {:.1} s",
            f.canisters.len(),
            f.subdbs.len(),
            f.subdbs.iter().map(|s| s.items.len()).sum::<usize>(),
            f.creates.len(),
            f.writes.len(),
            &f.index_wasm_sha256[..12],
            &f.partition_wasm_sha256[..12],
            started.elapsed().as_secs_f64()
        );
    }
}
