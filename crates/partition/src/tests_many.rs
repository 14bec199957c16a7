//! Tests of the many-item endpoints: `batch` (an update) and `get_many` (a query).

use super::*;
use crate::tests::{
    access, assert_unchanged, batch_args, create, del_op, fixture, get_args, put_args, put_op,
    snapshot, value, ANON, INDEX, OTHER_CANISTER, OWNER, READER, STRANGER, TARGET_PARTITION,
    WRITER,
};
use flotilla_types::limits::{
    GET_MANY_RESULT_OVERHEAD_BYTES, MAX_BATCH_OPS, MAX_KEY_BYTES, MAX_VALUE_BYTES,
};
use flotilla_types::OpId;

fn many(pairs: &[(SubDbId, &[u8])]) -> GetManyArgs {
    GetManyArgs {
        keys: pairs.iter().map(|(s, k)| get_args(*s, k)).collect(),
    }
}

// ---- batch --------------------------------------------------------------------------------

#[test]
fn writers_and_the_owner_batch() {
    let mut f = fixture();
    let s = f.s;
    let out =
        f.p.batch(
            WRITER,
            &batch_args(
                s,
                vec![put_op(b"a", b"w"), put_op(b"d", b"x"), del_op(b"b")],
                20,
            ),
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
    f.p.batch(OWNER, &batch_args(s, vec![del_op(b"c")], 21))
        .unwrap();
    assert_eq!(value(&f.p, READER, s, b"a"), Some(b"w".to_vec()));
    assert_eq!(value(&f.p, READER, s, b"b"), None);
    assert_eq!(value(&f.p, READER, s, b"c"), None);
    assert_eq!(value(&f.p, READER, s, b"d"), Some(b"x".to_vec()));
}

#[test]
fn authorization_matrix_batch() {
    let mut f = fixture();
    let s = f.s;
    let before = snapshot(&f);
    for who in [ANON, STRANGER, OTHER_CANISTER, INDEX, READER] {
        for ops in [
            vec![put_op(b"a", b"evil")],
            vec![put_op(b"new", b"evil"), del_op(b"b")],
            vec![],
        ] {
            // A reader is told it may not write; anyone else gets the answer of an absent
            // SubDB (the request's own checks first, as there).
            let want = if who == READER {
                BatchError::NotAuthorized
            } else if ops.is_empty() {
                BatchError::EmptyBatch
            } else {
                BatchError::UnknownSubDb
            };
            let absent = f.p.batch(who, &batch_args(999, ops.clone(), 60));
            assert_eq!(
                f.p.batch(who, &batch_args(s, ops, 60)),
                Err(want.clone()),
                "{who}"
            );
            if who != READER {
                assert_eq!(absent, Err(want), "{who}: as for an absent id");
            }
        }
    }
    assert_unchanged(&f, &before, "refused batches");
    // A refused op id was not recorded: the writer can use it afterwards.
    f.p.batch(WRITER, &batch_args(s, vec![put_op(b"a", b"ok")], 60))
        .unwrap();
    assert_eq!(value(&f.p, OWNER, s, b"a"), Some(b"ok".to_vec()));
}

#[test]
fn batch_routing_store_errors_and_op_ids() {
    let mut f = fixture();
    let s = f.s;
    // Store errors come through after authorization.
    let big = vec![0u8; MAX_KEY_BYTES + 1];
    let before = snapshot(&f);
    assert_eq!(
        f.p.batch(WRITER, &batch_args(s, vec![], 30)),
        Err(BatchError::EmptyBatch)
    );
    assert!(matches!(
        f.p.batch(
            WRITER,
            &batch_args(s, vec![put_op(b"a", b""), del_op(&big)], 30)
        ),
        Err(BatchError::KeyTooLarge { index: 1, .. })
    ));
    let too_many = (0..=MAX_BATCH_OPS).map(|_| del_op(b"")).collect();
    assert!(matches!(
        f.p.batch(WRITER, &batch_args(s, too_many, 30)),
        Err(BatchError::TooManyOps { .. })
    ));
    let short = BatchArgs {
        op_id: OpId::from(vec![1; 3]),
        ..batch_args(s, vec![put_op(b"a", b"")], 0)
    };
    assert_eq!(
        f.p.batch(WRITER, &short),
        Err(BatchError::InvalidOpId { len: 3 })
    );
    assert_eq!(
        f.p.batch(OWNER, &batch_args(999, vec![put_op(b"a", b"")], 31)),
        Err(BatchError::UnknownSubDb)
    );
    assert_unchanged(&f, &before, "refused batches");
    // Op ids: a retry gets the first result; another caller's use of the id is a conflict.
    let args = batch_args(s, vec![put_op(b"a", b"1"), put_op(b"z", b"2")], 32);
    let first = f.p.batch(WRITER, &args).unwrap();
    f.p.put(OWNER, &put_args(s, b"z", b"later", 33)).unwrap();
    assert_eq!(f.p.batch(WRITER, &args), Ok(first));
    assert_eq!(value(&f.p, OWNER, s, b"z"), Some(b"later".to_vec()));
    assert_eq!(f.p.batch(OWNER, &args), Err(BatchError::OpIdConflict));
    // Frozen for a cutover, then moved away.
    assert!(f.p.store.set_frozen(s, true));
    assert_eq!(
        f.p.batch(WRITER, &batch_args(s, vec![put_op(b"a", b"")], 34)),
        Err(BatchError::WritesPaused)
    );
    let to = InnerKey {
        partition: TARGET_PARTITION,
        subdb: 5,
    };
    f.p.release(
        INDEX,
        &ReleaseArgs {
            subdb: s,
            moved_to: to,
        },
    )
    .unwrap();
    for who in [OWNER, WRITER] {
        assert_eq!(
            f.p.batch(who, &batch_args(s, vec![put_op(b"a", b"")], 35)),
            Err(BatchError::Moved { to })
        );
    }
    for who in [STRANGER, ANON] {
        assert_eq!(
            f.p.batch(who, &batch_args(s, vec![put_op(b"a", b"")], 35)),
            Err(BatchError::UnknownSubDb)
        );
    }
}

// ---- get_many -----------------------------------------------------------------------------

#[test]
fn get_many_answers_each_pair_as_get_does() {
    let mut f = fixture();
    let s = f.s;
    // A second SubDB only the owner reads, a public one, one moved away, one deleted.
    let private = create(
        &mut f.p,
        2,
        Access {
            owner: OWNER,
            readers: vec![],
            writers: vec![],
        },
    );
    f.p.put(OWNER, &put_args(private, b"p", b"secret", 40))
        .unwrap();
    let public = create(
        &mut f.p,
        3,
        Access {
            owner: OWNER,
            readers: vec![ANON],
            writers: vec![],
        },
    );
    f.p.put(OWNER, &put_args(public, b"q", b"open", 41))
        .unwrap();
    let moved = create(&mut f.p, 4, access());
    assert!(f.p.store.set_frozen(moved, true));
    let to = InnerKey {
        partition: TARGET_PARTITION,
        subdb: 9,
    };
    f.p.release(
        INDEX,
        &ReleaseArgs {
            subdb: moved,
            moved_to: to,
        },
    )
    .unwrap();
    let big = vec![0u8; MAX_KEY_BYTES + 1];
    let pairs: Vec<(SubDbId, &[u8])> = vec![
        (s, b"a"),
        (private, b"p"),
        (s, b"missing"),
        (public, b"q"),
        (moved, b"a"),
        (999, b"a"),
        (s, &big),
        (private, b"nothing"),
        (s, b"a"), // repeats are answered again
    ];
    let args = many(&pairs);
    for who in [OWNER, READER, WRITER, STRANGER, ANON, INDEX, OTHER_CANISTER] {
        let want: Vec<_> = args.keys.iter().map(|k| f.p.get(who, k)).collect();
        let got = f.p.get_many(who, &args).unwrap();
        assert_eq!(got.results, want, "{who}");
    }
    // Spot checks of what that means.
    let r = f.p.get_many(STRANGER, &args).unwrap().results;
    assert_eq!(r[0], Err(GetError::UnknownSubDb));
    assert_eq!(r[1], Err(GetError::UnknownSubDb));
    assert_eq!(r[3], Ok(Some(ByteBuf::from(b"open".to_vec()))));
    assert_eq!(r[4], Err(GetError::UnknownSubDb));
    assert_eq!(r[5], Err(GetError::UnknownSubDb));
    let r = f.p.get_many(READER, &args).unwrap().results;
    assert_eq!(r[0], Ok(Some(ByteBuf::from(b"v".to_vec()))));
    assert_eq!(r[1], Err(GetError::UnknownSubDb));
    assert_eq!(r[2], Ok(None));
    assert!(matches!(r[6], Err(GetError::KeyTooLarge { .. })));
    assert_eq!(r[8], r[0]);
}

#[test]
fn get_many_limits_and_reply_budget() {
    let mut f = fixture();
    let s = f.s;
    assert_eq!(
        f.p.get_many(READER, &GetManyArgs::default()),
        Ok(GetManyReply::default())
    );
    let too_many = GetManyArgs {
        keys: (0..=MAX_GET_MANY_KEYS).map(|_| get_args(s, b"a")).collect(),
    };
    assert_eq!(
        f.p.get_many(READER, &too_many),
        Err(GetManyError::TooManyKeys {
            len: MAX_GET_MANY_KEYS as u64 + 1,
            max: MAX_GET_MANY_KEYS as u64
        })
    );
    let all = GetManyArgs {
        keys: (0..MAX_GET_MANY_KEYS).map(|_| get_args(s, b"a")).collect(),
    };
    assert_eq!(
        f.p.get_many(READER, &all).unwrap().results.len(),
        MAX_GET_MANY_KEYS
    );
    // Values of 700,000 bytes: two fit the 1.9 MiB budget, a third does not.
    let v = vec![5u8; 700_000];
    for (i, k) in [b"1", b"2", b"3", b"4"].iter().enumerate() {
        f.p.put(OWNER, &put_args(s, *k, &v, 50 + i as u8)).unwrap();
    }
    let keys: Vec<(SubDbId, &[u8])> = vec![(s, b"1"), (s, b"2"), (s, b"3"), (s, b"a"), (s, b"4")];
    let mut rest = many(&keys).keys;
    let mut answered = vec![];
    let mut calls = 0;
    while !rest.is_empty() {
        let reply =
            f.p.get_many(READER, &GetManyArgs { keys: rest.clone() })
                .unwrap();
        assert!(!reply.results.is_empty());
        assert!(reply.budget_bytes() <= REPLY_BUDGET_BYTES);
        assert!(
            candid::encode_one(&reply).unwrap().len() < flotilla_types::limits::MAX_MESSAGE_BYTES
        );
        rest.drain(..reply.results.len());
        answered.extend(reply.results);
        calls += 1;
    }
    assert_eq!(calls, 2);
    let want: Vec<_> = many(&keys)
        .keys
        .iter()
        .map(|k| f.p.get(READER, k))
        .collect();
    assert_eq!(answered, want);
    // One largest value always comes back alone.
    f.p.put(OWNER, &put_args(s, b"L", &vec![1; MAX_VALUE_BYTES], 60))
        .unwrap();
    let reply =
        f.p.get_many(READER, &many(&[(s, b"L"), (s, b"L"), (s, b"a")]))
            .unwrap();
    assert_eq!(reply.results.len(), 1);
    assert_eq!(
        reply.budget_bytes(),
        MAX_VALUE_BYTES + GET_MANY_RESULT_OVERHEAD_BYTES
    );
}
