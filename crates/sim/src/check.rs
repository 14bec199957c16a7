//! Invariant checkers. They read the canisters' logic directly (an omniscient observer, not a
//! client), never change it, and record typed [`Violation`](crate::report::Violation)s.
//!
//! - Every round (cheap): byte accounting of each partition (4) and the one-writable-home
//!   count (3).
//! - Every `full_check_every` rounds and at the end: every model SubDB's full contents by
//!   outer key, directory → partition → store (1), deleted SubDBs stay gone (1), byte totals
//!   against scanned contents (4).
//! - At the end, after quiescence: every live SubDB is routed exactly once and nothing is
//!   frozen or orphaned (3), and no partition is over the move cap by more than its largest
//!   SubDB (5).
//!
//! Checker 2 (exactly-once) runs where the answers arrive, in the client.

use crate::canister::Mem;
use crate::model::{Expect, SubDbState, ValueRef};
use crate::report::{ik, ViolationKind};
use crate::world::World;
use candid::Principal;
use flotilla_partition::Partition;
use flotilla_store::SubDbStatus;
use flotilla_types::limits::MAX_SCAN_ITEMS;
use flotilla_types::partition::ScanRequest;
use flotilla_types::{InnerKey, ScanArgs, SubDbId};
use std::collections::{BTreeMap, BTreeSet};

/// A key and its value.
type Item = (Vec<u8>, Vec<u8>);

/// A write in flight: its key and the value it leaves (`None`: a delete).
type InFlightWrite = (Vec<u8>, Option<ValueRef>);

/// Most tombstone hops followed from a route.
const MAX_HOPS: usize = 16;

/// The whole contents of a live SubDB, read as `reader`.
fn scan_all(p: &Partition<Mem>, reader: Principal, subdb: SubDbId) -> Result<Vec<Item>, String> {
    let mut out = vec![];
    let mut cursor = None;
    loop {
        let req = ScanRequest {
            subdb,
            args: ScanArgs {
                limit: Some(MAX_SCAN_ITEMS),
                cursor,
                ..ScanArgs::default()
            },
        };
        let page = p.scan(reader, &req).map_err(|e| format!("{e:?}"))?;
        out.extend(
            page.entries
                .into_iter()
                .map(|e| (e.key.into_vec(), e.value.into_vec())),
        );
        match page.next {
            Some(n) => cursor = Some(n),
            None => return Ok(out),
        }
    }
}

/// Where following a route ends.
enum Home {
    Live(InnerKey),
    /// Neither live nor tombstoned at the end of the chain.
    Nowhere(InnerKey, String),
}

/// The imports the index's pending reclaims name by local id: each will be aborted once its
/// partition answers (checker 3 passes over them).
fn reclaimed_imports(reclaims: &[flotilla_index::records::ReclaimRecord]) -> BTreeSet<InnerKey> {
    reclaims
        .iter()
        .filter_map(|r| {
            r.subdb.map(|subdb| InnerKey {
                partition: r.target,
                subdb,
            })
        })
        .collect()
}

impl World {
    fn partition_at(&self, id: &Principal) -> Option<&Partition<Mem>> {
        self.canisters.get(id).and_then(|c| c.partition())
    }

    /// Follows tombstones from `start` to the live SubDB.
    fn resolve(&self, start: InnerKey) -> Home {
        let mut at = start;
        for _ in 0..MAX_HOPS {
            let Some(p) = self.partition_at(&at.partition) else {
                return Home::Nowhere(at, "no partition there".into());
            };
            if p.store().exists(at.subdb) {
                return Home::Live(at);
            }
            match p.tombstone(at.subdb) {
                Some(next) => at = next,
                None => return Home::Nowhere(at, "neither live nor moved".into()),
            }
        }
        Home::Nowhere(at, "tombstone chain too long".into())
    }

    /// The live home of `outer`: its route followed through tombstones.
    pub(crate) fn live_home(&self, outer: &str) -> Option<InnerKey> {
        let route = self
            .index()
            .route(&[outer.to_string()])
            .ok()?
            .into_iter()
            .next()
            .flatten()?;
        match self.resolve(route) {
            Home::Live(h) => Some(h),
            Home::Nowhere(..) => None,
        }
    }

    /// Imports begun on partition `p` that are still open.
    fn open_imports(&self, p: &Principal) -> usize {
        self.open_import_keys(p).len()
    }

    fn open_import_keys(&self, p: &Principal) -> Vec<InnerKey> {
        let Some(part) = self.partition_at(p) else {
            return vec![];
        };
        self.observed
            .imports
            .iter()
            .filter(|k| k.partition == *p && part.store().status(k.subdb) == SubDbStatus::Importing)
            .copied()
            .collect()
    }

    /// Checkers 3 and 4, every round.
    pub(crate) fn check_round(&mut self) {
        if self.halted {
            return;
        }
        let mut found = vec![];
        // (4) Totals equal the sum of the SubDBs' own counters. Bytes of open imports are in
        // the totals but not listed, so with an import open the totals may only be larger.
        let mut live_unfrozen: Vec<InnerKey> = vec![];
        let mut frozen = 0usize;
        for (id, c) in &self.canisters {
            let Some(p) = c.partition() else { continue };
            let t = p.store().totals();
            let subdbs = c.live_subdbs();
            let listed: u64 = subdbs.iter().map(|s| s.1).sum();
            let expect = listed + t.purging_bytes;
            let imports = self.open_imports(id);
            if (imports == 0 && t.bytes != expect) || t.bytes < expect {
                found.push((
                    ViolationKind::ByteAccounting,
                    format!(
                        "partition {id}: totals.bytes {} != live SubDBs {listed} + purging {} \
                         ({imports} import(s) open)",
                        t.bytes, t.purging_bytes
                    ),
                ));
            }
            if t.live_subdbs != subdbs.len() as u64 {
                found.push((
                    ViolationKind::ByteAccounting,
                    format!(
                        "partition {id}: totals.live_subdbs {} but {} listed",
                        t.live_subdbs,
                        subdbs.len()
                    ),
                ));
            }
            for (sid, _, is_frozen) in subdbs {
                if is_frozen {
                    frozen += 1;
                } else {
                    live_unfrozen.push(InnerKey {
                        partition: *id,
                        subdb: sid,
                    });
                }
            }
        }
        // (3) At most one writable live home per outer key.
        found.extend(self.check_homes(&live_unfrozen, frozen));
        for (k, m) in found {
            self.violation(k, m);
        }
    }

    /// Checker 3. Each route is followed through tombstones to the SubDB's live home. A live,
    /// unfrozen SubDB no route leads to is legitimate only as a create whose answer has not
    /// reached the index yet, or as a move target made live while its source is frozen (move
    /// phases `finish` and `release`). A frozen SubDB must be the source of a move in
    /// progress, and once a move's target may be live (`finish`, `release`) its source must
    /// be frozen or released: never two writable copies.
    fn check_homes(
        &self,
        live_unfrozen: &[InnerKey],
        frozen_count: usize,
    ) -> Vec<(ViolationKind, String)> {
        let mut found = vec![];
        let index = self.index();
        let routes = self.all_routes();
        let moves = index.moves();
        let dir_entries = index.stats().subdbs as usize;
        let creating = dir_entries.saturating_sub(routes.len());
        let mut routed: BTreeMap<InnerKey, &str> = BTreeMap::new();
        let mut reached: BTreeSet<InnerKey> = BTreeSet::new();
        for (outer, inner) in &routes {
            if let Some(other) = routed.insert(*inner, outer) {
                found.push((
                    ViolationKind::TwoHomes,
                    format!("{outer:?} and {other:?} both route to {}", ik(inner)),
                ));
            }
            if let Home::Live(h) = self.resolve(*inner) {
                reached.insert(h);
            }
        }
        let target_live = |phase: &str| phase == "finish" || phase == "release";
        let cutover_targets = moves.iter().filter(|m| target_live(&m.phase)).count();
        let unreached: Vec<&InnerKey> = live_unfrozen
            .iter()
            .filter(|k| !reached.contains(k))
            .collect();
        if unreached.len() > creating + cutover_targets {
            found.push((
                ViolationKind::Orphan,
                format!(
                    "{} live writable SubDB(s) no route leads to ({:?}); creates in progress \
                     ({creating}) and move targets past the cutover ({cutover_targets}) explain \
                     at most {}: at least {} leaked",
                    unreached.len(),
                    unreached.iter().take(4).map(|k| ik(k)).collect::<Vec<_>>(),
                    creating + cutover_targets,
                    unreached.len() - creating - cutover_targets
                ),
            ));
        }
        let sources: BTreeMap<InnerKey, &str> =
            moves.iter().map(|m| (m.source, m.phase.as_str())).collect();
        // A finished import stays frozen until the index resumes its writes (or reclaims it).
        let frozen_targets: BTreeSet<_> = moves
            .iter()
            .filter(|m| {
                ["finish", "release", "activate", "unwind", "abort"].contains(&m.phase.as_str())
            })
            .map(|m| m.target)
            .collect();
        // A finished import of a move called off whose `abort_import` awaits a reclaim stays
        // frozen (unrouted) until the reclaim aborts it.
        let reclaiming = reclaimed_imports(&index.reclaims());
        let mut frozen_seen = 0;
        for (id, c) in &self.canisters {
            for (sid, _, frozen) in c.live_subdbs() {
                if !frozen {
                    continue;
                }
                frozen_seen += 1;
                let k = InnerKey {
                    partition: *id,
                    subdb: sid,
                };
                if !sources.contains_key(&k)
                    && !frozen_targets.contains(id)
                    && !reclaiming.contains(&k)
                {
                    found.push((
                        ViolationKind::TwoHomes,
                        format!(
                            "{} is frozen but is the source of no move in progress",
                            ik(&k)
                        ),
                    ));
                }
            }
        }
        debug_assert_eq!(frozen_seen, frozen_count);
        for m in moves.iter().filter(|m| target_live(&m.phase)) {
            let Some(p) = self.partition_at(&m.source.partition) else {
                continue;
            };
            let store = p.store();
            if store.exists(m.source.subdb) && !store.is_frozen(m.source.subdb) {
                found.push((
                    ViolationKind::TwoHomes,
                    format!(
                        "move of {:?} is in phase {} (target may be live) but its source {} \
                         is writable",
                        m.outer_key,
                        m.phase,
                        ik(&m.source)
                    ),
                ));
            }
        }
        found
    }

    /// The write in flight (if any) of the owner of `outer`, as an expectation override.
    fn in_flight(&self, outer: &str, owner: usize) -> (bool, Option<InFlightWrite>) {
        let Some(op) = &self.clients[owner].op else {
            return (false, None);
        };
        if op.kind.outer() != outer {
            return (false, None);
        }
        use crate::client::OpKind;
        let lifecycle = matches!(
            op.kind,
            OpKind::CreateSubDb { .. } | OpKind::DeleteSubDb { .. }
        );
        let write = op.kind.pending_write().map(|(_, k, v)| (k.to_vec(), v));
        (lifecycle, write)
    }

    /// Checkers 1 and 4 in full: every SubDB's contents by outer key, deleted SubDBs gone,
    /// byte totals against scanned contents.
    pub(crate) fn check_full(&mut self) {
        if self.halted {
            return;
        }
        let mut found: Vec<(ViolationKind, String)> = vec![];
        let outers: Vec<String> = self.model.subdbs.keys().cloned().collect();
        for outer in outers {
            let s = &self.model.subdbs[&outer];
            let (lifecycle, write) = self.in_flight(&outer, s.owner);
            if lifecycle {
                continue;
            }
            let route = self
                .index()
                .route(std::slice::from_ref(&outer))
                .ok()
                .and_then(|v| v.into_iter().next().flatten());
            if s.state == SubDbState::Deleted {
                if let Some(r) = route {
                    found.push((
                        ViolationKind::ResurrectedSubDb,
                        format!("deleted SubDB {outer:?} is routable again (to {})", ik(&r)),
                    ));
                }
                continue;
            }
            let Some(route) = route else {
                found.push((
                    ViolationKind::LostSubDb,
                    format!("live SubDB {outer:?} has no route"),
                ));
                continue;
            };
            let home = match self.resolve(route) {
                Home::Live(h) => h,
                Home::Nowhere(at, why) => {
                    found.push((
                        ViolationKind::LostSubDb,
                        format!(
                            "{outer:?} routes to {}; following it ends at {}: {why}",
                            ik(&route),
                            ik(&at)
                        ),
                    ));
                    continue;
                }
            };
            let owner = self.clients[s.owner].principal;
            let p = self.partition_at(&home.partition).expect("resolved");
            let items = match scan_all(p, owner, home.subdb) {
                Ok(items) => items,
                Err(e) => {
                    found.push((
                        ViolationKind::LostSubDb,
                        format!(
                            "{outer:?} at {} cannot be scanned by its owner: {e}",
                            ik(&home)
                        ),
                    ));
                    continue;
                }
            };
            let mut seen = BTreeSet::new();
            for (k, v) in &items {
                if !seen.insert(k.clone()) {
                    found.push((
                        ViolationKind::WrongValue,
                        format!(
                            "{outer:?}: key {:?} listed twice",
                            String::from_utf8_lossy(k)
                        ),
                    ));
                }
                let in_flight = write.as_ref().filter(|(wk, _)| wk == k).map(|(_, v)| *v);
                let want = self.model.expect(&outer, k, in_flight);
                let got = Some(ValueRef::of(v));
                if !want.admits(got) {
                    found.push((
                        if matches!(want, Expect::Exactly(None)) {
                            ViolationKind::Resurrected
                        } else {
                            ViolationKind::LostWrite
                        },
                        format!(
                            "{outer:?} at {}: key {:?} reads {got:?}, expected {want:?}",
                            ik(&home),
                            String::from_utf8_lossy(k)
                        ),
                    ));
                }
            }
            for (k, v) in &s.items {
                if seen.contains(k) || s.uncertain.contains(k) {
                    continue;
                }
                let in_flight = write.as_ref().filter(|(wk, _)| wk == k).map(|(_, v)| *v);
                let want = self.model.expect(&outer, k, in_flight);
                if !want.admits(None) {
                    found.push((
                        ViolationKind::LostWrite,
                        format!(
                            "{outer:?} at {}: acknowledged key {:?} ({v:?}) is missing",
                            ik(&home),
                            String::from_utf8_lossy(k)
                        ),
                    ));
                }
            }
        }
        // (6) Access lists at every home.
        found.extend(self.check_access());
        // (4) in full: totals against the scanned contents of every live SubDB.
        for (id, c) in &self.canisters {
            let Some(p) = c.partition() else { continue };
            if self.open_imports(id) > 0 {
                continue;
            }
            let mut sum = 0u64;
            for (sid, bytes, _) in c.live_subdbs() {
                let Some(access) = p.access(sid) else {
                    found.push((
                        ViolationKind::ByteAccounting,
                        format!("partition {id}: live SubDB {sid} has no readable access lists"),
                    ));
                    continue;
                };
                match scan_all(p, access.owner, sid) {
                    Ok(items) => {
                        let scanned: u64 =
                            items.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
                        if scanned != bytes {
                            found.push((
                                ViolationKind::ByteAccounting,
                                format!(
                                    "partition {id}: SubDB {sid} counts {bytes} bytes, its scan \
                                     holds {scanned}"
                                ),
                            ));
                        }
                        sum += scanned;
                    }
                    Err(e) => found.push((
                        ViolationKind::ByteAccounting,
                        format!("partition {id}: SubDB {sid} cannot be scanned: {e}"),
                    )),
                }
            }
            let t = p.store().totals();
            if t.bytes != sum + t.purging_bytes {
                found.push((
                    ViolationKind::ByteAccounting,
                    format!(
                        "partition {id}: totals.bytes {} != scanned {sum} + purging {}",
                        t.bytes, t.purging_bytes
                    ),
                ));
            }
        }
        for (k, m) in found {
            self.violation(k, m);
        }
    }

    /// After quiescence: checkers 3 (exact) and 5.
    pub(crate) fn check_final(&mut self) {
        if self.halted {
            return;
        }
        let mut found: Vec<(ViolationKind, String)> = vec![];
        let routes = self.all_routes();
        let routed: BTreeSet<InnerKey> = routes.iter().map(|(_, k)| *k).collect();
        let cap = self.cfg.move_cap_bytes;
        let low_on_cycles = self.index().stats().cycles.low;
        let mut live = BTreeSet::new();
        let mut leaked = 0;
        // Open imports a pending reclaim of the index will abort once their partition answers.
        let reclaims = self.index().reclaims();
        let awaiting = reclaimed_imports(&reclaims);
        let unknown_ids: BTreeSet<Principal> = reclaims
            .iter()
            .filter(|r| r.subdb.is_none())
            .map(|r| r.target)
            .collect();
        let mut awaiting_reclaim = 0;
        for (id, c) in &self.canisters {
            let Some(p) = c.partition() else { continue };
            let subdbs = c.live_subdbs();
            for (sid, _, frozen) in &subdbs {
                let k = InnerKey {
                    partition: *id,
                    subdb: *sid,
                };
                live.insert(k);
                if *frozen {
                    found.push((
                        ViolationKind::TwoHomes,
                        format!("after quiescence {} is still frozen", ik(&k)),
                    ));
                }
                if !routed.contains(&k) {
                    found.push((
                        ViolationKind::Orphan,
                        format!(
                            "after quiescence live SubDB {} is routed by no outer key",
                            ik(&k)
                        ),
                    ));
                }
            }
            // (5) Nothing over the move cap by more than its largest SubDB, unless the index
            // is too low on cycles to create a partition to move to.
            let t = p.store().totals();
            let largest = subdbs.iter().map(|s| s.1).max().unwrap_or(0);
            if t.bytes > cap.saturating_add(largest) && !low_on_cycles {
                found.push((
                    ViolationKind::OverMoveCap,
                    format!(
                        "partition {id} holds {} bytes in {} SubDB(s), over the move cap {cap} by \
                         more than its largest SubDB ({largest})",
                        t.bytes,
                        subdbs.len()
                    ),
                ));
            }
            let open = self.open_import_keys(id);
            let covered = open
                .iter()
                .filter(|k| awaiting.contains(k) || unknown_ids.contains(&k.partition))
                .count();
            awaiting_reclaim += covered as u64;
            let imports = open.len() - covered;
            if imports > 0 && self.hz.dead.is_some_and(|(d, _)| d == *id) {
                // A move's partial import on the partition that was stopped for good, that
                // no reclaim covers (none expected: docs/sim.md, docs/moves.md).
                leaked += imports as u64;
            } else if imports > 0 {
                found.push((
                    ViolationKind::Orphan,
                    format!("after quiescence partition {id} still has {imports} open import(s)"),
                ));
            }
        }
        for (outer, inner) in &routes {
            if !live.contains(inner) {
                found.push((
                    ViolationKind::LostSubDb,
                    format!(
                        "after quiescence {outer:?} routes to {}, which is not live",
                        ik(inner)
                    ),
                ));
            }
        }
        self.hz.counts.leaked_imports += leaked;
        self.hz.counts.imports_awaiting_reclaim += awaiting_reclaim;
        self.hz.counts.reclaims_pending_at_end += reclaims.len() as u64;
        // (9) The spare pool is full again, whatever re-uploads happened.
        found.extend(self.check_spare_pool());
        // Deleted SubDBs: none of their homes is live again.
        for (outer, s) in &self.model.subdbs {
            if s.state != SubDbState::Deleted {
                continue;
            }
            for h in &s.homes {
                if live.contains(h) {
                    found.push((
                        ViolationKind::ResurrectedSubDb,
                        format!("deleted SubDB {outer:?} is live again at {}", ik(h)),
                    ));
                }
            }
        }
        for (k, m) in found {
            self.violation(k, m);
        }
    }
}
