//! Fault knobs, their per-seed randomization, and the per-message fault decision.
//!
//! Every knob is a probability (or a bound) with a name. A run draws its knobs from its seed
//! (see [`Faults::random`]), prints them in its header, and can have them switched off for
//! the quiescence phase at the end.

use crate::rng::SimRng;
use std::fmt;

/// Fault probabilities of one run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Faults {
    /// An inter-canister call is rejected before it executes (`certain: true`: destination
    /// stopped, out of cycles, queue full).
    pub call_reject: f64,
    /// The callee traps: nothing changes, the caller gets `certain: false`.
    pub call_trap: f64,
    /// The callee executes but the reply is lost (best-effort timeout): `certain: false`.
    pub call_reply_lost: f64,
    /// An ingress update (client write, create/delete SubDB) is rejected before it executes.
    pub ingress_reject: f64,
    /// An ingress update traps: no effect, the client cannot tell.
    pub ingress_trap: f64,
    /// An ingress update executes but the client never learns the outcome.
    pub ingress_reply_lost: f64,
    /// Per round: a random canister (index or partition) is stopped.
    pub stop: f64,
    /// A stopped canister is started again after `1..=stop_rounds_max` rounds.
    pub stop_rounds_max: u64,
    /// Per round: a random installed canister is upgraded (its logic re-opened from stable
    /// memory; heap state and, for the index, calls in flight are forgotten).
    pub upgrade: f64,
}

/// What becomes of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    RejectBefore,
    Trap,
    ReplyLost,
}

/// Injected faults by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub call_reject: u64,
    pub call_trap: u64,
    pub call_reply_lost: u64,
    pub ingress_reject: u64,
    pub ingress_trap: u64,
    pub ingress_reply_lost: u64,
    pub stops: u64,
    pub upgrades: u64,
    /// Calls and ingress refused because the destination was stopped (a consequence of
    /// `stops`, counted apart).
    pub stopped_rejects: u64,
    /// Queries refused because the destination was stopped.
    pub stopped_queries: u64,
}

impl FaultCounts {
    pub fn add(&mut self, o: &FaultCounts) {
        self.call_reject += o.call_reject;
        self.call_trap += o.call_trap;
        self.call_reply_lost += o.call_reply_lost;
        self.ingress_reject += o.ingress_reject;
        self.ingress_trap += o.ingress_trap;
        self.ingress_reply_lost += o.ingress_reply_lost;
        self.stops += o.stops;
        self.upgrades += o.upgrades;
        self.stopped_rejects += o.stopped_rejects;
        self.stopped_queries += o.stopped_queries;
    }

    pub fn injected(&self) -> u64 {
        self.call_reject
            + self.call_trap
            + self.call_reply_lost
            + self.ingress_reject
            + self.ingress_trap
            + self.ingress_reply_lost
            + self.stops
            + self.upgrades
    }

    pub fn record(&mut self, ingress: bool, fate: Fate) {
        let slot = match (ingress, fate) {
            (_, Fate::Deliver) => return,
            (false, Fate::RejectBefore) => &mut self.call_reject,
            (false, Fate::Trap) => &mut self.call_trap,
            (false, Fate::ReplyLost) => &mut self.call_reply_lost,
            (true, Fate::RejectBefore) => &mut self.ingress_reject,
            (true, Fate::Trap) => &mut self.ingress_trap,
            (true, Fate::ReplyLost) => &mut self.ingress_reply_lost,
        };
        *slot += 1;
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "call_reject={} call_trap={} call_reply_lost={} ingress_reject={} ingress_trap={} \
             ingress_reply_lost={} stops={} upgrades={} (stopped_rejects={} stopped_queries={})",
            self.call_reject,
            self.call_trap,
            self.call_reply_lost,
            self.ingress_reject,
            self.ingress_trap,
            self.ingress_reply_lost,
            self.stops,
            self.upgrades,
            self.stopped_rejects,
            self.stopped_queries
        )
    }
}

impl Faults {
    /// No faults at all.
    pub const NONE: Faults = Faults {
        call_reject: 0.0,
        call_trap: 0.0,
        call_reply_lost: 0.0,
        ingress_reject: 0.0,
        ingress_trap: 0.0,
        ingress_reply_lost: 0.0,
        stop: 0.0,
        stop_rounds_max: 1,
        upgrade: 0.0,
    };

    /// Knobs drawn from a seed's generator. Each message-fault knob is off for about a
    /// quarter of the seeds and otherwise uniform up to its ceiling, so the swarm covers both
    /// fault-free stretches and heavy weather.
    pub fn random(rng: &mut SimRng) -> Faults {
        let mut knob = |max: f64| {
            let off = rng.chance(0.25);
            let v = rng.unit() * max;
            if off {
                0.0
            } else {
                v
            }
        };
        let call_reject = knob(0.08);
        let call_trap = knob(0.05);
        let call_reply_lost = knob(0.05);
        let ingress_reject = knob(0.08);
        let ingress_trap = knob(0.05);
        let ingress_reply_lost = knob(0.05);
        let stop = knob(0.03);
        let upgrade = knob(0.02);
        let stop_rounds_max = rng.range(1, 12);
        Faults {
            call_reject,
            call_trap,
            call_reply_lost,
            ingress_reject,
            ingress_trap,
            ingress_reply_lost,
            stop,
            stop_rounds_max,
            upgrade,
        }
    }

    /// The fate of one inter-canister call (`ingress: false`) or ingress update. Draws exactly
    /// one value whatever the knobs are.
    pub fn decide(&self, rng: &mut SimRng, ingress: bool) -> Fate {
        let (reject, trap, lost) = if ingress {
            (
                self.ingress_reject,
                self.ingress_trap,
                self.ingress_reply_lost,
            )
        } else {
            (self.call_reject, self.call_trap, self.call_reply_lost)
        };
        let x = rng.unit();
        if x < reject {
            Fate::RejectBefore
        } else if x < reject + trap {
            Fate::Trap
        } else if x < reject + trap + lost {
            Fate::ReplyLost
        } else {
            Fate::Deliver
        }
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "call_reject={:.3} call_trap={:.3} call_reply_lost={:.3} ingress_reject={:.3} \
             ingress_trap={:.3} ingress_reply_lost={:.3} stop={:.3} stop_rounds_max={} \
             upgrade={:.3}",
            self.call_reject,
            self.call_trap,
            self.call_reply_lost,
            self.ingress_reject,
            self.ingress_trap,
            self.ingress_reply_lost,
            self.stop,
            self.stop_rounds_max,
            self.upgrade
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_faults_always_delivers() {
        let mut r = SimRng::new(1);
        for i in 0..10_000 {
            assert_eq!(Faults::NONE.decide(&mut r, i % 2 == 0), Fate::Deliver);
        }
    }

    #[test]
    fn certain_faults_always_fire() {
        let mut r = SimRng::new(2);
        let all_reject = Faults {
            call_reject: 1.0,
            ..Faults::NONE
        };
        let all_lost = Faults {
            ingress_reply_lost: 1.0,
            ..Faults::NONE
        };
        for _ in 0..1000 {
            assert_eq!(all_reject.decide(&mut r, false), Fate::RejectBefore);
            assert_eq!(all_reject.decide(&mut r, true), Fate::Deliver);
            assert_eq!(all_lost.decide(&mut r, true), Fate::ReplyLost);
            assert_eq!(all_lost.decide(&mut r, false), Fate::Deliver);
        }
    }

    #[test]
    fn rates_match_knobs() {
        let f = Faults {
            call_reject: 0.1,
            call_trap: 0.2,
            call_reply_lost: 0.3,
            ..Faults::NONE
        };
        let mut r = SimRng::new(3);
        let mut counts = FaultCounts::default();
        let n = 100_000;
        for _ in 0..n {
            let fate = f.decide(&mut r, false);
            counts.record(false, fate);
        }
        let rate = |c: u64| c as f64 / n as f64;
        assert!((rate(counts.call_reject) - 0.1).abs() < 0.01);
        assert!((rate(counts.call_trap) - 0.2).abs() < 0.01);
        assert!((rate(counts.call_reply_lost) - 0.3).abs() < 0.01);
        assert_eq!(counts.ingress_reject, 0);
    }

    #[test]
    fn decisions_draw_one_value_whatever_the_knobs() {
        // Switching faults off must not shift later decisions of the same run.
        let (mut a, mut b) = (SimRng::new(4), SimRng::new(4));
        let heavy = Faults {
            call_reject: 0.5,
            call_trap: 0.2,
            ..Faults::NONE
        };
        for _ in 0..100 {
            heavy.decide(&mut a, false);
            Faults::NONE.decide(&mut b, false);
        }
        assert_eq!(a.u64(), b.u64());
    }

    #[test]
    fn random_knobs_are_per_seed_and_bounded() {
        let a = Faults::random(&mut SimRng::new(9));
        let b = Faults::random(&mut SimRng::new(9));
        assert_eq!(a, b);
        let mut any_off = false;
        let mut any_on = false;
        for s in 0..200 {
            let f = Faults::random(&mut SimRng::new(s));
            for p in [f.call_reject, f.ingress_reject, f.stop, f.upgrade] {
                assert!((0.0..0.1).contains(&p));
                any_off |= p == 0.0;
                any_on |= p > 0.0;
            }
            assert!((1..=12).contains(&f.stop_rounds_max));
        }
        assert!(any_off && any_on);
    }
}
