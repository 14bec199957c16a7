//! Who may create SubDBs and how many one principal may own (`quotas.rs`).

use super::*;
use flotilla_types::index::{CreatePolicy, IndexSettings};
use flotilla_types::limits::MAX_CREATORS_PER_CALL;

fn settings(index: &mut Index<Mem>, s: IndexSettings) {
    index.update_settings(&env(p(ADMIN)), s).unwrap();
}

/// Creates `key` as `who` and has the partition accept it.
fn created(index: &mut Index<Mem>, who: u8, key: &str, op_n: u8) -> InnerKey {
    let call = awaited(index.create_subdb(&env(p(who)), create_req(key, op_n)));
    let r = index.on_reply(
        &env(p(who)),
        call.id,
        Ok(Response::SubDbCreated(Ok(op_n as u32))),
    );
    match r.finished {
        Some(Finished::Create(Ok(inner))) => inner,
        other => panic!("create {key}: {other:?}"),
    }
}

fn with_partition() -> Index<Mem> {
    let (_, mut index) = fresh();
    upload(&mut index, WASM);
    provision(&mut index, &mut 0);
    index
}

#[test]
fn under_an_allow_list_only_listed_principals_and_admins_create() {
    let mut index = with_partition();
    settings(
        &mut index,
        IndexSettings {
            create_policy: Some(CreatePolicy::AllowList),
            ..IndexSettings::default()
        },
    );
    let before = index.stats();
    assert_eq!(
        done(index.create_subdb(&env(p(ALICE)), create_req("a", 1))),
        Err(CreateError::NotAllowedToCreate)
    );
    // Refused: nothing reserved, nothing counted.
    assert_eq!(index.stats(), before);
    assert_eq!(index.owned(&p(ALICE)), 0);
    // Only admins manage the list, in bounded batches.
    assert_eq!(
        index.allow_creators(&env(p(ALICE)), vec![p(ALICE)]),
        Err(AdminError::NotAuthorized)
    );
    let many = vec![p(BOB); MAX_CREATORS_PER_CALL + 1];
    assert_eq!(
        index.allow_creators(&env(p(ADMIN)), many),
        Err(AdminError::TooManyPrincipals {
            len: MAX_CREATORS_PER_CALL as u64 + 1,
            max: MAX_CREATORS_PER_CALL as u64
        })
    );
    index
        .allow_creators(&env(p(ADMIN)), vec![p(ALICE), Principal::anonymous()])
        .unwrap();
    assert_eq!(index.stats().allowed_creators, 1, "never the anonymous one");
    created(&mut index, ALICE, "a", 1);
    // An admin needs no place on the list.
    created(&mut index, ADMIN, "admin", 2);
    index
        .disallow_creators(&env(p(ADMIN)), vec![p(ALICE)])
        .unwrap();
    assert_eq!(
        done(index.create_subdb(&env(p(ALICE)), create_req("b", 3))),
        Err(CreateError::NotAllowedToCreate)
    );
    // What she owns stays hers and routable.
    assert!(index.route(&["a".to_string()]).unwrap()[0].is_some());
}

#[test]
fn an_owner_past_the_quota_creates_nothing_until_one_is_deleted() {
    let mut index = with_partition();
    settings(
        &mut index,
        IndexSettings {
            max_subdbs_per_owner: Some(2),
            ..IndexSettings::default()
        },
    );
    created(&mut index, ALICE, "a", 1);
    // A create in flight counts: a second and third in parallel cannot both pass.
    let in_flight = awaited(index.create_subdb(&env(p(ALICE)), create_req("b", 2)));
    assert_eq!(index.owned(&p(ALICE)), 2);
    assert_eq!(
        done(index.create_subdb(&env(p(ALICE)), create_req("c", 3))),
        Err(CreateError::SubDbQuotaExceeded { max: 2 })
    );
    // The partition refuses "b": its count is released.
    index.on_reply(
        &env(p(ALICE)),
        in_flight.id,
        Ok(Response::SubDbCreated(Err(CreateSubDbError::OpIdConflict))),
    );
    assert_eq!(index.owned(&p(ALICE)), 1);
    created(&mut index, ALICE, "c", 3);
    // At the quota, a retry of a create that happened still answers its SubDB.
    let again = done(index.create_subdb(&env(p(ALICE)), create_req("a", 1)));
    assert!(again.is_ok(), "{again:?}");
    // Bob has his own count.
    created(&mut index, BOB, "bob", 4);
    // A delete gives the place back.
    deleted(&mut index, ALICE, "a", 9);
    assert_eq!(index.owned(&p(ALICE)), 1);
    created(&mut index, ALICE, "d", 5);
    assert_eq!(index.owned(&p(ALICE)), 2);
}

#[test]
fn an_admin_creating_for_an_owner_counts_against_the_owner() {
    let mut index = with_partition();
    settings(
        &mut index,
        IndexSettings {
            max_subdbs_per_owner: Some(1),
            ..IndexSettings::default()
        },
    );
    let for_bob = CreateRequest {
        owner: Some(p(BOB)),
        ..create_req("for-bob", 1)
    };
    let call = awaited(index.create_subdb(&env(p(ADMIN)), for_bob));
    index.on_reply(&env(p(ADMIN)), call.id, Ok(Response::SubDbCreated(Ok(1))));
    assert_eq!((index.owned(&p(BOB)), index.owned(&p(ADMIN))), (1, 0));
    assert_eq!(
        done(index.create_subdb(&env(p(BOB)), create_req("b", 2))),
        Err(CreateError::SubDbQuotaExceeded { max: 1 })
    );
}

#[test]
fn the_install_argument_sets_the_policy_and_quota() {
    let raw = VectorMemory::default();
    let m = mm(&raw);
    let index: Index<Mem> = Index::install(
        |id| m.get(id),
        IndexInit {
            admins: vec![p(ADMIN)],
            create_policy: Some(CreatePolicy::AllowList),
            max_subdbs_per_owner: Some(3),
            ..IndexInit::default()
        },
    );
    let s = index.stats();
    assert_eq!(
        (s.create_policy, s.max_subdbs_per_owner, s.allowed_creators),
        (CreatePolicy::AllowList, 3, 0)
    );
    let (_, open) = fresh();
    assert_eq!(
        (
            open.stats().create_policy,
            open.stats().max_subdbs_per_owner
        ),
        (
            CreatePolicy::Open,
            crate::quotas::DEFAULT_MAX_SUBDBS_PER_OWNER
        )
    );
}
