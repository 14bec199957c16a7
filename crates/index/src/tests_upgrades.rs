//! Fleet upgrades (`upgrades.rs`) against a scripted management canister that keeps each
//! partition's module and whether it is stopped, as the IC does.

use super::*;
use flotilla_types::index::{IndexSettings, MoveRequest, MoveSubDbError};
use flotilla_types::index::{UpgradePartitionsArgs, UpgradePartitionsError as E};
use flotilla_types::limits::{MAX_UPGRADE_BATCH, MAX_UPGRADE_STEP_FAILURES};
use std::collections::{BTreeMap, BTreeSet};

const WASM2: &[u8] = b"\0asm-pretend-partition-module, version 2";

fn sha(w: &[u8]) -> Vec<u8> {
    Sha256::digest(w).to_vec()
}

/// The management canister and the partitions, as far as upgrades see them.
#[derive(Default)]
struct Fleet {
    next: u8,
    module: BTreeMap<Principal, Vec<u8>>,
    stopped: BTreeSet<Principal>,
    /// Partitions on which installing this module traps in `post_upgrade`.
    traps: BTreeSet<(Principal, Vec<u8>)>,
    /// Management calls to these partitions are rejected.
    unreachable: BTreeSet<Principal>,
    /// Replies lost, in call order, while > 0 (the call executes).
    lose: u32,
    /// This partition stops answering right after it is stopped.
    vanish_after_stop: Option<Principal>,
    most_stopped: usize,
    installs: u32,
}

impl Fleet {
    fn answer(&mut self, call: &Call) -> CallResult {
        let reject = |m: &str| {
            Err(Reject {
                message: m.into(),
                certain: true,
            })
        };
        let target = match &call.request {
            Request::InstallCode { canister, .. }
            | Request::StopCanister { canister }
            | Request::StartCanister { canister }
            | Request::CanisterStatus { canister } => Some(*canister),
            _ => None,
        };
        if target.is_some_and(|t| self.unreachable.contains(&t)) {
            return reject("the canister does not answer");
        }
        let result = match &call.request {
            Request::CreateCanister { .. } => {
                self.next += 1;
                Ok(Response::CanisterCreated(p(100 + self.next)))
            }
            Request::InstallCode {
                canister,
                mode,
                wasm,
                ..
            } => {
                self.installs += 1;
                let m = sha(wasm);
                if *mode == InstallMode::Upgrade && self.traps.contains(&(*canister, m.clone())) {
                    // The IC rolls the upgrade back: the old module, with its data.
                    return reject("canister trapped in post_upgrade: explicit trap");
                }
                self.module.insert(*canister, m);
                Ok(Response::Installed)
            }
            Request::StopCanister { canister } => {
                self.stopped.insert(*canister);
                if self.vanish_after_stop == Some(*canister) {
                    self.unreachable.insert(*canister);
                }
                self.most_stopped = self.most_stopped.max(self.stopped.len());
                Ok(Response::Stopped)
            }
            Request::StartCanister { canister } => {
                self.stopped.remove(canister);
                Ok(Response::Started)
            }
            Request::CanisterStatus { canister } => Ok(Response::Status {
                cycles: 1_000_000_000_000,
                module_hash: self.module.get(canister).cloned().map(ByteBuf::from),
                stopped: self.stopped.contains(canister),
            }),
            Request::Stats(_) if self.stopped.contains(&call.target) => {
                reject("canister is stopped")
            }
            Request::Stats(_) => Ok(Response::Stats(Ok(PartitionStats::default()))),
            other => panic!("unexpected {other:?}"),
        };
        if self.lose > 0 {
            self.lose -= 1;
            return Err(Reject {
                message: "reply lost".into(),
                certain: false,
            });
        }
        result
    }

    /// Answers `calls` and every call they lead to.
    fn serve(&mut self, index: &mut Index<Mem>, at: &Env, mut calls: Vec<Call>) {
        while let Some(call) = calls.pop() {
            let result = self.answer(&call);
            calls.extend(index.on_reply(at, call.id, result).calls);
        }
    }

    /// `n` ticks, each answered in full, one second apart from `from` (ns).
    fn ticks(&mut self, index: &mut Index<Mem>, from: u64, n: u64) -> u64 {
        let mut now = from;
        for _ in 0..n {
            now += 1_000_000_000;
            let at = Env {
                now,
                ..env(p(ADMIN))
            };
            let calls = index.tick(&at);
            self.serve(index, &at, calls);
        }
        now
    }
}

/// An index with `n` spare partitions on `WASM`, and `WASM2` uploaded (active) after them.
fn fleet_of(n: u32) -> (VectorMemory, Index<Mem>, Fleet, Vec<Principal>) {
    let (raw, mut index) = fresh();
    index
        .update_settings(
            &env(p(ADMIN)),
            IndexSettings {
                spare_pool_target: Some(n),
                ..IndexSettings::default()
            },
        )
        .unwrap();
    upload(&mut index, WASM);
    let mut fleet = Fleet::default();
    fleet.ticks(&mut index, 0, 3);
    let parts: Vec<Principal> = fleet.module.keys().copied().collect();
    assert_eq!(parts.len(), n as usize);
    for part in &parts {
        assert_eq!(fleet.module[part], sha(WASM));
    }
    upload(&mut index, WASM2);
    (raw, index, fleet, parts)
}

fn start(index: &mut Index<Mem>, batch: u32) {
    let args = UpgradePartitionsArgs { batch: Some(batch) };
    index.upgrade_partitions(&env(p(ADMIN)), &args).unwrap();
}

#[test]
fn every_partition_is_upgraded_a_batch_at_a_time() {
    let (_, mut index, mut fleet, parts) = fleet_of(5);
    // Creation jobs recorded the module each partition got.
    let s = index.stats();
    assert!(s
        .partitions
        .iter()
        .all(|i| i.module == Some(ByteBuf::from(sha(WASM)))));
    start(&mut index, 2);
    let info = index.stats().fleet_upgrade.unwrap();
    assert_eq!(
        (info.waiting, info.upgraded, info.finished_at),
        (5, 0, None)
    );
    assert_eq!(info.module, ByteBuf::from(sha(WASM2)));
    // The first tick stops a batch of two.
    let at = Env {
        now: 10_000_000_000,
        ..env(p(ADMIN))
    };
    let calls = index.tick(&at);
    let stops = calls
        .iter()
        .filter(|c| matches!(c.request, Request::StopCanister { .. }))
        .count();
    assert_eq!(stops, 2);
    fleet.serve(&mut index, &at, calls);
    fleet.ticks(&mut index, 10_000_000_000, 10);
    let info = index.stats().fleet_upgrade.unwrap();
    assert!(info.finished_at.is_some(), "{info:?}");
    assert_eq!((info.upgraded, info.failed_total, info.waiting), (5, 0, 0));
    assert!(info.in_progress.is_empty());
    assert!(
        fleet.most_stopped <= 2,
        "at most a batch is stopped at once"
    );
    assert!(fleet.stopped.is_empty(), "every partition runs again");
    for part in &parts {
        assert_eq!(fleet.module[part], sha(WASM2));
    }
    let s = index.stats();
    assert!(s
        .partitions
        .iter()
        .all(|i| i.module == Some(ByteBuf::from(sha(WASM2)))));
    // A second run finds nothing to do and ends at once.
    start(&mut index, 2);
    let installs = fleet.installs;
    fleet.ticks(&mut index, 100_000_000_000, 1);
    let info = index.stats().fleet_upgrade.unwrap();
    assert!(info.finished_at.is_some());
    assert_eq!((info.upgraded, fleet.installs), (0, installs));
}

#[test]
fn a_partition_whose_new_module_traps_in_post_upgrade_keeps_its_old_one_and_the_rest_go_on() {
    let (_, mut index, mut fleet, parts) = fleet_of(4);
    let bad = parts[1];
    fleet.traps.insert((bad, sha(WASM2)));
    start(&mut index, 2);
    fleet.ticks(&mut index, 10_000_000_000, 20);
    let info = index.stats().fleet_upgrade.unwrap();
    assert!(info.finished_at.is_some(), "{info:?}");
    assert_eq!((info.upgraded, info.failed_total), (3, 1));
    assert_eq!(info.failed[0].partition, bad);
    assert_eq!(info.failed[0].step, "install");
    assert!(info.failed[0].message.contains("post_upgrade"), "{info:?}");
    assert!(
        !fleet.stopped.contains(&bad),
        "started again on its old module"
    );
    assert_eq!(fleet.module[&bad], sha(WASM));
    for part in parts.iter().filter(|p| **p != bad) {
        assert_eq!(fleet.module[part], sha(WASM2));
    }
    let bad_info = index
        .stats()
        .partitions
        .into_iter()
        .find(|i| i.id == bad)
        .unwrap();
    assert_eq!(bad_info.module, Some(ByteBuf::from(sha(WASM))));
    // Cycles care's later status checks find it on its old module: it is not tried again in
    // this run (it was, in a loop, before `UpgradeStep::Failed`).
    let installs = fleet.installs;
    fleet.ticks(
        &mut index,
        100_000_000_000 + crate::cycles::DEFAULT_CYCLES_CHECK_PERIOD_NS,
        3,
    );
    assert_eq!(fleet.installs, installs);
    assert!(index.upgrade_sets.waiting.is_empty() && !index.upgrading(&bad));
    // A new run tries it again (and it traps again).
    start(&mut index, 2);
    let now = 200_000_000_000 + crate::cycles::DEFAULT_CYCLES_CHECK_PERIOD_NS;
    fleet.ticks(&mut index, now, 10);
    let info = index.stats().fleet_upgrade.unwrap();
    assert_eq!((info.upgraded, info.failed_total), (0, 1), "{info:?}");
}

#[test]
fn an_unreachable_partition_is_reported_and_does_not_hold_the_run() {
    let (_, mut index, mut fleet, parts) = fleet_of(3);
    fleet.unreachable.insert(parts[0]);
    start(&mut index, 3);
    let steps = 3 * MAX_UPGRADE_STEP_FAILURES as u64 + 5;
    fleet.ticks(&mut index, 10_000_000_000, steps);
    let info = index.stats().fleet_upgrade.unwrap();
    assert!(info.finished_at.is_some(), "{info:?}");
    assert_eq!((info.upgraded, info.failed_total), (2, 1));
    assert_eq!(info.failed[0].partition, parts[0]);
    assert_eq!(info.failed[0].step, "stop");
}

#[test]
fn lost_replies_and_an_index_upgrade_midway_end_with_every_partition_upgraded() {
    let (raw, mut index, mut fleet, parts) = fleet_of(4);
    start(&mut index, 2);
    // One tick with every reply lost (each call executes), then the index is upgraded: its
    // calls in flight are forgotten, each partition's step is not.
    fleet.lose = 1_000;
    let now = fleet.ticks(&mut index, 10_000_000_000, 1);
    fleet.lose = 0;
    drop(index);
    let m = mm(&raw);
    let mut index = Index::open(|id| m.get(id)).unwrap();
    let info = index.stats().fleet_upgrade.unwrap();
    assert!(info.finished_at.is_none());
    assert_eq!(info.in_progress.len(), 2, "{info:?}");
    fleet.lose = 3;
    fleet.ticks(&mut index, now, 20);
    let info = index.stats().fleet_upgrade.unwrap();
    assert!(info.finished_at.is_some(), "{info:?}");
    assert_eq!((info.upgraded, info.failed_total), (4, 0), "{info:?}");
    assert!(fleet.stopped.is_empty());
    for part in &parts {
        assert_eq!(fleet.module[part], sha(WASM2));
    }
}

#[test]
fn a_module_activated_midway_is_followed() {
    const WASM3: &[u8] = b"\0asm-pretend-partition-module, version 3";
    let (_, mut index, mut fleet, parts) = fleet_of(4);
    start(&mut index, 1);
    let now = fleet.ticks(&mut index, 10_000_000_000, 1);
    upload(&mut index, WASM3);
    fleet.ticks(&mut index, now, 20);
    let info = index.stats().fleet_upgrade.unwrap();
    assert!(info.finished_at.is_some(), "{info:?}");
    assert_eq!(info.module, ByteBuf::from(sha(WASM3)));
    assert_eq!(info.failed_total, 0);
    for part in &parts {
        assert_eq!(fleet.module[part], sha(WASM3));
    }
}

#[test]
fn a_partition_drains_its_moves_first_and_no_move_starts_on_it_meanwhile() {
    let (_, mut index, mut fleet, parts) = fleet_of(2);
    let (a, b) = (parts[0], parts[1]);
    // A live SubDB on `a`, and a move of it to `b` in progress (its first call unanswered).
    let key = "alice/notes".to_string();
    index.directory.insert(
        key.clone(),
        DirEntry {
            state: DirState::Live,
            partition: a,
            subdb: 7,
            owner: p(ALICE),
            op_id: vec![],
        },
    );
    let mv = MoveRequest {
        outer_key: key.clone(),
        target: Some(b),
    };
    let (_, first) = index.move_subdb(&env(p(ADMIN)), &mv).unwrap();
    assert_eq!(first.len(), 1);
    start(&mut index, 2);
    // Both partitions have their turn, and wait for the move: nothing is stopped.
    fleet.ticks(&mut index, 10_000_000_000, 1);
    let info = index.stats().fleet_upgrade.unwrap();
    assert_eq!(info.in_progress.len(), 2);
    assert!(
        info.in_progress.iter().all(|u| u.step == "drain"),
        "{info:?}"
    );
    assert!(fleet.stopped.is_empty());
    assert!(index.upgrading(&a) && index.upgrading(&b));
    // The move ends (here: called off and forgotten) and the upgrade goes on.
    let unwind = index.cancel_move(&env(p(ADMIN)), &key).unwrap();
    index.moves.remove(&key);
    for c in first.iter().chain(&unwind) {
        index.untrack(c.id);
    }
    // Meanwhile no move may start on either.
    assert_eq!(
        index.move_subdb(&env(p(ADMIN)), &mv),
        Err(MoveSubDbError::Busy)
    );
    fleet.ticks(&mut index, 20_000_000_000, 10);
    let info = index.stats().fleet_upgrade.unwrap();
    assert!(info.finished_at.is_some(), "{info:?}");
    assert_eq!(info.upgraded, 2);
    assert!(!index.upgrading(&a));
    let again = index.move_subdb(&env(p(ADMIN)), &mv);
    assert!(again.is_ok(), "{again:?}");
}

#[test]
fn only_admins_start_a_fleet_upgrade_and_only_one_at_a_time() {
    let (_, mut index) = fresh();
    let args = UpgradePartitionsArgs::default();
    assert_eq!(
        index.upgrade_partitions(&env(p(ALICE)), &args),
        Err(E::NotAuthorized)
    );
    assert_eq!(
        index.upgrade_partitions(&env(p(ADMIN)), &args),
        Err(E::NoWasm)
    );
    upload(&mut index, WASM);
    for batch in [0, MAX_UPGRADE_BATCH + 1] {
        let args = UpgradePartitionsArgs { batch: Some(batch) };
        assert_eq!(
            index.upgrade_partitions(&env(p(ADMIN)), &args),
            Err(E::BadBatch {
                max: MAX_UPGRADE_BATCH
            })
        );
    }
    // Spare pool of 1: its job is not a partition yet, so nothing waits.
    index.upgrade_partitions(&env(p(ADMIN)), &args).unwrap();
    assert_eq!(
        index.upgrade_partitions(&env(p(ADMIN)), &args),
        Err(E::AlreadyRunning)
    );
    let calls = index.tick(&env(p(ADMIN)));
    assert!(calls
        .iter()
        .all(|c| !matches!(c.request, Request::StopCanister { .. })));
    assert!(index.stats().fleet_upgrade.unwrap().finished_at.is_some());
    index.upgrade_partitions(&env(p(ADMIN)), &args).unwrap();
}

#[test]
fn a_partition_left_stopped_by_a_failed_upgrade_is_started_once_it_answers() {
    let (_, mut index, mut fleet, parts) = fleet_of(2);
    let lost = parts[0];
    fleet.vanish_after_stop = Some(lost);
    start(&mut index, 2);
    let steps = 3 * MAX_UPGRADE_STEP_FAILURES as u64 + 5;
    let now = fleet.ticks(&mut index, 10_000_000_000, steps);
    let info = index.stats().fleet_upgrade.unwrap();
    assert!(info.finished_at.is_some(), "{info:?}");
    assert_eq!((info.upgraded, info.failed_total), (1, 1));
    assert_eq!(
        (info.failed[0].partition, info.failed[0].step.as_str()),
        (lost, "install")
    );
    assert!(
        fleet.stopped.contains(&lost),
        "stopped, and it did not answer since"
    );
    // It answers again: the next status check of cycles care finds it stopped and starts it.
    fleet.unreachable.clear();
    fleet.ticks(
        &mut index,
        now + crate::cycles::DEFAULT_CYCLES_CHECK_PERIOD_NS,
        2,
    );
    assert!(!fleet.stopped.contains(&lost), "started again");
    assert_eq!(fleet.module[&lost], sha(WASM), "on its old module");
}
