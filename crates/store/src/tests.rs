use super::*;
use flotilla_types::limits::{
    MAX_EXPORT_CHANGES, MAX_SCAN_ITEMS, MAX_SUBDB_META_BYTES, MAX_VALUE_BYTES, REPLY_BUDGET_BYTES,
};
use flotilla_types::limits::{MAX_MESSAGE_BYTES, MIN_CHUNK_BUDGET_BYTES};
use flotilla_types::OpId;
use flotilla_types::{
    Chunk, ChunkHeader, Entry, ExportError, GetError, ImportError, OpEntry, PutOutcome, ScanArgs,
    ScanError, ScanPage,
};
use ic_stable_structures::memory_manager::{MemoryManager, VirtualMemory};
use ic_stable_structures::VectorMemory;
use serde_bytes::ByteBuf;

pub(crate) type Mem = VirtualMemory<VectorMemory>;

pub(crate) fn open(raw: &VectorMemory, cfg: Config) -> Result<Store<Mem>, InitError> {
    let mm = MemoryManager::init_with_bucket_size(raw.clone(), 1);
    Store::init(|id| mm.get(id), cfg)
}

pub(crate) fn store() -> Store<Mem> {
    open(&VectorMemory::default(), Config::default()).unwrap()
}

pub(crate) fn op(n: u8) -> OpId {
    OpId::from(vec![n; 16])
}

pub(crate) fn ctx(id: &OpId) -> Option<OpCtx<'_>> {
    Some(OpCtx {
        op_id: id,
        salt: b"alice",
    })
}

fn keys(page: &ScanPage) -> Vec<Vec<u8>> {
    page.entries.iter().map(|e| e.key.to_vec()).collect()
}

#[test]
fn lifecycle_and_ids_never_reused() {
    let mut s = store();
    let a = s.create_subdb(None, None, b"meta-a").unwrap();
    let b = s.create_subdb(None, Some(3), b"").unwrap();
    assert_ne!(a, b);
    assert!(s.exists(a) && s.exists(b));
    assert_eq!(s.meta(a).unwrap(), b"meta-a");
    assert_eq!(s.stats(b).unwrap().hard_cap, Some(3));
    assert_eq!(s.list_subdbs(0, 10).len(), 2);
    s.delete_subdb(None, a).unwrap();
    assert!(!s.exists(a));
    assert_eq!(s.status(a), SubDbStatus::Absent);
    assert_eq!(s.meta(a), None);
    let c = s.create_subdb(None, None, b"").unwrap();
    assert!(c != a && c != b);
    assert_eq!(
        s.list_subdbs(0, 10)
            .iter()
            .map(|x| x.id)
            .collect::<Vec<_>>(),
        vec![b, c]
    );
    assert_eq!(s.list_subdbs(c, 10).len(), 1);
    assert_eq!(s.totals().live_subdbs, 2);
    assert_eq!(s.delete_subdb(None, a), Err(DeleteSubDbError::UnknownSubDb));
}

#[test]
fn put_get_has_delete_and_accounting() {
    let mut s = store();
    let id = s.create_subdb(None, None, b"").unwrap();
    let out = s.put(None, id, b"k1", b"v1").unwrap();
    assert_eq!(out, PutOutcome::default());
    let out = s.put(None, id, b"k1", b"value-2").unwrap();
    assert!(out.replaced);
    assert_eq!(s.get(id, b"k1").unwrap().unwrap(), b"value-2");
    assert!(s.has(id, b"k1").unwrap());
    assert!(!s.has(id, b"k2").unwrap());
    assert_eq!(s.get(id, b"k2").unwrap(), None);
    s.put(None, id, b"", b"").unwrap(); // empty key and value are allowed
    let st = s.stats(id).unwrap();
    assert_eq!((st.items, st.bytes), (2, 2 + 7));
    assert!(s.delete(None, id, b"k1").unwrap());
    assert!(!s.delete(None, id, b"k1").unwrap());
    let st = s.stats(id).unwrap();
    assert_eq!((st.items, st.bytes), (1, 0));
    assert_eq!((s.totals().items, s.totals().bytes), (1, 0));
}

#[test]
fn unknown_subdb_is_typed_everywhere() {
    let mut s = store();
    assert_eq!(s.put(None, 9, b"k", b"v"), Err(PutError::UnknownSubDb));
    assert_eq!(s.delete(None, 9, b"k"), Err(DeleteError::UnknownSubDb));
    assert_eq!(s.get(9, b"k"), Err(GetError::UnknownSubDb));
    assert_eq!(s.has(9, b"k"), Err(GetError::UnknownSubDb));
    assert_eq!(
        s.scan(9, &ScanArgs::default()),
        Err(ScanError::UnknownSubDb)
    );
    assert_eq!(
        s.export_chunk(9, 0, None, 1000).unwrap_err(),
        ExportError::UnknownSubDb
    );
    assert_eq!(s.delete_subdb(None, 9), Err(DeleteSubDbError::UnknownSubDb));
    assert_eq!(s.stats(9), None);
}

#[test]
fn limits_are_enforced_with_typed_errors() {
    let mut s = store();
    let id = s.create_subdb(None, None, b"").unwrap();
    let big_key = vec![1u8; MAX_KEY_BYTES + 1];
    let ok_key = vec![1u8; MAX_KEY_BYTES];
    let big_val = vec![0u8; MAX_VALUE_BYTES + 1];
    let kmax = MAX_KEY_BYTES as u64;
    let key_err = (MAX_KEY_BYTES as u64 + 1, kmax);
    assert_eq!(
        s.put(None, id, &big_key, b"v"),
        Err(PutError::KeyTooLarge {
            len: key_err.0,
            max: key_err.1
        })
    );
    assert_eq!(
        s.put(None, id, b"k", &big_val),
        Err(PutError::ValueTooLarge {
            len: MAX_VALUE_BYTES as u64 + 1,
            max: MAX_VALUE_BYTES as u64
        })
    );
    s.put(None, id, &ok_key, &vec![0u8; MAX_VALUE_BYTES])
        .unwrap();
    assert_eq!(
        s.get(id, &big_key),
        Err(GetError::KeyTooLarge {
            len: key_err.0,
            max: key_err.1
        })
    );
    assert_eq!(
        s.has(id, &big_key),
        Err(GetError::KeyTooLarge {
            len: key_err.0,
            max: key_err.1
        })
    );
    assert_eq!(
        s.delete(None, id, &big_key),
        Err(DeleteError::KeyTooLarge {
            len: key_err.0,
            max: key_err.1
        })
    );
    let bad_scan = ScanArgs {
        cursor: Some(ByteBuf::from(big_key.clone())),
        ..Default::default()
    };
    assert_eq!(
        s.scan(id, &bad_scan),
        Err(ScanError::KeyTooLarge {
            len: key_err.0,
            max: key_err.1
        })
    );
    let big_meta = vec![0u8; MAX_SUBDB_META_BYTES + 1];
    let meta_err = CreateSubDbError::MetaTooLarge {
        len: big_meta.len() as u64,
        max: MAX_SUBDB_META_BYTES as u64,
    };
    assert_eq!(s.create_subdb(None, None, &big_meta), Err(meta_err.clone()));
    assert_eq!(s.set_meta(id, &big_meta), Err(meta_err));
    assert_eq!(
        s.create_subdb(None, Some(0), b""),
        Err(CreateSubDbError::InvalidHardCap)
    );
    // Nothing above changed the store besides the one accepted put.
    assert_eq!(s.totals().items, 1);
    assert_eq!(s.totals().live_subdbs, 1);
}

#[test]
fn hard_cap_evicts_smallest_in_same_operation() {
    let mut s = store();
    let id = s.create_subdb(None, Some(3), b"").unwrap();
    for k in [b"b", b"c", b"d"] {
        assert_eq!(s.put(None, id, k, b"x").unwrap().evicted, 0);
    }
    let out = s.put(None, id, b"e", b"x").unwrap();
    assert_eq!(out.evicted, 1);
    assert!(!s.has(id, b"b").unwrap());
    // A new smallest key is itself evicted.
    let out = s.put(None, id, b"a", b"x").unwrap();
    assert_eq!(out.evicted, 1);
    assert!(!s.has(id, b"a").unwrap());
    // Replacing does not evict.
    assert_eq!(
        s.put(None, id, b"c", b"yy").unwrap(),
        PutOutcome {
            replaced: true,
            evicted: 0
        }
    );
    let st = s.stats(id).unwrap();
    assert_eq!((st.items, st.bytes), (3, 1 + 2 + 1 + 1 + 1 + 1));
}

#[test]
fn op_id_applies_at_most_once() {
    let mut s = store();
    let id = s.create_subdb(None, None, b"").unwrap();
    let o1 = op(1);
    assert!(!s.put(ctx(&o1), id, b"k", b"v1").unwrap().replaced);
    s.put(None, id, b"k", b"v2").unwrap();
    // Retry: the first outcome comes back and nothing is applied again.
    assert!(!s.put(ctx(&o1), id, b"k", b"v1").unwrap().replaced);
    assert_eq!(s.get(id, b"k").unwrap().unwrap(), b"v2");
    // Same id, other arguments, or another caller: refused, nothing changes.
    assert_eq!(
        s.put(ctx(&o1), id, b"k", b"v3"),
        Err(PutError::OpIdConflict)
    );
    let other = Some(OpCtx {
        op_id: &o1,
        salt: b"mallory",
    });
    assert_eq!(s.put(other, id, b"k", b"v1"), Err(PutError::OpIdConflict));
    assert_eq!(s.delete(ctx(&o1), id, b"k"), Err(DeleteError::OpIdConflict));
    assert_eq!(s.get(id, b"k").unwrap().unwrap(), b"v2");
    // Deletes and SubDB operations dedup too.
    let o2 = op(2);
    assert!(s.delete(ctx(&o2), id, b"k").unwrap());
    s.put(None, id, b"k", b"again").unwrap();
    assert!(s.delete(ctx(&o2), id, b"k").unwrap());
    assert!(s.has(id, b"k").unwrap());
    let o3 = op(3);
    let c1 = s.create_subdb(ctx(&o3), None, b"m").unwrap();
    assert_eq!(s.create_subdb(ctx(&o3), None, b"m").unwrap(), c1);
    assert_eq!(
        s.create_subdb(ctx(&o3), Some(2), b"m"),
        Err(CreateSubDbError::OpIdConflict)
    );
    assert_eq!(s.totals().live_subdbs, 2);
    let o4 = op(4);
    s.delete_subdb(ctx(&o4), c1).unwrap();
    s.delete_subdb(ctx(&o4), c1).unwrap();
    assert_eq!(
        s.delete_subdb(ctx(&o4), id),
        Err(DeleteSubDbError::OpIdConflict)
    );
}

#[test]
fn invalid_op_ids_are_refused() {
    let mut s = store();
    let id = s.create_subdb(None, None, b"").unwrap();
    for len in [0usize, 15, 33] {
        let o = OpId::from(vec![7; len]);
        let l = len as u32;
        assert_eq!(
            s.put(ctx(&o), id, b"k", b"v"),
            Err(PutError::InvalidOpId { len: l })
        );
        assert_eq!(
            s.delete(ctx(&o), id, b"k"),
            Err(DeleteError::InvalidOpId { len: l })
        );
        assert_eq!(
            s.create_subdb(ctx(&o), None, b""),
            Err(CreateSubDbError::InvalidOpId { len: l })
        );
        assert_eq!(
            s.delete_subdb(ctx(&o), id),
            Err(DeleteSubDbError::InvalidOpId { len: l })
        );
    }
    assert_eq!(s.totals().items, 0);
    for len in [16usize, 32] {
        let o = OpId::from(vec![len as u8; len]);
        s.put(ctx(&o), id, &[len as u8], b"v").unwrap();
    }
}

#[test]
fn failed_operations_are_not_recorded() {
    let mut s = store();
    let id = s.create_subdb(None, None, b"").unwrap();
    assert!(s.set_frozen(id, true));
    let o = op(9);
    assert_eq!(s.put(ctx(&o), id, b"k", b"v"), Err(PutError::WritesPaused));
    assert_eq!(s.delete(ctx(&o), id, b"k"), Err(DeleteError::WritesPaused));
    assert_eq!(
        s.delete_subdb(None, id),
        Err(DeleteSubDbError::WritesPaused)
    );
    // Reads go on while frozen.
    assert_eq!(s.get(id, b"k").unwrap(), None);
    s.set_frozen(id, false);
    s.put(ctx(&o), id, b"k", b"v").unwrap();
    assert!(s.has(id, b"k").unwrap());
    assert!(!s.set_frozen(77, true));
}

#[test]
fn op_log_window_is_bounded_and_remembers_at_least_window() {
    let window = 10;
    let mut s = open(&VectorMemory::default(), Config { op_window: window }).unwrap();
    let id = s.create_subdb(None, None, b"").unwrap();
    let ids: Vec<OpId> = (0..100u8).map(op).collect();
    for (i, o) in ids.iter().enumerate() {
        s.put(ctx(o), id, &[i as u8], b"v").unwrap();
        assert!(s.totals().op_records <= 2 * window);
        // The last `window` ops are all still remembered.
        let from = (i + 1).saturating_sub(window as usize);
        for (j, old) in ids.iter().enumerate().take(i + 1).skip(from) {
            assert_eq!(
                s.put(ctx(old), id, &[j as u8], b"other"),
                Err(PutError::OpIdConflict),
                "op {j} forgotten after {i}"
            );
        }
    }
    // The oldest are forgotten: the same id applies afresh.
    assert!(s.put(ctx(&ids[0]), id, &[0], b"new").unwrap().replaced);
}

#[test]
fn scans_forward_reverse_with_cursors() {
    let mut s = store();
    let id = s.create_subdb(None, None, b"").unwrap();
    let other = s.create_subdb(None, None, b"").unwrap();
    for i in 0..10u8 {
        s.put(None, id, &[i], &[i]).unwrap();
        s.put(None, other, &[i], b"other").unwrap();
    }
    let all = s.scan(id, &ScanArgs::default()).unwrap();
    assert_eq!(keys(&all), (0..10u8).map(|i| vec![i]).collect::<Vec<_>>());
    assert_eq!(all.next, None);
    // Forward with cursor, range [2, 8).
    let mut args = ScanArgs {
        start: Some(ByteBuf::from(vec![2])),
        end: Some(ByteBuf::from(vec![8])),
        limit: Some(4),
        ..Default::default()
    };
    let p1 = s.scan(id, &args).unwrap();
    assert_eq!(keys(&p1), vec![vec![2], vec![3], vec![4], vec![5]]);
    args.cursor = p1.next.clone();
    let p2 = s.scan(id, &args).unwrap();
    assert_eq!(keys(&p2), vec![vec![6], vec![7]]);
    assert_eq!(p2.next, None);
    // Reverse.
    args.reverse = true;
    args.cursor = None;
    let r1 = s.scan(id, &args).unwrap();
    assert_eq!(keys(&r1), vec![vec![7], vec![6], vec![5], vec![4]]);
    args.cursor = r1.next.clone();
    let r2 = s.scan(id, &args).unwrap();
    assert_eq!(keys(&r2), vec![vec![3], vec![2]]);
    assert_eq!(r2.next, None);
    // Exactly `limit` items left: no cursor.
    let exact = ScanArgs {
        limit: Some(10),
        ..Default::default()
    };
    assert_eq!(s.scan(id, &exact).unwrap().next, None);
    // Byte budget: a page always holds one item, then stops at max_bytes.
    let tight = ScanArgs {
        max_bytes: Some(1),
        ..Default::default()
    };
    let p = s.scan(id, &tight).unwrap();
    assert_eq!(p.entries.len(), 1);
    assert_eq!(p.next, Some(ByteBuf::from(vec![0])));
}

#[test]
fn scan_argument_errors() {
    let mut s = store();
    let id = s.create_subdb(None, None, b"").unwrap();
    s.put(None, id, b"m", b"").unwrap();
    let b = |v: &[u8]| Some(ByteBuf::from(v.to_vec()));
    let cases = [
        (
            ScanArgs {
                limit: Some(0),
                ..Default::default()
            },
            ScanError::ZeroLimit,
        ),
        (
            ScanArgs {
                max_bytes: Some(0),
                ..Default::default()
            },
            ScanError::ZeroLimit,
        ),
        (
            ScanArgs {
                limit: Some(MAX_SCAN_ITEMS + 1),
                ..Default::default()
            },
            ScanError::LimitTooLarge {
                requested: MAX_SCAN_ITEMS + 1,
                max: MAX_SCAN_ITEMS,
            },
        ),
        (
            ScanArgs {
                start: b(b"z"),
                end: b(b"a"),
                ..Default::default()
            },
            ScanError::InvalidRange,
        ),
        (
            ScanArgs {
                start: b(b"c"),
                cursor: b(b"a"),
                ..Default::default()
            },
            ScanError::InvalidCursor,
        ),
        (
            ScanArgs {
                end: b(b"c"),
                cursor: b(b"c"),
                ..Default::default()
            },
            ScanError::InvalidCursor,
        ),
    ];
    for (args, err) in cases {
        assert_eq!(s.scan(id, &args), Err(err), "{args:?}");
    }
    let empty = ScanArgs {
        start: b(b"c"),
        end: b(b"c"),
        ..Default::default()
    };
    assert!(s.scan(id, &empty).unwrap().entries.is_empty());
}

#[test]
fn scan_pages_fit_in_a_reply() {
    let mut s = store();
    let id = s.create_subdb(None, None, b"").unwrap();
    let big = vec![0u8; MAX_VALUE_BYTES];
    for i in 0..5u8 {
        s.put(None, id, &[i], &big).unwrap();
    }
    let mut args = ScanArgs {
        limit: Some(MAX_SCAN_ITEMS),
        ..Default::default()
    };
    let mut pages = 0;
    loop {
        let p = s.scan(id, &args).unwrap();
        let bytes: usize = p
            .entries
            .iter()
            .map(|e| e.key.len() + e.value.len() + ITEM_OVERHEAD_BYTES)
            .sum();
        assert!(bytes <= REPLY_BUDGET_BYTES);
        let encoded = candid::encode_one(&p).unwrap().len();
        assert!(encoded < MAX_MESSAGE_BYTES, "{encoded}");
        pages += 1;
        match p.next {
            Some(c) => args.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 5);
}

pub(crate) fn fill(s: &mut Store<Mem>, id: SubDbId, n: u32, vlen: usize) {
    for i in 0..n {
        s.put(None, id, &i.to_be_bytes(), &vec![i as u8; vlen])
            .unwrap();
    }
}

fn export_all(s: &mut Store<Mem>, id: SubDbId, budget: usize) -> Vec<Chunk> {
    let mut chunks = vec![];
    let mut token = None;
    loop {
        let (c, next) = s
            .export_chunk(id, chunks.len() as u64, token.as_deref(), budget)
            .unwrap();
        chunks.push(c);
        match next {
            Some(t) => token = Some(t),
            None => return chunks,
        }
    }
}

#[test]
fn export_import_round_trip_in_budgeted_chunks() {
    let mut src = store();
    let id = src.create_subdb(None, Some(1000), b"acl").unwrap();
    fill(&mut src, id, 300, 100);
    let o = op(5);
    src.put(ctx(&o), id, b"zz", b"last").unwrap();
    let budget = 4096;
    let chunks = export_all(&mut src, id, budget);
    assert!(chunks.len() > 5);
    for c in &chunks {
        assert!(c.budget_bytes() <= budget, "{}", c.budget_bytes());
    }
    assert_eq!(chunks.last().unwrap().ops.len(), 1);
    let h = chunks[0].header.clone().unwrap();
    assert_eq!(
        (h.items, h.hard_cap, h.meta.to_vec()),
        (301, Some(1000), b"acl".to_vec())
    );

    let mut dst = store();
    dst.create_subdb(None, None, b"").unwrap(); // ids differ between stores
    let t = dst.begin_import();
    assert_eq!(dst.status(t), SubDbStatus::Importing);
    assert_eq!(dst.get(t, b"zz"), Err(GetError::UnknownSubDb));
    assert_eq!(
        dst.import_chunk(t, &chunks[1]),
        Err(ImportError::ChunkOutOfOrder {
            expected: 0,
            got: 1
        })
    );
    for c in &chunks {
        dst.import_chunk(t, c).unwrap();
        dst.import_chunk(t, c).unwrap(); // applied twice: no change
    }
    dst.import_chunk(t, &chunks[0]).unwrap();
    let st = dst.finish_import(t).unwrap();
    assert_eq!(st.items, 301);
    assert_eq!(st.bytes, src.stats(id).unwrap().bytes);
    assert_eq!(st.hard_cap, Some(1000));
    assert_eq!(dst.meta(t).unwrap(), b"acl");
    assert_eq!(dst.finish_import(t).unwrap(), st);
    // After finishing, a repeat of an applied chunk is accepted and changes nothing; a new
    // chunk is refused.
    dst.import_chunk(t, &chunks[0]).unwrap();
    assert_eq!(dst.stats(t).unwrap(), st);
    let new = Chunk {
        seq: chunks.len() as u64,
        ..Chunk::default()
    };
    assert_eq!(dst.import_chunk(t, &new), Err(ImportError::AlreadyFinished));
    let all = |s: &Store<Mem>, id| {
        s.scan(
            id,
            &ScanArgs {
                limit: Some(MAX_SCAN_ITEMS),
                ..Default::default()
            },
        )
        .unwrap()
        .entries
    };
    assert_eq!(all(&src, id), all(&dst, t));
    // The op record moved: a retry at the new home returns the first outcome.
    assert_eq!(
        dst.put(ctx(&o), t, b"zz", b"last").unwrap(),
        PutOutcome::default()
    );
    assert_eq!(
        dst.put(ctx(&o), t, b"zz", b"x"),
        Err(PutError::OpIdConflict)
    );
}

#[test]
fn import_errors_and_abort() {
    let mut s = store();
    assert_eq!(
        s.import_chunk(3, &Chunk::default()),
        Err(ImportError::UnknownImport)
    );
    assert_eq!(s.finish_import(3), Err(ImportError::UnknownImport));
    let t = s.begin_import();
    let bad_key = Chunk {
        puts: vec![Entry {
            key: ByteBuf::from(vec![0; MAX_KEY_BYTES + 1]),
            value: ByteBuf::new(),
        }],
        ..Default::default()
    };
    assert!(matches!(
        s.import_chunk(t, &bad_key),
        Err(ImportError::KeyTooLarge { .. })
    ));
    let bad_val = Chunk {
        puts: vec![Entry {
            key: ByteBuf::new(),
            value: ByteBuf::from(vec![0; MAX_VALUE_BYTES + 1]),
        }],
        ..Default::default()
    };
    assert!(matches!(
        s.import_chunk(t, &bad_val),
        Err(ImportError::ValueTooLarge { .. })
    ));
    let bad_meta = Chunk {
        header: Some(ChunkHeader {
            meta: ByteBuf::from(vec![0; MAX_SUBDB_META_BYTES + 1]),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(matches!(
        s.import_chunk(t, &bad_meta),
        Err(ImportError::MetaTooLarge { .. })
    ));
    assert_eq!(s.totals().items, 0);
    let good = Chunk {
        puts: vec![Entry {
            key: ByteBuf::from(b"k".to_vec()),
            value: ByteBuf::from(b"v".to_vec()),
        }],
        ..Default::default()
    };
    s.import_chunk(t, &good).unwrap();
    assert_eq!(s.totals().items, 1);
    s.abort_import(t).unwrap();
    assert_eq!(s.totals().items, 0);
    assert_eq!(s.abort_import(t), Err(ImportError::UnknownImport));
    let id = s.create_subdb(None, None, b"").unwrap();
    assert_eq!(s.abort_import(id), Err(ImportError::AlreadyFinished));
    // A finished import whose writes were never resumed (unrouted) can still be abandoned;
    // once resumed it is an ordinary SubDB.
    let t = s.begin_import();
    s.finish_import(t).unwrap();
    s.abort_import(t).unwrap();
    assert!(!s.exists(t));
    let t = s.begin_import();
    s.finish_import(t).unwrap();
    assert!(s.resume_writes(t));
    assert_eq!(s.abort_import(t), Err(ImportError::AlreadyFinished));
    assert_eq!(
        s.export_chunk(id, 0, Some(&[9, 9]), MIN_CHUNK_BUDGET_BYTES)
            .unwrap_err(),
        ExportError::InvalidToken
    );
}

#[test]
fn deleted_subdb_memory_is_reclaimed_and_reused() {
    let raw = VectorMemory::default();
    let mm = MemoryManager::init_with_bucket_size(raw.clone(), 1);
    let mut s = Store::init(|id| mm.get(id), Config::default()).unwrap();
    let n = (PURGE_BATCH * 3) as u32;
    let id = s.create_subdb(None, None, b"").unwrap();
    fill(&mut s, id, n, 200);
    let data_pages = mm.get(memory::DATA).size();
    s.delete_subdb(None, id).unwrap();
    let t = s.totals();
    assert_eq!(t.purging_items, n as u64 - PURGE_BATCH as u64);
    assert_eq!(t.items, t.purging_items);
    assert_eq!(s.purge_step(PURGE_BATCH), n as u64 - 2 * PURGE_BATCH as u64);
    assert_eq!(s.purge_step(usize::MAX), 0);
    assert_eq!((s.totals().items, s.totals().bytes), (0, 0));
    // Refilling the same amount reuses the freed pages.
    let id2 = s.create_subdb(None, None, b"").unwrap();
    fill(&mut s, id2, n, 200);
    assert_eq!(mm.get(memory::DATA).size(), data_pages);
    s.release(id2);
    assert!(!s.exists(id2));
}

/// `purge_step` visits only the SubDBs marked for reclaiming: with many SubDB ids handed out
/// (live and long gone), the mark set holds exactly the ones still being reclaimed, oldest
/// first, and is empty once they are.
#[test]
fn purge_visits_only_marked_subdbs() {
    let mut s = store();
    let ids: Vec<SubDbId> = (0..2_000)
        .map(|_| s.create_subdb(None, None, b"").unwrap())
        .collect();
    // Small SubDBs are reclaimed within their delete: never marked for later.
    for id in &ids[..1_500] {
        fill(&mut s, *id, 3, 8);
        s.delete_subdb(None, *id).unwrap();
    }
    assert_eq!(s.purging.len(), 0);
    assert_eq!(s.purge_step(PURGE_BATCH), 0);
    // Two large ones stay marked until their items are gone.
    let (a, b) = (ids[1_700], ids[1_600]);
    for id in [a, b] {
        fill(&mut s, id, (PURGE_BATCH + 5) as u32, 8);
        s.delete_subdb(None, id).unwrap();
    }
    assert_eq!(s.purging.keys().collect::<Vec<_>>(), vec![b, a]);
    // The lower id is reclaimed first, then the budget goes on to the next.
    assert_eq!(s.purge_step(7), 3);
    assert_eq!(s.purging.keys().collect::<Vec<_>>(), vec![a]);
    assert_eq!(s.purge_step(7), 0);
    assert_eq!(s.purging.len(), 0);
    assert_eq!(s.totals().items, 0);
    assert_eq!(s.purge_step(usize::MAX), 0);
}

/// A store written before the mark set existed (a SubDB half reclaimed, nothing marked)
/// marks it at init, so its items are still reclaimed.
#[test]
fn stores_without_marks_are_backfilled_at_init() {
    let raw = VectorMemory::default();
    let id;
    {
        let mut s = open(&raw, Config::default()).unwrap();
        id = s.create_subdb(None, None, b"").unwrap();
        fill(&mut s, id, (PURGE_BATCH + 10) as u32, 1);
        s.delete_subdb(None, id).unwrap();
        // What the previous layout left behind: the slot says Purging, no region marks it.
        s.purging.remove(&id);
        assert_eq!(s.purge_step(usize::MAX), 10, "unmarked: not visited");
    }
    let mut s = open(&raw, Config::default()).unwrap();
    assert_eq!(s.purging.keys().collect::<Vec<_>>(), vec![id]);
    assert_eq!(s.purge_step(usize::MAX), 0);
    assert_eq!((s.totals().items, s.purging.len()), (0, 0));
}

#[test]
fn reopening_keeps_everything_and_refuses_foreign_layouts() {
    let raw = VectorMemory::default();
    {
        let mut s = open(&raw, Config { op_window: 7 }).unwrap();
        let id = s.create_subdb(None, Some(50), b"m").unwrap();
        fill(&mut s, id, 100, 10);
        let gone = s.create_subdb(None, None, b"").unwrap();
        fill(&mut s, gone, (PURGE_BATCH + 10) as u32, 1);
        s.delete_subdb(None, gone).unwrap();
        s.put(ctx(&op(1)), id, b"x", b"y").unwrap();
    }
    let before_totals;
    {
        let mut s = open(&raw, Config::default()).unwrap();
        before_totals = s.totals();
        assert_eq!(before_totals.purging_items, 10);
        assert_eq!(s.stats(0).unwrap().items, 50);
        assert_eq!(
            s.put(ctx(&op(1)), 0, b"x", b"z"),
            Err(PutError::OpIdConflict)
        );
        s.purge_step(100);
    }
    let s = open(&raw, Config::default()).unwrap();
    assert_eq!(s.totals().purging_items, 0);
    assert_eq!(s.totals().items, before_totals.items - 10);

    // A foreign version or magic is refused.
    let mm = MemoryManager::init_with_bucket_size(raw.clone(), 1);
    let hdr = mm.get(memory::STORE_HEADER);
    let mut cell = Cell::init(hdr, Header::new(1));
    let mut h = *cell.get();
    h.version = 3;
    cell.set(h);
    assert_eq!(
        open(&raw, Config::default()).err(),
        Some(InitError::UnsupportedVersion {
            found: 3,
            supported: 2
        })
    );
    h.magic = *b"NOPE";
    cell.set(h);
    assert_eq!(
        open(&raw, Config::default()).err(),
        Some(InitError::BadMagic { found: *b"NOPE" })
    );
    assert_eq!(
        open(&VectorMemory::default(), Config { op_window: 0 }).err(),
        Some(InitError::ZeroOpWindow)
    );
}

/// Copies `id` from `src` to a new import in `dst` while `write` mutates the source between
/// chunks, then ships deltas and a frozen final delta. Returns the target id.
pub(crate) fn live_move(
    src: &mut Store<Mem>,
    dst: &mut Store<Mem>,
    id: SubDbId,
    budget: usize,
    mut write: impl FnMut(&mut Store<Mem>, usize),
) -> SubDbId {
    src.begin_export(id).unwrap();
    let t = dst.begin_import();
    let (mut seq, mut token, mut step) = (0, None, 0);
    loop {
        let (c, next) = src.export_chunk(id, seq, token.as_deref(), budget).unwrap();
        dst.import_chunk(t, &c).unwrap();
        seq += 1;
        write(src, step);
        step += 1;
        match next {
            Some(n) => token = Some(n),
            None => break,
        }
    }
    let mut ack = 0;
    for freeze in [false, false, true] {
        loop {
            let d = src
                .export_delta(id, seq, ack, budget, freeze, None)
                .unwrap();
            dst.import_chunk(t, &d.chunk).unwrap();
            seq += 1;
            ack = d.version;
            if !freeze {
                write(src, step);
                step += 1;
            }
            if !d.more {
                break;
            }
        }
    }
    assert!(src.is_frozen(id));
    dst.finish_import(t).unwrap();
    t
}

pub(crate) fn contents(s: &Store<Mem>, id: SubDbId) -> Vec<(Vec<u8>, Vec<u8>)> {
    let args = ScanArgs {
        limit: Some(MAX_SCAN_ITEMS),
        ..Default::default()
    };
    s.scan(id, &args)
        .unwrap()
        .entries
        .into_iter()
        .map(|e| (e.key.to_vec(), e.value.to_vec()))
        .collect()
}

#[test]
fn live_move_ships_changes_made_during_the_copy() {
    let mut src = store();
    let mut dst = store();
    let id = src.create_subdb(None, None, b"m").unwrap();
    fill(&mut src, id, 200, 50);
    let retried = op(77);
    let t = live_move(&mut src, &mut dst, id, 2_000, |s, step| {
        let k = ((step * 37) % 220) as u32; // behind and ahead of the copy, and new keys
        s.put(None, id, &k.to_be_bytes(), format!("v{step}").as_bytes())
            .unwrap();
        s.delete(None, id, &(((step * 53) % 200) as u32).to_be_bytes())
            .unwrap();
        if step == 3 {
            s.put(ctx(&retried), id, b"op", b"x").unwrap();
        }
    });
    assert_eq!(contents(&src, id), contents(&dst, t));
    let (a, b) = (src.stats(id).unwrap(), dst.stats(t).unwrap());
    assert_eq!((a.items, a.bytes), (b.items, b.bytes));
    // The op recorded during the copy came along.
    assert_eq!(
        dst.put(ctx(&retried), t, b"op", b"x").unwrap(),
        PutOutcome::default()
    );
    // Frozen: writes refused at the source, reads served.
    assert_eq!(
        src.put(None, id, b"late", b"x"),
        Err(PutError::WritesPaused)
    );
    assert!(src.get(id, b"op").unwrap().is_some());
    // Releasing drops the data and every trace of the tracking.
    assert!(src.release(id));
    assert_eq!(src.purge_step(usize::MAX), 0);
    assert_eq!(src.pending_changes(id), 0);
}

#[test]
fn delta_is_forgotten_only_when_acknowledged() {
    let mut s = store();
    let id = s.create_subdb(None, None, b"").unwrap();
    fill(&mut s, id, 10, 4);
    s.begin_export(id).unwrap();
    s.begin_export(id).unwrap(); // idempotent
    let (_, next) = s.export_chunk(id, 0, None, 1 << 20).unwrap();
    assert_eq!(next, None);
    s.put(None, id, &1u32.to_be_bytes(), b"new").unwrap();
    s.delete(None, id, &2u32.to_be_bytes()).unwrap();
    s.put(None, id, &1u32.to_be_bytes(), b"newer").unwrap(); // same key: one change
    assert_eq!(s.pending_changes(id), 2);
    let d1 = s.export_delta(id, 1, 0, 1 << 20, false, None).unwrap();
    assert_eq!(
        d1.chunk.deletes,
        vec![ByteBuf::from(2u32.to_be_bytes().to_vec())]
    );
    assert_eq!(d1.chunk.puts[0].value.as_slice(), b"newer");
    assert!(!d1.more);
    // Lost in transit: without the ack the same changes come again.
    let again = s.export_delta(id, 1, 0, 1 << 20, false, None).unwrap();
    assert_eq!(again.chunk, d1.chunk);
    // Acknowledged: gone, unless changed again after the export.
    s.put(None, id, &2u32.to_be_bytes(), b"back").unwrap();
    let d2 = s
        .export_delta(id, 2, d1.version, 1 << 20, false, None)
        .unwrap();
    assert_eq!(d2.chunk.puts.len(), 1);
    assert!(d2.chunk.deletes.is_empty());
    assert_eq!(s.pending_changes(id), 1);
    // A budget splits the log in version order.
    for i in 0..5u32 {
        s.put(None, id, &i.to_be_bytes(), b"0123456789").unwrap();
    }
    let small = s.export_delta(id, 3, d2.version, 40, false, None).unwrap();
    assert!(small.more && small.chunk.puts.len() == 1);
    assert!(s.resume_writes(id));
    assert!(!s.is_exporting(id));
    assert_eq!(s.pending_changes(id), 0);
    assert_eq!(
        s.export_delta(id, 4, 0, 100, false, None).unwrap_err(),
        ExportError::NotExporting
    );
    assert_eq!(s.begin_export(99).unwrap_err(), ExportError::UnknownSubDb);
}

#[test]
fn untracked_subdbs_pay_nothing() {
    let mut s = store();
    let id = s.create_subdb(None, None, b"").unwrap();
    fill(&mut s, id, 50, 8);
    s.export_chunk(id, 0, None, 1 << 20).unwrap(); // a plain export tracks nothing
    s.put(ctx(&op(1)), id, b"k", b"v").unwrap();
    assert_eq!(s.pending_changes(id), 0);
    assert_eq!(s.header.get().dirty_version, 0);
}

/// Copies `id` of `src` into a new import of `dst` in one pass (no writes in between).
fn copy_all(src: &mut Store<Mem>, dst: &mut Store<Mem>, id: SubDbId) -> (SubDbId, u64) {
    src.begin_export(id).unwrap();
    let t = dst.begin_import();
    let (mut seq, mut token) = (0, None);
    loop {
        let (c, next) = src
            .export_chunk(id, seq, token.as_deref(), 100_000)
            .unwrap();
        dst.import_chunk(t, &c).unwrap();
        seq += 1;
        match next {
            Some(n) => token = Some(n),
            None => return (t, seq),
        }
    }
}

#[test]
fn metadata_changed_during_a_move_arrives_with_the_cutover() {
    let (mut s, mut d) = (store(), store());
    let id = s.create_subdb(None, Some(5), b"old-acl").unwrap();
    s.put(None, id, b"a", b"1").unwrap();
    let (t, seq) = copy_all(&mut s, &mut d, id);
    s.set_meta(id, b"new-acl").unwrap();
    let last = s.export_delta(id, seq, 0, 100_000, true, None).unwrap();
    assert!(last.chunk.header.is_some());
    d.import_chunk(t, &last.chunk).unwrap();
    d.finish_import(t).unwrap();
    assert_eq!(d.meta(t).unwrap(), b"new-acl");
    assert_eq!(d.stats(t).unwrap().hard_cap, Some(5));
}

#[test]
fn importing_op_records_keeps_another_subdbs_record_of_the_same_id() {
    let (mut s, mut d) = (store(), store());
    let c = d.create_subdb(None, None, b"").unwrap();
    let (x, y) = (op(1), op(2));
    let alice = |o| {
        Some(OpCtx {
            op_id: o,
            salt: b"alice",
        })
    };
    d.put(alice(&x), c, b"k", b"v1").unwrap();
    d.put(alice(&y), c, b"k", b"v2").unwrap();
    // Another caller used the same op id on the SubDB that moves in.
    let id = s.create_subdb(None, None, b"").unwrap();
    let bob = Some(OpCtx {
        op_id: &x,
        salt: b"bob",
    });
    s.put(bob, id, b"z", b"1").unwrap();
    let (t, seq) = copy_all(&mut s, &mut d, id);
    let last = s.export_delta(id, seq, 0, 100_000, true, None).unwrap();
    d.import_chunk(t, &last.chunk).unwrap();
    d.finish_import(t).unwrap();
    // alice's retry still replays: v2 is not overwritten.
    assert!(!d.put(alice(&x), c, b"k", b"v1").unwrap().replaced);
    assert_eq!(d.get(c, b"k").unwrap().unwrap(), b"v2");
}

#[test]
fn imported_op_records_outlive_window_later_local_records() {
    let w = 10;
    let mut s = open(&VectorMemory::default(), Config { op_window: w }).unwrap();
    let mut d = open(&VectorMemory::default(), Config { op_window: w }).unwrap();
    let id = s.create_subdb(None, None, b"").unwrap();
    let mut n = 0u8;
    let mut put = |s: &mut Store<Mem>, k: &[u8], v: &[u8]| {
        n += 1;
        let o = op(n);
        s.put(ctx(&o), id, k, v).unwrap();
        o
    };
    for i in 0..20u8 {
        put(&mut s, &[i], b"old");
    }
    let newest: Vec<OpId> = (0..3u8).map(|i| put(&mut s, b"k", &[b'n', i])).collect();
    let (t, seq) = copy_all(&mut s, &mut d, id);
    for i in 0..7u8 {
        put(&mut s, &[100 + i], b"during");
    }
    put(&mut s, b"k", b"latest");
    let last = s.export_delta(id, seq, 0, 100_000, true, None).unwrap();
    d.import_chunk(t, &last.chunk).unwrap();
    d.finish_import(t).unwrap();
    // The retry of the newest pre-move op replays at the new home, as at the old one.
    let r = d.put(ctx(&newest[2]), t, b"k", &[b'n', 2]).unwrap();
    assert!(r.replaced);
    assert_eq!(d.get(t, b"k").unwrap().unwrap(), b"latest");
    // Every imported record survives `w` later local records of the target.
    let local = d.create_subdb(None, None, b"").unwrap();
    for i in 0..w as u8 {
        d.put(ctx(&OpId::from(vec![200 - i; 20])), local, &[i], b"x")
            .unwrap();
    }
    assert_eq!(
        d.put(ctx(&newest[2]), t, b"k", b"other"),
        Err(PutError::OpIdConflict)
    );
}

#[test]
fn malformed_op_records_in_a_chunk_are_refused() {
    let mut s = store();
    let t = s.begin_import();
    for (op_id, record) in [
        (vec![1; 16], vec![0; 3]),
        (vec![1; 40], vec![0; 24]),
        (vec![1; 16], vec![9; 24]),
    ] {
        let c = Chunk {
            ops: vec![OpEntry {
                op_id: ByteBuf::from(op_id),
                record: ByteBuf::from(record),
            }],
            ..Default::default()
        };
        assert_eq!(s.import_chunk(t, &c), Err(ImportError::MalformedOpRecord));
    }
}

#[test]
fn releasing_reclaims_logged_changes_in_bounded_steps() {
    let mut s = store();
    let id = s.create_subdb(None, None, b"").unwrap();
    fill(&mut s, id, 10, 1);
    s.begin_export(id).unwrap();
    s.export_chunk(id, 0, None, 1 << 20).unwrap();
    let n = 3 * PURGE_BATCH as u32;
    for i in 0..n {
        s.put(None, id, &(100 + i).to_be_bytes(), b"v").unwrap();
    }
    assert_eq!(s.pending_changes(id), n as u64);
    s.set_frozen(id, true);
    assert!(s.release(id));
    // The release itself did at most one batch of work; the timer reclaims the rest.
    assert!(s.pending_changes(id) >= n as u64 - PURGE_BATCH as u64);
    while s.purge_step(PURGE_BATCH) > 0 || s.pending_changes(id) > 0 {}
    assert_eq!(s.pending_changes(id), 0);
    assert_eq!(s.totals().items, 0);
}

/// The change log of an exporting SubDB is bounded: past `MAX_EXPORT_CHANGES` it stops
/// logging, the export answers `ChangeLogFull` (the index then calls the move off), writes go
/// on, and `resume_writes` drops the log in one bounded step; a later export starts afresh.
#[test]
fn the_change_log_is_bounded_and_overflow_calls_the_export_off() {
    let mut s = store();
    let id = s.create_subdb(None, None, b"").unwrap();
    s.put(None, id, b"a", b"v").unwrap();
    s.begin_export(id).unwrap();
    let (_, next) = s.export_chunk(id, 0, None, 1 << 20).unwrap();
    assert!(next.is_none(), "one chunk copies everything");
    for i in 0..MAX_EXPORT_CHANGES {
        s.put(None, id, &i.to_be_bytes(), b"x").unwrap();
    }
    assert_eq!(s.pending_changes(id), MAX_EXPORT_CHANGES);
    // Rewriting a logged key does not grow the log; a new key overflows it.
    s.put(None, id, &0u64.to_be_bytes(), b"y").unwrap();
    assert!(s.export_delta(id, 1, 0, 1 << 20, false, None).is_ok());
    s.put(None, id, b"one too many", b"x").unwrap();
    let full = ExportError::ChangeLogFull {
        max: MAX_EXPORT_CHANGES,
    };
    assert_eq!(
        s.export_delta(id, 1, 0, 1 << 20, false, None).unwrap_err(),
        full
    );
    assert_eq!(s.export_chunk(id, 1, None, 1 << 20).unwrap_err(), full);
    // Writes go on.
    s.put(None, id, b"later", b"x").unwrap();
    assert!(s.resume_writes(id));
    assert_eq!(s.pending_changes(id), 0);
    assert!(!s.is_exporting(id));
    s.begin_export(id).unwrap();
    assert!(s.export_chunk(id, 0, None, 1 << 20).is_ok());
}

/// The size index answers what sorting every live SubDB by bytes would, through puts,
/// overwrites, deletes, evictions, SubDB deletes and reopening.
mod largest {
    use super::*;
    use flotilla_types::SubDbStats;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Create { cap: Option<u64> },
        Put { subdb: u8, key: u8, len: u16 },
        Delete { subdb: u8, key: u8 },
        DeleteSubDb { subdb: u8 },
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            1 => prop::option::of(1u64..4).prop_map(|cap| Op::Create { cap }),
            8 => (any::<u8>(), 0u8..16, 0u16..300)
                .prop_map(|(subdb, key, len)| Op::Put { subdb, key, len }),
            2 => (any::<u8>(), 0u8..16).prop_map(|(subdb, key)| Op::Delete { subdb, key }),
            1 => any::<u8>().prop_map(|subdb| Op::DeleteSubDb { subdb }),
            1 => Just(Op::Reopen),
        ]
    }

    fn brute(s: &Store<Mem>, limit: usize) -> Vec<SubDbStats> {
        let mut all = s.list_subdbs(0, usize::MAX);
        all.sort_by_key(|s| std::cmp::Reverse((s.bytes, s.id)));
        all.truncate(limit);
        all
    }

    proptest! {
        #[test]
        fn largest_subdbs_match_a_sort(ops in prop::collection::vec(op(), 1..80)) {
            let raw = VectorMemory::default();
            let mut s = open(&raw, Config::default()).unwrap();
            let mut ids: Vec<SubDbId> = vec![];
            for o in ops {
                let pick = |n: u8| (!ids.is_empty()).then(|| ids[n as usize % ids.len()]);
                match o {
                    Op::Create { cap } => ids.push(s.create_subdb(None, cap, b"").unwrap()),
                    Op::Put { subdb, key, len } => {
                        if let Some(id) = pick(subdb) {
                            let _ = s.put(None, id, &[key], &vec![1; len as usize]);
                        }
                    }
                    Op::Delete { subdb, key } => {
                        if let Some(id) = pick(subdb) {
                            let _ = s.delete(None, id, &[key]);
                        }
                    }
                    Op::DeleteSubDb { subdb } => {
                        if let Some(id) = pick(subdb) {
                            let _ = s.delete_subdb(None, id);
                        }
                    }
                    Op::Reopen => {
                        drop(s);
                        s = open(&raw, Config::default()).unwrap();
                    }
                }
                for limit in [0, 1, 3, 100] {
                    prop_assert_eq!(s.largest_subdbs(limit), brute(&s, limit));
                }
            }
        }
    }
}

#[test]
fn a_version_1_op_log_migrates_and_its_sha256_records_still_answer() {
    use oplog::{ArgsHasher, OpKey, OpRecord};
    let raw = VectorMemory::default();
    let id = {
        let mut s = open(&raw, Config { op_window: 5 }).unwrap();
        s.create_subdb(None, None, b"m").unwrap()
    };
    // What version 1 left: a put under op 1 (SHA-256 argument hash) in generation B, the
    // current one, holding one local record.
    let mm = MemoryManager::init_with_bucket_size(raw.clone(), 1);
    let hash = ArgsHasher::new(KIND_PUT, b"alice")
        .bytes(b"k")
        .bytes(b"v")
        .finish();
    let mut rec = id.to_le_bytes().to_vec();
    rec.extend_from_slice(&hash);
    rec.extend_from_slice(&[3, 0, 0, 0, 0, 0]); // Put { replaced: false, evicted: 0 }
    let mut b: BTreeMap<OpKey, OpRecord, Mem> = BTreeMap::init(mm.get(memory::OPS_GEN_B));
    b.insert(OpKey(vec![1; 16]), OpRecord(rec));
    let mut cell = Cell::init(mm.get(memory::STORE_HEADER), Header::new(1));
    let mut h = *cell.get();
    h.version = layout::LAYOUT_VERSION_V1;
    h.op_gen = 1;
    h.op_epochs = [1, 0]; // version 1's op_local = 1
    cell.set(h);
    drop((b, cell, mm));

    let mut s = open(&raw, Config::default()).unwrap();
    assert_eq!(s.header.get().version, LAYOUT_VERSION);
    assert_eq!(s.totals().op_records, 1);
    // The retry replays (nothing is written), other arguments conflict.
    assert_eq!(
        s.put(ctx(&op(1)), id, b"k", b"v"),
        Ok(PutOutcome {
            replaced: false,
            evicted: 0
        })
    );
    assert_eq!(s.get(id, b"k"), Ok(None));
    assert_eq!(
        s.put(ctx(&op(1)), id, b"k", b"w"),
        Err(PutError::OpIdConflict)
    );
    // Version 1 counted one local record of window 5: four more fill generation B.
    for n in 2..6 {
        s.put(ctx(&op(n)), id, b"k", &[n]).unwrap();
    }
    assert_eq!(s.header.get().op_gen, 1);
    s.put(ctx(&op(6)), id, b"k", b"6").unwrap();
    assert_eq!(s.header.get().op_gen, 0);
    // Reopened (version 2 now), op 1 is still remembered and the new records too.
    drop(s);
    let mut s = open(&raw, Config::default()).unwrap();
    assert_eq!(s.totals().op_records, 6);
    assert_eq!(
        s.put(ctx(&op(1)), id, b"k", b"w"),
        Err(PutError::OpIdConflict)
    );
    assert_eq!(
        s.put(ctx(&op(6)), id, b"k", b"6"),
        Ok(PutOutcome {
            replaced: true,
            evicted: 0
        })
    );
}
