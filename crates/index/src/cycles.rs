//! Cycles care, driven by `tick`: the index checks each partition's cycle balance through the
//! management canister (`canister_status`; the index is the controller) and tops up any
//! partition below the threshold to the target (`deposit_cycles`), from its own balance,
//! never spending below its reserve.
//!
//! The threshold is a floor, not the whole rule: a partition that burns fast (large stable
//! memory, heavy traffic) is also topped up once its balance would last fewer than
//! [`RUNWAY_CHECKS`] check periods at its measured burn, and then to twice that runway if the
//! target is less (at most [`MAX_GOAL_TARGETS`] targets). At a steady burn a partition
//! survives four failed checks in a row, where a fixed threshold covers only as many checks
//! as it happens to hold.
//!
//! The burn is measured between two balances as `canister_status` read them, at least a
//! period apart, and scaled to one period. A top-up landing between two readings only makes
//! the drop smaller (a balance that rose keeps the last burn), so the measure can fall short
//! of the burn but never exceed it by more than the readings' timing; the goal's cap bounds
//! what even that can cost. While its balance cannot pay for a partition above the
//! reserve, creation jobs wait and a create that needs a new partition fails with
//! `IndexLowOnCycles`. Admins change the figures with `update_settings` (`settings.rs`).
//!
//! Work per timer run is bounded and does not grow with the fleet: the partitions due for a
//! check come from a heap index ordered by when each is due, at most
//! [`MAX_STATUS_CALLS_PER_TICK`] a run.

use crate::calls::{Call, CallResult, Request, Response};
use crate::records::*;
use crate::{Env, Index};
use candid::Principal;
use ic_stable_structures::Memory;
use serde_bytes::ByteBuf;

/// Default threshold: a partition below 500 B cycles is topped up ...
pub const DEFAULT_CYCLES_THRESHOLD: u128 = 500_000_000_000;
/// ... to 1 T.
pub const DEFAULT_CYCLES_TARGET: u128 = 1_000_000_000_000;
/// The index keeps 1 T for itself by default.
pub const DEFAULT_CYCLES_RESERVE: u128 = 1_000_000_000_000;
/// A partition's balance is checked every 10 minutes by default.
pub const DEFAULT_CYCLES_CHECK_PERIOD_NS: u64 = 600_000_000_000;
/// A check that got no answer (rejected, lost, or forgotten across an upgrade) is asked again
/// after this long rather than a whole period later.
pub const STATUS_RETRY_NS: u64 = 30_000_000_000;
/// Cycles a top-up leaves above the reserve besides the amount it sends: what sending the
/// call and executing the message that sends it may still take from the balance the message
/// saw (a `deposit_cycles` call costs well under a million cycles on the IC). Without it, a
/// top-up sized to the cycle left the index a few hundred thousand cycles under its reserve.
pub const TOP_UP_MARGIN: u128 = 1_000_000_000;
/// Status checks one timer run asks at most.
pub const MAX_STATUS_CALLS_PER_TICK: usize = 64;
/// A partition is topped up while its balance still lasts fewer than this many check periods
/// at its measured burn (`PartitionRecord::burn_per_period`).
pub const RUNWAY_CHECKS: u128 = 6;
/// A top-up's goal is at most this many times the target, whatever the burn measured.
pub const MAX_GOAL_TARGETS: u128 = 10;

/// The balance a partition holding `cycles` and burning `burn_per_period` should be topped up
/// to, if it needs a top-up: below the threshold, or short of [`RUNWAY_CHECKS`] periods of
/// its burn. The goal is the target, or twice the runway when that is more (so a fast burner
/// is not topped up at every check), and never more than [`MAX_GOAL_TARGETS`] targets.
pub(crate) fn top_up_goal(
    care: &CyclesCare,
    burn_per_period: Option<u128>,
    cycles: u128,
) -> Option<u128> {
    let runway = burn_per_period.unwrap_or(0).saturating_mul(RUNWAY_CHECKS);
    if cycles >= care.threshold && cycles >= runway {
        return None;
    }
    let cap = care.target.saturating_mul(MAX_GOAL_TARGETS);
    Some(care.target.max(runway.saturating_mul(2)).min(cap))
}

impl<M: Memory> Index<M> {
    /// Cycles a new partition takes from the index: those attached to `create_canister`
    /// (the IC takes its creation fee out of them; the partition starts with the rest).
    pub(crate) fn partition_cost(&self) -> u128 {
        self.cfg().partition_cycles
    }

    /// The index can pay for a new partition and keep its reserve.
    pub(crate) fn can_afford_partition(&self, env: &Env) -> bool {
        env.balance
            >= self
                .cfg()
                .cycles
                .reserve
                .saturating_add(self.partition_cost())
    }

    /// `tick`'s part: note the index's own balance, and ask the status of at most
    /// [`MAX_STATUS_CALLS_PER_TICK`] partitions whose check is due, most overdue first (from
    /// the heap index `fleet.rs` keeps, so a tick with nothing due reads no record). A check is
    /// due a period after it was last asked, or [`STATUS_RETRY_NS`] after when that ask got no
    /// answer; never while one is in flight.
    pub(crate) fn care_for_cycles(&mut self, env: &Env) -> Vec<Call> {
        self.fleet.balance = (env.balance, env.now);
        let mut calls = vec![];
        for id in self.status_due(env.now, MAX_STATUS_CALLS_PER_TICK) {
            let Some(mut rec) = self.registry.get(&id) else {
                continue;
            };
            if self.in_flight(&Purpose::Status { partition: id }) {
                continue;
            }
            rec.cycles_asked_at = Some(env.now);
            self.put_partition(id, rec);
            calls.push(self.next_call(
                Principal::management_canister(),
                Request::CanisterStatus { canister: id },
                Purpose::Status { partition: id },
            ));
        }
        calls
    }

    /// When `rec`'s next cycle-balance check is due: at once if never asked; a period after
    /// the last ask; [`STATUS_RETRY_NS`] after it if that ask got no answer. (A changed period
    /// applies from each partition's next check.)
    pub(crate) fn status_due_at(&self, rec: &PartitionRecord) -> u64 {
        let Some(asked) = rec.cycles_asked_at else {
            return 0;
        };
        let period = self.cfg().cycles.check_period_ns;
        let unanswered = rec.cycles_at.is_none_or(|answered| answered < asked);
        let wait = if unanswered {
            STATUS_RETRY_NS.min(period)
        } else {
            period
        };
        asked.saturating_add(wait)
    }

    /// A partition's status came back: record its balance, and top it up to the target when
    /// it is below the threshold, as far as the index can above its reserve.
    pub(crate) fn status_reply(
        &mut self,
        env: &Env,
        partition: Principal,
        result: CallResult,
    ) -> Vec<Call> {
        let Ok(Response::Status {
            cycles,
            module_hash,
            stopped,
        }) = result
        else {
            return vec![];
        };
        let Some(burn) = self.record_status(env, partition, cycles, module_hash.clone()) else {
            return vec![];
        };
        self.note_module(partition, module_hash.as_ref());
        // Stopped, and no fleet upgrade has its turn: left so by a fleet upgrade that could not
        // start it (it did not answer then), or by a late stop. Start it.
        if stopped && !self.upgrading(&partition) {
            let purpose = Purpose::Restart { partition };
            if self.in_flight(&purpose) {
                return vec![];
            }
            let req = Request::StartCanister {
                canister: partition,
            };
            return vec![self.next_call(Principal::management_canister(), req, purpose)];
        }
        let care = self.cfg().cycles;
        let Some(goal) = top_up_goal(&care, burn, cycles) else {
            return vec![];
        };
        // One top-up at a time: a second status answered meanwhile saw the old balance.
        if self.top_up_in_flight(partition) {
            return vec![];
        }
        let amount = goal.saturating_sub(cycles).min(
            env.balance
                .saturating_sub(care.reserve)
                .saturating_sub(TOP_UP_MARGIN),
        );
        if amount == 0 {
            return vec![];
        }
        vec![self.next_call(
            Principal::management_canister(),
            Request::DepositCycles {
                canister: partition,
                cycles: amount,
            },
            Purpose::TopUp { partition, amount },
        )]
    }

    /// Records what a `canister_status` of `partition` said (its balance, and the module it
    /// runs), for cycles care and fleet upgrades alike. Answers the partition's burn per period
    /// as it now stands (for the top-up decision, without reading the record again), or None
    /// if it is not a partition.
    ///
    /// It also measures the burn: what the balance dropped since the base reading, when that
    /// is at least a check period old, scaled to one period. A reading closer to the base (a
    /// fleet upgrade's status step right after a check) keeps the base, so the next one spans
    /// longer. A balance that rose (a top-up landed) or reads zero (the partition ran dry, so
    /// the drop says too little) measures nothing and becomes the base.
    pub(crate) fn record_status(
        &mut self,
        env: &Env,
        partition: Principal,
        cycles: u128,
        module: Option<ByteBuf>,
    ) -> Option<Option<u128>> {
        let mut rec = self.registry.get(&partition)?;
        let period = self.cfg().cycles.check_period_ns as u128;
        let reading = BurnBase {
            cycles,
            at: env.now,
        };
        rec.burn_base = match rec.burn_base {
            Some(base) if cycles > 0 && cycles <= base.cycles => {
                let elapsed = env.now.saturating_sub(base.at) as u128;
                if elapsed < period.max(1) {
                    Some(base)
                } else {
                    let drop = base.cycles - cycles;
                    rec.burn_per_period = Some(drop.saturating_mul(period) / elapsed);
                    Some(reading)
                }
            }
            _ => Some(reading),
        };
        rec.cycles = Some(cycles);
        rec.module = module;
        rec.cycles_at = Some(env.now);
        let burn = rec.burn_per_period;
        self.put_partition(partition, rec);
        Some(burn)
    }

    /// A restart's reply: counted when it succeeded; the next status check tells either way.
    pub(crate) fn restart_reply(&mut self, result: CallResult) {
        if matches!(result, Ok(Response::Started)) {
            self.update_cfg(|c| c.cycles.restarts = Some(c.cycles.restarts.unwrap_or(0) + 1));
        }
    }

    /// A top-up's reply: count it. A certain failure sent nothing (the cycles came back); an
    /// uncertain one is settled by the partition's next status check.
    pub(crate) fn top_up_reply(&mut self, partition: Principal, amount: u128, result: CallResult) {
        if !matches!(result, Ok(Response::Deposited)) {
            return;
        }
        if let Some(mut rec) = self.registry.get(&partition) {
            rec.cycles = rec.cycles.map(|c| c.saturating_add(amount));
            rec.topped_up = Some(rec.topped_up.unwrap_or(0).saturating_add(amount));
            self.put_partition(partition, rec);
        }
        self.update_cfg(|c| {
            c.cycles.top_ups += 1;
            c.cycles.topped_up = c.cycles.topped_up.saturating_add(amount);
        });
    }

    /// Sets how often each partition's balance is checked (the simulator's knob; not an
    /// endpoint).
    pub fn set_cycles_check_period(&mut self, ns: u64) {
        self.update_cfg(|c| c.cycles.check_period_ns = ns.max(1));
    }
}
