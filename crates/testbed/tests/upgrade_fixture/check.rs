//! Reading a fixture back: the deployment rebuilt with the current wasm over the fixture's
//! stable memory, and everything in the manifest read through the canisters' endpoints.

use crate::fixture::{expand, Fixture, Write};
use crate::{
    admin, enc, query, route, scan_all, stats, stranger, update, INDEX_CYCLES, PARTITION_CYCLES,
};
use candid::Principal;
use flotilla_testbed::{Config, InstallMode, Testbed};
use flotilla_types::index::{CreateError, CreateRequest, IndexInit, RoutesPage, RoutesRequest};
use flotilla_types::partition::{
    BatchArgs, DeleteArgs, GetArgs, PartitionInit, PartitionStats, PutArgs, StatsArgs, StatsError,
    SubDbStatsError,
};
use flotilla_types::{
    BatchError, BatchOutcome, DeleteError, GetError, InnerKey, OpId, PutError, PutOutcome,
    SubDbStats,
};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Rebuilds the fixture's deployment with the current wasm: each canister at its id, the
/// current module installed, the fixture's stable memory loaded, then an upgrade to the
/// current module (`post_upgrade` over the loaded bytes).
pub(crate) fn restore(f: &Fixture, index_wasm: &[u8], partition_wasm: &[u8]) -> Testbed {
    let mut tb = Testbed::new(Config::default());
    tb.substitute_module(&f.stand_in_module, partition_wasm);
    for c in &f.canisters {
        let (wasm, init, cycles) = if c.kind == "index" {
            let init = IndexInit {
                admins: vec![f.admin],
                ..IndexInit::default()
            };
            (index_wasm, enc(init), INDEX_CYCLES)
        } else {
            (
                partition_wasm,
                enc(PartitionInit { index: f.index }),
                PARTITION_CYCLES,
            )
        };
        tb.create_canister_with_id(c.id, c.controllers.clone(), cycles)
            .expect("a fresh id");
        let controller = c.controllers[0];
        tb.install(controller, c.id, InstallMode::Install, false, wasm, init)
            .unwrap_or_else(|e| panic!("install {} {}: {e}", c.kind, c.id));
        tb.set_stable_memory(c.id, expand(c))
            .expect("load stable memory");
        // No pre_upgrade: the instance being replaced only ran `init`; the bytes are the
        // fixture's.
        tb.install(controller, c.id, InstallMode::Upgrade, true, wasm, enc(()))
            .unwrap_or_else(|e| {
                panic!(
                    "post_upgrade of the current {} wasm over the fixture's stable memory of {}: \
                     {e}",
                    c.kind, c.id
                )
            });
    }
    tb
}

/// Every SubDB, item, access list and recorded op id of `f`, read back from `tb`.
pub(crate) fn check(tb: &mut Testbed, f: &Fixture, what: &str) {
    let index = f.index;
    let st = stats(tb, index);
    assert_eq!(st.admins, vec![f.admin], "{what}: admins");
    assert_eq!(
        st.routing_version, f.routing_version,
        "{what}: routing version"
    );
    assert_eq!(st.subdbs, f.subdbs.len() as u64, "{what}: SubDB count");
    let wasm = st.partition_wasm.as_ref().expect("a partition wasm");
    assert_eq!(
        wasm.len,
        f.stand_in_module.len() as u64,
        "{what}: wasm length"
    );
    assert_eq!(
        wasm.sha256.as_slice(),
        Sha256::digest(&f.stand_in_module).as_slice(),
        "{what}: wasm hash"
    );
    let mut parts: Vec<Principal> = st.partitions.iter().map(|p| p.id).collect();
    parts.sort();
    let mut want: Vec<Principal> = f
        .canisters
        .iter()
        .filter(|c| c.kind == "partition")
        .map(|c| c.id)
        .collect();
    want.sort();
    assert_eq!(parts, want, "{what}: partitions");

    // The routing snapshot, page by page, as the admin sees it (a stranger is shown none).
    let mut routes = BTreeMap::new();
    let mut start_after = None;
    let none: RoutesPage = query(
        tb,
        stranger(),
        index,
        "routes",
        enc(RoutesRequest::default()),
    );
    assert!(none.routes.is_empty(), "{what}: a stranger is shown routes");
    loop {
        let page: RoutesPage = query(
            tb,
            f.admin,
            index,
            "routes",
            enc(RoutesRequest {
                start_after: start_after.take(),
                limit: Some(2),
            }),
        );
        assert_eq!(page.version, f.routing_version, "{what}: routes version");
        for r in page.routes {
            routes.insert(r.outer_key, r.inner);
        }
        match page.next {
            Some(n) => start_after = Some(n),
            None => break,
        }
    }
    let want: BTreeMap<String, InnerKey> = f
        .subdbs
        .iter()
        .map(|s| (s.outer_key.clone(), s.at))
        .collect();
    assert_eq!(routes, want, "{what}: routes");
    for d in &f.deleted {
        assert_eq!(route(tb, index, d), None, "{what}: deleted {d} is routed");
    }

    for s in &f.subdbs {
        let w = format!("{what}: {}", s.outer_key);
        assert_eq!(
            scan_all(tb, s.owner, s.at, false, 7),
            s.items,
            "{w}: forward scan"
        );
        let mut rev = scan_all(tb, s.owner, s.at, true, 5);
        rev.reverse();
        assert_eq!(rev, s.items, "{w}: reverse scan");
        for (k, v) in &s.items {
            let g = GetArgs {
                subdb: s.at.subdb,
                key: k.clone(),
            };
            let r: Result<Option<ByteBuf>, GetError> =
                query(tb, s.owner, s.at.partition, "get", enc(g));
            assert_eq!(r, Ok(Some(v.clone())), "{w}: get");
        }
        let r: Result<SubDbStats, SubDbStatsError> =
            query(tb, s.owner, s.at.partition, "subdb_stats", enc(s.at.subdb));
        let r = r.unwrap_or_else(|e| panic!("{w}: subdb_stats: {e:?}"));
        assert_eq!(r.items, s.items.len() as u64, "{w}: subdb_stats items");
        assert_eq!(r.hard_cap, s.hard_cap, "{w}: hard cap");
        let bytes: usize = s.items.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert_eq!(r.bytes, bytes as u64, "{w}: subdb_stats bytes");
        // Access lists: readers and writers read; a stranger and the anonymous principal
        // do not; a reader does not write.
        let g = GetArgs {
            subdb: s.at.subdb,
            key: ByteBuf::from(b"probe".to_vec()),
        };
        for who in s.readers.iter().chain(&s.writers) {
            let r: Result<Option<ByteBuf>, GetError> =
                query(tb, *who, s.at.partition, "get", enc(g.clone()));
            assert!(r.is_ok(), "{w}: {who} may read: {r:?}");
        }
        // They learn nothing of it: the answer of an absent SubDB.
        for who in [stranger(), Principal::anonymous()] {
            let r: Result<Option<ByteBuf>, GetError> =
                query(tb, who, s.at.partition, "get", enc(g.clone()));
            assert_eq!(r, Err(GetError::UnknownSubDb), "{w}: {who} reads");
        }
        for who in &s.readers {
            let p = PutArgs {
                subdb: s.at.subdb,
                key: ByteBuf::from(b"by-a-reader".to_vec()),
                value: ByteBuf::new(),
                op_id: OpId(ByteBuf::from(vec![0x77; 16])),
            };
            let r: Result<PutOutcome, PutError> = update(tb, *who, s.at.partition, "put", enc(p));
            assert_eq!(r, Err(PutError::NotAuthorized), "{w}: reader {who} writes");
        }
        if let Some(old) = s.moved_from {
            let g = GetArgs {
                subdb: old.subdb,
                key: ByteBuf::from(b"probe".to_vec()),
            };
            let r: Result<Option<ByteBuf>, GetError> =
                query(tb, s.owner, old.partition, "get", enc(g.clone()));
            // A tombstone written before its SubDB's access was kept beside it answers
            // `Moved` to no one: the owner refreshes its route from the index instead.
            assert!(
                r == Err(GetError::Moved { to: s.at }) || r == Err(GetError::UnknownSubDb),
                "{w}: old home: {r:?}"
            );
            let r: Result<Option<ByteBuf>, GetError> =
                query(tb, stranger(), old.partition, "get", enc(g));
            assert_eq!(r, Err(GetError::UnknownSubDb), "{w}: old home, a stranger");
        }
    }

    // Op ids: a create retried answers its first inner key from the index's log; the same id
    // for another name is a conflict.
    for c in &f.creates {
        let r: Result<InnerKey, CreateError> =
            update(tb, c.caller, index, "create_subdb", enc(c.request.clone()));
        assert_eq!(
            r,
            Ok(c.answer),
            "{what}: retried create of {}",
            c.request.outer_key
        );
        let other = CreateRequest {
            outer_key: format!("{}-other", c.request.outer_key),
            ..c.request.clone()
        };
        let r: Result<InnerKey, CreateError> =
            update(tb, c.caller, index, "create_subdb", enc(other));
        assert_eq!(
            r,
            Err(CreateError::OpIdConflict),
            "{what}: reused create op id"
        );
    }
    // A write retried at the SubDB's home now answers its first result and applies nothing
    // (the data is compared again below); the same op id with other arguments conflicts.
    for rec in &f.writes {
        let s = f
            .subdbs
            .iter()
            .find(|s| s.outer_key == rec.outer_key)
            .expect("a live SubDB");
        let (p, subdb) = (s.at.partition, s.at.subdb);
        let w = format!("{what}: retried write on {}", rec.outer_key);
        match &rec.write {
            Write::Put(args, o) => {
                let a = PutArgs {
                    subdb,
                    ..args.clone()
                };
                let r: Result<PutOutcome, PutError> =
                    update(tb, rec.caller, p, "put", enc(a.clone()));
                assert_eq!(r, Ok(*o), "{w}");
                let other = PutArgs {
                    value: ByteBuf::from(b"other".to_vec()),
                    ..a
                };
                let r: Result<PutOutcome, PutError> = update(tb, rec.caller, p, "put", enc(other));
                assert_eq!(r, Err(PutError::OpIdConflict), "{w}: other arguments");
            }
            Write::Delete(args, o) => {
                let a = DeleteArgs {
                    subdb,
                    ..args.clone()
                };
                let r: Result<bool, DeleteError> = update(tb, rec.caller, p, "delete", enc(a));
                assert_eq!(r, Ok(*o), "{w}");
            }
            Write::Batch(args, o) => {
                let a = BatchArgs {
                    subdb,
                    ..args.clone()
                };
                let r: Result<BatchOutcome, BatchError> =
                    update(tb, rec.caller, p, "batch", enc(a));
                assert_eq!(r, Ok(*o), "{w}");
            }
        }
    }
    for s in &f.subdbs {
        let got = scan_all(tb, s.owner, s.at, false, 50);
        assert_eq!(got, s.items, "{what}: {} after the retries", s.outer_key);
    }

    // The partitions still know their index: it may call `stats`, nobody else may.
    for c in f.canisters.iter().filter(|c| c.kind == "partition") {
        let a = StatsArgs {
            from: 0,
            limit: 100,
            largest_first: None,
        };
        let r: Result<PartitionStats, StatsError> = update(tb, index, c.id, "stats", enc(a));
        let r = r.unwrap_or_else(|e| panic!("{what}: stats of {} by the index: {e:?}", c.id));
        let mut live: Vec<u32> = r.subdbs.iter().map(|s| s.id).collect();
        live.sort();
        let mut want: Vec<u32> = f
            .subdbs
            .iter()
            .filter(|s| s.at.partition == c.id)
            .map(|s| s.at.subdb)
            .collect();
        want.sort();
        assert_eq!(live, want, "{what}: live SubDBs of {}", c.id);
        let r: Result<PartitionStats, StatsError> = update(tb, admin(), c.id, "stats", enc(a));
        assert_eq!(
            r,
            Err(StatsError::NotAuthorized),
            "{what}: stats by the admin"
        );
    }
}
