//! `move_subdb`, an admin's request to move one SubDB, against scripted partition replies.
//! The moves themselves, over real partitions, are in `tests/moves.rs`.

use super::*;
use crate::dispatch::{self, Outcome};
use flotilla_types::dispatch::{encode_args, MethodKind};
use flotilla_types::index::{CancelMoveError, MoveRequest, MoveSubDbError};

fn req(key: &str, target: Option<Principal>) -> MoveRequest {
    MoveRequest {
        outer_key: key.to_string(),
        target,
    }
}

/// Everything a refused request must leave as it was.
fn snapshot(index: &Index<Mem>) -> (IndexStats, u64, u64, u64) {
    (
        index.stats(),
        index.cfg().next_call_id,
        index.inflight.len(),
        index.jobs.len(),
    )
}

/// `with_subdb` ("a" on the one active partition) plus a spare; returns the source and the
/// spare.
fn with_subdb_and_spare() -> (Index<Mem>, InnerKey, Principal) {
    let (_, mut index, inner) = with_subdb();
    let spare = provision(&mut index, &mut 1);
    assert_eq!(spare.len(), 1);
    (index, inner, spare[0])
}

fn partition(index: &Index<Mem>, id: Principal) -> PartitionInfo {
    index
        .stats()
        .partitions
        .into_iter()
        .find(|p| p.id == id)
        .unwrap()
}

fn begin_import_to(calls: &[Call], target: Principal) {
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].target, target);
    assert!(matches!(calls[0].request, Request::BeginImport(_)));
}

#[test]
fn move_subdb_is_for_admins_only_and_a_refusal_changes_nothing() {
    let (mut index, inner, spare) = with_subdb_and_spare();
    let before = snapshot(&index);
    // The owner of the SubDB is no admin either.
    for caller in [Principal::anonymous(), p(ALICE), p(BOB)] {
        for target in [None, Some(spare)] {
            assert_eq!(
                index.move_subdb(&env(caller), &req("a", target)),
                Err(MoveSubDbError::NotAuthorized)
            );
            assert_eq!(snapshot(&index), before);
        }
    }
    assert_eq!(partition(&index, spare).state, PartitionState::Spare);
    assert_eq!(index.route(&["a".into()]).unwrap()[0], Some(inner));
}

#[test]
fn move_subdb_refuses_unknown_busy_and_moving_subdbs() {
    let (mut index, inner, spare) = with_subdb_and_spare();
    let admin = env(p(ADMIN));
    let before = snapshot(&index);
    assert_eq!(
        index.move_subdb(&admin, &req("nope", None)),
        Err(MoveSubDbError::UnknownOuterKey)
    );
    assert_eq!(snapshot(&index), before);
    // Being created: busy.
    let create = awaited(index.create_subdb(&env(p(ALICE)), create_req("b", 2)));
    assert_eq!(
        index.move_subdb(&admin, &req("b", Some(spare))),
        Err(MoveSubDbError::Busy)
    );
    index.on_reply(&admin, create.id, Ok(Response::SubDbCreated(Ok(8))));
    // Being deleted: busy.
    let delete = DeleteRequest {
        outer_key: "b".into(),
        op_id: op(3),
    };
    let del = awaited(index.delete_subdb(&env(p(ALICE)), delete));
    assert_eq!(
        index.move_subdb(&admin, &req("b", Some(spare))),
        Err(MoveSubDbError::Busy)
    );
    index.on_reply(&admin, del.id, Ok(Response::SubDbDeleted(Ok(()))));
    // Moving already, whatever the target asked for.
    let (target, calls) = index.move_subdb(&admin, &req("a", None)).unwrap();
    assert_eq!(target, spare);
    begin_import_to(&calls, spare);
    for t in [None, Some(spare), Some(inner.partition)] {
        assert_eq!(
            index.move_subdb(&admin, &req("a", t)),
            Err(MoveSubDbError::AlreadyMoving)
        );
    }
    assert_eq!(index.list_moves().len(), 1);
}

#[test]
fn move_subdb_checks_the_named_target() {
    let (mut index, inner, spare) = with_subdb_and_spare();
    let admin = env(p(ADMIN));
    let before = snapshot(&index);
    assert_eq!(
        index.move_subdb(&admin, &req("a", Some(inner.partition))),
        Err(MoveSubDbError::SameAsSource)
    );
    for stranger in [p(ALICE), Principal::management_canister(), p(200)] {
        assert_eq!(
            index.move_subdb(&admin, &req("a", Some(stranger))),
            Err(MoveSubDbError::UnknownPartition)
        );
    }
    assert_eq!(snapshot(&index), before);
    // A full partition takes no SubDB.
    let mut rec = index.registry.get(&spare).unwrap();
    rec.state = PartitionState::Full;
    index.registry.insert(spare, rec.clone());
    assert_eq!(
        index.move_subdb(&admin, &req("a", Some(spare))),
        Err(MoveSubDbError::TargetFull)
    );
    assert!(index.list_moves().is_empty());
    // A spare is promoted to active (and newest), as placement does.
    rec.state = PartitionState::Spare;
    index.registry.insert(spare, rec);
    let (target, calls) = index.move_subdb(&admin, &req("a", Some(spare))).unwrap();
    assert_eq!(target, spare);
    begin_import_to(&calls, spare);
    assert_eq!(partition(&index, spare).state, PartitionState::Active);
    let newest = index.partitions_in_order().last().unwrap().0;
    assert_eq!(newest, spare);
    let m = &index.list_moves()[0];
    assert_eq!(
        (m.outer_key.as_str(), m.source, m.target, m.phase.as_str()),
        ("a", inner, spare, "begin-import")
    );
    // The index knows no per-SubDB size: the move records 0 bytes.
    assert_eq!(m.bytes, 0);
}

#[test]
fn move_subdb_to_an_active_partition_named() {
    let (mut index, inner, spare) = with_subdb_and_spare();
    let admin = env(p(ADMIN));
    // "b" goes to the newest active partition with room: the one "a" is on. Promote the spare
    // by naming it for "a", then move "b" to the same (now active) partition.
    let c = awaited(index.create_subdb(&env(p(ALICE)), create_req("b", 2)));
    assert_eq!(c.target, inner.partition);
    index.on_reply(&admin, c.id, Ok(Response::SubDbCreated(Ok(8))));
    index.move_subdb(&admin, &req("a", Some(spare))).unwrap();
    let (target, calls) = index.move_subdb(&admin, &req("b", Some(spare))).unwrap();
    assert_eq!(target, spare);
    begin_import_to(&calls, spare);
    assert_eq!(index.list_moves().len(), 2);
}

#[test]
fn move_subdb_without_room_starts_a_partition_and_a_retry_uses_it() {
    let (_, mut index, inner) = with_subdb();
    let admin = env(p(ADMIN));
    assert_eq!(index.stats().partitions_being_created, 0);
    assert_eq!(
        index.move_subdb(&admin, &req("a", None)),
        Err(MoveSubDbError::NoTarget)
    );
    assert!(index.list_moves().is_empty());
    assert_eq!(index.stats().partitions_being_created, 1);
    // Asking again starts no second partition.
    assert_eq!(
        index.move_subdb(&admin, &req("a", None)),
        Err(MoveSubDbError::NoTarget)
    );
    assert_eq!(index.stats().partitions_being_created, 1);
    let new = provision(&mut index, &mut 1);
    assert_eq!(new.len(), 1);
    let (target, calls) = index.move_subdb(&admin, &req("a", None)).unwrap();
    assert_eq!(target, new[0]);
    assert_ne!(target, inner.partition);
    begin_import_to(&calls, target);
}

#[test]
fn a_moved_subdb_cannot_move_again_until_the_calls_of_its_cancelled_move_are_answered() {
    let (mut index, inner, spare) = with_subdb_and_spare();
    let admin = env(p(ADMIN));
    let (_, calls) = index.move_subdb(&admin, &req("a", Some(spare))).unwrap();
    let begin_import = calls[0].clone();
    // Called off while `begin_import` is out: the source resumes writes, and with no import
    // id learnt the move is forgotten.
    let unwind = index.cancel_move(&admin, "a").unwrap();
    assert_eq!(unwind.len(), 1);
    assert_eq!(unwind[0].target, inner.partition);
    assert_eq!(unwind[0].request, Request::ResumeWrites(inner.subdb));
    let r = index.on_reply(&admin, unwind[0].id, Ok(Response::WritesResumed(Ok(()))));
    assert!(r.calls.is_empty());
    assert!(index.list_moves().is_empty());
    assert_eq!(
        index.cancel_move(&admin, "a"),
        Err(CancelMoveError::UnknownMove)
    );
    // Its `begin_import` reply would be taken for a new move's: wait for it.
    assert_eq!(
        index.move_subdb(&admin, &req("a", None)),
        Err(MoveSubDbError::Busy)
    );
    index.on_reply(&admin, begin_import.id, Ok(Response::ImportBegun(Ok(3))));
    let (target, calls) = index.move_subdb(&admin, &req("a", None)).unwrap();
    assert_eq!(target, spare);
    begin_import_to(&calls, spare);
    // A new move, with a new op id.
    assert_ne!(calls[0].request, begin_import.request);
}

#[test]
fn move_subdb_through_the_dispatcher() {
    let (mut index, inner, spare) = with_subdb_and_spare();
    assert_eq!(
        dispatch::method_kind("move_subdb"),
        Some(MethodKind::Update)
    );
    assert!(dispatch::methods().iter().any(|m| m.name == "move_subdb"));
    let call = |index: &mut Index<Mem>, caller: u8, r: MoveRequest| {
        let out = dispatch::update(index, &env(p(caller)), "move_subdb", &encode_args((r,)));
        match out.unwrap() {
            Outcome::Reply { reply, calls } => {
                let reply: Result<Principal, MoveSubDbError> = candid::decode_one(&reply).unwrap();
                (reply, calls)
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        call(&mut index, ALICE, req("a", None)),
        (Err(MoveSubDbError::NotAuthorized), vec![])
    );
    assert_eq!(
        call(&mut index, ADMIN, req("a", Some(inner.partition))),
        (Err(MoveSubDbError::SameAsSource), vec![])
    );
    let (reply, calls) = call(&mut index, ADMIN, req("a", None));
    assert_eq!(reply, Ok(spare));
    begin_import_to(&calls, spare);
    // The call is in flight: its reply goes to the move.
    let r = index.on_reply(&env(p(200)), calls[0].id, Ok(Response::ImportBegun(Ok(4))));
    assert_eq!(r.calls.len(), 1);
    assert_eq!(r.calls[0].target, inner.partition);
    assert!(matches!(r.calls[0].request, Request::BeginExport(_)));
    assert!(dispatch::update(&mut index, &env(p(ADMIN)), "move_subdb", b"DIDL").is_err());
}
