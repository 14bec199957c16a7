//! The core's policy, step by step, against scripted answers. (The whole client against a
//! simulated deployment is tested in `crates/sim/tests/client.rs`.)

use crate::core::{Action, CallKind, Error, Machine, Policy, RejectCode, RouteCache};
use crate::ops::{Get, Put};
use crate::TransportError;
use candid::Principal;
use flotilla_types::dispatch::encode_args;
use flotilla_types::index::RouteError;
use flotilla_types::{GetError, InnerKey, OpId, PutError, PutOutcome};
use serde_bytes::ByteBuf;
use std::time::Duration;

fn pid(n: u8) -> Principal {
    Principal::from_slice(&[n; 10])
}

fn ik(p: u8, s: u32) -> InnerKey {
    InnerKey {
        partition: pid(p),
        subdb: s,
    }
}

const INDEX: u8 = 1;

fn put() -> Put {
    Put {
        outer: "notes".into(),
        key: ByteBuf::from(b"k".to_vec()),
        value: ByteBuf::from(b"v".to_vec()),
        op_id: OpId::from(vec![7; 16]),
    }
}

fn get() -> Get {
    Get {
        outer: "notes".into(),
        key: ByteBuf::from(b"k".to_vec()),
    }
}

fn route_reply(r: Option<InnerKey>) -> Vec<u8> {
    encode_args((Ok::<_, RouteError>(vec![r]),))
}

fn sent<T: std::fmt::Debug, E: std::fmt::Debug>(a: &Action<T, E>) -> (Principal, &'static str) {
    match a {
        Action::Send(c) => (c.canister, c.method),
        other => panic!("expected a send, got {other:?}"),
    }
}

#[test]
fn a_cache_hit_is_one_call_to_the_partition() {
    let mut cache = RouteCache::default();
    cache.insert("notes", ik(5, 3));
    let mut m = Machine::new(get(), pid(INDEX), Policy::default());
    let a = m.resume(&cache);
    assert_eq!(sent(&a), (pid(5), "get"));
    let Action::Send(c) = &a else { unreachable!() };
    assert_eq!(c.kind, CallKind::Query);
    let done = m.on_reply(
        &mut cache,
        Ok(encode_args((Ok::<_, GetError>(Some(ByteBuf::from(
            b"v".to_vec(),
        ))),))),
    );
    assert_eq!(done, Action::Done(Ok(Some(ByteBuf::from(b"v".to_vec())))));
    assert_eq!(m.attempts(), 1);
}

#[test]
fn a_miss_asks_the_index_then_the_partition() {
    let mut cache = RouteCache::default();
    let mut m = Machine::new(get(), pid(INDEX), Policy::default());
    assert_eq!(sent(&m.resume(&cache)), (pid(INDEX), "route"));
    let a = m.on_reply(&mut cache, Ok(route_reply(Some(ik(4, 2)))));
    assert_eq!(sent(&a), (pid(4), "get"));
    assert_eq!(cache.get("notes"), Some(ik(4, 2)));
    // Nothing by that name: a final NotFound, and no stale route left behind.
    let mut m = Machine::new(get(), pid(INDEX), Policy::default());
    cache.remove("notes");
    m.resume(&cache);
    let a = m.on_reply(&mut cache, Ok(route_reply(None)));
    assert_eq!(
        a,
        Action::Done(Err(Error::NotFound {
            outer_key: "notes".into()
        }))
    );
}

#[test]
fn moved_is_followed_at_once_and_cached() {
    let mut cache = RouteCache::default();
    cache.insert("notes", ik(5, 3));
    let mut m = Machine::new(put(), pid(INDEX), Policy::default());
    let Action::Send(first) = m.resume(&cache) else {
        panic!()
    };
    let a = m.on_reply(
        &mut cache,
        Ok(encode_args((Err::<PutOutcome, _>(PutError::Moved {
            to: ik(6, 9),
        }),))),
    );
    let Action::Send(second) = &a else {
        panic!("{a:?}")
    };
    assert_eq!(second.canister, pid(6));
    assert_eq!(cache.get("notes"), Some(ik(6, 9)));
    // Same op id, other SubDB id: only the address changed.
    let d1: (flotilla_types::partition::PutArgs,) = candid::decode_args(&first.arg).unwrap();
    let d2: (flotilla_types::partition::PutArgs,) = candid::decode_args(&second.arg).unwrap();
    assert_eq!(d1.0.op_id, d2.0.op_id);
    assert_eq!((d1.0.subdb, d2.0.subdb), (3, 9));
    assert_eq!(m.attempts(), 1, "a hop is not a retry");
}

#[test]
fn redirects_are_bounded() {
    let mut cache = RouteCache::default();
    cache.insert("notes", ik(5, 3));
    let policy = Policy {
        max_redirects: 2,
        ..Policy::default()
    };
    let mut m = Machine::new(put(), pid(INDEX), policy);
    m.resume(&cache);
    let moved = |n: u8| {
        Ok(encode_args((Err::<PutOutcome, _>(PutError::Moved {
            to: ik(10 + n, 1),
        }),)))
    };
    assert!(matches!(m.on_reply(&mut cache, moved(0)), Action::Send(_)));
    assert!(matches!(m.on_reply(&mut cache, moved(1)), Action::Send(_)));
    // A third hop: ask the index for the current home instead of following the chain.
    let a = m.on_reply(&mut cache, moved(2));
    assert_eq!(sent(&a), (pid(INDEX), "route"));
    let a = m.on_reply(&mut cache, Ok(route_reply(Some(ik(20, 1)))));
    assert_eq!(sent(&a), (pid(20), "put"));
    assert!(matches!(m.on_reply(&mut cache, moved(3)), Action::Send(_)));
    assert!(matches!(m.on_reply(&mut cache, moved(4)), Action::Send(_)));
    assert!(matches!(
        m.on_reply(&mut cache, moved(5)),
        Action::Done(Err(Error::TooManyRedirects { .. }))
    ));
}

#[test]
fn unknown_refreshes_the_route_once() {
    let unknown = || {
        Ok(encode_args((Err::<Option<ByteBuf>, _>(
            GetError::UnknownSubDb,
        ),)))
    };
    let mut cache = RouteCache::default();
    cache.insert("notes", ik(5, 3));
    let mut m = Machine::new(get(), pid(INDEX), Policy::default());
    m.resume(&cache);
    let a = m.on_reply(&mut cache, unknown());
    assert_eq!(sent(&a), (pid(INDEX), "route"));
    assert_eq!(cache.get("notes"), None);
    // The index knows a newer home: go there.
    let a = m.on_reply(&mut cache, Ok(route_reply(Some(ik(7, 1)))));
    assert_eq!(sent(&a), (pid(7), "get"));
    // Unknown there too: final, no second refresh.
    assert_eq!(
        m.on_reply(&mut cache, unknown()),
        Action::Done(Err(Error::Refused(GetError::UnknownSubDb)))
    );
    // The index naming the same place that just said unknown is final as well.
    let mut m = Machine::new(get(), pid(INDEX), Policy::default());
    cache.insert("notes", ik(5, 3));
    m.resume(&cache);
    m.on_reply(&mut cache, unknown());
    assert_eq!(
        m.on_reply(&mut cache, Ok(route_reply(Some(ik(5, 3))))),
        Action::Done(Err(Error::Refused(GetError::UnknownSubDb)))
    );
}

#[test]
fn transient_failures_retry_with_the_same_bytes_until_the_budget() {
    let policy = Policy {
        max_attempts: 3,
        ..Policy::default()
    };
    let mut cache = RouteCache::default();
    cache.insert("notes", ik(5, 3));
    let mut m = Machine::new(put(), pid(INDEX), policy);
    let Action::Send(first) = m.resume(&cache) else {
        panic!()
    };
    let lost = || {
        Err(TransportError::new(
            RejectCode::SysUnknown,
            "reply lost (timeout)",
        ))
    };
    assert_eq!(m.on_reply(&mut cache, lost()), Action::Wait { attempt: 1 });
    let Action::Send(again) = m.resume(&cache) else {
        panic!()
    };
    assert_eq!(again, first, "a retry sends exactly the same call");
    let paused = Ok(encode_args((Err::<PutOutcome, _>(PutError::WritesPaused),)));
    assert_eq!(m.on_reply(&mut cache, paused), Action::Wait { attempt: 2 });
    m.resume(&cache);
    assert!(matches!(
        m.on_reply(&mut cache, lost()),
        Action::Done(Err(Error::GaveUp { attempts: 3, .. }))
    ));
}

/// Regression: route queries were not counted, so a read with no cached route whose index
/// kept failing retried forever (found by the ic-agent wire test).
#[test]
fn a_failing_route_query_gives_up_within_the_budget() {
    let policy = Policy {
        max_attempts: 3,
        ..Policy::default()
    };
    let mut cache = RouteCache::default();
    let mut m = Machine::new(get(), pid(INDEX), policy);
    let busy = || Err(TransportError::new(RejectCode::SysTransient, "busy"));
    assert_eq!(sent(&m.resume(&cache)), (pid(INDEX), "route"));
    assert_eq!(m.on_reply(&mut cache, busy()), Action::Wait { attempt: 1 });
    assert_eq!(sent(&m.resume(&cache)), (pid(INDEX), "route"));
    assert_eq!(m.on_reply(&mut cache, busy()), Action::Wait { attempt: 2 });
    assert_eq!(sent(&m.resume(&cache)), (pid(INDEX), "route"));
    assert!(matches!(
        m.on_reply(&mut cache, busy()),
        Action::Done(Err(Error::GaveUp { attempts: 3, .. }))
    ));
}

#[test]
fn final_answers_and_hard_rejects_end_at_once() {
    let mut cache = RouteCache::default();
    cache.insert("notes", ik(5, 3));
    let mut m = Machine::new(put(), pid(INDEX), Policy::default());
    m.resume(&cache);
    let refused = Ok(encode_args(
        (Err::<PutOutcome, _>(PutError::NotAuthorized),),
    ));
    assert_eq!(
        m.on_reply(&mut cache, refused),
        Action::Done(Err(Error::Refused(PutError::NotAuthorized)))
    );
    let mut m = Machine::new(put(), pid(INDEX), Policy::default());
    m.resume(&cache);
    let e = TransportError::new(RejectCode::DestinationInvalid, "no such canister");
    assert_eq!(
        m.on_reply(&mut cache, Err(e.clone())),
        Action::Done(Err(Error::Rejected(e)))
    );
    let mut m = Machine::new(put(), pid(INDEX), Policy::default());
    m.resume(&cache);
    assert!(matches!(
        m.on_reply(&mut cache, Ok(b"not candid".to_vec())),
        Action::Done(Err(Error::BadReply { method: "put", .. }))
    ));
}

#[test]
fn backoff_grows_and_stays_bounded() {
    let p = Policy {
        base_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        ..Policy::default()
    };
    for attempt in 0..40 {
        for jitter in [0, 1, u64::MAX / 3, u64::MAX] {
            let d = p.backoff(attempt, jitter);
            assert!(
                d >= p.base_backoff && d <= p.base_backoff + p.max_backoff,
                "{d:?}"
            );
        }
    }
    assert!(p.backoff(1, u64::MAX).as_nanos() <= 300_000_000);
    assert_eq!(p.backoff(3, 0), p.base_backoff);
}
