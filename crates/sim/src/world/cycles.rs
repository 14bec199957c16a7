//! Cycles in the world: storage burn every round, an operator who tops the index up, and the
//! two cycles checkers.
//!
//! Every canister burns `CyclesKnobs::storage_per_mib_round` for each MiB of its stable memory
//! each round, besides what its messages cost (`EXEC_BASE`, ingress and call fees). A canister
//! that cannot pay is drained to zero and refuses messages until it is topped up.
//!
//! The operator: once the index has been too low to pay for a partition above its reserve for
//! [`OPERATOR_DELAY_ROUNDS`], the world sends it two partitions' worth and fifty top-ups, as an
//! operator watching `stats` would. Until then creates that need a partition are refused.
//!
//! Checkers:
//! - **No partition runs dry while the index can pay**: a canister running the partition
//!   logic refused a charge for want of cycles in a round when the index held at least its
//!   reserve plus a full top-up, and had held it for longer than it needs to see a balance and
//!   answer it ([`World::top_up_reaction_rounds`]: a check period, a tick, and the calls'
//!   latency), so that a partition starved while the index was poor is not blamed on the index
//!   in the rounds right after the operator tops the index up. The clock starts again at
//!   anything that keeps the index from acting: a failed `canister_status` or `deposit_cycles`
//!   about that partition, and the index stopped or upgraded (it forgets its calls in flight)
//!   ([`ViolationKind::OutOfCycles`]).
//! - **The index never spends into its reserve**: every call carrying cycles (a partition's
//!   creation, a top-up) leaves the index's true balance at or above its reserve when it is
//!   sent, which is when the IC takes the cycles ([`ViolationKind::UnderReserve`]).

use super::World;
use crate::report::ViolationKind;
use candid::Principal;
use flotilla_index::calls::Call;

const MIB: u128 = 1 << 20;

/// Rounds the index stays low on cycles before the operator tops it up.
pub const OPERATOR_DELAY_ROUNDS: u64 = 100;

impl World {
    /// Takes each canister's storage cost for this round.
    pub(super) fn burn_storage(&mut self) {
        let rate = self.cfg.cycles.storage_per_mib_round;
        for c in self.canisters.values_mut() {
            let cost = rate * (c.memory_bytes() as u128).div_ceil(MIB);
            if !c.charge(cost) {
                c.cycles_spent += c.cycles;
                c.cycles = 0;
            }
        }
    }

    /// The operator, once a round.
    pub(super) fn operator_care(&mut self) {
        let k = self.cfg.cycles;
        if self.index_cycles() >= k.reserve + k.partition_cost() {
            self.index_low_since = None;
            return;
        }
        let since = *self.index_low_since.get_or_insert(self.round);
        if self.round - since >= OPERATOR_DELAY_ROUNDS {
            if let Some(c) = self.canisters.get_mut(&self.index_id) {
                c.cycles += 2 * k.partition_cost() + 50 * k.target;
            }
            self.stats.operator_top_ups += 1;
            self.operator_topped_at = Some(self.round);
            self.index_low_since = None;
            self.say(|| "operator tops the index up".to_string());
        }
    }

    /// The reserve checker, on a call the index sends: what it attaches must leave its true
    /// balance (what the world holds, whatever the index was told) at or above its reserve.
    pub(super) fn check_spending(&mut self, call: &Call) {
        let attached = call.request.cycles();
        if attached == 0 {
            return;
        }
        let reserve = self.cfg.cycles.reserve;
        let balance = self.index_cycles();
        if balance < reserve.saturating_add(attached) {
            self.violation(
                ViolationKind::UnderReserve,
                format!(
                    "the index sent {} with {attached} cycles holding {balance}: under its \
                     reserve of {reserve}",
                    call.request.method()
                ),
            );
        }
    }

    /// Rounds the index needs, at most, to top up a partition it can pay for, without faults:
    /// the partition's status check is due a period after the last one and asked at the next
    /// tick; the status call and its reply, then the `deposit_cycles` call sent on that reply,
    /// each take up to `latency_max` rounds.
    pub(crate) fn top_up_reaction_rounds(&self) -> u64 {
        self.cfg.cycles.check_period_rounds + self.cfg.tick_every + 3 * self.cfg.latency_max + 1
    }

    /// A failed `canister_status` or `deposit_cycles` about `partition` (an injected fault,
    /// or the partition stopped for good): the index's clock for it starts again.
    pub(super) fn note_cycles_call_failed(&mut self, partition: Principal) {
        self.cycles_call_failed_at.insert(partition, self.round);
    }

    /// The index stopped or upgraded, until `until`: every partition's clock starts again then.
    pub(super) fn note_index_disturbed(&mut self, until: u64) {
        self.index_disturbed_until = self.index_disturbed_until.max(until);
    }

    /// The dry-partition checker, once a round: a partition refused a charge since the last
    /// round while the index could have topped it up to the target, and had been able to,
    /// undisturbed, for longer than [`Self::top_up_reaction_rounds`].
    pub(super) fn check_cycles(&mut self) {
        let could_pay = self.cfg.cycles.reserve + self.cfg.cycles.target;
        let index = self.index_cycles();
        if index >= could_pay {
            self.index_could_pay_since.get_or_insert(self.round);
        } else {
            self.index_could_pay_since = None;
        }
        let reaction = self.top_up_reaction_rounds();
        let blame = |w: &World, id: &Principal| {
            let Some(since) = w.index_could_pay_since else {
                return false;
            };
            let failed = w.cycles_call_failed_at.get(id).copied().unwrap_or(0);
            let clock = since.max(failed).max(w.index_disturbed_until);
            w.round >= clock + reaction
        };
        let mut dry = vec![];
        for (id, c) in &mut self.canisters {
            // Partitions only: not the index, nor a canister whose creation job gave up
            // before its install (the index keeps no record of it).
            if c.partition().is_none() {
                continue;
            }
            let seen = self.dry_seen.entry(*id).or_insert(0);
            if c.ran_dry > *seen {
                *seen = c.ran_dry;
                dry.push((*id, c.cycles, c.memory_bytes()));
            }
        }
        for (id, cycles, memory) in dry {
            self.stats.partition_dry_rounds += 1;
            if blame(self, &id) {
                self.violation(
                    ViolationKind::OutOfCycles,
                    format!(
                        "partition {id} ran out of cycles ({cycles} left, {memory} bytes of \
                         stable memory) while the index held {index}: enough for its reserve and \
                         a top-up, as it had, undisturbed, for at least the {reaction} rounds \
                         it needs to act"
                    ),
                );
            }
        }
    }
}
