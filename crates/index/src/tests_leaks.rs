//! What the index's public queries show a caller: its own names unless it is an admin
//! (issue 11, item 6), through the logic and through the dispatcher the canister exports.

use super::*;
use crate::dispatch;
use flotilla_types::dispatch::{decode_args, encode_args};
use flotilla_types::index::{MoveInfo, MoveRequest, RoutesPage};

/// Creates `key` as `who`; the partition accepts it as local id `id`.
fn created(index: &mut Index<Mem>, who: u8, key: &str, id: u32) {
    let call = awaited(index.create_subdb(&env(p(who)), create_req(key, id as u8 + 50)));
    index.on_reply(&env(p(who)), call.id, Ok(Response::SubDbCreated(Ok(id))));
}

fn names(page: &RoutesPage) -> Vec<String> {
    page.routes.iter().map(|r| r.outer_key.clone()).collect()
}

/// Every route `caller` is shown, page by page (`limit` per page), through the dispatcher.
fn listed(index: &Index<Mem>, caller: Principal, limit: u32) -> Vec<String> {
    let mut all = vec![];
    let mut start_after = None;
    loop {
        let req = RoutesRequest {
            start_after: start_after.take(),
            limit: Some(limit),
        };
        let reply = dispatch::query(index, &env(caller), "routes", &encode_args((req,))).unwrap();
        let (page,): (RoutesPage,) = decode_args("routes", &reply).unwrap();
        all.extend(names(&page));
        match page.next {
            Some(n) => start_after = Some(n),
            None => return all,
        }
    }
}

fn stats_as(index: &Index<Mem>, caller: Principal) -> IndexStats {
    let reply = dispatch::query(index, &env(caller), "stats", &encode_args(())).unwrap();
    decode_args::<(IndexStats,)>("stats", &reply).unwrap().0
}

fn moves_as(index: &Index<Mem>, caller: Principal) -> Vec<MoveInfo> {
    let reply = dispatch::query(index, &env(caller), "list_moves", &encode_args(())).unwrap();
    decode_args::<(Vec<MoveInfo>,)>("list_moves", &reply)
        .unwrap()
        .0
}

/// Alice owns "a1", "a2", "a3"; Bob owns "b1" and "c" (names interleaved with hers).
fn two_owners() -> Index<Mem> {
    let (_, mut index) = fresh();
    upload(&mut index, WASM);
    provision(&mut index, &mut 0);
    for (i, (who, key)) in [
        (ALICE, "a1"),
        (BOB, "b1"),
        (ALICE, "a3"),
        (BOB, "c"),
        (ALICE, "a2"),
    ]
    .into_iter()
    .enumerate()
    {
        created(&mut index, who, key, i as u32);
    }
    index
}

#[test]
fn routes_show_a_non_admin_only_its_own_names() {
    let index = two_owners();
    for limit in [1, 2, 100] {
        assert_eq!(
            listed(&index, p(ALICE), limit),
            ["a1", "a2", "a3"],
            "{limit}"
        );
        assert_eq!(listed(&index, p(BOB), limit), ["b1", "c"], "{limit}");
        assert_eq!(listed(&index, p(99), limit), Vec::<String>::new());
        assert_eq!(
            listed(&index, Principal::anonymous(), limit),
            Vec::<String>::new()
        );
        assert_eq!(
            listed(&index, p(ADMIN), limit),
            ["a1", "a2", "a3", "b1", "c"],
            "{limit}"
        );
    }
    // The routes a non-admin sees are the admin's for the same names.
    let all = index.routes(&RoutesRequest::default());
    let mine = index.routes_for(&p(ALICE), &RoutesRequest::default());
    for r in &mine.routes {
        assert!(all.routes.contains(r));
    }
    assert_eq!(mine.version, all.version);
    // A cursor naming someone else's key reveals nothing either.
    let after_b = index.routes_for(
        &p(ALICE),
        &RoutesRequest {
            start_after: Some("b".into()),
            limit: None,
        },
    );
    assert_eq!(names(&after_b), Vec::<String>::new());
}

#[test]
fn deleted_names_leave_the_owner_listing_and_an_upgrade_backfills_it() {
    let (raw, mut index) = fresh();
    upload(&mut index, WASM);
    provision(&mut index, &mut 0);
    created(&mut index, ALICE, "a1", 0);
    created(&mut index, ALICE, "a2", 1);
    created(&mut index, BOB, "b1", 2);
    deleted(&mut index, ALICE, "a1", 90);
    assert_eq!(listed(&index, p(ALICE), 10), ["a2"]);
    // An index written before `OWNED_KEYS` existed: the set is empty at upgrade.
    let keys: Vec<Vec<u8>> = index.owned_keys.keys().collect();
    for k in keys {
        index.owned_keys.remove(&k);
    }
    assert_eq!(listed(&index, p(ALICE), 10), Vec::<String>::new());
    drop(index);
    let m = mm(&raw);
    let index = Index::open(|id| m.get(id)).unwrap();
    assert_eq!(listed(&index, p(ALICE), 10), ["a2"]);
    assert_eq!(listed(&index, p(BOB), 10), ["b1"]);
}

#[test]
fn stats_and_moves_hide_names_and_admins_from_non_admins() {
    let mut index = two_owners();
    // A spare to move to, and a move in progress of Alice's "a1".
    provision(&mut index, &mut 1);
    let admin = env(p(ADMIN));
    index
        .move_subdb(
            &admin,
            &MoveRequest {
                outer_key: "a1".into(),
                target: None,
            },
        )
        .unwrap();
    let full = stats_as(&index, p(ADMIN));
    assert!(full.caller_is_admin);
    assert_eq!(full.admins, vec![p(ADMIN)]);
    assert_eq!(full.moves.len(), 1);
    assert_eq!(full.moves[0].outer_key, "a1");
    assert_eq!(moves_as(&index, p(ADMIN)).len(), 1);
    for who in [p(ALICE), p(BOB), p(99), Principal::anonymous()] {
        let s = stats_as(&index, who);
        assert!(!s.caller_is_admin);
        assert_eq!(s.admins, vec![]);
        assert_eq!(s.moves, vec![]);
        assert!(moves_as(&index, who).is_empty());
        // Every figure and count stays public.
        assert_eq!(s.moves_total, 1);
        assert_eq!(s.subdbs, full.subdbs);
        assert_eq!(s.partitions, full.partitions);
        assert_eq!(s.cycles, full.cycles);
        assert_eq!(
            IndexStats {
                admins: full.admins.clone(),
                moves: full.moves.clone(),
                caller_is_admin: true,
                ..s
            },
            full
        );
    }
}
