//! The admin's rolling upgrades (`crate::rolling`): upload a new partition wasm (through the
//! re-upload machinery of `hazards.rs`, so two uploads never interleave), call
//! `upgrade_partitions`, follow the fleet upgrade to its end, check it, and start again after
//! a gap. The management canister's side (stop, start, the trapping `post_upgrade`) is in
//! `mgmt.rs`.

use super::hazards::Reupload;
use super::{Origin, World};
use crate::report::ViolationKind;
use crate::rng::SimRng;
use crate::rolling::{
    UpgradeCounts, ROLLING_CHUNKED_MODULE_BYTES, ROLLING_FIRST_ROUND, ROLLING_GAP_ROUNDS,
    ROLLING_MODULE_BYTES,
};
use candid::Principal;
use flotilla_types::dispatch::{decode_args, encode_args};
use flotilla_types::index::{FleetUpgradeInfo, UpgradePartitionsArgs, UpgradePartitionsError};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// The next upload starts at this round (while clients still issue operations).
    Idle { next: u64 },
    /// The module is on its way to the index.
    Uploading { sha: Vec<u8> },
    /// `upgrade_partitions` was sent (`ticket`), or is to be sent again (`None`).
    Asking { sha: Vec<u8>, ticket: Option<u64> },
    /// The fleet upgrade runs; it began at this round.
    Running { since: u64 },
}

pub(crate) struct RollingState {
    phase: Phase,
    /// Draws of the rolling upgrades only, so the world's other decisions are the same with
    /// or without them.
    rng: SimRng,
    pub counts: UpgradeCounts,
    /// Per module: the partition on which it traps in `post_upgrade` (the first the index
    /// upgrades to it), when the seed's modules trap.
    pub traps: BTreeMap<Vec<u8>, Principal>,
}

impl RollingState {
    pub fn new(seed: u64) -> Self {
        RollingState {
            phase: Phase::Idle {
                next: ROLLING_FIRST_ROUND,
            },
            rng: SimRng::new(seed ^ 0x0b6a_de00_f1ee_7000),
            counts: UpgradeCounts::default(),
            traps: BTreeMap::new(),
        }
    }

    /// Whether a fleet upgrade the admin asked for is under way (the end phase waits for it).
    pub fn busy(&self) -> bool {
        matches!(self.phase, Phase::Asking { .. } | Phase::Running { .. })
    }
}

impl World {
    /// Whether installing `module` as an upgrade traps in `post_upgrade` on `canister`: the
    /// first partition upgraded to a module traps on it when the seed says so (counted).
    pub(crate) fn post_upgrade_traps(&mut self, canister: Principal, module: &[u8]) -> bool {
        if let Some(victim) = self.rolling.traps.get(module) {
            let hit = *victim == canister;
            self.rolling.counts.post_upgrade_traps += u64::from(hit);
            return hit;
        }
        let Some(knobs) = self.cfg.rolling else {
            return false;
        };
        if !knobs.trap_one || module == self.hz.first_module.as_slice() {
            return false;
        }
        let victim = *self
            .rolling
            .traps
            .entry(module.to_vec())
            .or_insert(canister);
        if victim == canister {
            self.rolling.counts.post_upgrade_traps += 1;
            return true;
        }
        false
    }

    /// From now on, upgrading `partition` to the module whose SHA-256 is `module` traps in
    /// `post_upgrade` (the canister keeps its old module and data), as a module that cannot
    /// read that partition's stable memory would.
    pub fn trap_post_upgrade(&mut self, partition: Principal, module: Vec<u8>) {
        self.rolling.traps.insert(module, partition);
    }

    /// SHA-256 of the module canister `id` runs (none: empty or unknown).
    pub fn module_hash(&self, id: Principal) -> Option<Vec<u8>> {
        self.canisters.get(&id).and_then(|c| c.module.clone())
    }

    /// Checker 13 after quiescence: no canister is left stopped by its controller (a
    /// partition a fleet upgrade could not start again is started by the index's next status
    /// check once it answers).
    pub(crate) fn check_none_left_stopped(&mut self) {
        let stopped: Vec<Principal> = self
            .canisters
            .iter()
            .filter(|(_, c)| c.stopped_until == Some(u64::MAX))
            .map(|(id, _)| *id)
            .collect();
        for id in stopped {
            self.violation(
                ViolationKind::FleetUpgrade,
                format!("after quiescence {id} is still stopped by the index"),
            );
        }
    }

    /// One round of the admin's rolling upgrades.
    pub(crate) fn drive_rolling(&mut self) {
        let Some(knobs) = self.cfg.rolling else {
            return;
        };
        match self.rolling.phase.clone() {
            Phase::Idle { next } => {
                if !self.issuing || self.round < next || self.hz.reupload.is_some() {
                    return;
                }
                let (lo, hi) = if knobs.chunked {
                    ROLLING_CHUNKED_MODULE_BYTES
                } else {
                    ROLLING_MODULE_BYTES
                };
                let len = self.rolling.rng.range(lo, hi) as usize;
                let mut wasm = b"\0asm\x01\0\0\0".to_vec();
                wasm.extend(self.rolling.rng.bytes(len - wasm.len()));
                let sha = Sha256::digest(&wasm).to_vec();
                self.say(|| format!("admin uploads a {len}-byte partition wasm to roll out"));
                self.hz.reupload = Some(Reupload {
                    wasm,
                    sha: sha.clone(),
                    offset: 0,
                    ticket: None,
                });
                self.rolling.phase = Phase::Uploading { sha };
            }
            Phase::Uploading { sha } => {
                if self.hz.reupload.is_some() {
                    return;
                }
                let active = self
                    .index()
                    .stats()
                    .partition_wasm
                    .map(|w| w.sha256.to_vec());
                self.rolling.phase = if active.as_ref() == Some(&sha) {
                    Phase::Asking { sha, ticket: None }
                } else {
                    // The end phase called the upload off.
                    Phase::Idle {
                        next: self.round + ROLLING_GAP_ROUNDS,
                    }
                };
            }
            Phase::Asking { sha, ticket: None } => {
                let t = self.next_ticket;
                self.next_ticket += 1;
                let arg = encode_args((UpgradePartitionsArgs {
                    batch: Some(knobs.batch),
                },));
                let (admin, index) = (self.admin, self.index_id);
                self.send_ingress(Origin::External(t), admin, index, "upgrade_partitions", arg);
                self.rolling.phase = Phase::Asking {
                    sha,
                    ticket: Some(t),
                };
            }
            Phase::Asking {
                sha,
                ticket: Some(t),
            } => {
                let Some(reply) = self.external.remove(&t) else {
                    return;
                };
                type R = Result<FleetUpgradeInfo, UpgradePartitionsError>;
                let decoded = reply.map_err(|e| e.to_string()).and_then(|b| {
                    decode_args::<(R,)>("upgrade_partitions", &b).map_err(|e| e.to_string())
                });
                match decoded {
                    // Started; or a lost reply's retry found it started.
                    Ok((Ok(_),)) | Ok((Err(UpgradePartitionsError::AlreadyRunning),)) => {
                        self.rolling.counts.started += 1;
                        self.say(|| "admin started a fleet upgrade".into());
                        self.rolling.phase = Phase::Running { since: self.round };
                    }
                    Ok((Err(e),)) => {
                        self.violation(
                            ViolationKind::UnexpectedReply,
                            format!("upgrade_partitions refused: {e:?}"),
                        );
                        self.rolling.phase = Phase::Idle { next: u64::MAX };
                    }
                    // Rejected or lost on the way: ask again.
                    Err(_) => self.rolling.phase = Phase::Asking { sha, ticket: None },
                }
            }
            Phase::Running { since } => {
                let Some(info) = self.index().fleet_upgrade() else {
                    return;
                };
                if info.finished_at.is_none() {
                    return;
                }
                let c = &mut self.rolling.counts;
                c.completed += 1;
                c.partitions_upgraded += info.upgraded;
                c.partitions_failed += info.failed_total;
                c.longest_rounds = c.longest_rounds.max(self.round - since);
                self.say(|| {
                    format!(
                        "fleet upgrade ended: {} upgraded, {} failed",
                        info.upgraded, info.failed_total
                    )
                });
                self.check_fleet_upgrade(&info);
                self.rolling.phase = Phase::Idle {
                    next: self.round + ROLLING_GAP_ROUNDS,
                };
            }
        }
    }

    /// Checker 13, as a fleet upgrade ends: every partition it did not report failed runs its
    /// module and is not left stopped; the partition the module trapped on is among the
    /// failed.
    fn check_fleet_upgrade(&mut self, info: &FleetUpgradeInfo) {
        let failed: BTreeMap<Principal, String> = info
            .failed
            .iter()
            .map(|f| (f.partition, f.step.clone()))
            .collect();
        let mut bad = vec![];
        let partitions = self
            .canisters
            .iter()
            .filter(|(_, c)| c.partition().is_some());
        for (id, c) in partitions {
            let module = c.module.as_deref();
            // A partition reported failed may run either module: an install whose replies
            // were lost may have happened, and a partition the index could not start or check
            // again was not checked. What must not happen is silence.
            if !failed.contains_key(id) && module != Some(info.module.as_slice()) {
                bad.push(format!(
                    "{id} was not reported failed but runs another module"
                ));
            }
            if c.stopped_until == Some(u64::MAX) && !failed.contains_key(id) {
                bad.push(format!("{id} was left stopped"));
            }
        }
        if let Some(victim) = self.rolling.traps.get(info.module.as_slice()) {
            if (info.failed_total as usize) <= info.failed.len() && !failed.contains_key(victim) {
                bad.push(format!(
                    "{victim}, on which the module traps in post_upgrade, was not reported"
                ));
            }
        }
        for b in bad {
            self.violation(ViolationKind::FleetUpgrade, b);
        }
    }
}
