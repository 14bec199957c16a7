//! Partition health (`health.rs`) and reclaims of partial imports (`reclaims.rs`), against
//! scripted partition replies.

use super::*;
use crate::health::{IMPORT_FAILURES_LIMIT, IMPORT_REFUSAL_MIN_NS, UNREACHABLE_AFTER_FAILURES};
use crate::reclaims::{
    MAX_RECLAIMS, MAX_RECLAIM_CALLS_PER_TICK, RECLAIM_BACKOFF_MAX_NS, RECLAIM_BACKOFF_MIN_NS,
};
use flotilla_types::index::MoveRequest;
use flotilla_types::limits::MAX_MOVE_FAILURES;
use flotilla_types::{ImportError, SubDbId};

fn at(now: u64) -> Env {
    Env {
        now,
        ..env(p(ADMIN))
    }
}

fn rejected() -> CallResult {
    Err(Reject {
        message: "the canister is stopped".into(),
        certain: true,
    })
}

fn move_req(key: &str) -> MoveRequest {
    MoveRequest {
        outer_key: key.to_string(),
        target: None,
    }
}

/// `with_subdb` ("a" on one active partition) plus `n` spares, oldest first.
fn with_spares(n: u32) -> (Index<Mem>, InnerKey, Vec<Principal>) {
    let (_, mut index, inner) = with_subdb();
    index.update_cfg(|c| c.spare_pool_target = n);
    let spares = provision(&mut index, &mut 1);
    assert_eq!(spares.len(), n as usize);
    (index, inner, spares)
}

fn info(index: &Index<Mem>, id: Principal) -> PartitionInfo {
    index
        .stats()
        .partitions
        .into_iter()
        .find(|x| x.id == id)
        .unwrap()
}

/// The one call of `calls` to `target`, which must be a `begin_import`.
fn begin_import_to(calls: &[Call], target: Principal) -> Call {
    let c: Vec<&Call> = calls
        .iter()
        .filter(|c| matches!(c.request, Request::BeginImport(_)))
        .collect();
    assert_eq!(c.len(), 1, "{calls:?}");
    assert_eq!(c[0].target, target, "{calls:?}");
    c[0].clone()
}

/// The seed figure of issue 10: a move whose target never answers `begin_import` is not
/// started again and again to that target. After `IMPORT_FAILURES_LIMIT` failed calls the
/// target refuses imports and the move moves on to the next partition with room, well
/// within its failure budget; a new SubDB is not placed on the refusing partition either.
#[test]
fn a_move_whose_target_fails_at_begin_import_is_retargeted_and_the_target_passed_over() {
    let (mut index, inner, spares) = with_spares(2);
    let (dead, next) = (spares[0], spares[1]);
    let (target, calls) = index.move_subdb(&at(1_000), &move_req("a")).unwrap();
    assert_eq!(target, dead);
    let mut call = begin_import_to(&calls, dead);
    let mut now = 1_000;
    for i in 1..=IMPORT_FAILURES_LIMIT {
        index.on_reply(&at(now), call.id, rejected());
        now += 1_000;
        let calls = index.tick(&at(now));
        let m = &index.list_moves()[0];
        if i < IMPORT_FAILURES_LIMIT {
            assert_eq!(m.target, dead, "after {i} failures");
            call = begin_import_to(&calls, dead);
        } else {
            // Retargeted: same SubDB, same source, same start, another target.
            assert_eq!((m.source, m.target, m.started_at), (inner, next, 1_000));
            assert_eq!(m.phase, "begin-import");
            let c = begin_import_to(&calls, next);
            // A fresh op id: not the dead target's import.
            assert_ne!(c.request, call.request);
        }
    }
    // (Within the move's failure budget: `health.rs` asserts the limit below it.)
    let h = info(&index, dead).health.unwrap();
    assert_eq!(
        h.imports_refused_until,
        Some(now - 1_000 + IMPORT_REFUSAL_MIN_NS)
    );
    assert_eq!(h.unreachable_since, None);
    // The import the dead target may have opened is left to a reclaim.
    assert_eq!(index.reclaims_pending(), 1);
    assert_eq!(index.reclaims()[0].target, dead);
    assert_eq!(index.reclaims()[0].subdb, None);
    // New SubDBs go elsewhere while it refuses imports (it is newer than `inner`'s).
    let c = awaited(index.create_subdb(&at(now), create_req("b", 2)));
    assert_ne!(c.target, dead);
    // Once the refusal ends it may be chosen again.
    assert!(!index.healthy(&dead, now + IMPORT_REFUSAL_MIN_NS - 1_001));
    assert!(index.healthy(&dead, now + IMPORT_REFUSAL_MIN_NS));
}

/// The move the index itself starts off a partition over the move cap: given up on a dead
/// target, the next one (at the source's next stats) chooses another target instead of the
/// same one. Before partition health, every new move went to the dead partition again.
#[test]
fn a_dead_partition_is_not_chosen_again_by_the_moves_the_index_starts() {
    let (mut index, inner, spares) = with_spares(1);
    let dead = spares[0];
    let src = inner.partition;
    let c = awaited(index.create_subdb(&env(p(ALICE)), create_req("b", 2)));
    index.on_reply(&env(p(ALICE)), c.id, Ok(Response::SubDbCreated(Ok(8))));
    // The source reports itself over the cap: a move of "a" to the spare starts.
    let over = |subdbs: &[(u32, u64)]| PartitionStats {
        bytes: 5_000,
        live_subdbs: 2,
        subdbs: subdbs
            .iter()
            .map(|(id, bytes)| flotilla_types::SubDbStats {
                id: *id,
                bytes: *bytes,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let mut now = 1_000 + DEFAULT_STATS_PERIOD_NS;
    let mut targets = vec![];
    let mut begun = 0;
    for _ in 0..200 {
        now += 1_000_000_000;
        let calls = index.tick(&at(now));
        let mut queue = calls;
        while let Some(call) = queue.pop() {
            let result = if call.target == dead {
                rejected()
            } else {
                match &call.request {
                    Request::Stats(_) if call.target == src => {
                        Ok(Response::Stats(Ok(over(&[(7, 300), (8, 200)]))))
                    }
                    Request::Stats(_) => Ok(Response::Stats(Ok(PartitionStats::default()))),
                    Request::BeginImport(_) => {
                        begun += 1;
                        targets.push(call.target);
                        // Keep the healthy target's move waiting (never answered).
                        continue;
                    }
                    Request::CanisterStatus { .. } => Ok(Response::Status {
                        cycles: 1_000_000_000_000,
                        module_hash: None,
                        stopped: false,
                    }),
                    Request::CreateCanister { .. } => {
                        Ok(Response::CanisterCreated(p(150 + targets.len() as u8)))
                    }
                    Request::InstallCode { .. } => Ok(Response::Installed),
                    _ => continue,
                }
            };
            if matches!(call.request, Request::BeginImport(_)) && call.target == dead {
                targets.push(dead);
            }
            queue.extend(index.on_reply(&at(now), call.id, result).calls);
        }
        if begun > 0 {
            break;
        }
    }
    // Begin-imports to the dead spare until it was found refusing imports, then to another.
    let to_dead = targets.iter().filter(|t| **t == dead).count() as u32;
    assert_eq!(to_dead, IMPORT_FAILURES_LIMIT, "{targets:?}");
    assert_ne!(*targets.last().unwrap(), dead);
    assert_eq!(begun, 1);
}

/// A partition whose calls keep failing (its stats, here) is unreachable: new SubDBs go
/// elsewhere until it answers again.
#[test]
fn an_unreachable_partition_takes_no_new_subdbs_until_it_answers() {
    let (mut index, inner, _) = with_spares(1);
    let newest = inner.partition;
    let mut now = 1_000;
    for i in 0..UNREACHABLE_AFTER_FAILURES {
        now += DEFAULT_STATS_PERIOD_NS;
        let stats: Vec<Call> = index
            .tick(&at(now))
            .into_iter()
            .filter(|c| matches!(c.request, Request::Stats(_)) && c.target == newest)
            .collect();
        assert_eq!(stats.len(), 1, "period {i}");
        let h = info(&index, newest).health.unwrap();
        assert_eq!(h.unreachable_since, None);
        index.on_reply(&at(now), stats[0].id, rejected());
    }
    let h = info(&index, newest).health.unwrap();
    assert_eq!(
        (h.failed_calls, h.unreachable_since),
        (UNREACHABLE_AFTER_FAILURES, Some(now))
    );
    // "b" goes to the spare (promoted), not to the unreachable partition.
    let c = awaited(index.create_subdb(&at(now), create_req("b", 2)));
    assert_ne!(c.target, newest);
    index.on_reply(&at(now), c.id, Ok(Response::SubDbCreated(Ok(1))));
    // Its stats answer: it is healthy again (and it is still the partition "a" is on).
    now += DEFAULT_STATS_PERIOD_NS;
    for c in index.tick(&at(now)) {
        if matches!(c.request, Request::Stats(_)) {
            index.on_reply(
                &at(now),
                c.id,
                Ok(Response::Stats(Ok(PartitionStats::default()))),
            );
        }
    }
    let h = info(&index, newest).health.unwrap();
    assert_eq!((h.failed_calls, h.unreachable_since), (0, None));
}

/// Starts a move of "a" to the one spare and takes it to the copy; returns the target, the
/// target's import id and the time.
fn move_to_copy(index: &mut Index<Mem>, inner: InnerKey, target: Principal) -> (SubDbId, u64) {
    let now = 1_000;
    let (t, calls) = index.move_subdb(&at(now), &move_req("a")).unwrap();
    assert_eq!(t, target);
    let c = begin_import_to(&calls, target);
    let r = index.on_reply(&at(now), c.id, Ok(Response::ImportBegun(Ok(4))));
    assert_eq!(r.calls[0].target, inner.partition);
    let r = index.on_reply(&at(now), r.calls[0].id, Ok(Response::ExportBegun(Ok(()))));
    assert!(matches!(r.calls[0].request, Request::ExportChunk(_)));
    (4, now)
}

/// The reclaim finding of issue 10: a move called off while its target is down gives up its
/// `abort_import` after the failure budget; the partial import is not left behind. A reclaim
/// record keeps it; `tick` retries it with backoff until the target answers; it survives an
/// upgrade; stats show it pending.
#[test]
fn an_abort_the_target_does_not_answer_is_retried_until_it_does() {
    let (raw, mut index, inner) = with_subdb();
    let target = provision(&mut index, &mut 1)[0];
    let (id, mut now) = move_to_copy(&mut index, inner, target);
    let unwind = index.cancel_move(&at(now), "a").unwrap();
    let r = index.on_reply(&at(now), unwind[0].id, Ok(Response::WritesResumed(Ok(()))));
    // `abort_import` to the target, which is down from now on.
    let mut abort = r.calls[0].clone();
    assert_eq!(abort.request, Request::AbortImport(id));
    for _ in 0..MAX_MOVE_FAILURES {
        index.on_reply(&at(now), abort.id, rejected());
        now += 1_000;
        let calls: Vec<Call> = index
            .tick(&at(now))
            .into_iter()
            .filter(|c| c.request == Request::AbortImport(id))
            .collect();
        if index.list_moves().is_empty() {
            assert!(calls.is_empty());
            break;
        }
        abort = calls[0].clone();
    }
    assert!(index.list_moves().is_empty(), "the move is given up");
    assert_eq!(index.stats().reclaims_pending, Some(1));
    let rec = &index.reclaims()[0];
    assert_eq!((rec.target, rec.subdb), (target, Some(id)));
    // An upgrade keeps it, due as before.
    let m = mm(&raw);
    let mut index = Index::open(|i| m.get(i)).unwrap();
    let mut waits = vec![];
    let mut last = now;
    for _ in 0..8 {
        // The next tick at which it is due sends it; the target is still down.
        let mut t = last;
        let call = loop {
            t += 1_000_000_000;
            let aborts: Vec<Call> = index
                .tick(&at(t))
                .into_iter()
                .filter(|c| c.target == target && c.request == Request::AbortImport(id))
                .collect();
            if let Some(c) = aborts.into_iter().next() {
                break c;
            }
        };
        waits.push(t - last);
        last = t;
        index.on_reply(&at(t), call.id, rejected());
    }
    // Backoff: waits grow, and never past its cap (plus the tick's second).
    assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
    assert!(waits[0] >= RECLAIM_BACKOFF_MIN_NS, "{waits:?}");
    assert!(
        *waits.last().unwrap() <= RECLAIM_BACKOFF_MAX_NS + 1_000_000_000,
        "{waits:?}"
    );
    // The target answers: reclaimed, the record gone.
    let t = last + RECLAIM_BACKOFF_MAX_NS;
    let call = index
        .tick(&at(t))
        .into_iter()
        .find(|c| c.request == Request::AbortImport(id))
        .unwrap();
    index.on_reply(&at(t), call.id, Ok(Response::ImportAborted(Ok(()))));
    assert_eq!(index.stats().reclaims_pending, Some(0));
    assert!(index
        .tick(&at(t + 10 * RECLAIM_BACKOFF_MAX_NS))
        .iter()
        .all(|c| !matches!(c.request, Request::AbortImport(_))));
}

/// A move given up at begin-import (no other target with room) leaves a reclaim without an
/// import id: it learns the id with the move's own op id, then aborts that import.
#[test]
fn a_reclaim_without_an_id_learns_it_from_the_moves_op_id() {
    let (_, mut index, inner) = with_subdb();
    let target = provision(&mut index, &mut 1)[0];
    let (_, calls) = index.move_subdb(&at(1_000), &move_req("a")).unwrap();
    let first = begin_import_to(&calls, target);
    let mut call = first.clone();
    let mut now = 1_000;
    while !index.list_moves().is_empty() {
        index.on_reply(&at(now), call.id, rejected());
        now += 1_000;
        if let Some(c) = index
            .tick(&at(now))
            .into_iter()
            .find(|c| matches!(c.request, Request::BeginImport(_)))
        {
            call = c;
        }
    }
    // No other partition had room: a new one is coming, and the reclaim waits.
    assert_eq!(index.stats().partitions_being_created, 1);
    assert_eq!(index.reclaims_pending(), 1);
    assert_eq!(index.reclaims()[0].subdb, None);
    let t = now + RECLAIM_BACKOFF_MIN_NS;
    let learn = index
        .tick(&at(t))
        .into_iter()
        .find(|c| c.target == target && matches!(c.request, Request::BeginImport(_)))
        .expect("a begin_import with the move's op id");
    assert_eq!(learn.request, first.request);
    let r = index.on_reply(&at(t), learn.id, Ok(Response::ImportBegun(Ok(9))));
    assert_eq!(r.calls.len(), 1);
    assert_eq!(r.calls[0].target, target);
    assert_eq!(r.calls[0].request, Request::AbortImport(9));
    // Already gone counts as reclaimed.
    index.on_reply(
        &at(t),
        r.calls[0].id,
        Ok(Response::ImportAborted(Err(ImportError::UnknownImport))),
    );
    assert_eq!(index.reclaims_pending(), 0);
    assert_eq!(index.route(&["a".into()]).unwrap()[0], Some(inner));
}

/// Reclaim calls per tick are bounded, most overdue first; a full list drops (and counts)
/// what does not fit.
#[test]
fn reclaims_are_bounded_per_tick_and_in_number() {
    let (_, mut index) = fresh();
    let target = p(77);
    let n = MAX_RECLAIM_CALLS_PER_TICK as u64 * 2 + 3;
    for i in 0..n {
        let op = ByteBuf::from([i.to_be_bytes(), [1; 8]].concat());
        index.record_reclaim(&at(i), "x", target, &op, Some(i as u32));
    }
    let t = n + RECLAIM_BACKOFF_MIN_NS;
    let first = index.tick(&at(t));
    let aborts: Vec<&Call> = first
        .iter()
        .filter(|c| matches!(c.request, Request::AbortImport(_)))
        .collect();
    assert_eq!(aborts.len(), MAX_RECLAIM_CALLS_PER_TICK);
    assert_eq!(aborts[0].request, Request::AbortImport(0));
    let second = index.tick(&at(t));
    assert_eq!(
        second
            .iter()
            .filter(|c| matches!(c.request, Request::AbortImport(_)))
            .count(),
        MAX_RECLAIM_CALLS_PER_TICK
    );
    // Full: the rest is dropped and counted.
    for i in n..MAX_RECLAIMS + 2 {
        let op = ByteBuf::from([i.to_be_bytes(), [1; 8]].concat());
        index.record_reclaim(&at(0), "x", target, &op, Some(0));
    }
    let s = index.stats();
    assert_eq!(s.reclaims_pending, Some(MAX_RECLAIMS));
    assert_eq!(s.reclaims_dropped, Some(2));
}
