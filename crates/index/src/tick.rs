//! The timer's work (`tick`), also run on an admin's request (`run_housekeeping`).

use crate::calls::Call;
use crate::{Env, Index};
use flotilla_types::index::AdminError;
use ic_stable_structures::Memory;

impl<M: Memory> Index<M> {
    /// `tick` on an admin's request (instead of waiting for the timer).
    pub fn run_housekeeping(&mut self, env: &Env) -> Result<Vec<Call>, AdminError> {
        if !self.is_admin(&env.caller) {
            return Err(AdminError::NotAuthorized);
        }
        Ok(self.tick(env))
    }

    /// Periodic work: keep the spare pool full, drive partition-creation jobs, re-drive
    /// creates and deletes whose outcome is unknown, drive moves, retry the reclaims of
    /// called-off moves' partial imports, refresh partition stats, check and top up
    /// partitions' cycles, drive a fleet upgrade.
    pub fn tick(&mut self, env: &Env) -> Vec<Call> {
        let mut calls = vec![];
        // Spare pool (`registry.rs`).
        self.top_up_spares(env);
        // Jobs without a call in flight (`jobs.rs`).
        calls.extend(self.drive_idle_jobs(env));
        // Pending creates and deletes (`directory.rs`).
        let pending: Vec<String> = self.pending.keys().collect();
        for k in pending {
            calls.extend(self.redrive(&k));
        }
        // Moves, each waiting while one of its calls is in flight (`moves.rs`).
        let moving: Vec<String> = self.moves.keys().collect();
        for k in moving {
            calls.extend(self.drive_move(&k));
        }
        // Partial imports of called-off moves (`reclaims.rs`).
        calls.extend(self.drive_reclaims(env));
        // Stats (`registry.rs`).
        calls.extend(self.request_stale_stats(env));
        // Cycles care (`cycles.rs`).
        calls.extend(self.care_for_cycles(env));
        // A fleet upgrade in progress (`upgrades.rs`).
        calls.extend(self.drive_upgrade(env));
        calls
    }
}
