//! The stages of [`crate::run`]: filling SubDBs until three partitions exist, the basic
//! operations, moves driven while the client reads and writes (with the upgrades in the
//! middle of the forced one), and the op-log retries.

use crate::client::{key, value, Recorded, Run};
use crate::{dec, enc, upload_partition_module, users, ScenarioReport, World};
use candid::Principal;
use flotilla_types::index::{
    FleetUpgradeInfo, MoveInfo, MoveRequest, MoveSubDbError, PartitionState, UpgradePartitionsArgs,
    UpgradePartitionsError,
};
use flotilla_types::partition::{BatchArgs, GetArgs, PutArgs};
use flotilla_types::{BatchError, BatchOp, BatchOutcome, GetError, PutError, PutOutcome};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

impl<W: World> Run<'_, W> {
    /// One step of the client while `outer` moves: a put read back at once, a read of its
    /// oldest key, and every third step a batch of two puts and a delete.
    fn client_step(&mut self, outer: &str) {
        let i = self.next_key;
        self.next_key += 1;
        let v = value(i as u64 * 7 + 3, 300);
        self.put(outer, key(i), v.clone());
        self.report.writes_during_moves += 1;
        let got = self.get(outer, &key(i));
        assert!(
            got.as_deref() == Some(&v[..]),
            "{}: read-your-write during a move of {outer}",
            self.name()
        );
        self.report.reads_during_moves += 1;
        let (k0, want) = {
            let (k, v) = self.subs[outer].model.iter().next().expect("non-empty");
            (k.clone(), v.clone())
        };
        assert!(
            self.get(outer, &k0) == Some(want),
            "{}: read of {outer}'s first key during a move",
            self.name()
        );
        self.report.reads_during_moves += 1;
        if i.is_multiple_of(3) {
            let ops = vec![
                BatchOp::Put {
                    key: ByteBuf::from(format!("batch-{i:06}-a")),
                    value: ByteBuf::from(value(i as u64, 120)),
                },
                BatchOp::Put {
                    key: ByteBuf::from(format!("batch-{i:06}-b")),
                    value: ByteBuf::from(value(i as u64 + 1, 120)),
                },
                BatchOp::Delete {
                    key: ByteBuf::from(key(i)),
                },
            ];
            self.batch(outer, ops);
            self.report.writes_during_moves += 1;
        }
    }

    /// While moves are in progress, a client step on a moving SubDB before every round's
    /// poll. With `upgrade_for = Some((outer, any_phase))`, the index and every partition are
    /// upgraded once `outer`'s move is seen in its `copy` or `delta` phase (in any phase if
    /// `any_phase`). Answers once no move is left.
    fn drive_moves(&mut self, upgrade_for: Option<(&str, bool)>) {
        for _ in 0..self.cfg.max_rounds {
            let st = self.stats();
            let Some(first) = st.moves.first().cloned() else {
                return;
            };
            for m in &st.moves {
                self.report.move_phases_seen.insert(m.phase.clone());
                self.moved.entry(m.outer_key.clone()).or_insert(m.source);
            }
            if let Some((outer, any_phase)) = upgrade_for {
                let m: Option<&MoveInfo> = st.moves.iter().find(|m| m.outer_key == outer);
                if let Some(m) = m {
                    let middle = m.phase == "copy" || m.phase == "delta";
                    if !self.upgraded && (middle || any_phase) {
                        self.report.upgraded_during_move_phase = Some(m.phase.clone());
                        self.upgrade_all();
                    }
                }
            }
            let outer = match upgrade_for {
                Some((o, _)) if st.moves.iter().any(|m| m.outer_key == o) => o.to_string(),
                _ => first.outer_key.clone(),
            };
            self.client_step(&outer);
        }
        panic!(
            "{}: moves still in progress after {} rounds",
            self.name(),
            self.cfg.max_rounds
        );
    }

    /// Rounds until no move has been in progress for twelve of them (the index refreshes
    /// partition stats every 10 s and sheds from a partition over the cap), driving every
    /// move that starts meanwhile.
    fn settle(&mut self) {
        let mut quiet = 0;
        while quiet < 12 {
            if !self.stats().moves.is_empty() {
                self.drive_moves(None);
                quiet = 0;
                continue;
            }
            quiet += 1;
            if quiet % 4 == 1 {
                self.housekeeping();
            }
            self.tick();
        }
    }

    /// Upgrades the index, then every partition, and checks every SubDB right after.
    fn upgrade_all(&mut self) {
        self.upgraded = true;
        let index = self.index;
        self.w
            .upgrade(index)
            .unwrap_or_else(|e| panic!("{}: index upgrade: {e}", self.name()));
        self.report.upgrades += 1;
        let parts: Vec<Principal> = self.stats().partitions.iter().map(|p| p.id).collect();
        for p in parts {
            self.w
                .upgrade(p)
                .unwrap_or_else(|e| panic!("{}: partition {p} upgrade: {e}", self.name()));
            self.report.upgrades += 1;
        }
        self.check_all("right after the upgrades, in the middle of a move");
    }

    // ---- stages ---------------------------------------------------------------------------

    /// Creates SubDBs for three users in turn, each filled with `items_per_subdb` values,
    /// until the index has created at least three partitions. The first SubDB has a reader
    /// (the second user) and a writer (the third). Moves the move cap causes meanwhile are
    /// driven with the client reading and writing.
    pub fn fill_until_three_partitions(&mut self) {
        let owners = users();
        let mut n = 0;
        loop {
            let owner = owners[n % 3];
            let outer = format!("user{}-db{}", n % 3 + 1, n / 3);
            let (readers, writers) = if n == 0 {
                (vec![owners[1]], vec![owners[2]])
            } else {
                (vec![], vec![])
            };
            self.create(owner, &outer, readers, writers);
            n += 1;
            for i in 0..self.cfg.items_per_subdb {
                let v = value((n * 1000 + i) as u64, self.cfg.value_bytes);
                let (args, outcome) = self.put_as(owner, &outer, key(i), v);
                if i == 0 {
                    self.recorded.push(Recorded::Put {
                        outer: outer.clone(),
                        args,
                        outcome,
                    });
                }
            }
            self.settle();
            let created = self.stats().partitions.len();
            if created >= 3 && n >= 3 {
                break;
            }
            assert!(
                n < 40,
                "{}: 40 SubDBs and still {created} partitions",
                self.name()
            );
        }
        self.report.cap_moves = self.moved.len();
    }

    /// On every SubDB: a put replacing a value, has, get of an absent key, a delete, and a
    /// batch (two puts, one replacing, and a delete) recorded for a retry later.
    pub fn basic_operations(&mut self) {
        let names: Vec<String> = self.subs.keys().cloned().collect();
        for outer in &names {
            let o = self.put(outer, key(0), b"replaced".to_vec());
            assert!(o.replaced, "{}: put over key 0 of {outer}", self.name());
            assert!(self.has(outer, &key(0)));
            assert!(!self.has(outer, b"absent"));
            assert_eq!(self.get(outer, b"absent"), None);
            assert_eq!(self.get(outer, &key(0)), Some(b"replaced".to_vec()));
            assert!(self.delete(outer, key(2)));
            assert!(!self.delete(outer, key(2)));
            let ops = vec![
                BatchOp::Put {
                    key: ByteBuf::from(key(1)),
                    value: ByteBuf::from(b"batched over".to_vec()),
                },
                BatchOp::Put {
                    key: ByteBuf::from(b"batched-new".to_vec()),
                    value: ByteBuf::from(b"new".to_vec()),
                },
                BatchOp::Delete {
                    key: ByteBuf::from(key(3)),
                },
            ];
            let (args, outcome) = self.batch(outer, ops);
            assert_eq!(
                (outcome.puts_replaced, outcome.deletes_existed),
                (1, 1),
                "{}: batch on {outer}",
                self.name()
            );
            self.recorded.push(Recorded::Batch {
                outer: outer.clone(),
                args,
                outcome,
            });
            assert_eq!(self.get(outer, &key(3)), None);
        }
    }

    /// Moves the largest SubDB with the admin's `move_subdb`, to a partition named (one that
    /// is neither its home nor full; else where the index chooses), while the client keeps
    /// reading and writing it; the index and every partition are upgraded in the move's
    /// middle. Tries again with the next SubDB if the move ran past `copy` and `delta`
    /// between two polls.
    pub fn forced_moves(&mut self) {
        let mut by_size: Vec<(usize, String)> = self
            .subs
            .iter()
            .map(|(k, s)| (s.model.len(), k.clone()))
            .collect();
        by_size.sort_by(|a, b| b.cmp(a));
        let attempts = self.cfg.forced_move_attempts.max(1);
        for attempt in 0..attempts {
            let outer = by_size[attempt % by_size.len()].1.clone();
            let source = self.route(&outer);
            self.subs.get_mut(&outer).expect("known").at = source;
            let target = self.start_move(&outer, source.partition);
            self.report.forced_move =
                Some((outer.clone(), source.partition.to_text(), target.to_text()));
            self.moved.entry(outer.clone()).or_insert(source);
            let last = attempt + 1 == attempts;
            self.drive_moves(Some((&outer, last)));
            self.report.forced_moves += 1;
            let now = self.route(&outer);
            assert_eq!(
                now.partition,
                target,
                "{}: {outer} routes to the target move_subdb answered",
                self.name()
            );
            self.check_all("after a forced move");
            if self.upgraded {
                return;
            }
        }
        panic!(
            "{}: no forced move was seen in progress for the upgrade",
            self.name()
        );
    }

    /// `move_subdb` until the index takes it; answers the target.
    fn start_move(&mut self, outer: &str, source: Principal) -> Principal {
        let mut name_one = true;
        for _ in 0..self.cfg.max_rounds {
            let st = self.stats();
            let named = st
                .partitions
                .iter()
                .rev()
                .find(|p| name_one && p.id != source && p.state != PartitionState::Full)
                .map(|p| p.id);
            let req = MoveRequest {
                outer_key: outer.to_string(),
                target: named,
            };
            let r = self
                .w
                .update(self.admin, self.index, "move_subdb", enc(req));
            let r: Result<Principal, MoveSubDbError> = dec("move_subdb", r);
            match r {
                Ok(t) => {
                    if let Some(n) = named {
                        assert_eq!(t, n, "{}: move_subdb's target", self.name());
                    }
                    return t;
                }
                Err(MoveSubDbError::TargetFull) => name_one = false,
                Err(
                    MoveSubDbError::NoTarget | MoveSubDbError::Busy | MoveSubDbError::AlreadyMoving,
                ) => {
                    // Let the index make a partition or finish what it does with the SubDB.
                    self.housekeeping();
                    self.drive_moves(None);
                    self.tick();
                }
                Err(e) => panic!("{}: move_subdb({outer}): {e:?}", self.name()),
            }
        }
        panic!("{}: move_subdb({outer}) never started", self.name());
    }

    /// Every SubDB that moved now lives elsewhere and takes writes there; its old home answers
    /// `Moved` pointing at the new one.
    pub fn after_moves(&mut self) {
        for (outer, source) in self.moved.clone() {
            let now = self.route(&outer);
            assert_ne!(now.partition, source.partition, "{outer} moved");
            // The old home's tombstone leads, maybe through later homes, to the current one.
            let owner = self.subs[&outer].owner;
            let mut at = source;
            for hop in 0..8 {
                let args = GetArgs {
                    subdb: at.subdb,
                    key: ByteBuf::from(key(0)),
                };
                let r = self.w.query(owner, at.partition, "get", enc(args));
                let r: Result<Option<ByteBuf>, GetError> = dec("get at an old home", r);
                match r {
                    Err(GetError::Moved { to }) => at = to,
                    other => {
                        assert!(hop > 0, "{}: {outer}'s old home: {other:?}", self.name());
                        assert_eq!(at, now, "{}: {outer}'s tombstones", self.name());
                        break;
                    }
                }
            }
            assert_eq!(at, now, "{}: {outer}'s tombstones", self.name());
            self.subs.get_mut(&outer).expect("known").at = now;
            self.put(&outer, b"after-move".to_vec(), b"yes".to_vec());
            assert_eq!(self.get(&outer, b"after-move"), Some(b"yes".to_vec()));
        }
    }

    /// Every recorded put and batch, retried with its op id and arguments at the SubDB's
    /// current home (after moves and upgrades), answers its first outcome and applies nothing
    /// (the put's key was overwritten since, and keeps the newer value); the same op id with
    /// other arguments is `OpIdConflict`.
    pub fn op_log_retries(&mut self) {
        let recorded = std::mem::take(&mut self.recorded);
        for rec in &recorded {
            match rec {
                Recorded::Put {
                    outer,
                    args,
                    outcome,
                } => {
                    let at = self.route(outer);
                    let owner = self.subs[outer].owner;
                    let retry = PutArgs {
                        subdb: at.subdb,
                        ..args.clone()
                    };
                    let r = self
                        .w
                        .update(owner, at.partition, "put", enc(retry.clone()));
                    let r: Result<PutOutcome, PutError> = dec("put retry", r);
                    assert_eq!(r, Ok(*outcome), "{}: retried put on {outer}", self.name());
                    let want = self.subs[outer].model.get(args.key.as_slice()).cloned();
                    assert_ne!(want.as_deref(), Some(args.value.as_slice()));
                    assert_eq!(
                        self.get(outer, &args.key),
                        want,
                        "{}: a retried put applied again on {outer}",
                        self.name()
                    );
                    let other = PutArgs {
                        value: ByteBuf::from(b"other".to_vec()),
                        ..retry
                    };
                    let r = self.w.update(owner, at.partition, "put", enc(other));
                    let r: Result<PutOutcome, PutError> = dec("put conflict", r);
                    assert_eq!(r, Err(PutError::OpIdConflict), "{}: {outer}", self.name());
                }
                Recorded::Batch {
                    outer,
                    args,
                    outcome,
                } => {
                    let at = self.route(outer);
                    let owner = self.subs[outer].owner;
                    let retry = BatchArgs {
                        subdb: at.subdb,
                        ..args.clone()
                    };
                    let r = self.w.update(owner, at.partition, "batch", enc(retry));
                    let r: Result<BatchOutcome, BatchError> = dec("batch retry", r);
                    assert_eq!(r, Ok(*outcome), "{}: retried batch on {outer}", self.name());
                }
            }
            self.report.op_retries_checked += 1;
        }
        self.recorded = recorded;
    }

    /// A fleet upgrade from the index: the admin uploads another module (same code, another
    /// hash) and calls `upgrade_partitions`; on the partition holding the most SubDBs the new
    /// module traps in `post_upgrade`. The index reports that partition failed at `install`,
    /// it runs its old module again with all its data (and takes writes), and every other
    /// partition runs the new module.
    pub fn fleet_upgrade(&mut self) {
        let st = self.stats();
        let old = st
            .partition_wasm
            .as_ref()
            .expect("a module")
            .sha256
            .to_vec();
        let mut homes: BTreeMap<Principal, usize> = BTreeMap::new();
        for outer in self.subs.keys().cloned().collect::<Vec<_>>() {
            *homes.entry(self.route(&outer).partition).or_default() += 1;
        }
        let (&bad, _) = homes
            .iter()
            .max_by_key(|(p, n)| (**n, **p))
            .expect("SubDBs");
        let module = self.w.next_partition_module();
        let new = Sha256::digest(&module).to_vec();
        assert_ne!(new, old, "{}: the next module differs", self.name());
        let chunk = self.cfg.upload_chunk_bytes;
        let (admin, index) = (self.admin, self.index);
        upload_partition_module(&mut *self.w, admin, index, &module, chunk);
        let name = self.name();
        self.w
            .break_post_upgrade(bad, &module)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let args = UpgradePartitionsArgs { batch: Some(2) };
        let r = self
            .w
            .update(self.admin, self.index, "upgrade_partitions", enc(args));
        let r: Result<FleetUpgradeInfo, UpgradePartitionsError> = dec("upgrade_partitions", r);
        let started = r.unwrap_or_else(|e| panic!("{}: upgrade_partitions: {e:?}", self.name()));
        assert_eq!(started.module.to_vec(), new, "{}", self.name());
        let total = st.partitions_total;
        assert_eq!(
            started.waiting,
            total,
            "{}: every partition waits",
            self.name()
        );
        self.wait_for("the fleet upgrade's end", |r| {
            r.stats()
                .fleet_upgrade
                .is_some_and(|u| u.finished_at.is_some())
        });
        let st = self.stats();
        let u = st.fleet_upgrade.expect("a fleet upgrade");
        let failed: Vec<(Principal, String, String)> = u
            .failed
            .iter()
            .map(|f| (f.partition, f.step.clone(), f.message.clone()))
            .collect();
        assert_eq!(
            (u.upgraded, u.failed_total),
            (total - 1, 1),
            "{}: {u:?}",
            self.name()
        );
        assert_eq!(
            (failed[0].0, failed[0].1.as_str()),
            (bad, "install"),
            "{}",
            self.name()
        );
        assert!(
            failed[0].2.contains("trap"),
            "{}: the failure names the trap: {}",
            self.name(),
            failed[0].2
        );
        for p in &st.partitions {
            let runs = self.w.module_hash(p.id);
            let want = if p.id == bad { &old } else { &new };
            assert_eq!(
                runs.as_ref(),
                Some(want),
                "{}: the module of {}",
                self.name(),
                p.id
            );
            assert_eq!(p.module.as_ref().map(|m| m.to_vec()).as_ref(), Some(want));
        }
        // Every SubDB is read back in full by `check_all` after this stage; the partition that
        // kept its old module takes writes too.
        let on_bad: Vec<String> = self
            .subs
            .iter()
            .filter(|(_, s)| s.at.partition == bad)
            .map(|(k, _)| k.clone())
            .collect();
        for outer in on_bad.iter().take(2) {
            self.put(
                outer,
                b"after-fleet-upgrade".to_vec(),
                b"old module".to_vec(),
            );
            assert_eq!(
                self.get(outer, b"after-fleet-upgrade"),
                Some(b"old module".to_vec())
            );
        }
        self.report.fleet_upgraded = u.upgraded;
        self.report.fleet_failed = failed
            .into_iter()
            .map(|(p, step, _)| (p.to_text(), step))
            .collect();
    }

    pub fn finish(mut self) -> ScenarioReport {
        let st = self.stats();
        self.report.partitions = st.partitions.len();
        self.report.subdbs = self.subs.len();
        self.report.items = self.subs.values().map(|s| s.model.len()).sum();
        assert_eq!(st.subdbs as usize, self.subs.len(), "{}", self.name());
        // Cycles care ran through the world's management canister: the index knows every
        // partition's balance (`canister_status`) and its own.
        for p in &st.partitions {
            assert!(
                p.cycles.is_some_and(|c| c > 0) && p.cycles_at > 0,
                "{}: the index never learned the balance of partition {}",
                self.name(),
                p.id
            );
        }
        assert!(st.cycles.balance > 0, "{}: {:?}", self.name(), st.cycles);
        self.report
    }
}
