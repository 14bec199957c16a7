//! The demo's observer: what only the simulator knows (the requests the canisters executed,
//! which canister served each and the inter-canister calls it made; totals), as JSON at
//! `GET /flotilla/observer?after=SEQ`. What the canisters' own API tells (index `stats`,
//! `routes`), the dashboard reads through the agent like any client.

use flotilla_sim::{Requester, Role, World};
use flotilla_types::dispatch::MethodKind;
use serde::Serialize;

/// Requests returned by one observer answer, at most.
pub const MAX_OBSERVED_REQUESTS: usize = 200;

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub round: u64,
    pub round_ms: u64,
    pub ops_completed: u64,
    pub requests_total: u64,
    pub partition_reads: u64,
    pub partition_writes: u64,
    pub calls_by_partition_reads: u64,
    pub calls_by_partition_writes: u64,
    pub moves_completed: u64,
    pub violations: usize,
    /// Newest last; only those numbered after the asked `after`.
    pub requests: Vec<ObservedRequest>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ObservedRequest {
    pub seq: u64,
    pub round: u64,
    /// `user N` for a simulated user, else the sender's principal.
    pub from: String,
    pub canister: String,
    pub role: &'static str,
    pub method: String,
    pub kind: &'static str,
    pub outcome: String,
    pub calls: u64,
}

/// What the world says now, with the requests numbered after `after` (the newest
/// [`MAX_OBSERVED_REQUESTS`] of them).
pub fn observe(world: &World, after: u64, round_ms: u64) -> Observation {
    let s = world.snapshot();
    let log = world.requests();
    let fresh: Vec<_> = log.after(after).collect();
    let skip = fresh.len().saturating_sub(MAX_OBSERVED_REQUESTS);
    let requests = fresh[skip..]
        .iter()
        .map(|r| ObservedRequest {
            seq: r.seq,
            round: r.round,
            from: match &r.from {
                Requester::User(i) => format!("user {i}"),
                Requester::External(p) => p.to_text(),
            },
            canister: r.canister.to_text(),
            role: match r.role {
                Role::Index => "index",
                Role::Partition => "partition",
            },
            method: r.method.clone(),
            kind: match r.kind {
                MethodKind::Query => "query",
                MethodKind::Update => "update",
            },
            outcome: r.outcome.clone(),
            calls: r.calls,
        })
        .collect();
    Observation {
        round: s.round,
        round_ms,
        ops_completed: s.ops_completed,
        requests_total: log.total(),
        partition_reads: s.partition_reads,
        partition_writes: s.partition_writes,
        calls_by_partition_reads: s.calls_by_partition_reads,
        calls_by_partition_writes: s.calls_by_partition_writes,
        moves_completed: s.moves_completed,
        violations: s.violations,
        requests,
    }
}
