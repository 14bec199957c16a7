//! Unit tests of batched writes (`batch.rs`).

use super::*;
use crate::tests::{contents, ctx, fill, live_move, op, open, store, Mem};
use flotilla_types::limits::MAX_VALUE_BYTES;
use flotilla_types::limits::{MAX_BATCH_BYTES, MAX_BATCH_OPS};
use flotilla_types::{batch_budget_bytes, BatchError, BatchOp, BatchOutcome, OpId};
use ic_stable_structures::VectorMemory;
use serde_bytes::ByteBuf;

fn put(k: &[u8], v: &[u8]) -> BatchOp {
    BatchOp::Put {
        key: ByteBuf::from(k.to_vec()),
        value: ByteBuf::from(v.to_vec()),
    }
}

fn del(k: &[u8]) -> BatchOp {
    BatchOp::Delete {
        key: ByteBuf::from(k.to_vec()),
    }
}

/// Applies `ops` one by one as single puts and deletes; the batch's outcome by construction.
fn one_by_one(s: &mut Store<Mem>, id: SubDbId, ops: &[BatchOp]) -> BatchOutcome {
    let mut out = BatchOutcome::default();
    for o in ops {
        match o {
            BatchOp::Put { key, value } => {
                let p = s.put(None, id, key, value).unwrap();
                out.puts_replaced += p.replaced as u32;
                out.evicted += p.evicted;
            }
            BatchOp::Delete { key } => {
                out.deletes_existed += s.delete(None, id, key).unwrap() as u32
            }
        }
    }
    out
}

#[test]
fn a_batch_equals_its_ops_applied_in_order() {
    for cap in [None, Some(1), Some(3)] {
        let (mut a, mut b) = (store(), store());
        let ia = a.create_subdb(None, cap, b"").unwrap();
        let ib = b.create_subdb(None, cap, b"").unwrap();
        for s in [&mut a, &mut b] {
            s.put(None, 0, b"b", b"old").unwrap();
        }
        let ops = [
            put(b"d", b"1"),
            put(b"b", b"new"), // replaces
            del(b"zz"),        // absent
            put(b"a", b"2"),   // smallest: evicted at once under cap 1 and 3
            put(b"c", b"3"),
            del(b"c"), // written earlier in the same batch
            put(b"e", b""),
            put(b"e", b"again"), // replaces a value of this batch
            del(b""),
        ];
        let got = a.batch(None, ia, &ops).unwrap();
        let want = one_by_one(&mut b, ib, &ops);
        assert_eq!(got, want, "cap {cap:?}");
        assert_eq!(contents(&a, ia), contents(&b, ib), "cap {cap:?}");
        assert_eq!(a.stats(ia), b.stats(ib));
        assert_eq!(a.totals(), b.totals());
    }
    let mut s = store();
    let id = s.create_subdb(None, None, b"").unwrap();
    s.put(None, id, b"b", b"old").unwrap();
    let out = s
        .batch(
            None,
            id,
            &[put(b"b", b"n"), del(b"b"), del(b"b"), put(b"a", b"x")],
        )
        .unwrap();
    assert_eq!(
        out,
        BatchOutcome {
            puts_replaced: 1,
            deletes_existed: 1,
            evicted: 0
        }
    );
    let st = s.stats(id).unwrap();
    assert_eq!((st.items, st.bytes), (1, 2));
}

#[test]
fn hard_cap_evictions_are_counted_like_single_puts() {
    let mut s = store();
    let id = s.create_subdb(None, Some(2), b"").unwrap();
    let out = s
        .batch(
            None,
            id,
            &[
                put(b"c", b""),
                put(b"d", b""),
                put(b"e", b""),
                put(b"a", b""),
            ],
        )
        .unwrap();
    // "c" goes when "e" arrives; "a" is the smallest and goes at once.
    assert_eq!(out.evicted, 2);
    assert_eq!(
        contents(&s, id),
        vec![(b"d".to_vec(), vec![]), (b"e".to_vec(), vec![])]
    );
}

/// Raw memory and totals, to prove a refused batch changed nothing.
fn snapshot(raw: &VectorMemory, s: &Store<Mem>) -> (Vec<u8>, Totals) {
    (raw.borrow().clone(), s.totals())
}

#[test]
fn every_error_changes_nothing_and_records_nothing() {
    let raw = VectorMemory::default();
    let mut s = open(&raw, Config::default()).unwrap();
    let id = s.create_subdb(None, None, b"").unwrap();
    let frozen = s.create_subdb(None, None, b"").unwrap();
    s.put(None, id, b"k", b"v").unwrap();
    s.set_frozen(frozen, true);
    let o = op(5);
    let big_key = vec![1u8; MAX_KEY_BYTES + 1];
    let big_value = vec![2u8; MAX_VALUE_BYTES + 1];
    let max_value = vec![3u8; MAX_VALUE_BYTES];
    let too_many: Vec<BatchOp> = (0..=MAX_BATCH_OPS).map(|_| del(b"")).collect();
    let too_big = [put(b"1", &max_value), put(b"2", &max_value)];
    let too_big_bytes = batch_budget_bytes(&too_big) as u64;
    let kmax = MAX_KEY_BYTES as u64;
    let cases: Vec<(SubDbId, Vec<BatchOp>, BatchError)> = vec![
        (id, vec![], BatchError::EmptyBatch),
        (
            id,
            too_many,
            BatchError::TooManyOps {
                len: MAX_BATCH_OPS as u64 + 1,
                max: MAX_BATCH_OPS as u64,
            },
        ),
        (
            id,
            too_big.to_vec(),
            BatchError::BatchTooLarge {
                bytes: too_big_bytes,
                max: MAX_BATCH_BYTES as u64,
            },
        ),
        (
            id,
            vec![put(b"a", b"1"), del(b"k"), del(&big_key)],
            BatchError::KeyTooLarge {
                index: 2,
                len: kmax + 1,
                max: kmax,
            },
        ),
        (
            id,
            vec![put(b"a", b"1"), put(&big_key, b"v")],
            BatchError::KeyTooLarge {
                index: 1,
                len: kmax + 1,
                max: kmax,
            },
        ),
        (
            id,
            vec![del(b"k"), put(b"a", b"1"), put(b"b", &big_value)],
            BatchError::ValueTooLarge {
                index: 2,
                len: MAX_VALUE_BYTES as u64 + 1,
                max: MAX_VALUE_BYTES as u64,
            },
        ),
        (frozen, vec![put(b"a", b"1")], BatchError::WritesPaused),
        (77, vec![put(b"a", b"1")], BatchError::UnknownSubDb),
    ];
    for (target, ops, err) in cases {
        let before = snapshot(&raw, &s);
        assert_eq!(s.batch(ctx(&o), target, &ops), Err(err.clone()));
        assert_eq!(s.batch(None, target, &ops), Err(err.clone()));
        assert!(snapshot(&raw, &s) == before, "{err:?} changed the store");
    }
    for len in [0usize, 15, 33] {
        let bad = OpId::from(vec![9; len]);
        let before = snapshot(&raw, &s);
        assert_eq!(
            s.batch(ctx(&bad), id, &[put(b"a", b"1")]),
            Err(BatchError::InvalidOpId { len: len as u32 })
        );
        assert!(snapshot(&raw, &s) == before);
    }
    // No failure recorded the op id: it is still fresh.
    s.batch(ctx(&o), id, &[put(b"a", b"1")]).unwrap();
    assert_eq!(s.get(id, b"a").unwrap(), Some(b"1".to_vec()));
}

#[test]
fn the_limits_themselves_are_accepted() {
    let mut s = store();
    let id = s.create_subdb(None, None, b"").unwrap();
    let many: Vec<BatchOp> = (0..MAX_BATCH_OPS as u32)
        .map(|i| put(&i.to_be_bytes(), b""))
        .collect();
    let out = s.batch(ctx(&op(1)), id, &many).unwrap();
    assert_eq!(out, BatchOutcome::default());
    assert_eq!(s.stats(id).unwrap().items, MAX_BATCH_OPS as u64);
    // Exactly MAX_BATCH_BYTES: one largest item, the rest in a second put.
    let first = put(&[7; MAX_KEY_BYTES], &vec![1; MAX_VALUE_BYTES]);
    let rest = MAX_BATCH_BYTES - first.budget_bytes() - ITEM_OVERHEAD_BYTES - 1;
    let ops = [first, put(b"x", &vec![2; rest])];
    assert_eq!(batch_budget_bytes(&ops), MAX_BATCH_BYTES);
    s.batch(ctx(&op(2)), id, &ops).unwrap();
    assert_eq!(s.get(id, b"x").unwrap().map(|v| v.len()), Some(rest));
    assert_eq!(
        s.stats(id).unwrap().bytes,
        (4 * MAX_BATCH_OPS + MAX_KEY_BYTES + MAX_VALUE_BYTES + 1 + rest) as u64
    );
}

#[test]
fn one_op_id_replays_the_first_result_and_conflicts_otherwise() {
    let mut s = store();
    let id = s.create_subdb(None, Some(2), b"").unwrap();
    let other = s.create_subdb(None, None, b"").unwrap();
    s.put(None, id, b"b", b"old").unwrap();
    let o = op(1);
    let ops = [put(b"b", b"1"), put(b"c", b"2"), put(b"d", b"3"), del(b"c")];
    let first = s.batch(ctx(&o), id, &ops).unwrap();
    assert_eq!(
        first,
        BatchOutcome {
            puts_replaced: 1,
            deletes_existed: 1,
            evicted: 1
        }
    );
    let after = contents(&s, id);
    // A retry answers the first result and applies nothing, even after later changes.
    assert_eq!(s.batch(ctx(&o), id, &ops), Ok(first));
    assert_eq!(contents(&s, id), after);
    s.delete(None, id, b"d").unwrap();
    assert_eq!(s.batch(ctx(&o), id, &ops), Ok(first));
    assert_eq!(s.get(id, b"d").unwrap(), None);
    // The outcome survives a reopen (it is in stable memory).
    let raw = VectorMemory::default();
    let mut t = open(&raw, Config::default()).unwrap();
    let tid = t.create_subdb(None, None, b"").unwrap();
    let r = t.batch(ctx(&o), tid, &[put(b"x", b"1")]).unwrap();
    drop(t);
    let mut t = open(&raw, Config::default()).unwrap();
    assert_eq!(t.batch(ctx(&o), tid, &[put(b"x", b"1")]), Ok(r));
    // Same id with other ops, other order, another SubDB, another caller, or another kind
    // of operation: refused, nothing applied.
    let before = contents(&s, id);
    let reordered = [put(b"c", b"2"), put(b"b", b"1"), put(b"d", b"3"), del(b"c")];
    let conflicts: Vec<Result<BatchOutcome, BatchError>> = vec![
        s.batch(ctx(&o), id, &ops[..3]),
        s.batch(ctx(&o), id, &reordered),
        s.batch(
            ctx(&o),
            id,
            &[
                put(b"b", b"1"),
                put(b"c", b"2"),
                put(b"d", b"3"),
                put(b"c", b""),
            ],
        ),
        s.batch(ctx(&o), other, &ops),
        s.batch(
            Some(OpCtx {
                op_id: &o,
                salt: b"mallory",
            }),
            id,
            &ops,
        ),
    ];
    for c in conflicts {
        assert_eq!(c, Err(BatchError::OpIdConflict));
    }
    assert_eq!(s.put(ctx(&o), id, b"b", b"1"), Err(PutError::OpIdConflict));
    assert_eq!(contents(&s, id), before);
    assert!(contents(&s, other).is_empty());
    // An op id of a single put is no batch's either.
    let p = op(2);
    s.put(ctx(&p), id, b"q", b"1").unwrap();
    assert_eq!(
        s.batch(ctx(&p), id, &[put(b"q", b"1")]),
        Err(BatchError::OpIdConflict)
    );
}

#[test]
fn a_live_move_ships_batches_like_single_writes() {
    let mut src = store();
    let mut dst = store();
    let id = src.create_subdb(None, Some(180), b"m").unwrap();
    fill(&mut src, id, 150, 40);
    let retried = op(42);
    let retried_ops = [put(b"op", b"x"), del(&3u32.to_be_bytes())];
    let mut first = None;
    let t = live_move(&mut src, &mut dst, id, 1_500, |s, step| {
        // Keys behind and ahead of the copy, new keys (evicting under the cap), deletes.
        let ops: Vec<BatchOp> = (0..6u32)
            .map(|j| {
                let k = ((step as u32 * 31 + j * 17) % 200).to_be_bytes();
                if j % 3 == 2 {
                    del(&k)
                } else {
                    put(&k, format!("s{step}j{j}").as_bytes())
                }
            })
            .collect();
        s.batch(None, id, &ops).unwrap();
        if step == 2 {
            first = Some(s.batch(ctx(&retried), id, &retried_ops).unwrap());
        }
    });
    assert_eq!(contents(&src, id), contents(&dst, t));
    let (a, b) = (src.stats(id).unwrap(), dst.stats(t).unwrap());
    assert_eq!((a.items, a.bytes), (b.items, b.bytes));
    // The batch's op record came along: a retry at the new home gets the first result.
    assert_eq!(
        dst.batch(ctx(&retried), t, &retried_ops),
        Ok(first.unwrap())
    );
    // The source is frozen for the cutover.
    assert_eq!(
        src.batch(None, id, &[put(b"late", b"")]),
        Err(BatchError::WritesPaused)
    );
}
