//! Stepping the world: a round (lifecycle faults, timers, delivery, clients, checkers), the
//! run's phases (running, draining, quiescing, done), stopping and upgrading canisters, and
//! the timers (the index's tick, the partitions' purge).

use super::{guard, principal_word, Msg, Phase, World, EXEC_BASE};
use crate::faults::Faults;
use crate::report::ViolationKind;
use candid::Principal;
use flotilla_client::{RejectCode, TransportError};
use flotilla_store::PURGE_BATCH;
use std::collections::BTreeSet;

/// Partition purge batches one timer run takes at most.
const HOUSEKEEP_BATCHES: usize = 4;

impl World {
    /// Advances the world by one round (see the `world` module docs for what a round does).
    pub fn step(&mut self) {
        if self.halted || self.phase == Phase::Done {
            return;
        }
        self.round += 1;
        self.lifecycle();
        self.burn_storage();
        self.operator_care();
        self.drive_rolling();
        self.timers();
        while let Some((_, seq, msg)) = self.queue.pop_due(self.round) {
            self.stats.messages += 1;
            self.trace(&[self.round, seq]);
            self.deliver(msg);
            if self.halted {
                return;
            }
        }
        for i in 0..self.clients.len() {
            self.client_act(i);
        }
        self.check_round();
        self.check_cycles();
        self.track_moves();
        if self.round.is_multiple_of(self.cfg.full_check_every.max(1)) {
            self.check_full();
        }
        self.advance_phase();
    }

    /// Runs the whole scenario: operations, then drain, quiescence and the final checks.
    pub fn run_to_end(&mut self) {
        while self.phase != Phase::Done && !self.halted {
            self.step();
        }
    }

    fn advance_phase(&mut self) {
        if self.open_ended {
            return;
        }
        let elapsed = self.round - self.phase_started;
        match self.phase {
            Phase::Running => {
                let cap = self.cfg.ops.saturating_mul(self.cfg.max_rounds_per_op) + 2_000;
                if self.stats.ops_completed >= self.cfg.ops || elapsed > cap {
                    if elapsed > cap {
                        self.violation(
                            ViolationKind::NoQuiescence,
                            format!(
                                "only {} of {} operations completed in {elapsed} rounds",
                                self.stats.ops_completed, self.cfg.ops
                            ),
                        );
                    }
                    self.enter(Phase::Draining);
                }
            }
            Phase::Draining => {
                if self.clients.iter().all(|c| c.op.is_none()) {
                    self.enter(Phase::Quiescing);
                } else if elapsed > self.cfg.end_phase_max_rounds {
                    let busy: Vec<String> = self
                        .clients
                        .iter()
                        .filter_map(|c| c.op.as_ref().map(|o| format!("client {}: {o:?}", c.id)))
                        .collect();
                    self.violation(
                        ViolationKind::NoQuiescence,
                        format!("clients still busy after {elapsed} fault-free rounds: {busy:?}"),
                    );
                    self.finish();
                }
            }
            Phase::Quiescing => {
                if self.quiet_now() {
                    self.quiet_for += 1;
                } else {
                    self.quiet_for = 0;
                }
                if self.quiet_for >= self.cfg.quiet_rounds {
                    self.finish();
                } else if elapsed > self.cfg.end_phase_max_rounds {
                    let why = self.busy_reason();
                    let log: Vec<&String> = self.call_log.iter().collect();
                    self.violation(
                        ViolationKind::NoQuiescence,
                        format!(
                            "the index never went quiet in {elapsed} fault-free rounds: {why}; \
                             last calls: {log:#?}"
                        ),
                    );
                    self.finish();
                }
            }
            Phase::Done => {}
        }
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.phase_started = self.round;
        if phase == Phase::Draining {
            self.issuing = false;
            self.faults = Faults::NONE;
            self.end_hazards();
            // Outages end; a canister its controller (the index) stopped stays stopped until
            // the index starts it.
            for c in self.canisters.values_mut() {
                if c.stopped_until != Some(u64::MAX) {
                    c.stopped_until = None;
                }
            }
        }
    }

    fn finish(&mut self) {
        self.check_full();
        self.check_final();
        self.check_none_left_stopped();
        self.phase = Phase::Done;
    }

    /// Nothing left for the index to do: no partition being created, no client call awaiting
    /// a partition, no call but `stats` sent recently or on its way, nothing being purged.
    fn quiet_now(&self) -> bool {
        self.busy_reason().is_empty()
    }

    fn busy_reason(&self) -> String {
        let mut why = vec![];
        let stats = self.index().stats();
        let jobs = stats.partitions_being_created;
        // Jobs of an index too low on cycles wait for an operator's top-up: at rest.
        if jobs > 0 && !stats.cycles.low {
            why.push(format!("{jobs} partition creation job(s)"));
        }
        let moves = self.index().moves();
        if !moves.is_empty() {
            let phases: Vec<String> = moves
                .iter()
                .map(|m| format!("{} ({})", m.outer_key, m.phase))
                .collect();
            why.push(format!("move(s) in progress: {phases:?}"));
        }
        if !self.awaiting.is_empty() {
            why.push(format!("{} client call(s) awaiting", self.awaiting.len()));
        }
        if self.rolling.busy() {
            why.push("a fleet upgrade in progress".into());
        }
        let reclaims = self.index().reclaims_pending();
        if reclaims > 0 {
            why.push(format!("{reclaims} partial import(s) awaiting reclaim"));
        }
        if self.stats.last_work_round + 1 >= self.round {
            why.push("index sent work calls this round".into());
        }
        let busy_msgs: BTreeSet<&'static str> = self
            .queue
            .iter()
            .filter_map(|(_, _, m)| match m {
                Msg::Call(c) if !c.request.is_upkeep() => Some(c.request.method()),
                Msg::Ingress { .. } | Msg::Query { .. } | Msg::ToClient { .. } => Some("client"),
                _ => None,
            })
            .collect();
        if !busy_msgs.is_empty() {
            why.push(format!("in flight: {busy_msgs:?}"));
        }
        let purging: u64 = self
            .partitions()
            .map(|(_, p)| p.store().totals().purging_items)
            .sum();
        if purging > 0 {
            why.push(format!("{purging} item(s) being purged"));
        }
        why.join(", ")
    }

    fn lifecycle(&mut self) {
        let round = self.round;
        for c in self.canisters.values_mut() {
            if c.stopped_until.is_some_and(|r| r <= round) {
                c.stopped_until = None;
            }
        }
        // Always draw the same values, so knob settings never shift later decisions.
        let stop = self.rng.chance(self.faults.stop);
        let stop_pick = self.rng.u64();
        let stop_for = self.rng.range(1, self.faults.stop_rounds_max.max(1));
        let upgrade = self.rng.chance(self.faults.upgrade);
        let upgrade_pick = self.rng.u64();
        if stop {
            let ids: Vec<Principal> = self.canisters.keys().copied().collect();
            let id = ids[(stop_pick % ids.len() as u64) as usize];
            let c = self.canisters.get_mut(&id).expect("listed");
            if !c.is_stopped() {
                c.stopped_until = Some(round + stop_for);
                if id == self.index_id {
                    self.note_index_disturbed(round + stop_for);
                }
                self.say(|| format!("stop {id} for {stop_for} rounds"));
                self.stats.faults.stops += 1;
                self.trace(&[0x5709, principal_word(&id)]);
            }
        }
        if upgrade {
            let ids: Vec<Principal> = self
                .canisters
                .iter()
                .filter(|(_, c)| !c.is_empty())
                .map(|(id, _)| *id)
                .collect();
            let id = ids[(upgrade_pick % ids.len() as u64) as usize];
            self.upgrade(id);
        }
        self.hazards_round();
    }

    /// Upgrades one canister: drops its heap and re-opens its logic from stable memory.
    /// Client calls awaiting the index get an uncertain reject (their call contexts are gone).
    pub fn upgrade(&mut self, id: Principal) {
        let Some(c) = self.canisters.get_mut(&id) else {
            return;
        };
        self.stats.faults.upgrades += 1;
        let r = guard(|| c.upgrade());
        if id == self.index_id {
            self.note_index_disturbed(self.round);
        }
        self.say(|| format!("upgrade {id}"));
        self.trace(&[0x0b6a, principal_word(&id)]);
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.violation(
                    ViolationKind::UnexpectedReply,
                    format!("canister {id} failed to re-open after an upgrade: {e}"),
                );
                self.halted = true;
                return;
            }
            Err(p) => return self.panicked("re-opening after an upgrade", p),
        }
        if id == self.index_id {
            let waiting = std::mem::take(&mut self.awaiting);
            for (_, a) in waiting {
                let e = TransportError::new(
                    RejectCode::SysUnknown,
                    "index upgraded while the call was open",
                );
                self.answer(a.from, Err(e));
            }
        }
    }

    /// Stops a canister for `rounds` rounds (calls, ingress and queries are rejected).
    pub fn stop(&mut self, id: Principal, rounds: u64) {
        if let Some(c) = self.canisters.get_mut(&id) {
            c.stopped_until = Some(self.round + rounds.max(1));
        }
    }

    fn timers(&mut self) {
        let round = self.round;
        if round.is_multiple_of(self.cfg.tick_every.max(1)) {
            let env = self.self_env();
            let idx = self
                .canisters
                .get_mut(&self.index_id)
                .expect("index exists");
            if !idx.is_stopped() && idx.charge(EXEC_BASE) {
                let index = idx.index_mut().expect("index logic");
                match guard(|| index.tick(&env)) {
                    Ok(calls) => {
                        for c in calls {
                            self.send_call(c);
                        }
                    }
                    Err(p) => return self.panicked("index tick", p),
                }
            }
        }
        if round.is_multiple_of(self.cfg.housekeep_every.max(1)) {
            let ids: Vec<Principal> = self
                .canisters
                .iter()
                .filter(|(_, c)| c.partition().is_some() && !c.is_stopped())
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                let c = self.canisters.get_mut(&id).expect("listed");
                if !c.charge(EXEC_BASE) {
                    continue;
                }
                let p = c.partition_mut().expect("listed as partition");
                let r = guard(|| {
                    for _ in 0..HOUSEKEEP_BATCHES {
                        if p.housekeep(PURGE_BATCH) == 0 {
                            break;
                        }
                    }
                });
                if let Err(e) = r {
                    return self.panicked("partition housekeep", e);
                }
            }
        }
    }
}
