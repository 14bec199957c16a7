//! The registry of partitions: placement of new SubDBs, spares and their promotion, the
//! spare pool's top-up, partition stats (requested periodically, applied on reply) and the
//! index's own stats.

use crate::calls::{Call, CallResult, Request, Response};
use crate::health;
use crate::moves::MOVE_CANDIDATES;
use crate::records::*;
use crate::{Env, Index, MAX_STATS_CALLS_PER_TICK};
use candid::Principal;
use flotilla_types::index::{
    CyclesStats, IndexStats, PartitionInfo, PartitionState, PartitionsPage, PartitionsRequest,
    WasmInfo,
};
use flotilla_types::limits::MAX_SPARE_POOL_TARGET;
use flotilla_types::limits::{MAX_PARTITIONS_PAGE, MAX_STATS_PARTITIONS};
use flotilla_types::partition::StatsArgs;
use ic_stable_structures::Memory;

impl<M: Memory> Index<M> {
    /// The fleet at a glance. Lists at most `MAX_STATS_PARTITIONS` partitions (the oldest)
    /// and `MAX_STATS_MOVES` moves, so the reply stays under `STATS_REPLY_BUDGET_BYTES`
    /// whatever the fleet's size; `partitions` pages the rest.
    pub fn stats(&self) -> IndexStats {
        let c = self.cfg();
        let partitions = self.partitions_in_order();
        IndexStats {
            routing_version: c.routing_version,
            subdbs: self.directory.len(),
            partitions_total: partitions.len() as u64,
            moves_total: self.moves.len(),
            partitions: partitions
                .into_iter()
                .take(MAX_STATS_PARTITIONS)
                .map(|(id, r)| partition_info(id, r))
                .collect(),
            spare_pool_target: c.spare_pool_target,
            move_cap_bytes: c.move_cap_bytes,
            partitions_being_created: self.jobs.len() as u32,
            partition_wasm: c.wasm.as_ref().map(|w| WasmInfo {
                len: w.len,
                sha256: w.sha256.clone(),
            }),
            admins: c.admins.clone(),
            moves: self.moves(),
            longest_write_pause_ns: c.longest_write_pause_ns,
            cycles: CyclesStats {
                balance: self.fleet.balance.0,
                balance_at: self.fleet.balance.1,
                threshold: c.cycles.threshold,
                target: c.cycles.target,
                reserve: c.cycles.reserve,
                partition_cycles: c.partition_cycles,
                // Unknown (false) before the first timer run noted the balance.
                low: self.fleet.balance.1 != 0
                    && self.fleet.balance.0
                        < c.cycles.reserve.saturating_add(self.partition_cost()),
                top_ups: c.cycles.top_ups,
                topped_up: c.cycles.topped_up,
            },
            create_policy: c.create_policy,
            allowed_creators: self.allowed_creators(),
            max_subdbs_per_owner: c.max_subdbs_per_owner,
            fleet_upgrade: self.fleet_upgrade(),
            reclaims_pending: Some(self.reclaims_pending()),
            reclaims_dropped: Some(c.reclaims_dropped),
            max_bytes_per_subdb: c.max_bytes_per_subdb,
            caller_is_admin: true,
        }
    }

    /// `stats` as `caller` may see it: an admin, everything; anyone else, every figure and
    /// count, but neither the admin list, nor the moves in progress (their outer keys), nor
    /// the texts of a fleet upgrade's failures, and `caller_is_admin: false`.
    pub fn stats_for(&self, caller: &Principal) -> IndexStats {
        let mut s = self.stats();
        if !self.is_admin(caller) {
            s.admins = vec![];
            s.moves = vec![];
            s.caller_is_admin = false;
            // Management-canister reject texts are internal state: counts and partitions only.
            if let Some(u) = s.fleet_upgrade.as_mut() {
                for f in &mut u.failed {
                    f.message.clear();
                }
            }
        }
        s
    }

    /// A page of the registry in creation order: partitions created after `start_after`,
    /// at most `limit` (default and most `MAX_PARTITIONS_PAGE`).
    pub fn partitions(&self, req: &PartitionsRequest) -> PartitionsPage {
        let limit = req
            .limit
            .unwrap_or(MAX_PARTITIONS_PAGE)
            .min(MAX_PARTITIONS_PAGE) as usize;
        let after = req.start_after;
        let mut rest = self
            .partitions_in_order()
            .into_iter()
            .filter(|(_, r)| after.is_none_or(|a| r.seq > a))
            .peekable();
        let mut partitions = vec![];
        let mut last = None;
        while partitions.len() < limit {
            let Some((id, r)) = rest.next() else { break };
            last = Some(r.seq);
            partitions.push(partition_info(id, r));
        }
        let next = if rest.peek().is_some() { last } else { None };
        PartitionsPage { partitions, next }
    }

    // ---- placement and registry ---------------------------------------------------------

    pub(crate) fn partitions_in_order(&self) -> Vec<(Principal, PartitionRecord)> {
        let mut v: Vec<_> = self.registry.iter().map(|e| e.into_pair()).collect();
        v.sort_by_key(|(_, r)| r.seq);
        v
    }

    /// Where a new SubDB goes, per the placement policy; promotes a spare when needed.
    pub(crate) fn place(&mut self, env: &Env) -> Option<Principal> {
        match self.cfg().placement {
            Placement::LastWithRoom => self.newest_with_room(env, &[], 1),
        }
    }

    /// The newest healthy active partition (other than those in `exclude`) with room for
    /// `need` more bytes under the move cap, else the oldest healthy spare, promoted to active
    /// and newest (`health.rs`: an unhealthy partition is passed over). Walks the placed
    /// partitions newest first (`fleet.rs`), so it stops at the first with room: the newest,
    /// unless it just filled or is unhealthy. A partition whose turn in a fleet upgrade has
    /// come is passed over too (`upgrades.rs`).
    pub(crate) fn newest_with_room(
        &mut self,
        env: &Env,
        exclude: &[Principal],
        need: u64,
    ) -> Option<Principal> {
        let cap = self.cfg().move_cap_bytes;
        let found = self.placed_newest_first().find(|id| {
            !exclude.contains(id)
                && !self.upgrading(id)
                && self.registry.get(id).is_some_and(|r| {
                    r.state == PartitionState::Active
                        && r.bytes.saturating_add(need) <= cap
                        && health::is_healthy(&r, env.now)
                })
        });
        if found.is_some() {
            return found;
        }
        let id = self
            .oldest_healthy_spare(env.now, exclude)
            .filter(|id| !self.upgrading(id))?;
        let rec = self.registry.get(&id)?;
        self.promote_spare(env, id, rec);
        Some(id)
    }

    /// Makes spare `id` active and the newest partition.
    pub(crate) fn promote_spare(&mut self, env: &Env, id: Principal, mut rec: PartitionRecord) {
        rec.state = PartitionState::Active;
        rec.seq = self.bump_partition_seq();
        rec.stats_at = rec.stats_at.min(env.now);
        self.put_partition(id, rec);
    }

    pub(crate) fn bump_partition_seq(&mut self) -> u64 {
        let mut seq = 0;
        self.update_cfg(|c| {
            seq = c.next_partition_seq;
            c.next_partition_seq += 1;
        });
        seq
    }

    /// The oldest spare that is healthy at `now` and not in `exclude`.
    fn oldest_healthy_spare(&self, now: u64, exclude: &[Principal]) -> Option<Principal> {
        self.spares_oldest_first().find(|id| {
            !exclude.contains(id)
                && self
                    .registry
                    .get(id)
                    .is_some_and(|r| health::is_healthy(&r, now))
        })
    }

    /// Keeps the spare pool full: a creation job per missing spare (once a wasm is there).
    /// Unhealthy spares do not count: they are not promoted while unhealthy.
    pub(crate) fn top_up_spares(&mut self, env: &Env) {
        if self.cfg().wasm.is_some() {
            let unhealthy = self
                .spares_oldest_first()
                .filter(|id| !self.healthy(id, env.now))
                .count() as u64;
            let spares = self.fleet.spare_count().saturating_sub(unhealthy);
            let mut have = spares.saturating_add(self.jobs.len());
            let target = self.cfg().spare_pool_target.min(MAX_SPARE_POOL_TARGET) as u64;
            while have < target {
                self.new_job();
                have += 1;
            }
        }
    }

    /// A stats call to each partition whose stats are older than the stats period (or were
    /// never received), most overdue first, at most `MAX_STATS_CALLS_PER_TICK`, skipping one
    /// whose call is in flight. It asks for the partition's `MOVE_CANDIDATES` largest SubDBs:
    /// what a move off it would choose from. A partition asked is not due again for a period,
    /// answered or not.
    pub(crate) fn request_stale_stats(&mut self, env: &Env) -> Vec<Call> {
        let mut calls = vec![];
        let period = self.cfg().stats_period_ns;
        for p in self.stats_due(env, period, MAX_STATS_CALLS_PER_TICK) {
            let purpose = Purpose::Stats { partition: p };
            if !self.in_flight(&purpose) {
                let req = Request::Stats(StatsArgs {
                    from: 0,
                    limit: MOVE_CANDIDATES,
                    largest_first: Some(true),
                });
                calls.push(self.next_call(p, req, purpose));
            }
            self.stats_asked(p, env.now);
        }
        calls
    }

    /// A partition's stats came back: record them, mark it full or active again by the move
    /// cap, and maybe start moving a SubDB off it.
    pub(crate) fn stats_reply(
        &mut self,
        env: &Env,
        partition: Principal,
        result: CallResult,
    ) -> Vec<Call> {
        let mut calls = vec![];
        if let Ok(Response::Stats(Ok(stats))) = result {
            if let Some(mut rec) = self.registry.get(&partition) {
                // Bytes of deleted or moved-away SubDBs still being reclaimed do
                // not count: they are on their way out.
                rec.bytes = stats.bytes.saturating_sub(stats.purging_bytes);
                rec.items = stats.items;
                rec.subdbs = stats.live_subdbs;
                rec.stable_memory_bytes = stats.stable_memory_bytes;
                rec.stats_at = env.now;
                if rec.state == PartitionState::Active && rec.bytes > self.cfg().move_cap_bytes {
                    rec.state = PartitionState::Full;
                } else if rec.state == PartitionState::Full
                    && rec.bytes <= self.cfg().move_cap_bytes
                {
                    rec.state = PartitionState::Active;
                }
                self.put_partition(partition, rec);
                calls = self.maybe_start_move(env, partition, &stats);
            }
        }
        calls
    }
}

/// What `stats` and `partitions` show of a partition.
fn partition_info(id: Principal, r: PartitionRecord) -> PartitionInfo {
    PartitionInfo {
        id,
        state: r.state,
        bytes: r.bytes,
        items: r.items,
        subdbs: r.subdbs,
        stable_memory_bytes: r.stable_memory_bytes,
        stats_at: r.stats_at,
        created_at: r.created_at,
        cycles: r.cycles,
        cycles_at: r.cycles_at.unwrap_or(0),
        topped_up: r.topped_up.unwrap_or(0),
        health: Some(health::health_info(&r)),
        module: r.module,
    }
}
