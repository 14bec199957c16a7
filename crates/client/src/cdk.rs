//! The ic-cdk transport: a dapp's own canister reads and writes Flotilla partitions with
//! inter-canister calls (feature `cdk`).
//!
//! ```ignore
//! let transport = CdkTransport::from_raw_rand().await?;   // in an update method or a timer
//! let client = Client::new(transport, index_id);
//! client.put("notes", b"2026-11-25", b"hello").await?;
//! ```
//!
//! - Every call is a **bounded-wait** call (the IC's best-effort responses): the caller never
//!   waits on a callee forever, and can be stopped and upgraded while calls are out. A call
//!   that times out answers `SysUnknown`; the client's core retries it with the same op id,
//!   so a write that did execute is not applied twice.
//! - Between canisters there are no non-replicated queries: the transport's `query` is a
//!   replicated call of the query method, as the IC executes it for a canister caller.
//! - Op ids: the transport holds a ChaCha20 generator seeded from the management canister's
//!   `raw_rand` (32 bytes of randomness from the subnet's random beacon); each client takes
//!   its seed from it. [`CdkTransport::refresh`] mixes in fresh `raw_rand` bytes.
//! - Backoff does not wait (see [`CdkTransport::sleep`]): a retry follows the failed call's
//!   answer at once.

use crate::core::{RejectCode, TransportError};
use crate::Transport;
use candid::Principal;
use ic_cdk::call::{Call, CallFailed};
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

/// The longest a call waits for its answer, in seconds, unless set otherwise (the IC's
/// `MAX_CALL_TIMEOUT` is 300).
pub const DEFAULT_CALL_TIMEOUT_SECONDS: u32 = 60;

/// Inter-canister calls from the canister this code runs in.
#[derive(Clone)]
pub struct CdkTransport {
    rng: Rc<RefCell<ChaCha20Rng>>,
    timeout_seconds: u32,
}

impl CdkTransport {
    /// A transport whose op ids come from `seed`; use [`CdkTransport::from_raw_rand`] unless
    /// the canister already holds fresh randomness from `raw_rand`.
    pub fn new(seed: [u8; 32]) -> Self {
        CdkTransport {
            rng: Rc::new(RefCell::new(ChaCha20Rng::from_seed(seed))),
            timeout_seconds: DEFAULT_CALL_TIMEOUT_SECONDS,
        }
    }

    /// A transport seeded by the management canister's `raw_rand`. Callable from an update
    /// method or a timer (not from `init` or a query: they cannot make calls).
    pub async fn from_raw_rand() -> Result<Self, TransportError> {
        Ok(CdkTransport::new(raw_rand().await?))
    }

    /// The bound on each call's wait, in seconds (at most the IC's 300).
    pub fn with_timeout_seconds(mut self, seconds: u32) -> Self {
        self.timeout_seconds = seconds.clamp(1, 300);
        self
    }

    /// Mixes fresh `raw_rand` bytes into the generator: later clients' op ids no longer
    /// follow from the old seed.
    pub async fn refresh(&self) -> Result<(), TransportError> {
        let fresh = raw_rand().await?;
        let mut rng = self.rng.borrow_mut();
        let mut old = [0u8; 32];
        rng.fill_bytes(&mut old);
        let mixed: [u8; 32] = Sha256::new()
            .chain_update(b"flotilla-cdk-refresh")
            .chain_update(old)
            .chain_update(fresh)
            .finalize()
            .into();
        *rng = ChaCha20Rng::from_seed(mixed);
        Ok(())
    }

    async fn call(
        &self,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<Vec<u8>, TransportError> {
        Call::bounded_wait(canister, method)
            .change_timeout(self.timeout_seconds)
            .take_raw_args(arg)
            .await
            .map(|r| r.into_bytes())
            .map_err(|e| transport_error(&e))
    }
}

/// The client core's view of a failed inter-canister call.
pub fn transport_error(e: &CallFailed) -> TransportError {
    match e {
        // The caller itself lacks cycles: retrying does not help until it is topped up.
        CallFailed::InsufficientLiquidCycleBalance(e) => TransportError::new(
            RejectCode::SysFatal,
            format!("the calling canister needs cycles: {e}"),
        ),
        // The call was not enqueued (queues full): nothing executed, try again later.
        CallFailed::CallPerformFailed(e) => TransportError::new(
            RejectCode::SysTransient,
            format!("the call could not be enqueued: {e}"),
        ),
        CallFailed::CallRejected(r) => TransportError::new(
            RejectCode::from_number(u64::from(r.raw_reject_code())),
            r.reject_message().to_string(),
        ),
    }
}

async fn raw_rand() -> Result<[u8; 32], TransportError> {
    let reply = Call::bounded_wait(Principal::management_canister(), "raw_rand")
        .await
        .map_err(|e| transport_error(&e))?;
    let bytes: Vec<u8> = reply.candid().map_err(|e| {
        TransportError::new(RejectCode::CanisterError, format!("raw_rand reply: {e}"))
    })?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        TransportError::new(
            RejectCode::CanisterError,
            format!("raw_rand answered {} bytes, not 32", b.len()),
        )
    })
}

impl Transport for CdkTransport {
    fn query(
        &self,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>> {
        self.call(canister, method, arg)
    }

    fn update(
        &self,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>> {
        self.call(canister, method, arg)
    }

    /// Does not wait: in ic-cdk a canister method's future may only be resumed by the answers
    /// to its own calls (a method awaiting a timer is trapped as "outlived its canister
    /// method"). Retries are still spaced: each is an inter-canister round trip of at least
    /// one round, and `Policy::max_attempts` bounds them.
    fn sleep(&self, _: Duration) -> impl Future<Output = ()> {
        std::future::ready(())
    }

    fn seed(&self) -> impl Future<Output = [u8; 32]> {
        let mut seed = [0u8; 32];
        self.rng.borrow_mut().fill_bytes(&mut seed);
        std::future::ready(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ic_cdk::call::CallRejected;

    #[test]
    fn rejects_keep_their_code_and_message() {
        let e = CallFailed::CallRejected(CallRejected::with_rejection(4, "no".into()));
        assert_eq!(
            transport_error(&e),
            TransportError::new(RejectCode::CanisterReject, "no")
        );
        let e = CallFailed::CallRejected(CallRejected::with_rejection(6, "timeout".into()));
        let t = transport_error(&e);
        assert_eq!(t.code, RejectCode::SysUnknown);
        assert!(
            t.retryable(),
            "a timed-out call is retried with the same op id"
        );
    }

    #[test]
    fn each_seed_is_fresh_and_follows_from_the_transport_seed() {
        let a = CdkTransport::new([1; 32]);
        let b = CdkTransport::new([1; 32]);
        let s1 = now(a.seed());
        let s2 = now(a.seed());
        assert_ne!(s1, s2);
        assert_eq!(s1, now(b.seed()));
    }

    /// The value of a future that is ready at once.
    fn now<F: Future>(f: F) -> F::Output {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::pin!(f).poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the seed is not ready at once"),
        }
    }
}
