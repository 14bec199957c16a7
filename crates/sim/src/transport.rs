//! The client's in-process transport: calls into a simulated world, in simulated time.
//!
//! [`SimTransport`] implements `flotilla_client::Transport` over a shared [`World`]: a call
//! becomes an ingress message or a query from the transport's principal, subject to the
//! world's latencies and faults, and its future resolves when the answer arrives. A backoff
//! sleeps whole rounds. [`block_on`] drives a client future to its end, stepping the world
//! one round whenever every pending call is waiting — so the calls of a parallel `get_many`
//! all leave in the same round, as they would over the network.

use crate::world::World;
use candid::Principal;
use flotilla_client::{Transport, TransportError};
use flotilla_types::dispatch::MethodKind;
use std::cell::RefCell;
use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// A world shared by transports and the driver.
pub type SharedWorld = Rc<RefCell<World>>;

/// Calls into a simulated world as one principal.
#[derive(Clone)]
pub struct SimTransport {
    world: SharedWorld,
    caller: Principal,
    seed: [u8; 32],
}

impl SimTransport {
    /// A transport calling as `caller`; `seed` feeds its op ids (deterministic runs).
    pub fn new(world: SharedWorld, caller: Principal, seed: [u8; 32]) -> Self {
        SimTransport {
            world,
            caller,
            seed,
        }
    }

    pub fn caller(&self) -> Principal {
        self.caller
    }

    pub fn world(&self) -> &SharedWorld {
        &self.world
    }

    fn submit(&self, canister: Principal, method: &str, kind: MethodKind, arg: Vec<u8>) -> Reply {
        let ticket = self
            .world
            .borrow_mut()
            .submit(self.caller, canister, method, kind, arg);
        Reply {
            world: self.world.clone(),
            ticket,
        }
    }
}

/// The answer to one submitted call.
pub struct Reply {
    world: SharedWorld,
    ticket: u64,
}

impl Future for Reply {
    type Output = Result<Vec<u8>, TransportError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut world = self.world.borrow_mut();
        match world.take_reply(self.ticket) {
            Some(r) => Poll::Ready(r),
            None => {
                // Woken after the next round: combinators that poll only woken futures
                // (`join_all` of more than 30, `FuturesUnordered`) look at it again then.
                world.park(cx.waker());
                Poll::Pending
            }
        }
    }
}

/// Ready once the world reaches a round.
pub struct Until {
    world: SharedWorld,
    round: u64,
}

impl Future for Until {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.world.borrow().round() >= self.round {
            Poll::Ready(())
        } else {
            // As for `Reply`: woken after the next round.
            self.world.borrow_mut().park(cx.waker());
            Poll::Pending
        }
    }
}

impl Transport for SimTransport {
    fn query(
        &self,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>> {
        self.submit(canister, method, MethodKind::Query, arg)
    }

    fn update(
        &self,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>> {
        self.submit(canister, method, MethodKind::Update, arg)
    }

    fn sleep(&self, d: Duration) -> impl Future<Output = ()> {
        let rounds = (d.as_nanos() as u64)
            .div_ceil(crate::world::ROUND_NS)
            .max(1);
        Until {
            round: self.world.borrow().round() + rounds,
            world: self.world.clone(),
        }
    }

    fn seed(&self) -> impl Future<Output = [u8; 32]> {
        std::future::ready(self.seed)
    }
}

/// The world stopped before the future finished.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the simulated world stopped (halted or out of rounds) at round {round}")]
pub struct Stalled {
    pub round: u64,
}

/// Records that a task was woken.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Polls of one round after which the world steps even if tasks keep waking each other.
const MAX_POLLS_PER_ROUND: u32 = 10_000;

/// Runs `fut` to completion, stepping `world` one round each time it cannot progress, for
/// at most `max_rounds` rounds. Returns the output and the rounds it took.
///
/// Within a round, `fut` is polled again as long as a poll woke some task (a combinator's
/// child became ready); then the world steps and every task parked on it is woken, so each
/// waiting operation is looked at once per round, however many run side by side.
pub fn block_on<F: Future>(
    world: &SharedWorld,
    max_rounds: u64,
    fut: F,
) -> Result<(F::Output, u64), Stalled> {
    let mut fut = pin!(fut);
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let start = world.borrow().round();
    let mut polls = 0u32;
    loop {
        flag.0.store(false, Ordering::SeqCst);
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            let took = world.borrow().round() - start;
            return Ok((v, took));
        }
        polls += 1;
        if flag.0.load(Ordering::SeqCst) && polls < MAX_POLLS_PER_ROUND {
            continue;
        }
        polls = 0;
        let parked = {
            let mut w = world.borrow_mut();
            let before = w.round();
            if before - start >= max_rounds {
                return Err(Stalled { round: before });
            }
            w.step();
            if w.round() == before {
                return Err(Stalled { round: before });
            }
            w.take_parked()
        };
        for t in parked {
            t.wake();
        }
    }
}
