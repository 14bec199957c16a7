//! What a world shows of itself: the run's [`Report`], the dashboard's [`Snapshot`], and
//! every directory route for the checkers.

use super::{Phase, World};
use crate::report::Report;
use candid::Principal;
use flotilla_store::SubDbStatus;
use flotilla_types::index::{MoveInfo, PartitionState, RoutesRequest};
use flotilla_types::InnerKey;
use std::collections::BTreeMap;

/// p50 and p99 of some figures (0 for none).
fn percentiles(v: &[u64]) -> (u64, u64) {
    if v.is_empty() {
        return (0, 0);
    }
    let mut v = v.to_vec();
    v.sort_unstable();
    let at = |q: usize| v[((v.len() - 1) * q).div_ceil(100)];
    (at(50), at(99))
}

impl World {
    pub fn report(&self) -> Report {
        Report {
            seed: self.cfg.seed,
            config: self.cfg.clone(),
            ops: self.stats.ops_completed,
            put_bytes: self.stats.put_bytes,
            rounds: self.round,
            messages: self.stats.messages,
            moves: self.observed.released.len() as u64,
            imports_finished: self.observed.finished_imports.len() as u64,
            faults: self.stats.faults,
            hazards: self.hz.counts,
            upgrades: self.rolling.counts,
            chunk_messages: self.stats.chunk_messages,
            chunk_bytes: self.stats.chunk_bytes,
            max_chunk_message_bytes: self.stats.max_chunk_message_bytes,
            max_message_bytes: self.stats.max_message_bytes,
            write_pause_rounds: self.stats.write_pause_rounds,
            longest_write_pause: self.stats.longest_write_pause,
            longest_move_pause: self
                .index()
                .longest_write_pause_ns()
                .div_ceil(super::ROUND_NS),
            partition_reads: self.stats.partition_reads,
            partition_writes: self.stats.partition_writes,
            calls_by_partition_reads: self.stats.calls_by_partition_reads,
            calls_by_partition_writes: self.stats.calls_by_partition_writes,
            read_latency: percentiles(&self.stats.read_latencies),
            write_latency: percentiles(&self.stats.write_latencies),
            failed_reads: self.stats.failed_reads,
            failed_read_samples: self.stats.failed_read_samples.clone(),
            partitions: self.partitions().count() as u64,
            subdbs_created: self.stats.subdbs_created,
            cycles_spent: self.canisters.values().map(|c| c.cycles_spent).sum(),
            top_ups: self.stats.top_ups,
            topped_up: self.stats.topped_up,
            creates_refused_low_cycles: self.stats.creates_refused_low_cycles,
            partition_dry_rounds: self.stats.partition_dry_rounds,
            operator_top_ups: self.stats.operator_top_ups,
            creates_refused_quota: self.stats.creates_refused_quota,
            puts_refused_quota: self.stats.puts_refused_quota,
            memory_bytes: self.canisters.values().map(|c| c.memory_bytes()).sum(),
            trace_hash: self.trace,
            violations: self.violations.clone(),
        }
    }

    /// What the dashboard shows: the index, every partition, moves in progress.
    pub fn snapshot(&self) -> Snapshot {
        let index = self.index();
        let istats = index.stats();
        let states: BTreeMap<Principal, PartitionState> =
            istats.partitions.iter().map(|p| (p.id, p.state)).collect();
        let partitions = self
            .canisters
            .iter()
            .filter(|(id, _)| **id != self.index_id)
            .map(|(id, c)| {
                let (totals, subdbs) = match c.partition() {
                    Some(p) => (p.store().totals(), c.live_subdbs()),
                    None => (Default::default(), vec![]),
                };
                PartitionSnapshot {
                    id: *id,
                    installed: c.partition().is_some(),
                    state: states.get(id).copied(),
                    stopped: c.is_stopped(),
                    bytes: totals.bytes,
                    items: totals.items,
                    purging_bytes: totals.purging_bytes,
                    live_subdbs: subdbs.len() as u64,
                    frozen_subdbs: subdbs.iter().filter(|s| s.2).count() as u64,
                    largest_subdb_bytes: subdbs.iter().map(|s| s.1).max().unwrap_or(0),
                    memory_bytes: c.memory_bytes(),
                    cycles: c.cycles,
                    recent_requests: c.recent_requests(self.round),
                    requests: c.requests,
                }
            })
            .collect();
        let open_imports = self
            .observed
            .imports
            .iter()
            .filter(|k| {
                self.canisters
                    .get(&k.partition)
                    .and_then(|c| c.partition())
                    .is_some_and(|p| p.store().status(k.subdb) == SubDbStatus::Importing)
            })
            .copied()
            .collect();
        let idx = &self.canisters[&self.index_id];
        Snapshot {
            round: self.round,
            phase: self.phase,
            index: IndexSnapshot {
                id: self.index_id,
                stopped: idx.is_stopped(),
                cycles: idx.cycles,
                memory_bytes: idx.memory_bytes(),
                subdbs: istats.subdbs,
                routing_version: istats.routing_version,
                partitions_being_created: istats.partitions_being_created,
                move_cap_bytes: istats.move_cap_bytes,
            },
            partitions,
            moves: index.moves(),
            open_imports,
            clients: self.clients.len(),
            ops_completed: self.stats.ops_completed,
            messages_in_flight: self.queue.len(),
            moves_completed: self.observed.released.len() as u64,
            violations: self.violations.len(),
            partition_reads: self.stats.partition_reads,
            partition_writes: self.stats.partition_writes,
            calls_by_partition_reads: self.stats.calls_by_partition_reads,
            calls_by_partition_writes: self.stats.calls_by_partition_writes,
        }
    }

    /// Every directory route (paged through the index's routing query).
    pub(crate) fn all_routes(&self) -> Vec<(String, InnerKey)> {
        let index = self.index();
        let mut out = vec![];
        let mut req = RoutesRequest::default();
        loop {
            let page = index.routes(&req);
            out.extend(page.routes.into_iter().map(|r| (r.outer_key, r.inner)));
            match page.next {
                Some(n) => req.start_after = Some(n),
                None => return out,
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub round: u64,
    pub phase: Phase,
    pub index: IndexSnapshot,
    pub partitions: Vec<PartitionSnapshot>,
    /// Moves in progress, as the index reports them.
    pub moves: Vec<MoveInfo>,
    /// Invisible SubDBs being imported (target partition and local id).
    pub open_imports: Vec<InnerKey>,
    pub clients: usize,
    pub ops_completed: u64,
    pub messages_in_flight: usize,
    pub moves_completed: u64,
    pub violations: usize,
    /// Client reads and writes executed at partitions, and the inter-canister calls their
    /// executions made.
    pub partition_reads: u64,
    pub partition_writes: u64,
    pub calls_by_partition_reads: u64,
    pub calls_by_partition_writes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexSnapshot {
    pub id: Principal,
    pub stopped: bool,
    pub cycles: u128,
    pub memory_bytes: u64,
    pub subdbs: u64,
    pub routing_version: u64,
    pub partitions_being_created: u32,
    pub move_cap_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionSnapshot {
    pub id: Principal,
    /// False while the index is still creating it.
    pub installed: bool,
    /// The index's view (`None` until the index registers it).
    pub state: Option<PartitionState>,
    pub stopped: bool,
    pub bytes: u64,
    pub items: u64,
    pub purging_bytes: u64,
    pub live_subdbs: u64,
    pub frozen_subdbs: u64,
    pub largest_subdb_bytes: u64,
    pub memory_bytes: u64,
    pub cycles: u128,
    /// Client requests routed here in the last `RECENT_ROUNDS` rounds.
    pub recent_requests: u64,
    pub requests: u64,
}
