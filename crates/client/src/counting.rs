//! A transport wrapper that counts every call by canister and method: how the tests prove
//! what a client operation costs (a cache-hit read is one partition call and no index call).

use crate::{Transport, TransportError};
use candid::Principal;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

/// Calls made, by (canister, method).
pub type Counts = BTreeMap<(Principal, String), u64>;

pub struct Counting<T> {
    inner: T,
    counts: RefCell<Counts>,
}

impl<T: Transport> Counting<T> {
    pub fn new(inner: T) -> Self {
        Counting {
            inner,
            counts: RefCell::new(BTreeMap::new()),
        }
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The counts so far, and resets them.
    pub fn take(&self) -> Counts {
        std::mem::take(&mut *self.counts.borrow_mut())
    }

    /// The counts so far (without resetting).
    pub fn counts(&self) -> Counts {
        self.counts.borrow().clone()
    }

    /// Calls made to `canister` so far (without resetting).
    pub fn calls_to(&self, canister: Principal) -> u64 {
        self.counts
            .borrow()
            .iter()
            .filter(|((c, _), _)| *c == canister)
            .map(|(_, n)| n)
            .sum()
    }

    /// All calls so far (without resetting).
    pub fn total(&self) -> u64 {
        self.counts.borrow().values().sum()
    }

    fn count(&self, canister: Principal, method: &str) {
        *self
            .counts
            .borrow_mut()
            .entry((canister, method.to_string()))
            .or_default() += 1;
    }
}

impl<T: Transport> Transport for Counting<T> {
    fn query(
        &self,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>> {
        self.count(canister, method);
        self.inner.query(canister, method, arg)
    }

    fn update(
        &self,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>> {
        self.count(canister, method);
        self.inner.update(canister, method, arg)
    }

    fn sleep(&self, d: Duration) -> impl Future<Output = ()> {
        self.inner.sleep(d)
    }

    fn seed(&self) -> impl Future<Output = [u8; 32]> {
        self.inner.seed()
    }
}
