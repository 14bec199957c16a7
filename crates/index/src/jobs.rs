//! Partition-creation jobs: create a canister through the management canister, install the
//! partition wasm (inline, or uploaded chunk by chunk then installed), and register the new
//! partition as a spare. Each job is a persisted state machine with at most one call in
//! flight; a failed step is retried by the next tick.

use crate::calls::{Call, CallResult, InstallMode, Request, Response};
use crate::records::*;
use crate::wasm::InstallStage;
use crate::{Env, Index};
use candid::Principal;
use flotilla_types::index::PartitionState;
use flotilla_types::limits::MAX_JOB_FAILURES;
use flotilla_types::partition::PartitionInit;
use ic_stable_structures::Memory;
use serde_bytes::ByteBuf;

impl<M: Memory> Index<M> {
    /// A step for each job without a call in flight.
    pub(crate) fn drive_idle_jobs(&mut self, env: &Env) -> Vec<Call> {
        let mut calls = vec![];
        let idle: Vec<u64> = self
            .jobs
            .iter()
            .filter(|e| e.value().call.is_none())
            .map(|e| *e.key())
            .collect();
        for job in idle {
            calls.extend(self.job_step(env, job));
        }
        calls
    }

    pub(crate) fn new_job(&mut self) -> u64 {
        let mut id = 0;
        self.update_cfg(|c| {
            id = c.next_job_id;
            c.next_job_id = c.next_job_id.wrapping_add(1);
        });
        self.jobs.insert(
            id,
            JobRecord {
                job: Job::Create,
                call: None,
                mode: InstallMode::Install,
                attempts: 0,
                module: None,
                failures: None,
            },
        );
        id
    }

    /// The call for a job's current step. Every step reads the active module afresh and
    /// compares it with the one the job pinned: after an admin's re-upload, an upload in
    /// progress starts over with the new module (the chunk hashes gathered so far are
    /// dropped), so no step ever indexes a chunk list of another module.
    fn job_step(&mut self, env: &Env, id: u64) -> Option<Call> {
        let mut rec = self.jobs.get(&id)?;
        if rec.call.is_some() {
            return None;
        }
        let purpose = Purpose::Job { job: id };
        let mgmt = Principal::management_canister();
        let arg = || {
            ByteBuf::from(
                candid::encode_one(PartitionInit { index: env.self_id }).expect("encode init"),
            )
        };
        let request = match rec.job.clone() {
            // Waits, without counting a failure, while the index cannot pay for a partition
            // above its reserve (`cycles.rs`).
            Job::Create if !self.can_afford_partition(env) => return None,
            Job::Create => Request::CreateCanister {
                cycles: self.cfg().partition_cycles,
            },
            job @ (Job::Install { .. } | Job::Upload { .. } | Job::InstallChunked { .. }) => {
                let (canister, mut hashes) = match job {
                    Job::Install { canister } => (canister, vec![]),
                    Job::Upload { canister, hashes } | Job::InstallChunked { canister, hashes } => {
                        (canister, hashes)
                    }
                    Job::Create => unreachable!("matched above"),
                };
                let (request, stage) =
                    self.install_step(canister, rec.mode, &mut rec.module, &mut hashes, arg())?;
                rec.job = match stage {
                    InstallStage::Inline => Job::Install { canister },
                    InstallStage::Upload => Job::Upload { canister, hashes },
                    InstallStage::Chunked => Job::InstallChunked { canister, hashes },
                };
                request
            }
        };
        let call = self.next_call(mgmt, request, purpose);
        rec.call = Some(call.id);
        rec.attempts = rec.attempts.saturating_add(1);
        self.jobs.insert(id, rec);
        Some(call)
    }

    pub(crate) fn job_reply(&mut self, env: &Env, id: u64, result: CallResult) -> Vec<Call> {
        let Some(mut rec) = self.jobs.get(&id) else {
            return vec![];
        };
        rec.call = None;
        let next = match (&rec.job, result) {
            (Job::Create, Ok(Response::CanisterCreated(canister))) => {
                Some(Job::Install { canister })
            }
            (
                Job::Install { canister } | Job::InstallChunked { canister, .. },
                Ok(Response::Installed),
            ) => {
                let canister = *canister;
                self.jobs.remove(&id);
                let module = rec.module.clone();
                let seq = self.bump_partition_seq();
                self.put_partition(
                    canister,
                    PartitionRecord {
                        state: PartitionState::Spare,
                        seq,
                        bytes: 0,
                        items: 0,
                        subdbs: 0,
                        stable_memory_bytes: 0,
                        stats_at: 0,
                        created_at: env.now,
                        // Unknown until the first status check (the creation fee came out of
                        // the cycles attached).
                        cycles: None,
                        cycles_at: None,
                        cycles_asked_at: None,
                        topped_up: None,
                        burn_per_period: None,
                        burn_base: None,
                        module: rec.module.clone(),
                        health: None,
                    },
                );
                self.note_module(canister, module.as_ref());
                return vec![];
            }
            (Job::Upload { canister, hashes }, Ok(Response::ChunkUploaded { hash })) => {
                let mut hashes = hashes.clone();
                hashes.push(hash);
                Some(Job::Upload {
                    canister: *canister,
                    hashes,
                })
            }
            // A failed step is retried by the next tick. An install may have run although its
            // reply was lost: retry it as a reinstall. A lost `create_canister` reply may leave
            // an orphan canister behind: the management canister cannot deduplicate creations.
            (Job::Install { .. } | Job::InstallChunked { .. }, _) => {
                rec.mode = InstallMode::Reinstall;
                None
            }
            _ => None,
        };
        if let Some(job) = next {
            rec.job = job;
            rec.failures = None;
            self.jobs.insert(id, rec);
            self.job_step(env, id).into_iter().collect()
        } else {
            let failures = rec.failures.unwrap_or(0).saturating_add(1);
            if failures >= MAX_JOB_FAILURES {
                // Keeps failing (out of cycles, a module the canister rejects, ...): drop it,
                // so it no longer counts toward the spare pool; the next tick starts afresh.
                self.jobs.remove(&id);
            } else {
                rec.failures = Some(failures);
                self.jobs.insert(id, rec);
            }
            vec![]
        }
    }
}
