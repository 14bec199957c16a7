//! Checkers of the hazards' properties (`docs/sim.md`, checkers 6 and 9; 7 and 8 run where
//! their events happen, in `world/hazards.rs`).
//!
//! - 6, at full checks and at the end: each live SubDB's access lists at its home (followed
//!   from its route) are the last ones its owner set — owner unchanged, writers empty,
//!   readers one of the lists the model admits (the last acknowledged, an abandoned change,
//!   or the change in flight) — and every guest principal is granted or refused a read
//!   exactly as those lists say (the anonymous reader opens it to everyone).
//! - 9, after quiescence: the spare pool is at its target and no creation job is open, after
//!   any wasm re-uploads.

use crate::client::{guest, OpKind, GUESTS};
use crate::report::{ik, ViolationKind};
use crate::world::World;
use candid::Principal;
use flotilla_types::index::PartitionState;
use flotilla_types::partition::GetArgs;
use flotilla_types::GetError;
use serde_bytes::ByteBuf;
use std::collections::BTreeSet;

impl World {
    /// Checker 6 (see the module docs).
    pub(crate) fn check_access(&self) -> Vec<(ViolationKind, String)> {
        let mut found = vec![];
        for (outer, s) in &self.model.subdbs {
            let Some(s) = self
                .model
                .live(outer)
                .filter(|_| s.owner < self.clients.len())
            else {
                continue;
            };
            let client = &self.clients[s.owner];
            let mut admitted: BTreeSet<Vec<Principal>> = s.readers.clone();
            if let Some(op) = &client.op {
                match &op.kind {
                    OpKind::SetAccess {
                        outer: o, readers, ..
                    } if o == outer => {
                        admitted.insert(readers.clone());
                    }
                    // A create or delete in flight: its SubDB is checked once it settles.
                    OpKind::CreateSubDb { outer: o } | OpKind::DeleteSubDb { outer: o }
                        if o == outer =>
                    {
                        continue;
                    }
                    _ => {}
                }
            }
            let Some(home) = self.live_home(outer) else {
                continue; // checker 1 reports it
            };
            let Some(p) = self
                .canisters
                .get(&home.partition)
                .and_then(|c| c.partition())
            else {
                continue;
            };
            let Some(access) = p.access(home.subdb) else {
                found.push((
                    ViolationKind::AccessWrong,
                    format!("{outer:?} at {}: access lists unreadable", ik(&home)),
                ));
                continue;
            };
            if access.owner != client.principal || !access.writers.is_empty() {
                found.push((
                    ViolationKind::AccessWrong,
                    format!(
                        "{outer:?} at {}: owner {} and writers {:?}, expected owner {} and no \
                         writers",
                        ik(&home),
                        access.owner,
                        access.writers,
                        client.principal
                    ),
                ));
            }
            if !admitted.contains(&access.readers) {
                found.push((
                    ViolationKind::AccessWrong,
                    format!(
                        "{outer:?} at {}: readers {:?}, but its owner last set {:?}",
                        ik(&home),
                        access.readers,
                        admitted
                    ),
                ));
                continue;
            }
            let public = access.readers.contains(&Principal::anonymous());
            for g in (0..GUESTS).map(guest) {
                let may = public || access.readers.contains(&g);
                let args = GetArgs {
                    subdb: home.subdb,
                    key: ByteBuf::from(b"a".to_vec()),
                };
                let granted = match p.get(g, &args) {
                    Ok(_) => true,
                    // A guest who may not read learns nothing: the answer of an absent SubDB.
                    Err(GetError::UnknownSubDb) => false,
                    Err(e) => {
                        found.push((
                            ViolationKind::AccessWrong,
                            format!("{outer:?} at {}: a read by {g} answered {e:?}", ik(&home)),
                        ));
                        continue;
                    }
                };
                if granted != may {
                    found.push((
                        ViolationKind::AccessWrong,
                        format!(
                            "{outer:?} at {}: reader {g} was {} with readers {:?}",
                            ik(&home),
                            if granted { "granted" } else { "refused" },
                            access.readers
                        ),
                    ));
                }
            }
        }
        found
    }

    /// Checker 9 (see the module docs).
    pub(crate) fn check_spare_pool(&self) -> Vec<(ViolationKind, String)> {
        let stats = self.index().stats();
        let spares = stats
            .partitions
            .iter()
            .filter(|p| p.state == PartitionState::Spare)
            .count() as u64;
        let target = u64::from(self.cfg.spare_pool_target);
        if spares < target || stats.partitions_being_created > 0 {
            vec![(
                ViolationKind::SparePool,
                format!(
                    "after quiescence {spares} spare(s) of a pool of {target}, {} creation \
                     job(s) open ({} wasm re-upload(s) done)",
                    stats.partitions_being_created, self.hz.counts.reuploads
                ),
            )]
        } else {
            vec![]
        }
    }
}
