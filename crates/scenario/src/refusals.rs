//! The scenario's access checks: who may not read, write or run housekeeping.

use crate::client::{key, Run};
use crate::{enc, is_err_variant, stranger, users, World};
use candid::Principal;
use flotilla_types::index::{CreateRequest, DeleteRequest, MoveRequest, WasmChunk};
use flotilla_types::partition::*;
use flotilla_types::{BatchOp, Chunk, InnerKey, OpId, ScanArgs};
use serde_bytes::ByteBuf;

/// Asserts that `caller`'s call answers `Err(NotAuthorized)` (as a variant of the method's
/// error type), as an update or a query.
fn refused<W: World>(
    r: &mut Run<'_, W>,
    caller: Principal,
    canister: Principal,
    method: &str,
    arg: Vec<u8>,
    query: bool,
) {
    refused_with(r, caller, canister, method, arg, query, "NotAuthorized");
}

/// Asserts that `caller`'s call answers `Err(UnknownSubDb)`: a partition answers a caller who
/// may not read a SubDB as for an absent one, so it learns nothing of it.
fn hidden<W: World>(
    r: &mut Run<'_, W>,
    caller: Principal,
    canister: Principal,
    method: &str,
    arg: Vec<u8>,
    query: bool,
) {
    refused_with(r, caller, canister, method, arg, query, "UnknownSubDb");
}

fn refused_with<W: World>(
    r: &mut Run<'_, W>,
    caller: Principal,
    canister: Principal,
    method: &str,
    arg: Vec<u8>,
    query: bool,
    variant: &str,
) {
    let res = if query {
        r.w.query(caller, canister, method, arg)
    } else {
        r.w.update(caller, canister, method, arg)
    };
    let name = r.name();
    let b = res.unwrap_or_else(|e| panic!("{name}: {method} by {caller}: rejected: {e}"));
    assert!(
        is_err_variant(&b, variant),
        "{name}: {method} by {caller} on {canister} was not refused with {variant}"
    );
    r.report.refusals_checked += 1;
}

fn op(b: u8) -> OpId {
    OpId(ByteBuf::from(vec![b; 16]))
}

/// Runs every access check.
pub(crate) fn check<W: World>(r: &mut Run<'_, W>) {
    let [u1, u2, u3] = users();
    // The first SubDB has u2 as a reader and u3 as a writer.
    let shared = "user1-db0".to_string();
    let at = r.route(&shared);
    r.subs.get_mut(&shared).expect("known").at = at;
    assert_eq!(r.subs[&shared].readers, vec![u2]);
    assert_eq!(r.subs[&shared].writers, vec![u3]);

    // ---- readers read, writers write, neither changes access ------------------------------
    let want = r.subs[&shared].model.get(&key(1)).cloned();
    assert_eq!(r.get_as(u2, &shared, &key(1)), want, "a reader reads");
    assert_eq!(r.get_as(u3, &shared, &key(1)), want, "a writer reads");
    r.put_as(u3, &shared, b"by-the-writer".to_vec(), b"w".to_vec());
    let put = |subdb, b| PutArgs {
        subdb,
        key: ByteBuf::from(b"by-the-reader".to_vec()),
        value: ByteBuf::from(b"r".to_vec()),
        op_id: op(b),
    };
    refused(r, u2, at.partition, "put", enc(put(at.subdb, 1)), false);
    let batch = BatchArgs {
        subdb: at.subdb,
        ops: vec![BatchOp::Delete {
            key: ByteBuf::from(key(1)),
        }],
        op_id: op(2),
    };
    refused(r, u2, at.partition, "batch", enc(batch.clone()), false);
    let set = SetAccessArgs {
        subdb: at.subdb,
        readers: vec![u2, stranger()],
        writers: vec![u3],
    };
    for who in [u2, u3] {
        refused(r, who, at.partition, "set_access", enc(set.clone()), false);
    }

    // ---- a stranger and the anonymous principal: no reads, no writes, and at the partition
    // not even the SubDB's existence (the answer of an absent one) -------------------------
    for who in [stranger(), Principal::anonymous()] {
        let g = GetArgs {
            subdb: at.subdb,
            key: ByteBuf::from(key(1)),
        };
        hidden(r, who, at.partition, "get", enc(g.clone()), true);
        hidden(r, who, at.partition, "has", enc(g), true);
        let s = ScanRequest {
            subdb: at.subdb,
            args: ScanArgs::default(),
        };
        hidden(r, who, at.partition, "scan", enc(s), true);
        hidden(r, who, at.partition, "subdb_stats", enc(at.subdb), true);
        hidden(r, who, at.partition, "put", enc(put(at.subdb, 3)), false);
        hidden(r, who, at.partition, "batch", enc(batch.clone()), false);
        let d = DeleteArgs {
            subdb: at.subdb,
            key: ByteBuf::from(key(1)),
            op_id: op(4),
        };
        hidden(r, who, at.partition, "delete", enc(d), false);
        hidden(r, who, at.partition, "set_access", enc(set.clone()), false);
        let req = CreateRequest {
            outer_key: "intruder".into(),
            op_id: op(5),
            hard_cap: None,
            owner: Some(u1),
            readers: vec![],
            writers: vec![],
        };
        refused(r, who, r.index, "create_subdb", enc(req), false);
        let del = DeleteRequest {
            outer_key: shared.clone(),
            op_id: op(6),
        };
        refused(r, who, r.index, "delete_subdb", enc(del), false);
    }
    // The anonymous principal may not even create a SubDB for itself.
    let req = CreateRequest {
        outer_key: "anon".into(),
        op_id: op(7),
        hard_cap: None,
        owner: None,
        readers: vec![],
        writers: vec![],
    };
    refused(
        r,
        Principal::anonymous(),
        r.index,
        "create_subdb",
        enc(req),
        false,
    );

    // ---- the index's admin endpoints: admins only ------------------------------------------
    let index = r.index;
    let admin = r.admin;
    for who in [u1, stranger(), Principal::anonymous()] {
        for (method, arg) in admin_calls(&shared, admin) {
            refused(r, who, index, method, arg, false);
        }
    }

    // ---- every housekeeping endpoint of every partition: the index only --------------------
    let parts: Vec<Principal> = r.stats().partitions.iter().map(|p| p.id).collect();
    for p in parts {
        for (method, arg) in housekeeping_calls(at) {
            for who in [admin, u1, stranger(), Principal::anonymous()] {
                refused(r, who, p, method, arg.clone(), false);
            }
        }
    }
}

/// Each admin endpoint of the index with a well-formed argument.
fn admin_calls(outer: &str, admin: Principal) -> Vec<(&'static str, Vec<u8>)> {
    let module = b"\0asm\x01\0\0\0".to_vec();
    vec![
        ("run_housekeeping", enc(())),
        ("add_admin", enc(stranger())),
        ("remove_admin", enc(admin)),
        (
            "move_subdb",
            enc(MoveRequest {
                outer_key: outer.to_string(),
                target: None,
            }),
        ),
        ("cancel_move", enc(outer.to_string())),
        (
            "upload_partition_wasm_chunk",
            enc(WasmChunk {
                sha256: ByteBuf::from(vec![0u8; 32]),
                offset: 0,
                total_len: module.len() as u64,
                bytes: ByteBuf::from(module),
            }),
        ),
    ]
}

/// Each housekeeping endpoint of a partition with a well-formed argument.
fn housekeeping_calls(at: InnerKey) -> Vec<(&'static str, Vec<u8>)> {
    let s = at.subdb;
    let chunk = Chunk {
        seq: 0,
        header: None,
        puts: vec![],
        deletes: vec![],
        ops: vec![],
    };
    vec![
        (
            "create_subdb_local",
            enc(CreateLocalArgs {
                access: Access {
                    owner: users()[0],
                    readers: vec![],
                    writers: vec![],
                },
                op_id: op(8),
                hard_cap: None,
                max_bytes: None,
            }),
        ),
        (
            "delete_subdb",
            enc(DeleteSubDbArgs {
                subdb: s,
                op_id: op(9),
            }),
        ),
        (
            "stats",
            enc(StatsArgs {
                from: 0,
                limit: 1,
                largest_first: None,
            }),
        ),
        (
            "export_chunk",
            enc(ExportArgs {
                subdb: s,
                seq: 0,
                token: None,
                budget: 2_000_000,
            }),
        ),
        ("begin_export", enc(BeginExportArgs { subdb: s })),
        (
            "export_delta",
            enc(ExportDeltaArgs {
                subdb: s,
                seq: 0,
                ack: 0,
                freeze: false,
                budget: 2_000_000,
                write_budget: None,
            }),
        ),
        ("begin_import", enc(BeginImportArgs { op_id: op(10) })),
        (
            "import_chunk",
            enc(ImportChunkArgs {
                subdb: s,
                chunk,
                finish: false,
            }),
        ),
        ("abort_import", enc(s)),
        ("resume_writes", enc(s)),
        (
            "release",
            enc(ReleaseArgs {
                subdb: s,
                moved_to: at,
            }),
        ),
    ]
}
