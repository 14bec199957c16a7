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
use std::task::{Context, Poll, Waker};
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
        match self.world.borrow_mut().take_reply(self.ticket) {
            Some(r) => Poll::Ready(r),
            None => {
                // Nothing in the world wakes a task: ask to be polled again after the next
                // round. Combinators that poll only woken futures (`join_all` of more than 30,
                // `FuturesUnordered`) would otherwise never look at this one again.
                cx.waker().wake_by_ref();
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
            // As for `Reply`: polled again after the next round.
            cx.waker().wake_by_ref();
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

/// Runs `fut` to completion, stepping `world` one round each time it cannot progress, for
/// at most `max_rounds` rounds. Returns the output and the rounds it took.
pub fn block_on<F: Future>(
    world: &SharedWorld,
    max_rounds: u64,
    fut: F,
) -> Result<(F::Output, u64), Stalled> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    let start = world.borrow().round();
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            let took = world.borrow().round() - start;
            return Ok((v, took));
        }
        let mut w = world.borrow_mut();
        let before = w.round();
        if before - start >= max_rounds {
            return Err(Stalled { round: before });
        }
        w.step();
        if w.round() == before {
            return Err(Stalled { round: before });
        }
    }
}
