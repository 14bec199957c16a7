//! Unit tests of a move's cutover at the source (`changes.rs`): the freeze waits until the
//! rest fits one chunk, and a throttled SubDB admits a bounded budget of writes per delta.

use super::*;
use crate::changes::{change_cost, op_cost};
use crate::tests::{contents, ctx, fill, op, store, Mem};
use flotilla_types::limits::{ITEM_OVERHEAD_BYTES, OP_ID_MAX_BYTES};
use flotilla_types::{BatchOp, DeleteError, OpId, PutError};
use serde_bytes::ByteBuf;

/// A SubDB of `n` items of `vlen` bytes, copied in full into an import of `dst`: its changes
/// are all tracked from now on. Returns (source id, target id, next chunk number).
fn copied(src: &mut Store<Mem>, dst: &mut Store<Mem>, n: u32, vlen: usize) -> (u32, u32, u64) {
    let id = src.create_subdb(None, None, b"acl").unwrap();
    fill(src, id, n, vlen);
    src.begin_export(id).unwrap();
    let t = dst.begin_import();
    let (mut seq, mut token) = (0, None);
    loop {
        let (c, next) = src
            .export_chunk(id, seq, token.as_deref(), 1 << 20)
            .unwrap();
        dst.import_chunk(t, &c).unwrap();
        seq += 1;
        match next {
            Some(k) => token = Some(k),
            None => return (id, t, seq),
        }
    }
}

#[test]
fn the_freeze_waits_until_the_rest_fits_one_chunk() {
    let (mut s, mut d) = (store(), store());
    let (id, t, mut seq) = copied(&mut s, &mut d, 20, 100);
    for i in 0..30u32 {
        s.put(None, id, &i.to_be_bytes(), &[7; 100]).unwrap();
    }
    // 30 changes of 120 budget bytes do not fit 1,000: no freeze, an ordinary delta.
    let budget = 1_000;
    let mut ack = 0;
    let mut attempts = 0;
    let mut asked;
    let last = loop {
        asked = (seq, ack);
        let dl = s.export_delta(id, seq, ack, budget, true, None).unwrap();
        assert!(dl.chunk.budget_bytes() <= budget);
        d.import_chunk(t, &dl.chunk).unwrap();
        seq += 1;
        ack = dl.version;
        attempts += 1;
        if dl.frozen {
            break dl;
        }
        assert!(dl.more && dl.chunk.header.is_none());
        assert!(!s.is_frozen(id));
        // Writes go on between attempts (here: rewrites of keys already shipped).
        s.put(None, id, &0u32.to_be_bytes(), &[attempts as u8; 100])
            .unwrap();
    };
    assert!(attempts > 3, "{attempts}");
    // The frozen export is the last one: it carries the header and everything left.
    assert!(!last.more);
    assert_eq!(last.chunk.header.as_ref().unwrap().meta.as_slice(), b"acl");
    assert!(s.is_frozen(id));
    assert_eq!(s.put(None, id, b"late", b"x"), Err(PutError::WritesPaused));
    // A retry of the freeze (its answer lost) answers the same final chunk, frozen.
    let again = s
        .export_delta(id, asked.0, asked.1, budget, true, None)
        .unwrap();
    assert_eq!(again, last);
    d.finish_import(t).unwrap();
    assert_eq!(contents(&s, id), contents(&d, t));
}

#[test]
fn a_throttled_subdb_admits_writes_within_its_budget_per_delta() {
    let (mut s, mut d) = (store(), store());
    let (id, _, _) = copied(&mut s, &mut d, 5, 10);
    let (k, v) = (&[1u8; 4][..], &[2u8; 100][..]);
    let put_cost = change_cost(k.len() + v.len()) + op_cost(true);
    assert_eq!(change_cost(k.len() + v.len()), 120);
    assert_eq!(
        op_cost(true),
        THROTTLE_MIN_CHANGE_BYTES.max((OP_ID_MAX_BYTES + 32 + ITEM_OVERHEAD_BYTES) as u64)
    );
    // Not throttled: no budget.
    assert_eq!(s.write_budget_left(id), None);
    s.export_delta(id, 1, 0, 1 << 20, false, Some(3 * put_cost))
        .unwrap();
    assert_eq!(s.write_budget_left(id), Some(3 * put_cost));
    for n in 0..3u8 {
        s.put(ctx(&op(n)), id, k, v).unwrap();
    }
    assert_eq!(s.write_budget_left(id), Some(0));
    // Over budget: refused, and not recorded (the same op id applies later, once).
    let late = op(3);
    assert_eq!(s.put(ctx(&late), id, k, v), Err(PutError::WritesPaused));
    assert_eq!(s.delete(None, id, b"x"), Err(DeleteError::WritesPaused));
    let batch = [BatchOp::Delete {
        key: ByteBuf::from(b"x".to_vec()),
    }];
    assert_eq!(
        s.batch(None, id, &batch),
        Err(flotilla_types::BatchError::WritesPaused)
    );
    // A replay of an applied op id writes nothing, so it costs nothing.
    assert!(s.put(ctx(&op(2)), id, k, v).unwrap().replaced);
    // A retried export of the same chunk grants nothing new; the next chunk's does.
    s.export_delta(id, 1, 0, 1 << 20, false, Some(3 * put_cost))
        .unwrap();
    assert_eq!(s.write_budget_left(id), Some(0));
    let d1 = s
        .export_delta(id, 2, 0, 1 << 20, false, Some(3 * put_cost))
        .unwrap();
    assert_eq!(s.write_budget_left(id), Some(3 * put_cost));
    assert!(s.put(ctx(&late), id, k, v).unwrap().replaced);
    assert!(s.put(ctx(&late), id, k, v).unwrap().replaced); // replayed, not applied again
    assert_eq!(s.write_budget_left(id), Some(2 * put_cost));
    // A batch is admitted whole or not at all: 4 × 120 > 2 × 220.
    let big: Vec<BatchOp> = (0..4u8)
        .map(|i| BatchOp::Put {
            key: ByteBuf::from(vec![i; 4]),
            value: ByteBuf::from(vec![i; 100]),
        })
        .collect();
    let before = contents(&s, id);
    assert_eq!(
        s.batch(None, id, &big),
        Err(flotilla_types::BatchError::WritesPaused)
    );
    assert_eq!(contents(&s, id), before);
    s.batch(None, id, &big[..2]).unwrap();
    assert_eq!(s.write_budget_left(id), Some(2 * put_cost - 2 * 120));
    // `None` lifts the throttle.
    s.export_delta(id, 3, d1.version, 1 << 20, false, None)
        .unwrap();
    assert_eq!(s.write_budget_left(id), None);
    for n in 10..40u8 {
        s.put(ctx(&op(n)), id, &[n], v).unwrap();
    }
    // So does the end of the export (a move called off), and so does the freeze.
    s.export_delta(id, 4, 0, 1 << 20, false, Some(1)).unwrap();
    assert_eq!(s.write_budget_left(id), Some(1));
    assert!(s.resume_writes(id));
    assert_eq!(s.write_budget_left(id), None);
    s.put(None, id, b"free", v).unwrap();
    s.begin_export(id).unwrap();
    s.export_chunk(id, 0, None, 1 << 20).unwrap();
    s.export_delta(id, 1, 0, 1 << 20, false, Some(1)).unwrap();
    let last = s.export_delta(id, 2, 0, 1 << 20, true, Some(1)).unwrap();
    assert!(last.frozen);
    assert_eq!(s.write_budget_left(id), None);
    // A SubDB not being exported is never throttled.
    let other = s.create_subdb(None, None, b"").unwrap();
    s.put(ctx(&OpId::from(vec![90; 16])), other, k, v).unwrap();
}

/// A hard cap's eviction is charged with the put that causes it, at the largest key.
#[test]
fn a_put_to_a_capped_subdb_is_charged_for_its_eviction() {
    let (mut s, mut d) = (store(), store());
    let id = s.create_subdb(None, Some(3), b"").unwrap();
    fill(&mut s, id, 3, 10);
    s.begin_export(id).unwrap();
    let t = d.begin_import();
    let (c, _) = s.export_chunk(id, 0, None, 1 << 20).unwrap();
    d.import_chunk(t, &c).unwrap();
    let cost = change_cost(4 + 10) + change_cost(flotilla_types::limits::MAX_KEY_BYTES);
    s.export_delta(id, 1, 0, 1 << 20, false, Some(cost))
        .unwrap();
    s.put(None, id, &9u32.to_be_bytes(), &[1; 10]).unwrap();
    assert_eq!(s.write_budget_left(id), Some(0));
    assert_eq!(s.pending_changes(id), 2, "the put and its eviction");
}

/// A writer that writes as much as it is let, forever: unthrottled, its deltas never let the
/// freeze happen; throttled, the backlog shrinks every round and the source freezes within
/// the bound, with a final chunk inside the budget. Nothing is lost.
#[test]
fn throttled_deltas_converge_whatever_the_writer_does() {
    let (mut s, mut d) = (store(), store());
    let (id, t, mut seq) = copied(&mut s, &mut d, 300, 1_000);
    let budget: usize = 64 * 1024;
    let write_budget = (budget / 4) as u64;
    let mut n = 0u32;
    let mut op_n = 0u64;
    // Writes until refused, at most 100 puts (100 KB) a round.
    let mut write = |s: &mut Store<Mem>| {
        let mut applied = 0;
        for _ in 0..100 {
            op_n += 1;
            let o = OpId::from([op_n.to_le_bytes(), [5; 8]].concat());
            match s.put(ctx(&o), id, &(n % 300).to_be_bytes(), &[n as u8; 1_000]) {
                Ok(_) => {
                    n += 1;
                    applied += 1;
                }
                Err(PutError::WritesPaused) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        applied
    };
    let mut ack = 0;
    let mut round = |s: &mut Store<Mem>, d: &mut Store<Mem>, wb: Option<u64>| {
        let dl = s.export_delta(id, seq, ack, budget, true, wb).unwrap();
        assert!(dl.chunk.budget_bytes() <= budget, "over budget");
        d.import_chunk(t, &dl.chunk).unwrap();
        seq += 1;
        ack = dl.version;
        dl.frozen
    };
    write(&mut s);
    for _ in 0..10 {
        assert!(!round(&mut s, &mut d, None), "froze without the throttle");
        assert_eq!(write(&mut s), 100, "unthrottled");
    }
    // Throttled: the backlog (at most 300 keys of ~1 KB) shrinks by at least a chunk less
    // its header, one change and the write budget per round.
    let backlog: usize = 300 * (4 + 1_000 + 16) + 300 * 100;
    let per_round = budget - (3 + 64) - (4 + 1_000 + 16) - write_budget as usize;
    let bound = backlog.div_ceil(per_round) + 1;
    let mut rounds = 0;
    let mut admitted = 0;
    while !round(&mut s, &mut d, Some(write_budget)) {
        rounds += 1;
        assert!(rounds <= bound, "no freeze after {rounds} throttled rounds");
        let a = write(&mut s);
        assert!(a > 0 && a < 100, "{a} writes admitted");
        admitted += a;
    }
    assert!(s.is_frozen(id));
    d.finish_import(t).unwrap();
    assert_eq!(contents(&s, id), contents(&d, t));
    println!("froze after {rounds} throttled rounds (bound {bound}); {admitted} writes admitted");
}
