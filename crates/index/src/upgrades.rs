//! Fleet upgrades: every partition upgraded to the active partition wasm, a batch at a time,
//! driven by `tick` as a persisted, resumable state machine.
//!
//! An admin uploads a module (`wasm.rs`) and calls `upgrade_partitions`. Every partition not
//! known to run that module then waits its turn in the `UPGRADES` region; at most `batch` are
//! in progress at once, each through these steps, one management-canister call at a time:
//!
//! 1. **drain**: no move may start on it from now on, and it waits for the moves it is the
//!    source or target of to end (moves never wait for an upgrade that has not reached them);
//! 2. **stop** (`stop_canister`): it finishes the messages it is executing and rejects new
//!    ones, so clients retry elsewhere in time (their calls are rejected, never half-applied);
//! 3. **install** (`install_code` in upgrade mode, inline or from chunks uploaded into its
//!    chunk store, as creation jobs install): the IC runs its `pre_upgrade` and the new
//!    module's `post_upgrade` atomically — a trap leaves it on its old module with its data;
//! 4. **start** (`start_canister`);
//! 5. **status** (`canister_status`): the module it runs now. It is upgraded if that is the
//!    run's module.
//!
//! A failed call is sent again at the next tick; after `MAX_UPGRADE_STEP_FAILURES` failures of
//! a stop or an install the partition is given up on: it is started again (on whatever module
//! it runs, normally its old one), checked, and reported in `failed` with the step and the last
//! failure's text, and the upgrade goes on with the others. A start or check that keeps
//! failing is reported the same way. So every partition leaves the run after a bounded number
//! of calls (bounded by the steps times the failure budget, plus its moves' own bounded end).
//!
//! The index's own upgrade midway forgets the calls in flight (as it does for every call); each
//! partition's step is persisted, so the next tick sends that step's call again — every step
//! is idempotent on the IC (stopping a stopped canister, upgrading again to the same module,
//! starting a running one, reading the status). Should an admin activate another module while
//! the run goes on, the run follows it: partitions not on the new module wait again (an
//! install that started with the old one starts over, as a creation job's does).

use crate::calls::{Call, CallResult, InstallMode, Request, Response};
use crate::records::*;
use crate::{Env, Index};
use candid::Principal;
use flotilla_types::index::{
    FailedUpgrade, FleetUpgradeInfo, UpgradePartitionsArgs, UpgradePartitionsError,
    UpgradingPartition,
};
use flotilla_types::limits::{
    DEFAULT_UPGRADE_BATCH, MAX_UPGRADE_BATCH, MAX_UPGRADE_FAILURES_LISTED,
    MAX_UPGRADE_MESSAGE_BYTES, MAX_UPGRADE_STEP_FAILURES,
};
use ic_stable_structures::Memory;
use serde_bytes::ByteBuf;
use std::collections::BTreeSet;

/// Times a partition found on another module than the run's after an install that succeeded
/// waits its turn again (the run followed a newly activated module) before it is reported
/// failed: so no partition loops in a run, whatever its replies say.
pub const MAX_UPGRADE_REQUEUES: u32 = 3;

/// Heap indexes over the `UPGRADES` region, rebuilt at `open`: the partitions waiting their
/// turn and those in progress.
#[derive(Default)]
pub(crate) struct UpgradeSets {
    pub(crate) waiting: BTreeSet<Principal>,
    active: BTreeSet<Principal>,
}

fn step_name(s: UpgradeStep) -> &'static str {
    match s {
        UpgradeStep::Waiting => "waiting",
        UpgradeStep::Drain => "drain",
        UpgradeStep::Stop => "stop",
        UpgradeStep::Install => "install",
        UpgradeStep::Start => "start",
        UpgradeStep::Status => "status",
        UpgradeStep::Failed => "failed",
    }
}

/// At most `MAX_UPGRADE_MESSAGE_BYTES` of `s`, cut at a character boundary.
fn clip(mut s: String) -> String {
    if s.len() > MAX_UPGRADE_MESSAGE_BYTES {
        let mut end = MAX_UPGRADE_MESSAGE_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl<M: Memory> Index<M> {
    /// Starts upgrading every partition to the active partition wasm (admins only).
    pub fn upgrade_partitions(
        &mut self,
        env: &Env,
        args: &UpgradePartitionsArgs,
    ) -> Result<FleetUpgradeInfo, UpgradePartitionsError> {
        use UpgradePartitionsError as E;
        if !self.is_admin(&env.caller) {
            return Err(E::NotAuthorized);
        }
        let batch = args.batch.unwrap_or(DEFAULT_UPGRADE_BATCH);
        if batch == 0 || batch > MAX_UPGRADE_BATCH {
            return Err(E::BadBatch {
                max: MAX_UPGRADE_BATCH,
            });
        }
        let Some(meta) = self.cfg().wasm.clone() else {
            return Err(E::NoWasm);
        };
        if self.upgrade_running() {
            return Err(E::AlreadyRunning);
        }
        // What the last run gave up on may try again.
        let failed: Vec<Principal> = self.upgrades.iter().map(|e| *e.key()).collect();
        for p in failed {
            self.drop_progress(&p);
        }
        let run = UpgradeRun {
            module: meta.sha256,
            started_at: env.now,
            finished_at: None,
            batch,
            upgraded: 0,
            failed_total: 0,
            failed: vec![],
        };
        self.update_cfg(|c| c.upgrade = Some(run));
        self.enqueue_behind();
        Ok(self.fleet_upgrade().expect("a run was just recorded"))
    }

    pub(crate) fn upgrade_running(&self) -> bool {
        self.cfg()
            .upgrade
            .as_ref()
            .is_some_and(|r| r.finished_at.is_none())
    }

    /// Whether a fleet upgrade has `p`'s turn now (from drain to the status check): no move
    /// may start on it, and nothing is placed on it.
    pub(crate) fn upgrading(&self, p: &Principal) -> bool {
        self.upgrade_sets.active.contains(p)
    }

    /// The fleet upgrade in progress, or the last one.
    pub fn fleet_upgrade(&self) -> Option<FleetUpgradeInfo> {
        let run = self.cfg().upgrade.clone()?;
        let in_progress = self
            .upgrade_sets
            .active
            .iter()
            .filter_map(|p| {
                let prog = self.upgrades.get(p)?;
                Some(UpgradingPartition {
                    partition: *p,
                    step: step_name(prog.step).to_string(),
                    failures: prog.failures,
                })
            })
            .collect();
        Some(FleetUpgradeInfo {
            module: run.module,
            started_at: run.started_at,
            finished_at: run.finished_at,
            batch: run.batch,
            upgraded: run.upgraded,
            waiting: self.upgrade_sets.waiting.len() as u64,
            in_progress,
            failed_total: run.failed_total,
            failed: run.failed,
        })
    }

    /// Rebuilds the heap indexes of the `UPGRADES` region (at `open`).
    pub(crate) fn build_upgrade_sets(&mut self) {
        let mut sets = UpgradeSets::default();
        for e in self.upgrades.iter() {
            let (p, prog) = e.into_pair();
            match prog.step {
                UpgradeStep::Waiting => sets.waiting.insert(p),
                UpgradeStep::Failed => false,
                _ => sets.active.insert(p),
            };
        }
        self.upgrade_sets = sets;
    }

    fn put_progress(&mut self, p: Principal, prog: UpgradeProgress) {
        self.upgrade_sets.active.remove(&p);
        self.upgrade_sets.waiting.remove(&p);
        match prog.step {
            UpgradeStep::Waiting => self.upgrade_sets.waiting.insert(p),
            UpgradeStep::Failed => false,
            _ => self.upgrade_sets.active.insert(p),
        };
        self.upgrades.insert(p, prog);
    }

    fn drop_progress(&mut self, p: &Principal) {
        self.upgrade_sets.waiting.remove(p);
        self.upgrade_sets.active.remove(p);
        self.upgrades.remove(p);
    }

    /// Every partition not known to run the run's module, and not in the run already (or
    /// given up on for another module), waits its turn.
    fn enqueue_behind(&mut self) {
        let Some(module) = self.cfg().upgrade.as_ref().map(|r| r.module.clone()) else {
            return;
        };
        let behind: Vec<Principal> = self
            .registry
            .iter()
            .filter(|e| e.value().module.as_ref() != Some(&module))
            .map(|e| *e.key())
            .collect();
        for p in behind {
            let failed_before = self
                .upgrades
                .get(&p)
                .is_some_and(|g| g.step == UpgradeStep::Failed);
            if failed_before || !self.upgrades.contains_key(&p) {
                self.put_progress(p, waiting());
            }
        }
    }

    /// The index learned that `p` runs `module` (a creation job installed it, or a status
    /// check read it): while a fleet upgrade runs to another module, a partition not in it
    /// waits its turn — one created from a module activated just before, or one a late call
    /// changed after its check.
    pub(crate) fn note_module(&mut self, p: Principal, module: Option<&ByteBuf>) {
        let Some(run) = self.cfg().upgrade.as_ref() else {
            return;
        };
        if run.finished_at.is_none()
            && module != Some(&run.module)
            && !self.upgrades.contains_key(&p)
        {
            self.put_progress(p, waiting());
        }
    }

    /// Whether `p` is the source or the target of a move in progress.
    fn in_a_move(&self, p: &Principal) -> bool {
        self.moves.iter().any(|e| {
            let m = e.value();
            m.source.partition == *p || m.target == *p
        })
    }

    /// The timer's part: follow a newly activated module, give waiting partitions their turn
    /// while fewer than `batch` are in progress, send the step of each partition in progress
    /// that has no call in flight, and end the run once none is left.
    pub(crate) fn drive_upgrade(&mut self, env: &Env) -> Vec<Call> {
        let c = self.cfg();
        let Some(run) = c.upgrade.as_ref().filter(|r| r.finished_at.is_none()) else {
            return vec![];
        };
        let batch = run.batch;
        let activated = c
            .wasm
            .as_ref()
            .filter(|w| w.sha256 != run.module)
            .map(|w| w.sha256.clone());
        if let Some(module) = activated {
            self.update_cfg(|c| {
                if let Some(r) = c.upgrade.as_mut() {
                    r.module = module;
                }
            });
            self.enqueue_behind();
        }
        let free = (batch as usize).saturating_sub(self.upgrade_sets.active.len());
        let turn: Vec<Principal> = self
            .upgrade_sets
            .waiting
            .iter()
            .take(free)
            .copied()
            .collect();
        for p in turn {
            let mut prog = self.upgrades.get(&p).unwrap_or_else(waiting);
            prog.step = UpgradeStep::Drain;
            self.put_progress(p, prog);
        }
        let active: Vec<Principal> = self.upgrade_sets.active.iter().copied().collect();
        let calls: Vec<Call> = active
            .into_iter()
            .filter_map(|p| self.upgrade_step(p))
            .collect();
        if self.upgrade_sets.active.is_empty() && self.upgrade_sets.waiting.is_empty() {
            self.update_cfg(|c| {
                if let Some(r) = c.upgrade.as_mut() {
                    r.finished_at = Some(env.now);
                }
            });
        }
        calls
    }

    /// The call of `p`'s current step, unless one is in flight (or it is draining and still
    /// in a move).
    fn upgrade_step(&mut self, p: Principal) -> Option<Call> {
        let purpose = Purpose::Upgrade { partition: p };
        if self.in_flight(&purpose) {
            return None;
        }
        let mut prog = self.upgrades.get(&p)?;
        let request = match prog.step {
            UpgradeStep::Waiting | UpgradeStep::Failed => return None,
            UpgradeStep::Drain if self.in_a_move(&p) => return None,
            UpgradeStep::Drain | UpgradeStep::Stop => {
                prog.step = UpgradeStep::Stop;
                Request::StopCanister { canister: p }
            }
            UpgradeStep::Install => {
                // `post_upgrade` of the partition takes no argument.
                let arg = ByteBuf::from(candid::encode_args(()).expect("encoding ()"));
                let (req, _) = self.install_step(
                    p,
                    InstallMode::Upgrade,
                    &mut prog.module,
                    &mut prog.hashes,
                    arg,
                )?;
                req
            }
            UpgradeStep::Start => Request::StartCanister { canister: p },
            UpgradeStep::Status => Request::CanisterStatus { canister: p },
        };
        self.put_progress(p, prog);
        Some(self.next_call(Principal::management_canister(), request, purpose))
    }

    /// The reply to `p`'s step: on to the next step (its call at once), or count the failure
    /// (the step is sent again by the next tick) and give up past the budget.
    pub(crate) fn upgrade_reply(
        &mut self,
        env: &Env,
        p: Principal,
        result: CallResult,
    ) -> Vec<Call> {
        let Some(mut prog) = self.upgrades.get(&p) else {
            return vec![];
        };
        let advanced = match (prog.step, result) {
            (UpgradeStep::Stop, Ok(Response::Stopped)) => {
                prog.step = UpgradeStep::Install;
                Ok(())
            }
            (UpgradeStep::Install, Ok(Response::ChunkUploaded { hash })) => {
                prog.hashes.push(hash);
                Ok(())
            }
            (UpgradeStep::Install, Ok(Response::Installed)) => {
                prog.step = UpgradeStep::Start;
                Ok(())
            }
            (UpgradeStep::Start, Ok(Response::Started)) => {
                prog.step = UpgradeStep::Status;
                Ok(())
            }
            // Stopped again (a stop sent before an upgrade of the index, arriving late): start
            // it again, counted as a failure of the check.
            (UpgradeStep::Status, Ok(Response::Status { stopped: true, .. })) => {
                prog.step = UpgradeStep::Start;
                Err("stopped again after its start".to_string())
            }
            (
                UpgradeStep::Status,
                Ok(Response::Status {
                    cycles,
                    module_hash,
                    stopped: false,
                }),
            ) => {
                self.upgrade_checked(env, p, prog, cycles, module_hash);
                return vec![];
            }
            (_, Err(reject)) => Err(reject.message),
            (_, Ok(other)) => Err(format!("unexpected reply: {other:?}")),
        };
        match advanced {
            Ok(()) => {
                prog.failures = 0;
                prog.last_error = None;
                self.put_progress(p, prog);
                self.upgrade_step(p).into_iter().collect()
            }
            Err(message) => {
                let message = clip(message);
                prog.failures = prog.failures.saturating_add(1);
                prog.last_error = Some(message.clone());
                if prog.failures >= MAX_UPGRADE_STEP_FAILURES {
                    let step = step_name(prog.step).to_string();
                    match prog.step {
                        // Given up: make sure it runs again, then report it.
                        UpgradeStep::Drain | UpgradeStep::Stop | UpgradeStep::Install => {
                            prog.gave_up = Some((step, message));
                            prog.step = UpgradeStep::Start;
                            prog.failures = 0;
                            prog.last_error = None;
                        }
                        UpgradeStep::Start
                        | UpgradeStep::Status
                        | UpgradeStep::Waiting
                        | UpgradeStep::Failed => {
                            let (step, message) = prog.gave_up.take().unwrap_or((step, message));
                            self.upgrade_failed(p, step, message);
                            return vec![];
                        }
                    }
                }
                self.put_progress(p, prog);
                vec![]
            }
        }
    }

    /// `p`'s status after its upgrade: record the module it runs (and its balance). Upgraded
    /// if that is the run's module; given up on otherwise — unless it was never given up on
    /// and the run's module changed meanwhile, when it waits its turn again.
    fn upgrade_checked(
        &mut self,
        env: &Env,
        p: Principal,
        prog: UpgradeProgress,
        cycles: u128,
        module_hash: Option<ByteBuf>,
    ) {
        self.record_status(env, p, cycles, module_hash.clone());
        let Some(run_module) = self.cfg().upgrade.as_ref().map(|r| r.module.clone()) else {
            return;
        };
        if module_hash.as_ref() == Some(&run_module) {
            self.drop_progress(&p);
            self.update_cfg(|c| {
                if let Some(r) = c.upgrade.as_mut() {
                    r.upgraded += 1;
                }
            });
        } else if let Some((step, message)) = prog.gave_up {
            self.upgrade_failed(p, step, message);
        } else if prog.requeues >= MAX_UPGRADE_REQUEUES {
            let message = "installed, yet it runs another module".to_string();
            self.upgrade_failed(p, "status".into(), message);
        } else {
            let mut again = waiting();
            again.requeues = prog.requeues + 1;
            self.put_progress(p, again);
        }
    }

    fn upgrade_failed(&mut self, p: Principal, step: String, message: String) {
        let mut prog = waiting();
        prog.step = UpgradeStep::Failed;
        self.put_progress(p, prog);
        self.update_cfg(|c| {
            if let Some(r) = c.upgrade.as_mut() {
                r.failed_total += 1;
                if r.failed.len() < MAX_UPGRADE_FAILURES_LISTED {
                    r.failed.push(FailedUpgrade {
                        partition: p,
                        step,
                        message,
                    });
                }
            }
        });
    }
}

fn waiting() -> UpgradeProgress {
    UpgradeProgress {
        step: UpgradeStep::Waiting,
        failures: 0,
        module: None,
        hashes: vec![],
        gave_up: None,
        last_error: None,
        requeues: 0,
    }
}
