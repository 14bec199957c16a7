use super::*;
use flotilla_store::{SubDbStatus, Totals, PURGE_BATCH};
use flotilla_types::{Chunk, OpId, ScanArgs};
use ic_stable_structures::memory_manager::{MemoryManager, VirtualMemory};
use ic_stable_structures::VectorMemory;

pub(crate) type Mem = VirtualMemory<VectorMemory>;

pub(crate) const INDEX: Principal = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 7, 1, 1]);
pub(crate) const OTHER_CANISTER: Principal = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 9, 1, 1]);
pub(crate) const TARGET_PARTITION: Principal =
    Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 8, 1, 1]);
pub(crate) const OWNER: Principal = Principal::from_slice(&[0xA1; 29]);
pub(crate) const READER: Principal = Principal::from_slice(&[0xB2; 29]);
pub(crate) const WRITER: Principal = Principal::from_slice(&[0xC3; 29]);
pub(crate) const STRANGER: Principal = Principal::from_slice(&[0xD4; 29]);
pub(crate) const ANON: Principal = Principal::anonymous();

fn manager(raw: &VectorMemory) -> MemoryManager<VectorMemory> {
    MemoryManager::init_with_bucket_size(raw.clone(), 1)
}

pub(crate) fn install_on(raw: &VectorMemory) -> Partition<Mem> {
    let mm = manager(raw);
    Partition::install(
        |id| mm.get(id),
        &PartitionInit { index: INDEX },
        Config::default(),
    )
    .unwrap()
}

fn reopen(raw: &VectorMemory) -> Partition<Mem> {
    let mm = manager(raw);
    Partition::open(|id| mm.get(id)).unwrap()
}

pub(crate) fn op(n: u8) -> OpId {
    OpId::from(vec![n; 16])
}

pub(crate) fn access() -> Access {
    Access {
        owner: OWNER,
        readers: vec![READER],
        writers: vec![WRITER],
    }
}

pub(crate) fn create(p: &mut Partition<Mem>, op_n: u8, access: Access) -> SubDbId {
    p.create_subdb_local(
        INDEX,
        &CreateLocalArgs {
            op_id: op(op_n),
            access,
            hard_cap: None,
            max_bytes: None,
        },
    )
    .unwrap()
}

pub(crate) fn put_args(subdb: SubDbId, key: &[u8], value: &[u8], op_n: u8) -> PutArgs {
    PutArgs {
        subdb,
        key: ByteBuf::from(key.to_vec()),
        value: ByteBuf::from(value.to_vec()),
        op_id: op(op_n),
    }
}

pub(crate) fn del_args(subdb: SubDbId, key: &[u8], op_n: u8) -> DeleteArgs {
    DeleteArgs {
        subdb,
        key: ByteBuf::from(key.to_vec()),
        op_id: op(op_n),
    }
}

pub(crate) fn get_args(subdb: SubDbId, key: &[u8]) -> GetArgs {
    GetArgs {
        subdb,
        key: ByteBuf::from(key.to_vec()),
    }
}

pub(crate) fn scan_req(subdb: SubDbId) -> ScanRequest {
    ScanRequest {
        subdb,
        args: ScanArgs::default(),
    }
}

fn keys(page: &ScanPage) -> Vec<Vec<u8>> {
    page.entries.iter().map(|e| e.key.to_vec()).collect()
}

/// A partition holding one SubDB (OWNER; READER reads; WRITER writes) with items a, b, c.
pub(crate) struct Fixture {
    pub(crate) raw: VectorMemory,
    pub(crate) p: Partition<Mem>,
    pub(crate) s: SubDbId,
}

pub(crate) fn fixture() -> Fixture {
    let raw = VectorMemory::default();
    let mut p = install_on(&raw);
    let s = create(&mut p, 1, access());
    for (i, k) in [b"a", b"b", b"c"].into_iter().enumerate() {
        p.put(OWNER, &put_args(s, k, b"v", 10 + i as u8)).unwrap();
    }
    Fixture { raw, p, s }
}

/// Everything observable: the raw stable memory (every region, byte for byte) and the totals.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    memory: Vec<u8>,
    totals: Totals,
}

pub(crate) fn snapshot(f: &Fixture) -> Snapshot {
    Snapshot {
        memory: f.raw.borrow().clone(),
        totals: f.p.store().totals(),
    }
}

pub(crate) fn assert_unchanged(f: &Fixture, before: &Snapshot, what: &str) {
    let after = snapshot(f);
    assert_eq!(before.totals, after.totals, "{what}: totals changed");
    assert!(
        before.memory == after.memory,
        "{what}: stable memory changed"
    );
}

pub(crate) fn value(
    p: &Partition<Mem>,
    caller: Principal,
    s: SubDbId,
    k: &[u8],
) -> Option<Vec<u8>> {
    p.get(caller, &get_args(s, k)).unwrap().map(|v| v.to_vec())
}

// ---- lifecycle ----------------------------------------------------------------------------

#[test]
fn install_then_open_keeps_index_access_tombstones_and_imports() {
    let raw = VectorMemory::default();
    let (s, moved, imp) = {
        let mut p = install_on(&raw);
        assert_eq!(p.index(), INDEX);
        let s = create(&mut p, 1, access());
        p.put(WRITER, &put_args(s, b"k", b"v", 2)).unwrap();
        let moved = create(&mut p, 3, access());
        assert!(p.store.set_frozen(moved, true));
        let to = InnerKey {
            partition: TARGET_PARTITION,
            subdb: 41,
        };
        p.release(
            INDEX,
            &ReleaseArgs {
                subdb: moved,
                moved_to: to,
            },
        )
        .unwrap();
        let imp = p
            .begin_import(INDEX, &BeginImportArgs { op_id: op(4) })
            .unwrap();
        (s, moved, imp)
    };
    // An upgrade: the heap is gone, the memory stays.
    let mut p = reopen(&raw);
    assert_eq!(p.index(), INDEX);
    assert_eq!(p.access(s), Some(access()));
    assert_eq!(value(&p, READER, s, b"k"), Some(b"v".to_vec()));
    let to = InnerKey {
        partition: TARGET_PARTITION,
        subdb: 41,
    };
    assert_eq!(p.tombstone(moved), Some(to));
    assert_eq!(
        p.get(OWNER, &get_args(moved, b"k")),
        Err(GetError::Moved { to })
    );
    assert_eq!(
        p.begin_import(INDEX, &BeginImportArgs { op_id: op(4) }),
        Ok(imp)
    );
    // Op-id records survive too: the put retried after the upgrade returns its first result.
    assert_eq!(
        p.put(WRITER, &put_args(s, b"k", b"v", 2)),
        Ok(PutOutcome::default())
    );
    // Housekeeping still answers only the index.
    assert_eq!(
        p.stats(OTHER_CANISTER, &StatsArgs::default(), 0),
        Err(StatsError::NotAuthorized)
    );
    assert_eq!(
        p.stats(INDEX, &StatsArgs::default(), 0).unwrap().tombstones,
        1
    );
}

#[test]
fn install_and_open_refusals() {
    let raw = VectorMemory::default();
    let mm = manager(&raw);
    let empty = raw.borrow().clone(); // the memory manager's own header only
    assert_eq!(
        Partition::open(|id| mm.get(id)).err(),
        Some(PartitionInitError::NotInstalled)
    );
    assert_eq!(
        Partition::install(
            |id| mm.get(id),
            &PartitionInit { index: ANON },
            Config::default()
        )
        .err(),
        Some(PartitionInitError::AnonymousIndex)
    );
    assert!(*raw.borrow() == empty, "refusals write nothing");
    drop(install_on(&raw));
    let mm = manager(&raw);
    assert_eq!(
        Partition::install(
            |id| mm.get(id),
            &PartitionInit {
                index: OTHER_CANISTER
            },
            Config::default()
        )
        .err(),
        Some(PartitionInitError::AlreadyInstalled { index: INDEX })
    );
    assert!(Partition::open(|id| mm.get(id)).is_ok());
}

fn write_state(raw: &VectorMemory, bytes: Vec<u8>) {
    let mm = manager(raw);
    Cell::new(mm.get(PARTITION_STATE), RawState(bytes));
}

#[test]
fn unknown_state_versions_and_foreign_regions_are_refused() {
    let open = |raw: &VectorMemory| {
        let mm = manager(raw);
        Partition::open(|id| mm.get(id)).err()
    };
    let raw = VectorMemory::default();
    drop(install_on(&raw));
    let good = State { index: INDEX }.encode().0;

    let mut newer = good.clone();
    newer[4..6].copy_from_slice(&2u16.to_le_bytes());
    write_state(&raw, newer);
    assert_eq!(
        open(&raw),
        Some(PartitionInitError::UnsupportedVersion {
            found: 2,
            supported: 1
        })
    );

    let mut foreign = good.clone();
    foreign[..4].copy_from_slice(b"XXXX");
    write_state(&raw, foreign);
    assert_eq!(
        open(&raw),
        Some(PartitionInitError::BadMagic { found: *b"XXXX" })
    );

    for bad in [good[..5].to_vec(), good[..good.len() - 1].to_vec(), {
        let mut b = good.clone();
        b.push(0);
        b
    }] {
        write_state(&raw, bad);
        assert_eq!(open(&raw), Some(PartitionInitError::Corrupt));
    }

    // A region that is not a StableCell at all is reported, not overwritten.
    let raw = VectorMemory::default();
    let mm = manager(&raw);
    let m = mm.get(PARTITION_STATE);
    m.grow(1);
    m.write(0, b"junk");
    let before = raw.borrow().clone();
    assert_eq!(open(&raw), Some(PartitionInitError::Corrupt));
    assert!(*raw.borrow() == before);

    write_state(&raw, good);
    assert!(open(&raw).is_none());
}

#[test]
fn state_cell_layout_is_stable() {
    let raw = State { index: INDEX }.encode().0;
    let mut expected = b"FLPT".to_vec();
    expected.extend_from_slice(&[1, 0, 10, 0, 0, 0, 0, 0, 0, 0, 7, 1, 1]);
    assert_eq!(raw, expected);
}

// ---- the logic touches only its own memory and makes no calls ----------------------------

#[test]
fn partition_uses_only_its_named_regions() {
    let raw = VectorMemory::default();
    let mm = manager(&raw);
    let mut seen = Vec::new();
    let p = Partition::install(
        |id| {
            seen.push(id);
            mm.get(id)
        },
        &PartitionInit { index: INDEX },
        Config::default(),
    )
    .unwrap();
    drop(p);
    seen.sort();
    seen.dedup();
    use flotilla_store::memory::*;
    let expected = vec![
        STORE_HEADER,
        SUBDB_SLOTS,
        SUBDB_META,
        DATA,
        PARTITION_STATE,
        PARTITION_TOMBSTONES,
        PARTITION_IMPORTS,
        EXPORT_FRONTIER,
        DIRTY_KEYS,
        DIRTY_LOG,
        EXPORT_THROTTLE,
        PURGING,
        OPS_LOG_A,
        OPS_LOG_B,
        PARTITION_TOMB_ACCESS,
    ];
    assert_eq!(seen, expected);
}

#[test]
fn crate_cannot_make_calls() {
    // No dependency that could reach the IC system API: handlers can only touch the memories
    // the partition was opened on (the test above) and return values.
    let manifest = include_str!("../Cargo.toml");
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .expect("a [dependencies] section")
        .split("\n[")
        .next()
        .unwrap();
    let names: Vec<&str> = deps
        .lines()
        .filter_map(|l| l.split(['=', '.']).next())
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.starts_with('#'))
        .collect();
    assert_eq!(
        names,
        [
            "flotilla-types",
            "flotilla-store",
            "candid",
            "ic-stable-structures",
            "serde_bytes",
            "thiserror"
        ]
    );
    // And the dependencies themselves stay IO-free: flotilla-store has no IC dependency either.
    let store = include_str!("../../store/Cargo.toml");
    for forbidden in ["ic-cdk", "ic0", "ic-cdk-timers"] {
        assert!(!store.contains(forbidden), "{forbidden}");
        assert!(!manifest.contains(&format!("\n{forbidden}")), "{forbidden}");
    }
}

// ---- user endpoints -----------------------------------------------------------------------

#[test]
fn readers_read_writers_write_owner_does_everything() {
    let mut f = fixture();
    let s = f.s;
    for who in [OWNER, READER, WRITER] {
        assert_eq!(value(&f.p, who, s, b"a"), Some(b"v".to_vec()));
        assert_eq!(f.p.has(who, &get_args(s, b"b")), Ok(true));
        assert_eq!(f.p.has(who, &get_args(s, b"zz")), Ok(false));
        assert_eq!(
            keys(&f.p.scan(who, &scan_req(s)).unwrap()),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(f.p.subdb_stats(who, s).unwrap().items, 3);
    }
    assert_eq!(
        f.p.put(WRITER, &put_args(s, b"d", b"w", 20)),
        Ok(PutOutcome {
            replaced: false,
            evicted: 0
        })
    );
    assert_eq!(
        f.p.put(WRITER, &put_args(s, b"a", b"w", 21)),
        Ok(PutOutcome {
            replaced: true,
            evicted: 0
        })
    );
    assert_eq!(value(&f.p, READER, s, b"a"), Some(b"w".to_vec()));
    assert_eq!(f.p.delete(WRITER, &del_args(s, b"d", 22)), Ok(true));
    assert_eq!(f.p.delete(OWNER, &del_args(s, b"d", 23)), Ok(false));
    assert_eq!(
        f.p.subdb_stats(READER, s),
        Ok(SubDbStats {
            id: s,
            items: 3,
            bytes: 3 * 2,
            hard_cap: None
        })
    );
    // Reverse scan with a limit and a cursor goes through unchanged.
    let page =
        f.p.scan(
            READER,
            &ScanRequest {
                subdb: s,
                args: ScanArgs {
                    reverse: true,
                    limit: Some(2),
                    ..ScanArgs::default()
                },
            },
        )
        .unwrap();
    assert_eq!(keys(&page), vec![b"c".to_vec(), b"b".to_vec()]);
    assert_eq!(page.next.as_deref().map(|k| &k[..]), Some(&b"b"[..]));

    f.p.set_access(
        OWNER,
        &SetAccessArgs {
            subdb: s,
            readers: vec![],
            writers: vec![READER],
        },
    )
    .unwrap();
    assert_eq!(
        f.p.access(s),
        Some(Access {
            owner: OWNER,
            readers: vec![],
            writers: vec![READER],
        })
    );
    // READER was promoted, WRITER lost all access: it may not even learn the SubDB is there.
    f.p.put(READER, &put_args(s, b"e", b"x", 24)).unwrap();
    assert_eq!(
        f.p.get(WRITER, &get_args(s, b"e")),
        Err(GetError::UnknownSubDb)
    );

    f.p.delete_subdb(
        INDEX,
        &DeleteSubDbArgs {
            subdb: s,
            op_id: op(25),
        },
    )
    .unwrap();
    assert_eq!(
        f.p.get(OWNER, &get_args(s, b"a")),
        Err(GetError::UnknownSubDb)
    );
}

#[test]
fn store_errors_come_through_after_authorization() {
    let mut f = fixture();
    let s = f.s;
    let big = vec![0u8; flotilla_types::limits::MAX_KEY_BYTES + 1];
    assert!(matches!(
        f.p.put(WRITER, &put_args(s, &big, b"v", 30)),
        Err(PutError::KeyTooLarge { .. })
    ));
    assert!(matches!(
        f.p.get(READER, &get_args(s, &big)),
        Err(GetError::KeyTooLarge { .. })
    ));
    assert!(matches!(
        f.p.scan(
            READER,
            &ScanRequest {
                subdb: s,
                args: ScanArgs {
                    limit: Some(0),
                    ..ScanArgs::default()
                }
            }
        ),
        Err(ScanError::ZeroLimit)
    ));
    let short = PutArgs {
        op_id: OpId::from(vec![1; 3]),
        ..put_args(s, b"k", b"v", 0)
    };
    assert_eq!(
        f.p.put(WRITER, &short),
        Err(PutError::InvalidOpId { len: 3 })
    );
}

#[test]
fn public_read_through_anonymous_reader() {
    let mut f = fixture();
    let s = f.s;
    assert_eq!(
        f.p.get(ANON, &get_args(s, b"a")),
        Err(GetError::UnknownSubDb)
    );
    assert_eq!(
        f.p.get(STRANGER, &get_args(s, b"a")),
        Err(GetError::UnknownSubDb)
    );
    f.p.set_access(
        OWNER,
        &SetAccessArgs {
            subdb: s,
            readers: vec![ANON],
            writers: vec![WRITER],
        },
    )
    .unwrap();
    for who in [ANON, STRANGER, READER] {
        assert_eq!(value(&f.p, who, s, b"a"), Some(b"v".to_vec()));
        assert_eq!(f.p.has(who, &get_args(s, b"a")), Ok(true));
        assert_eq!(keys(&f.p.scan(who, &scan_req(s)).unwrap()).len(), 3);
        assert!(f.p.subdb_stats(who, s).is_ok());
    }
    // Public means readable, nothing more.
    let before = snapshot(&f);
    assert_eq!(
        f.p.put(ANON, &put_args(s, b"z", b"v", 40)),
        Err(PutError::NotAuthorized)
    );
    assert_eq!(
        f.p.put(STRANGER, &put_args(s, b"z", b"v", 41)),
        Err(PutError::NotAuthorized)
    );
    assert_unchanged(&f, &before, "writes to a public SubDB");
    // Anonymous can never be a writer.
    assert_eq!(
        f.p.set_access(
            OWNER,
            &SetAccessArgs {
                subdb: s,
                readers: vec![],
                writers: vec![ANON],
            }
        ),
        Err(SetAccessError::AnonymousWriter)
    );
    assert_unchanged(&f, &before, "anonymous writer");
}

#[test]
fn anonymous_owner_or_writer_grants_nothing() {
    let raw = VectorMemory::default();
    let mut p = install_on(&raw);
    let s = create(
        &mut p,
        1,
        Access {
            owner: ANON,
            readers: vec![],
            writers: vec![ANON],
        },
    );
    assert_eq!(
        p.put(ANON, &put_args(s, b"k", b"v", 2)),
        Err(PutError::UnknownSubDb)
    );
    assert_eq!(p.get(ANON, &get_args(s, b"k")), Err(GetError::UnknownSubDb));
    assert_eq!(
        p.set_access(
            ANON,
            &SetAccessArgs {
                subdb: s,
                readers: vec![],
                writers: vec![]
            }
        ),
        Err(SetAccessError::UnknownSubDb)
    );
    // The index can still delete it.
    p.delete_subdb(
        INDEX,
        &DeleteSubDbArgs {
            subdb: s,
            op_id: op(3),
        },
    )
    .unwrap();
}

#[test]
fn set_access_limits_and_pause() {
    let mut f = fixture();
    let s = f.s;
    let many = vec![STRANGER; MAX_ACCESS_PRINCIPALS + 1];
    let before = snapshot(&f);
    for (readers, writers) in [(many.clone(), vec![]), (vec![], many.clone())] {
        assert_eq!(
            f.p.set_access(
                OWNER,
                &SetAccessArgs {
                    subdb: s,
                    readers,
                    writers
                }
            ),
            Err(SetAccessError::TooManyPrincipals {
                len: MAX_ACCESS_PRINCIPALS as u64 + 1,
                max: MAX_ACCESS_PRINCIPALS as u64
            })
        );
    }
    assert_unchanged(&f, &before, "too many principals");
    // Exactly at the limit, with the longest principals, is fine.
    let full = vec![Principal::from_slice(&[0xEE; 29]); MAX_ACCESS_PRINCIPALS];
    f.p.set_access(
        OWNER,
        &SetAccessArgs {
            subdb: s,
            readers: full.clone(),
            writers: full.clone(),
        },
    )
    .unwrap();
    assert_eq!(f.p.access(s).unwrap().readers, full);
    // Frozen for a cutover: refused like a write.
    assert!(f.p.store.set_frozen(s, true));
    let before = snapshot(&f);
    assert_eq!(
        f.p.set_access(
            OWNER,
            &SetAccessArgs {
                subdb: s,
                readers: vec![],
                writers: vec![]
            }
        ),
        Err(SetAccessError::WritesPaused)
    );
    assert_unchanged(&f, &before, "set_access while frozen");
}

#[test]
fn delete_subdb_by_the_index_only() {
    let mut f = fixture();
    let s = f.s;
    let before = snapshot(&f);
    // Not even the owner: owners delete through the index, the one authority over a SubDB's
    // life (a delete behind its back would leave the directory routing to a dead SubDB).
    for who in [OWNER, WRITER, READER, STRANGER, ANON, OTHER_CANISTER] {
        assert_eq!(
            f.p.delete_subdb(
                who,
                &DeleteSubDbArgs {
                    subdb: s,
                    op_id: op(50),
                }
            ),
            Err(DeleteSubDbError::NotAuthorized),
            "{who}"
        );
    }
    assert_unchanged(&f, &before, "delete_subdb refused");
    let args = DeleteSubDbArgs {
        subdb: s,
        op_id: op(51),
    };
    assert_eq!(f.p.delete_subdb(INDEX, &args), Ok(()));
    assert_eq!(f.p.store().status(s), SubDbStatus::Absent);
    // A retry (the reply was lost) gets the first result although the SubDB is gone.
    assert_eq!(f.p.delete_subdb(INDEX, &args), Ok(()));
    assert_eq!(
        f.p.delete_subdb(OWNER, &args),
        Err(DeleteSubDbError::NotAuthorized)
    );
    assert_eq!(
        f.p.delete_subdb(
            INDEX,
            &DeleteSubDbArgs {
                subdb: s,
                op_id: op(52)
            }
        ),
        Err(DeleteSubDbError::UnknownSubDb)
    );
}

// ---- authorization matrix -----------------------------------------------------------------

#[test]
fn authorization_matrix_user_endpoints() {
    let mut f = fixture();
    let s = f.s;
    let before = snapshot(&f);
    let not_readers = [ANON, STRANGER, OTHER_CANISTER, INDEX];
    let not_writers = [ANON, STRANGER, OTHER_CANISTER, INDEX, READER];
    let not_owners = [ANON, STRANGER, OTHER_CANISTER, INDEX, READER, WRITER];
    // Who may not read learns nothing: every answer is that of an absent SubDB.
    for who in not_readers {
        assert_eq!(
            f.p.get(who, &get_args(s, b"a")),
            Err(GetError::UnknownSubDb)
        );
        assert_eq!(
            f.p.has(who, &get_args(s, b"a")),
            Err(GetError::UnknownSubDb)
        );
        assert_eq!(f.p.scan(who, &scan_req(s)), Err(ScanError::UnknownSubDb));
        assert_eq!(f.p.subdb_stats(who, s), Err(SubDbStatsError::UnknownSubDb));
    }
    for who in not_writers {
        // A reader knows the SubDB is there: it is told it may not write.
        let reader = who == READER;
        assert_eq!(
            f.p.put(who, &put_args(s, b"a", b"evil", 60)),
            Err(if reader {
                PutError::NotAuthorized
            } else {
                PutError::UnknownSubDb
            }),
            "{who}"
        );
        assert_eq!(
            f.p.put(who, &put_args(s, b"new", b"evil", 61)),
            Err(if reader {
                PutError::NotAuthorized
            } else {
                PutError::UnknownSubDb
            }),
            "{who}"
        );
        assert_eq!(
            f.p.delete(who, &del_args(s, b"a", 62)),
            Err(if reader {
                DeleteError::NotAuthorized
            } else {
                DeleteError::UnknownSubDb
            }),
            "{who}"
        );
    }
    for who in not_owners {
        let want = if who == READER || who == WRITER {
            SetAccessError::NotAuthorized
        } else {
            SetAccessError::UnknownSubDb
        };
        assert_eq!(
            f.p.set_access(
                who,
                &SetAccessArgs {
                    subdb: s,
                    readers: vec![who],
                    writers: vec![who],
                }
            ),
            Err(want),
            "{who}"
        );
    }
    assert_unchanged(&f, &before, "refused user calls");
    // A refused op id was not recorded: the owner can use it afterwards.
    assert_eq!(
        f.p.put(OWNER, &put_args(s, b"a", b"ok", 60)),
        Ok(PutOutcome {
            replaced: true,
            evicted: 0
        })
    );
}

#[test]
fn authorization_matrix_housekeeping_endpoints() {
    let mut f = fixture();
    let s = f.s;
    let imp =
        f.p.begin_import(INDEX, &BeginImportArgs { op_id: op(70) })
            .unwrap();
    let before = snapshot(&f);
    for who in [OTHER_CANISTER, OWNER, ANON, STRANGER] {
        assert_eq!(
            f.p.create_subdb_local(
                who,
                &CreateLocalArgs {
                    op_id: op(71),
                    access: access(),
                    hard_cap: None,
                    max_bytes: None,
                }
            ),
            Err(CreateSubDbError::NotAuthorized)
        );
        assert_eq!(
            f.p.stats(
                who,
                &StatsArgs {
                    from: 0,
                    limit: 10,
                    largest_first: None
                },
                123
            ),
            Err(StatsError::NotAuthorized)
        );
        assert_eq!(
            f.p.export_chunk(
                who,
                &ExportArgs {
                    subdb: s,
                    seq: 0,
                    token: None,
                    budget: REPLY_BUDGET_BYTES as u64,
                }
            ),
            Err(HousekeepingError::NotAuthorized)
        );
        assert_eq!(
            f.p.begin_import(who, &BeginImportArgs { op_id: op(72) }),
            Err(BeginImportError::NotAuthorized)
        );
        assert_eq!(
            f.p.import_chunk(
                who,
                &ImportChunkArgs {
                    finish: false,
                    subdb: imp,
                    chunk: Chunk::default(),
                }
            ),
            Err(ImportError::NotAuthorized)
        );
        assert_eq!(f.p.abort_import(who, imp), Err(ImportError::NotAuthorized));
        assert_eq!(
            f.p.resume_writes(who, s),
            Err(ResumeWritesError::NotAuthorized)
        );
        assert_eq!(
            f.p.release(
                who,
                &ReleaseArgs {
                    subdb: s,
                    moved_to: InnerKey {
                        partition: TARGET_PARTITION,
                        subdb: 0
                    },
                }
            ),
            Err(ReleaseError::NotAuthorized)
        );
    }
    assert_unchanged(&f, &before, "refused housekeeping calls");
    assert!(!f.p.store().is_frozen(s));
    assert_eq!(f.p.store().status(imp), SubDbStatus::Importing);
}

// ---- routing ------------------------------------------------------------------------------

#[test]
fn stale_inner_key_after_release_answers_moved() {
    let mut f = fixture();
    let s = f.s;
    let to = InnerKey {
        partition: TARGET_PARTITION,
        subdb: 5,
    };
    assert!(f.p.store.set_frozen(s, true));
    f.p.release(
        INDEX,
        &ReleaseArgs {
            subdb: s,
            moved_to: to,
        },
    )
    .unwrap();
    let before = snapshot(&f);
    // Those who could read it learn where it went; everyone else gets the answer of an
    // absent SubDB (the stranger and the anonymous principal exactly as for an id never used).
    let absent: SubDbId = 9_999;
    for who in [OWNER, READER, WRITER, STRANGER, ANON] {
        let can_read = [OWNER, READER, WRITER].contains(&who);
        for id in [s, absent] {
            let moved = can_read && id == s;
            let g = |e: GetError| if moved { GetError::Moved { to } } else { e };
            assert_eq!(
                f.p.get(who, &get_args(id, b"a")),
                Err(g(GetError::UnknownSubDb))
            );
            assert_eq!(
                f.p.has(who, &get_args(id, b"a")),
                Err(g(GetError::UnknownSubDb))
            );
            let want = if moved {
                ScanError::Moved { to }
            } else {
                ScanError::UnknownSubDb
            };
            assert_eq!(f.p.scan(who, &scan_req(id)), Err(want));
            let want = if moved {
                SubDbStatsError::Moved { to }
            } else {
                SubDbStatsError::UnknownSubDb
            };
            assert_eq!(f.p.subdb_stats(who, id), Err(want));
            let want = if moved {
                PutError::Moved { to }
            } else {
                PutError::UnknownSubDb
            };
            assert_eq!(f.p.put(who, &put_args(id, b"a", b"v", 80)), Err(want));
            let want = if moved {
                DeleteError::Moved { to }
            } else {
                DeleteError::UnknownSubDb
            };
            assert_eq!(f.p.delete(who, &del_args(id, b"a", 81)), Err(want));
            let want = if moved {
                SetAccessError::Moved { to }
            } else {
                SetAccessError::UnknownSubDb
            };
            let args = SetAccessArgs {
                subdb: id,
                readers: vec![],
                writers: vec![],
            };
            assert_eq!(f.p.set_access(who, &args), Err(want), "{who} {id}");
        }
    }
    assert_eq!(
        f.p.delete_subdb(
            INDEX,
            &DeleteSubDbArgs {
                subdb: s,
                op_id: op(82)
            }
        ),
        Err(DeleteSubDbError::Moved { to })
    );
    assert_unchanged(&f, &before, "calls on a moved SubDB");
}

#[test]
fn unknown_ids_answer_unknown_subdb() {
    let mut f = fixture();
    let imp =
        f.p.begin_import(INDEX, &BeginImportArgs { op_id: op(90) })
            .unwrap();
    let deleted = create(&mut f.p, 91, access());
    f.p.delete_subdb(
        INDEX,
        &DeleteSubDbArgs {
            subdb: deleted,
            op_id: op(92),
        },
    )
    .unwrap();
    let before = snapshot(&f);
    // Never created, still importing (invisible), deleted.
    for id in [999, imp, deleted] {
        for who in [OWNER, ANON] {
            assert_eq!(
                f.p.get(who, &get_args(id, b"a")),
                Err(GetError::UnknownSubDb)
            );
            assert_eq!(
                f.p.has(who, &get_args(id, b"a")),
                Err(GetError::UnknownSubDb)
            );
            assert_eq!(f.p.scan(who, &scan_req(id)), Err(ScanError::UnknownSubDb));
            assert_eq!(f.p.subdb_stats(who, id), Err(SubDbStatsError::UnknownSubDb));
            assert_eq!(
                f.p.put(who, &put_args(id, b"a", b"v", 93)),
                Err(PutError::UnknownSubDb)
            );
            assert_eq!(
                f.p.delete(who, &del_args(id, b"a", 94)),
                Err(DeleteError::UnknownSubDb)
            );
            assert_eq!(
                f.p.set_access(
                    who,
                    &SetAccessArgs {
                        subdb: id,
                        readers: vec![],
                        writers: vec![]
                    }
                ),
                Err(SetAccessError::UnknownSubDb)
            );
        }
        assert_eq!(
            f.p.delete_subdb(
                INDEX,
                &DeleteSubDbArgs {
                    subdb: id,
                    op_id: op(95)
                }
            ),
            Err(DeleteSubDbError::UnknownSubDb)
        );
        assert_eq!(
            f.p.resume_writes(INDEX, id),
            Err(ResumeWritesError::UnknownSubDb)
        );
        assert_eq!(
            f.p.export_chunk(
                INDEX,
                &ExportArgs {
                    subdb: id,
                    seq: 0,
                    token: None,
                    budget: REPLY_BUDGET_BYTES as u64
                }
            ),
            Err(HousekeepingError::UnknownSubDb)
        );
        assert_eq!(
            f.p.release(
                INDEX,
                &ReleaseArgs {
                    subdb: id,
                    moved_to: InnerKey {
                        partition: TARGET_PARTITION,
                        subdb: 1
                    }
                }
            ),
            Err(ReleaseError::UnknownSubDb)
        );
    }
    assert_unchanged(&f, &before, "calls on unknown ids");
}

// ---- op ids -------------------------------------------------------------------------------

#[test]
fn op_id_retries_return_the_first_result() {
    let mut f = fixture();
    let s = f.s;
    let first = f.p.put(WRITER, &put_args(s, b"n", b"1", 100)).unwrap();
    assert!(!first.replaced);
    let before = snapshot(&f);
    // Now the key exists, but the retry answers what the first call did, applying nothing.
    assert_eq!(f.p.put(WRITER, &put_args(s, b"n", b"1", 100)), Ok(first));
    assert_unchanged(&f, &before, "put retry");
    // Same op id, other arguments, or another caller: refused.
    assert_eq!(
        f.p.put(WRITER, &put_args(s, b"n", b"2", 100)),
        Err(PutError::OpIdConflict)
    );
    assert_eq!(
        f.p.put(OWNER, &put_args(s, b"n", b"1", 100)),
        Err(PutError::OpIdConflict)
    );
    assert_unchanged(&f, &before, "put conflicts");

    assert_eq!(f.p.delete(WRITER, &del_args(s, b"n", 101)), Ok(true));
    assert_eq!(f.p.delete(WRITER, &del_args(s, b"n", 101)), Ok(true));
    assert_eq!(value(&f.p, OWNER, s, b"n"), None);

    // create_subdb_local: the same SubDB again, nothing new.
    let args = CreateLocalArgs {
        op_id: op(102),
        access: access(),
        hard_cap: Some(10),
        max_bytes: None,
    };
    let id = f.p.create_subdb_local(INDEX, &args).unwrap();
    let live = f.p.store().totals().live_subdbs;
    assert_eq!(f.p.create_subdb_local(INDEX, &args), Ok(id));
    assert_eq!(f.p.store().totals().live_subdbs, live);
    assert_eq!(
        f.p.create_subdb_local(
            INDEX,
            &CreateLocalArgs {
                hard_cap: Some(11),
                ..args.clone()
            }
        ),
        Err(CreateSubDbError::OpIdConflict)
    );
    assert_eq!(
        f.p.create_subdb_local(
            INDEX,
            &CreateLocalArgs {
                op_id: OpId::from(vec![1; 40]),
                ..args
            }
        ),
        Err(CreateSubDbError::InvalidOpId { len: 40 })
    );

    // begin_import: the same import again.
    let a =
        f.p.begin_import(INDEX, &BeginImportArgs { op_id: op(103) })
            .unwrap();
    let before = snapshot(&f);
    assert_eq!(
        f.p.begin_import(INDEX, &BeginImportArgs { op_id: op(103) }),
        Ok(a)
    );
    assert_unchanged(&f, &before, "begin_import retry");
    let b =
        f.p.begin_import(INDEX, &BeginImportArgs { op_id: op(104) })
            .unwrap();
    assert_ne!(a, b);
    assert_eq!(
        f.p.begin_import(
            INDEX,
            &BeginImportArgs {
                op_id: OpId::from(vec![1; 15])
            }
        ),
        Err(BeginImportError::InvalidOpId { len: 15 })
    );
}

#[test]
fn create_subdb_local_checks_list_lengths() {
    let raw = VectorMemory::default();
    let mut p = install_on(&raw);
    let huge = vec![Principal::from_slice(&[0xEE; 29]); 3_000];
    let args = CreateLocalArgs {
        op_id: op(1),
        access: Access {
            owner: OWNER,
            readers: huge,
            writers: vec![],
        },
        hard_cap: None,
        max_bytes: None,
    };
    // Lists are bounded before their encoding is: 2 × 100 principals always fit the blob.
    assert_eq!(
        p.create_subdb_local(INDEX, &args),
        Err(CreateSubDbError::TooManyPrincipals {
            len: 3_000,
            max: MAX_ACCESS_PRINCIPALS as u64
        })
    );
    assert_eq!(p.store().totals().live_subdbs, 0);
    assert_eq!(
        p.create_subdb_local(
            INDEX,
            &CreateLocalArgs {
                op_id: op(2),
                access: access(),
                hard_cap: Some(0),
                max_bytes: None,
            }
        ),
        Err(CreateSubDbError::InvalidHardCap)
    );
}

// ---- housekeeping -------------------------------------------------------------------------

/// `largest_first` lists the largest live SubDBs by bytes, whatever their ids: the index's
/// move candidates.
#[test]
fn stats_list_the_largest_subdbs_first() {
    let mut f = fixture();
    let more: Vec<SubDbId> = (0..3)
        .map(|i| create(&mut f.p, 110 + i, access()))
        .collect();
    // Sizes: more[1] > more[2] > f.s (6 bytes) > more[0] (empty).
    f.p.put(WRITER, &put_args(more[1], b"k", &[1; 100], 120))
        .unwrap();
    f.p.put(WRITER, &put_args(more[2], b"k", &[1; 50], 121))
        .unwrap();
    let largest = |f: &Fixture, limit| {
        let args = StatsArgs {
            from: 0,
            limit,
            largest_first: Some(true),
        };
        f.p.stats(INDEX, &args, 0)
            .unwrap()
            .subdbs
            .iter()
            .map(|x| x.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(largest(&f, 2), vec![more[1], more[2]]);
    assert_eq!(largest(&f, 10), vec![more[1], more[2], f.s, more[0]]);
    // A deleted SubDB leaves the list; one that grows moves up.
    f.p.delete_subdb(
        INDEX,
        &DeleteSubDbArgs {
            subdb: more[1],
            op_id: op(122),
        },
    )
    .unwrap();
    f.p.put(WRITER, &put_args(more[0], b"k", &[1; 70], 123))
        .unwrap();
    assert_eq!(largest(&f, 2), vec![more[0], more[2]]);
}

#[test]
fn stats_pages_and_limits() {
    let mut f = fixture();
    let more: Vec<SubDbId> = (0..3)
        .map(|i| create(&mut f.p, 110 + i, access()))
        .collect();
    let st =
        f.p.stats(
            INDEX,
            &StatsArgs {
                from: 0,
                limit: 2,
                largest_first: None,
            },
            7 * 65536,
        )
        .unwrap();
    assert_eq!(st.live_subdbs, 4);
    assert_eq!(st.items, 3);
    assert_eq!(st.bytes, 6);
    assert_eq!(st.purging_bytes, 0);
    assert_eq!(st.op_records, f.p.store().totals().op_records);
    assert_eq!(st.stable_memory_bytes, 7 * 65536);
    assert_eq!(st.tombstones, 0);
    assert_eq!(
        st.subdbs.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![f.s, more[0]]
    );
    let next =
        f.p.stats(
            INDEX,
            &StatsArgs {
                from: more[0] + 1,
                limit: MAX_STATS_SUBDBS,
                largest_first: None,
            },
            0,
        )
        .unwrap();
    assert_eq!(
        next.subdbs.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![more[1], more[2]]
    );
    assert!(f
        .p
        .stats(
            INDEX,
            &StatsArgs {
                from: 0,
                limit: 0,
                largest_first: None
            },
            0
        )
        .unwrap()
        .subdbs
        .is_empty());
    assert_eq!(
        f.p.stats(
            INDEX,
            &StatsArgs {
                from: 0,
                limit: MAX_STATS_SUBDBS + 1,
                largest_first: None,
            },
            0
        ),
        Err(StatsError::LimitTooLarge {
            requested: MAX_STATS_SUBDBS + 1,
            max: MAX_STATS_SUBDBS
        })
    );
}

#[test]
fn export_budget_and_token_checks() {
    let mut f = fixture();
    let subdb = f.s;
    let args = |budget: u64, token: Option<Vec<u8>>| ExportArgs {
        subdb,
        seq: 0,
        token: token.map(ByteBuf::from),
        budget,
    };
    let (min, max) = (MIN_CHUNK_BUDGET_BYTES as u64, REPLY_BUDGET_BYTES as u64);
    for budget in [0, min - 1, max + 1, u64::MAX] {
        assert_eq!(
            f.p.export_chunk(INDEX, &args(budget, None)),
            Err(HousekeepingError::InvalidBudget { budget, min, max })
        );
    }
    assert_eq!(
        f.p.export_chunk(INDEX, &args(max, Some(vec![9, 9]))),
        Err(HousekeepingError::InvalidToken)
    );
    for budget in [min, max] {
        let reply = f.p.export_chunk(INDEX, &args(budget, None)).unwrap();
        assert_eq!(reply.chunk.puts.len(), 3);
        let header = reply.chunk.header.unwrap();
        assert_eq!(access::decode(&header.meta), Some(access()));
    }
}

/// Copies SubDB `s` of `src` into a new SubDB of `dst` as the index would, in chunks of
/// `budget` bytes; returns the new SubDB's id.
pub(crate) fn copy_subdb(
    src: &mut Partition<Mem>,
    dst: &mut Partition<Mem>,
    s: SubDbId,
    budget: u64,
) -> SubDbId {
    let id = dst
        .begin_import(INDEX, &BeginImportArgs { op_id: op(200) })
        .unwrap();
    let mut token = None;
    let mut seq = 0;
    loop {
        let reply = src
            .export_chunk(
                INDEX,
                &ExportArgs {
                    subdb: s,
                    seq,
                    token: token.clone(),
                    budget,
                },
            )
            .unwrap();
        assert!(reply.chunk.budget_bytes() as u64 <= budget);
        let args = ImportChunkArgs {
            finish: false,
            subdb: id,
            chunk: reply.chunk,
        };
        dst.import_chunk(INDEX, &args).unwrap();
        // A repeated chunk (a retried call) changes nothing.
        dst.import_chunk(INDEX, &args).unwrap();
        seq += 1;
        match reply.next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    id
}

#[test]
fn a_move_end_to_end_keeps_data_access_and_op_ids() {
    let mut f = fixture();
    let s = f.s;
    // Items big enough that the copy takes several chunks at the smallest budget.
    let big = vec![7u8; 600 * 1024];
    for i in 0..5u8 {
        f.p.put(WRITER, &put_args(s, &[b'x', i], &big, 120 + i))
            .unwrap();
    }
    let raw_b = VectorMemory::default();
    let mut b = install_on(&raw_b);
    b.create_subdb_local(
        INDEX,
        &CreateLocalArgs {
            op_id: op(1),
            access: access(),
            hard_cap: None,
            max_bytes: None,
        },
    )
    .unwrap();

    let new = copy_subdb(&mut f.p, &mut b, s, MIN_CHUNK_BUDGET_BYTES as u64);
    // Invisible until finished.
    assert_eq!(
        b.get(OWNER, &get_args(new, b"a")),
        Err(GetError::UnknownSubDb)
    );
    assert_eq!(
        b.import_chunk(
            INDEX,
            &ImportChunkArgs {
                finish: false,
                subdb: new,
                chunk: Chunk {
                    seq: 99,
                    ..Chunk::default()
                }
            }
        ),
        Err(ImportError::ChunkOutOfOrder {
            expected: next_seq(&mut f.p, s),
            got: 99
        })
    );
    // Cutover: pause writes at the source, finish the import, release the source.
    assert!(f.p.store.set_frozen(s, true));
    assert!(f.p.store.set_frozen(s, true));
    assert_eq!(
        f.p.put(WRITER, &put_args(s, b"late", b"v", 130)),
        Err(PutError::WritesPaused)
    );
    assert_eq!(value(&f.p, READER, s, b"a"), Some(b"v".to_vec()));
    let fin = final_chunk(new, next_seq(&mut f.p, s));
    b.import_chunk(INDEX, &fin).unwrap();
    // A retried final chunk is accepted and changes nothing.
    b.import_chunk(INDEX, &fin).unwrap();
    let stats = b.store().stats(new).unwrap();
    assert_eq!(stats.items, 8);
    let to = InnerKey {
        partition: TARGET_PARTITION,
        subdb: new,
    };
    f.p.release(
        INDEX,
        &ReleaseArgs {
            subdb: s,
            moved_to: to,
        },
    )
    .unwrap();
    assert_eq!(
        f.p.release(
            INDEX,
            &ReleaseArgs {
                subdb: s,
                moved_to: to
            }
        ),
        Ok(())
    );
    assert_eq!(
        f.p.release(
            INDEX,
            &ReleaseArgs {
                subdb: s,
                moved_to: InnerKey {
                    partition: OTHER_CANISTER,
                    subdb: 0
                }
            }
        ),
        Err(ReleaseError::ReleasedElsewhere { to })
    );
    assert_eq!(
        f.p.get(READER, &get_args(s, b"a")),
        Err(GetError::Moved { to })
    );

    // At the new home: same data, same access lists, and op ids still replay, once the
    // index (its directory now routing here) has resumed writes.
    b.resume_writes(INDEX, new).unwrap();
    assert_eq!(b.access(new), Some(access()));
    assert_eq!(value(&b, READER, new, b"x\x03"), Some(big.clone()));
    assert_eq!(
        b.get(STRANGER, &get_args(new, b"a")),
        Err(GetError::UnknownSubDb)
    );
    assert_eq!(
        b.put(WRITER, &put_args(new, &[b'x', 4], &big, 124)),
        Ok(PutOutcome::default())
    );
    assert_eq!(b.subdb_stats(OWNER, new).unwrap().items, 8);

    // The source reclaimed the released data (a first batch at once, the rest by housekeeping).
    assert_eq!(f.p.housekeep(PURGE_BATCH), 0);
    let t = f.p.store().totals();
    assert_eq!((t.items, t.bytes, t.live_subdbs), (0, 0, 0));
    let st =
        f.p.stats(
            INDEX,
            &StatsArgs {
                from: 0,
                limit: 10,
                largest_first: None,
            },
            0,
        )
        .unwrap();
    assert_eq!(st.tombstones, 1);
    assert!(st.subdbs.is_empty());
}

/// A batch's put of `v` at `k`.
pub(crate) fn put_op(k: &[u8], v: &[u8]) -> BatchOp {
    BatchOp::Put {
        key: ByteBuf::from(k.to_vec()),
        value: ByteBuf::from(v.to_vec()),
    }
}

/// A batch's delete of `k`.
pub(crate) fn del_op(k: &[u8]) -> BatchOp {
    BatchOp::Delete {
        key: ByteBuf::from(k.to_vec()),
    }
}

/// A batch of `ops` on `subdb` under op id `op_n`.
pub(crate) fn batch_args(subdb: SubDbId, ops: Vec<BatchOp>, op_n: u8) -> BatchArgs {
    BatchArgs {
        subdb,
        ops,
        op_id: op(op_n),
    }
}

/// The empty chunk numbered `seq` that finishes the import into `subdb`.
pub(crate) fn final_chunk(subdb: SubDbId, seq: u64) -> ImportChunkArgs {
    ImportChunkArgs {
        subdb,
        chunk: Chunk {
            seq,
            ..Chunk::default()
        },
        finish: true,
    }
}

/// The chunk number the store expects next for the import of `s` (one per export chunk).
pub(crate) fn next_seq(src: &mut Partition<Mem>, s: SubDbId) -> u64 {
    let mut token = None;
    let mut seq = 0;
    loop {
        let r = src
            .export_chunk(
                INDEX,
                &ExportArgs {
                    subdb: s,
                    seq,
                    token,
                    budget: MIN_CHUNK_BUDGET_BYTES as u64,
                },
            )
            .unwrap();
        seq += 1;
        match r.next {
            Some(t) => token = Some(t),
            None => return seq,
        }
    }
}

#[test]
fn abort_import_reclaims_and_retries_name_the_aborted_import() {
    let mut f = fixture();
    let raw_b = VectorMemory::default();
    let mut b = install_on(&raw_b);
    let id = copy_subdb(&mut f.p, &mut b, f.s, REPLY_BUDGET_BYTES as u64);
    assert_eq!(b.store().totals().items, 3);
    b.abort_import(INDEX, id).unwrap();
    assert_eq!(b.abort_import(INDEX, id), Err(ImportError::UnknownImport));
    assert_eq!(
        b.import_chunk(INDEX, &final_chunk(id, 0)),
        Err(ImportError::UnknownImport)
    );
    b.housekeep(PURGE_BATCH);
    assert_eq!(b.store().totals().items, 0);
    // The op id keeps naming the aborted import: a late retry opens nothing new.
    assert_eq!(
        b.begin_import(INDEX, &BeginImportArgs { op_id: op(200) }),
        Ok(id)
    );
    assert_eq!(
        b.import_chunk(
            INDEX,
            &ImportChunkArgs {
                finish: false,
                subdb: id,
                chunk: Chunk::default()
            }
        ),
        Err(ImportError::UnknownImport)
    );
}

/// The index reclaims a called-off move's partial import late, with backoff, maybe after a
/// later move of the same SubDB began importing to the same partition (`docs/moves.md`). The
/// late `abort_import` (and the `begin_import` with the old op id that learns its id) names
/// only the old import: the later one, in progress or finished and live, is untouched.
#[test]
fn a_late_abort_of_an_earlier_import_leaves_a_later_import_of_the_same_subdb_alone() {
    let mut f = fixture();
    let raw_b = VectorMemory::default();
    let mut b = install_on(&raw_b);
    let old = b
        .begin_import(INDEX, &BeginImportArgs { op_id: op(150) })
        .unwrap();
    // The later move, with its own op id: a new local id, never the old one.
    let new = copy_subdb(&mut f.p, &mut b, f.s, REPLY_BUDGET_BYTES as u64);
    assert_ne!(new, old);
    let items = b.store().totals().items;
    assert_eq!(items, 3);
    for finished in [false, true] {
        if finished {
            // Finished (a repeat of chunk 0 with `finish`) and routed: writes resumed.
            b.import_chunk(INDEX, &final_chunk(new, 0)).unwrap();
            assert_eq!(b.resume_writes(INDEX, new), Ok(()));
        }
        // The reclaim: learn the old id by its op id, then abort it (twice: a retry).
        assert_eq!(
            b.begin_import(INDEX, &BeginImportArgs { op_id: op(150) }),
            Ok(old)
        );
        b.abort_import(INDEX, old).ok();
        assert_eq!(b.abort_import(INDEX, old), Err(ImportError::UnknownImport));
        b.housekeep(PURGE_BATCH);
        assert_eq!(b.store().totals().items, items, "finished={finished}");
    }
    // The later import is live and holds the SubDB.
    assert_eq!(b.store().status(new), flotilla_store::SubDbStatus::Live);
}

#[test]
fn freeze_pauses_writes_and_release_needs_it() {
    let mut f = fixture();
    let s = f.s;
    let to = InnerKey {
        partition: TARGET_PARTITION,
        subdb: 3,
    };
    let before = snapshot(&f);
    assert_eq!(
        f.p.release(
            INDEX,
            &ReleaseArgs {
                subdb: s,
                moved_to: to
            }
        ),
        Err(ReleaseError::NotFrozen)
    );
    assert_unchanged(&f, &before, "release of a SubDB not frozen");
    assert!(f.p.store.set_frozen(s, true));
    assert_eq!(
        f.p.put(WRITER, &put_args(s, b"a", b"x", 140)),
        Err(PutError::WritesPaused)
    );
    assert_eq!(
        f.p.delete(WRITER, &del_args(s, b"a", 141)),
        Err(DeleteError::WritesPaused)
    );
    assert_eq!(
        f.p.delete_subdb(
            INDEX,
            &DeleteSubDbArgs {
                subdb: s,
                op_id: op(142)
            }
        ),
        Err(DeleteSubDbError::WritesPaused)
    );
    assert_eq!(value(&f.p, READER, s, b"a"), Some(b"v".to_vec()));
    // A move called off: writes resume.
    assert!(f.p.store.set_frozen(s, false));
    f.p.put(WRITER, &put_args(s, b"a", b"x", 140)).unwrap();
}

/// `export_delta` with `freeze` freezes only once the rest fits one chunk (the reply says
/// whether it did); with `write_budget` the SubDB's writers are throttled: a user write past
/// the budget answers `WritesPaused` and is applied, once, when retried after the next delta.
#[test]
fn export_delta_freezes_once_the_rest_fits_and_throttles_writers() {
    let mut f = fixture();
    let s = f.s;
    let raw_b = VectorMemory::default();
    let mut b = install_on(&raw_b);
    f.p.begin_export(INDEX, &BeginExportArgs { subdb: s })
        .unwrap();
    let t = copy_subdb(&mut f.p, &mut b, s, REPLY_BUDGET_BYTES as u64);
    let mut seq = next_seq(&mut f.p, s);
    // Three changes of 600 KB: more than the smallest chunk holds.
    let big = vec![3u8; 600 * 1024];
    for i in 0..3u8 {
        f.p.put(WRITER, &put_args(s, &[b'y', i], &big, 150 + i))
            .unwrap();
    }
    let budget = MIN_CHUNK_BUDGET_BYTES as u64;
    let export = |p: &mut Partition<Mem>, seq: u64, ack: u64, wb: Option<u64>| {
        let args = ExportDeltaArgs {
            subdb: s,
            seq,
            ack,
            budget,
            freeze: true,
            write_budget: wb,
        };
        assert_eq!(
            p.export_delta(WRITER, &args),
            Err(HousekeepingError::NotAuthorized)
        );
        p.export_delta(INDEX, &args).unwrap()
    };
    let first = export(&mut f.p, seq, 0, Some(1_000));
    assert_eq!(first.frozen, Some(false));
    assert!(first.more && first.chunk.header.is_none());
    let import = |b: &mut Partition<Mem>, chunk| {
        b.import_chunk(
            INDEX,
            &ImportChunkArgs {
                subdb: t,
                chunk,
                finish: false,
            },
        )
        .unwrap()
    };
    import(&mut b, first.chunk);
    seq += 1;
    // Throttled: 1,000 bytes of changes admitted until the next delta.
    f.p.put(WRITER, &put_args(s, b"small", b"1", 160)).unwrap();
    let late = put_args(s, b"late", &[9; 1_000], 161);
    assert_eq!(f.p.put(WRITER, &late), Err(PutError::WritesPaused));
    // Reads go on.
    assert_eq!(value(&f.p, READER, s, b"small"), Some(b"1".to_vec()));
    let mut ack = first.version;
    let last = loop {
        let d = export(&mut f.p, seq, ack, Some(2_000));
        import(&mut b, d.chunk.clone());
        seq += 1;
        ack = d.version;
        if d.frozen == Some(true) {
            break d;
        }
        // The retry of the refused write fits the new budget, and applies once.
        f.p.put(WRITER, &late).unwrap();
        f.p.put(WRITER, &late).unwrap();
    };
    assert!(!last.more && last.chunk.header.is_some());
    assert_eq!(
        f.p.put(WRITER, &put_args(s, b"z", b"1", 162)),
        Err(PutError::WritesPaused)
    );
    b.import_chunk(INDEX, &final_chunk(t, seq)).unwrap();
    for k in [&b"late"[..], b"small", b"y\x02", b"a"] {
        assert_eq!(value(&b, READER, t, k), value(&f.p, READER, s, k), "{k:?}");
    }
    assert_eq!(value(&b, READER, t, b"late"), Some(vec![9; 1_000]));
}

#[test]
fn housekeep_reclaims_deleted_subdbs_in_batches() {
    let raw = VectorMemory::default();
    let mut p = install_on(&raw);
    let s = create(&mut p, 1, access());
    let n = PURGE_BATCH + 250;
    for i in 0..n {
        let k = (i as u32).to_be_bytes();
        p.store
            .put(None, s, &k, b"value")
            .expect("direct store write for setup");
    }
    p.delete_subdb(
        INDEX,
        &DeleteSubDbArgs {
            subdb: s,
            op_id: op(2),
        },
    )
    .unwrap();
    // The deletion reclaimed a first batch; the rest is left to housekeeping.
    assert_eq!(p.store().totals().purging_items, 250);
    assert_eq!(p.housekeep(100), 150);
    assert_eq!(p.housekeep(PURGE_BATCH), 0);
    assert_eq!(p.housekeep(PURGE_BATCH), 0);
    assert_eq!(p.store().totals().items, 0);
}

// ---- the metadata blob ----------------------------------------------------------------------

#[test]
fn access_blob_format_is_stable() {
    let a = Access {
        owner: Principal::from_slice(&[1, 2]),
        readers: vec![Principal::anonymous()],
        writers: vec![Principal::from_slice(&[9]), Principal::from_slice(&[])],
    };
    let b = access::encode(&a);
    assert_eq!(
        b,
        vec![1, 2, 1, 2, 1, 0, 1, 4, 2, 0, 1, 9, 0],
        "version, owner, readers, writers"
    );
    assert_eq!(b.len(), access::encoded_len(&a));
    assert_eq!(access::decode(&b), Some(a.clone()));
    // Anything else does not parse, so it grants nothing.
    let mut newer = b.clone();
    newer[0] = 2;
    assert_eq!(access::decode(&newer), None);
    for cut in 0..b.len() {
        assert_eq!(access::decode(&b[..cut]), None, "truncated at {cut}");
    }
    let mut trailing = b.clone();
    trailing.push(0);
    assert_eq!(access::decode(&trailing), None);
    let mut long = vec![1, 30];
    long.extend_from_slice(&[0; 30]);
    long.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(access::decode(&long), None, "principal over 29 bytes");
}

#[test]
fn an_unreadable_blob_fails_closed() {
    let mut f = fixture();
    let s = f.s;
    let mut newer = access::encode(&access());
    newer[0] = 2;
    f.p.store.set_meta(s, &newer).unwrap();
    for who in [OWNER, READER, WRITER] {
        assert_eq!(
            f.p.get(who, &get_args(s, b"a")),
            Err(GetError::UnknownSubDb)
        );
        assert_eq!(
            f.p.put(who, &put_args(s, b"a", b"v", 150)),
            Err(PutError::UnknownSubDb)
        );
    }
    assert_eq!(f.p.access(s), None);
    f.p.delete_subdb(
        INDEX,
        &DeleteSubDbArgs {
            subdb: s,
            op_id: op(151),
        },
    )
    .unwrap();
}

#[test]
fn checks_against_long_lists() {
    let readers: Vec<Principal> = (0..MAX_ACCESS_PRINCIPALS as u8)
        .map(|i| Principal::from_slice(&[i; 29]))
        .collect();
    let a = Access {
        owner: OWNER,
        readers: readers.clone(),
        writers: vec![WRITER],
    };
    let blob = access::encode(&a);
    let v = AccessView::parse(&blob).unwrap();
    assert!(v.may_read(&readers[MAX_ACCESS_PRINCIPALS - 1]));
    assert!(!v.may_write(&readers[0]));
    assert!(v.may_write(&WRITER) && v.may_read(&WRITER));
    assert!(v.is_owner(&OWNER) && !v.is_owner(&WRITER));
    assert!(!v.may_read(&STRANGER));
}

// ---- a moved SubDB's new home waits for the directory (issue 10, item 3) --------------------

/// `import_chunk(finish)` makes the target live for reads while its source still serves; until
/// the index has flipped its directory and called `resume_writes`, the target refuses every
/// user mutation (`WritesPaused`, which clients retry), even from its owner.
#[test]
fn a_finished_import_refuses_user_writes_until_the_index_resumes_them() {
    let mut f = fixture();
    let s = f.s;
    let raw_b = VectorMemory::default();
    let mut b = install_on(&raw_b);
    let t = copy_subdb(&mut f.p, &mut b, s, MIN_CHUNK_BUDGET_BYTES as u64);
    let seq = next_seq(&mut f.p, s);
    b.import_chunk(INDEX, &final_chunk(t, seq)).unwrap();
    // Reads are served.
    assert_eq!(value(&b, READER, t, b"a"), Some(b"v".to_vec()));
    // Writes, deletes, access changes and deleting the SubDB are refused, to everyone.
    for who in [OWNER, WRITER] {
        assert_eq!(
            b.put(who, &put_args(t, b"z", b"v", 90)),
            Err(PutError::WritesPaused)
        );
        assert_eq!(
            b.delete(who, &del_args(t, b"a", 91)),
            Err(DeleteError::WritesPaused)
        );
    }
    assert_eq!(
        b.set_access(
            OWNER,
            &SetAccessArgs {
                subdb: t,
                readers: vec![],
                writers: vec![],
            }
        ),
        Err(SetAccessError::WritesPaused)
    );
    assert_eq!(
        b.delete_subdb(
            INDEX,
            &DeleteSubDbArgs {
                subdb: t,
                op_id: op(92)
            }
        ),
        Err(DeleteSubDbError::WritesPaused)
    );
    // Only the index resumes writes; then the target is an ordinary live SubDB.
    for who in [OWNER, STRANGER, ANON] {
        assert_eq!(
            b.resume_writes(who, t),
            Err(ResumeWritesError::NotAuthorized)
        );
    }
    b.resume_writes(INDEX, t).unwrap();
    b.resume_writes(INDEX, t).unwrap();
    b.put(WRITER, &put_args(t, b"z", b"v2", 93)).unwrap();
    assert_eq!(value(&b, READER, t, b"z"), Some(b"v2".to_vec()));
    // The survivor of an upgrade is the same.
    let mut b = reopen(&raw_b);
    assert_eq!(value(&b, READER, t, b"z"), Some(b"v2".to_vec()));
    assert_eq!(
        b.resume_writes(INDEX, 9_999),
        Err(ResumeWritesError::UnknownSubDb)
    );
}
