//! The byte quota a SubDB carries in its metadata, and the one answer a caller who may not
//! read a SubDB gets (issue 11, items 2 and 6).

use super::tests::*;
use super::*;
use flotilla_types::OpId;
use ic_stable_structures::VectorMemory;

const MAX: u64 = 100;

/// A partition with one SubDB of `access()` under a quota of `MAX` bytes.
fn quota_fixture(hard_cap: Option<u64>) -> Fixture {
    let raw = VectorMemory::default();
    let mut p = install_on(&raw);
    let s = p
        .create_subdb_local(
            INDEX,
            &CreateLocalArgs {
                op_id: op(1),
                access: access(),
                hard_cap,
                max_bytes: Some(MAX),
            },
        )
        .unwrap();
    Fixture { raw, p, s }
}

fn bytes(f: &Fixture) -> u64 {
    f.p.store().stats(f.s).unwrap().bytes
}

#[test]
fn the_quota_is_kept_in_the_metadata_and_survives_set_access() {
    let mut f = quota_fixture(None);
    let meta = f.p.store().meta(f.s).unwrap();
    assert_eq!(meta[0], access::META_VERSION_QUOTA);
    assert_eq!(access::quota(&meta), Some(MAX));
    assert_eq!(access::decode(&meta), Some(access()));
    f.p.set_access(
        OWNER,
        &SetAccessArgs {
            subdb: f.s,
            readers: vec![],
            writers: vec![WRITER, READER],
        },
    )
    .unwrap();
    assert_eq!(access::quota(&f.p.store().meta(f.s).unwrap()), Some(MAX));
    // Without a quota the blob stays version 1, byte for byte as before quotas.
    let g = fixture();
    let meta = g.p.store().meta(g.s).unwrap();
    assert_eq!(meta, access::encode(&access()));
    assert_eq!(access::quota(&meta), None);
}

#[test]
fn a_put_past_the_quota_is_refused_and_stores_nothing() {
    let mut f = quota_fixture(None);
    let s = f.s;
    // 1 + 59 = 60 bytes, then 1 + 39 = 40: exactly the quota.
    f.p.put(WRITER, &put_args(s, b"a", &[1; 59], 10)).unwrap();
    f.p.put(WRITER, &put_args(s, b"b", &[1; 39], 11)).unwrap();
    assert_eq!(bytes(&f), MAX);
    let before = snapshot(&f);
    assert_eq!(
        f.p.put(WRITER, &put_args(s, b"c", b"", 12)),
        Err(PutError::QuotaExceeded { max_bytes: MAX })
    );
    assert_eq!(
        f.p.put(OWNER, &put_args(s, b"a", &[2; 60], 13)),
        Err(PutError::QuotaExceeded { max_bytes: MAX }),
        "a replacement that grows"
    );
    assert_unchanged(&f, &before, "refused puts");
    // A replacement that does not grow, and a retry of an applied put, are admitted.
    assert!(
        f.p.put(WRITER, &put_args(s, b"a", &[3; 59], 14))
            .unwrap()
            .replaced
    );
    assert_eq!(
        f.p.put(WRITER, &put_args(s, b"b", &[1; 39], 11)),
        Ok(PutOutcome {
            replaced: false,
            evicted: 0
        }),
        "the retry replays its first answer"
    );
    // Room made by a delete can be used again; the refused op id was not recorded.
    f.p.delete(WRITER, &del_args(s, b"b", 15)).unwrap();
    f.p.put(WRITER, &put_args(s, b"c", &[1; 39], 12)).unwrap();
    assert_eq!(bytes(&f), MAX);
    // Argument errors come first.
    let big = vec![0; flotilla_types::limits::MAX_KEY_BYTES + 1];
    assert!(matches!(
        f.p.put(WRITER, &put_args(s, &big, b"", 16)),
        Err(PutError::KeyTooLarge { .. })
    ));
}

#[test]
fn a_batch_past_the_quota_is_refused_whole() {
    let mut f = quota_fixture(None);
    let s = f.s;
    f.p.put(WRITER, &put_args(s, b"a", &[1; 49], 10)).unwrap();
    let before = snapshot(&f);
    // 50 + 30 + 30 = 110 > 100, although each op alone fits.
    assert_eq!(
        f.p.batch(
            WRITER,
            &batch_args(s, vec![put_op(b"b", &[1; 29]), put_op(b"c", &[1; 29])], 20)
        ),
        Err(BatchError::QuotaExceeded { max_bytes: MAX })
    );
    assert_unchanged(&f, &before, "refused batch");
    // A delete in the same batch makes the room: only the end state counts.
    let out =
        f.p.batch(
            WRITER,
            &batch_args(
                s,
                vec![put_op(b"b", &[1; 29]), del_op(b"a"), put_op(b"c", &[1; 69])],
                21,
            ),
        )
        .unwrap();
    assert_eq!(out.deletes_existed, 1);
    assert_eq!(bytes(&f), MAX);
}

#[test]
fn hard_cap_evictions_are_credited() {
    // At most 2 items: a put of a third evicts the smallest key.
    let mut f = quota_fixture(Some(2));
    let s = f.s;
    f.p.put(WRITER, &put_args(s, b"a", &[1; 59], 10)).unwrap();
    f.p.put(WRITER, &put_args(s, b"b", &[1; 39], 11)).unwrap();
    // 100 - 60 + 40 = 80: admitted because "a" goes.
    assert_eq!(
        f.p.put(WRITER, &put_args(s, b"c", &[1; 39], 12))
            .unwrap()
            .evicted,
        1
    );
    assert_eq!(bytes(&f), 80);
    // A new smallest key is itself evicted: nothing grows.
    assert_eq!(
        f.p.put(WRITER, &put_args(s, b"0", &[1; 99], 13))
            .unwrap()
            .evicted,
        1
    );
    assert_eq!(bytes(&f), 80);
    // 40 + 61 = 101 after "b" is evicted: refused.
    assert_eq!(
        f.p.put(WRITER, &put_args(s, b"d", &[1; 60], 14)),
        Err(PutError::QuotaExceeded { max_bytes: MAX })
    );
    // In a batch, evictions between ops count too.
    let ops = vec![
        put_op(b"e", &[1; 59]),
        put_op(b"f", &[1; 39]),
        del_op(b"e"),
        put_op(b"g", &[1; 9]),
    ];
    let projected =
        f.p.store()
            .bytes_after(
                s,
                ops.iter().map(|o| match o {
                    BatchOp::Put { key, value } => (&key[..], Some(value.len())),
                    BatchOp::Delete { key } => (&key[..], None),
                }),
            )
            .unwrap();
    let out = f.p.batch(WRITER, &batch_args(s, ops, 15)).unwrap();
    assert_eq!(out.evicted, 2);
    assert_eq!(bytes(&f), projected);
    assert_eq!(projected, 50);
}

#[test]
fn the_quota_travels_with_a_move() {
    let mut f = quota_fixture(None);
    let s = f.s;
    f.p.put(WRITER, &put_args(s, b"a", &[1; 89], 10)).unwrap();
    let raw_b = VectorMemory::default();
    let mut b = install_on(&raw_b);
    let new = copy_subdb(&mut f.p, &mut b, s, MIN_CHUNK_BUDGET_BYTES as u64);
    b.import_chunk(INDEX, &final_chunk(new, next_seq(&mut f.p, s)))
        .unwrap();
    b.resume_writes(INDEX, new).unwrap();
    assert_eq!(access::quota(&b.store().meta(new).unwrap()), Some(MAX));
    assert_eq!(
        b.put(WRITER, &put_args(new, b"b", &[1; 10], 11)),
        Err(PutError::QuotaExceeded { max_bytes: MAX })
    );
    b.put(WRITER, &put_args(new, b"b", &[1; 9], 12)).unwrap();
    assert_eq!(b.store().stats(new).unwrap().bytes, MAX);
}

/// Every answer a caller who may not read a live SubDB gets is the answer it gets for an id
/// that was never used, whatever the arguments (op ids too short, empty batches, ...).
#[test]
fn not_yours_answers_as_absent() {
    let mut f = fixture();
    let s = f.s;
    let absent: SubDbId = 77;
    let before = snapshot(&f);
    let short = OpId::from(vec![1; 3]);
    let mut live = vec![];
    for who in [STRANGER, ANON, INDEX] {
        for id in [s, absent] {
            let mut answers = vec![];
            answers.push(format!("{:?}", f.p.get(who, &get_args(id, b"a"))));
            answers.push(format!("{:?}", f.p.has(who, &get_args(id, b"a"))));
            answers.push(format!("{:?}", f.p.scan(who, &scan_req(id))));
            answers.push(format!("{:?}", f.p.subdb_stats(who, id)));
            answers.push(format!(
                "{:?}",
                f.p.get_many(
                    who,
                    &GetManyArgs {
                        keys: vec![get_args(id, b"a")]
                    }
                )
            ));
            answers.push(format!("{:?}", f.p.put(who, &put_args(id, b"a", b"v", 90))));
            let p = PutArgs {
                op_id: short.clone(),
                ..put_args(id, b"a", b"v", 0)
            };
            answers.push(format!("{:?}", f.p.put(who, &p)));
            answers.push(format!("{:?}", f.p.delete(who, &del_args(id, b"a", 91))));
            let d = DeleteArgs {
                op_id: short.clone(),
                ..del_args(id, b"a", 0)
            };
            answers.push(format!("{:?}", f.p.delete(who, &d)));
            for ops in [vec![], vec![put_op(b"a", b"v")]] {
                answers.push(format!(
                    "{:?}",
                    f.p.batch(who, &batch_args(id, ops.clone(), 92))
                ));
                let b = BatchArgs {
                    op_id: short.clone(),
                    ..batch_args(id, ops, 0)
                };
                answers.push(format!("{:?}", f.p.batch(who, &b)));
            }
            let a = SetAccessArgs {
                subdb: id,
                readers: vec![who],
                writers: vec![],
            };
            answers.push(format!("{:?}", f.p.set_access(who, &a)));
            if id == s {
                live = answers;
            } else {
                assert_eq!(answers, live, "{who}: not yours vs absent");
            }
        }
    }
    assert_unchanged(&f, &before, "calls on a SubDB that is not theirs");
}
