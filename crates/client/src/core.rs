//! The IO-free heart of the client: one state machine per operation, over a shared route
//! cache, deciding what to send next. Every transport (ic-agent, ic-cdk, the simulator) and
//! the simulator's own simulated users drive this same code, so there is one copy of the
//! policy:
//!
//! - An operation on a SubDB needs its inner key. A cached route is used as is (a cache hit
//!   costs exactly one call, to the partition). A miss asks the index's `route` query.
//! - `Moved { to }` from a partition: the cache learns `to` and the call goes there at once.
//!   After [`Policy::max_redirects`] hops the route is asked of the index instead; as many
//!   hops again after that end in [`Error::TooManyRedirects`].
//! - `UnknownSubDb` from a partition: the route is refreshed from the index, once per
//!   operation; if the index names the same place again (or nothing), the answer is final.
//! - Transient failures (a reject that retrying can cure, a lost reply, `WritesPaused`,
//!   `InProgress`, `NoCapacity`, `PartitionUnavailable`) are retried after a bounded
//!   exponential backoff with jitter, with the *same* arguments and so the same op id, until
//!   [`Policy::max_attempts`]; then [`Error::GaveUp`], which says a write may have applied.
//! - Anything else is the operation's final, typed answer.

use crate::ops::{Class, Classify, Operation, Target};
use candid::Principal;
use flotilla_types::index::RouteError;
use flotilla_types::InnerKey;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// How a method is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallKind {
    Query,
    Update,
}

/// One call to make: Candid argument bytes to a method of a canister.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub canister: Principal,
    pub method: &'static str,
    pub kind: CallKind,
    pub arg: Vec<u8>,
}

/// The IC's reject codes, plus `Transport` for a failure before any reply (network,
/// timeout): the call may or may not have executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectCode {
    SysFatal,
    SysTransient,
    DestinationInvalid,
    CanisterReject,
    CanisterError,
    SysUnknown,
    Transport,
}

impl RejectCode {
    /// The code's number in the IC interface specification (0 for `Transport`).
    pub fn number(self) -> u32 {
        match self {
            RejectCode::SysFatal => 1,
            RejectCode::SysTransient => 2,
            RejectCode::DestinationInvalid => 3,
            RejectCode::CanisterReject => 4,
            RejectCode::CanisterError => 5,
            RejectCode::SysUnknown => 6,
            RejectCode::Transport => 0,
        }
    }

    pub fn from_number(n: u64) -> RejectCode {
        match n {
            1 => RejectCode::SysFatal,
            2 => RejectCode::SysTransient,
            3 => RejectCode::DestinationInvalid,
            4 => RejectCode::CanisterReject,
            5 => RejectCode::CanisterError,
            6 => RejectCode::SysUnknown,
            _ => RejectCode::Transport,
        }
    }
}

/// A call that brought no reply from the method.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (reject code {code:?})")]
pub struct TransportError {
    pub code: RejectCode,
    pub message: String,
}

impl TransportError {
    pub fn new(code: RejectCode, message: impl Into<String>) -> Self {
        TransportError {
            code,
            message: message.into(),
        }
    }

    /// Worth trying again: the system was busy, the canister stopped or trapped (it may be
    /// upgrading or out of cycles for a while), or the outcome is unknown. A fatal error, an
    /// invalid destination and a canister's explicit reject are not.
    pub fn retryable(&self) -> bool {
        !matches!(
            self.code,
            RejectCode::SysFatal | RejectCode::DestinationInvalid | RejectCode::CanisterReject
        )
    }
}

/// The retry and redirect policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Sends of one operation, first one included, before it gives up.
    pub max_attempts: u32,
    /// `Moved` hops one operation follows.
    pub max_redirects: u32,
    /// The smallest backoff; the n-th retry waits `base + jitter × min(base × 2ⁿ, max)`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_attempts: 12,
            max_redirects: 8,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl Policy {
    /// The wait before retry number `attempt` (1 for the first retry), with `jitter` a random
    /// number that spreads retries of many clients apart.
    pub fn backoff(&self, attempt: u32, jitter: u64) -> Duration {
        let base = self.base_backoff.as_nanos() as u64;
        let cap = base
            .saturating_mul(1u64 << attempt.min(16))
            .min(self.max_backoff.as_nanos() as u64)
            .max(1);
        Duration::from_nanos(base + jitter % cap)
    }
}

/// Outer key → inner key, as last learned from the index or a `Moved` answer. Shared by all
/// operations of one client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteCache {
    routes: BTreeMap<String, InnerKey>,
}

impl RouteCache {
    pub fn get(&self, outer: &str) -> Option<InnerKey> {
        self.routes.get(outer).copied()
    }

    pub fn insert(&mut self, outer: &str, inner: InnerKey) {
        self.routes.insert(outer.to_string(), inner);
    }

    pub fn remove(&mut self, outer: &str) -> Option<InnerKey> {
        self.routes.remove(outer)
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, InnerKey)> {
        self.routes.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

/// Why an operation failed, finally.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error<E> {
    /// The operation's own answer (not authorized, a limit, the outer key taken, ...).
    #[error("{0}")]
    Refused(E),
    /// No SubDB has this outer key.
    #[error("no SubDB is named {outer_key:?}")]
    NotFound { outer_key: String },
    /// Transient failures lasted past the retry budget. A write may or may not have applied;
    /// repeating it with the same op id is safe.
    #[error("gave up after {attempts} attempts; last: {last}")]
    GaveUp { attempts: u32, last: String },
    /// The call was rejected in a way retrying cannot fix.
    #[error("rejected: {0}")]
    Rejected(TransportError),
    /// `Moved` answers kept pointing elsewhere.
    #[error("{outer_key:?} moved more than {hops} times during one call")]
    TooManyRedirects { outer_key: String, hops: u32 },
    /// A reply that is not what the method returns.
    #[error("the reply of {method} does not decode: {reason}")]
    BadReply {
        method: &'static str,
        reason: String,
    },
}

/// What a transient failure was, for callers that count them (the simulator counts write
/// pauses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transient {
    /// The call was rejected or its reply lost.
    Transport(TransportError),
    /// The canister answered with an error that clears by itself (`WritesPaused`, ...).
    Answer(String),
    /// The partition did not know the SubDB and the route is being refreshed.
    Refreshing,
}

impl fmt::Display for Transient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transient::Transport(e) => write!(f, "{e}"),
            Transient::Answer(a) => f.write_str(a),
            Transient::Refreshing => f.write_str("unknown SubDB: refreshing the route"),
        }
    }
}

/// What the driver does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<T, E> {
    /// Make this call and feed its result to [`Machine::on_reply`].
    Send(Call),
    /// Wait `Policy::backoff(attempt, random)`, then call [`Machine::resume`].
    Wait { attempt: u32 },
    /// The operation ended.
    Done(Result<T, Error<E>>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Awaiting {
    Nothing,
    Route,
    Op(Option<InnerKey>),
}

/// One operation's state machine.
#[derive(Debug)]
pub struct Machine<O: Operation> {
    op: O,
    index: Principal,
    policy: Policy,
    awaiting: Awaiting,
    /// Sends so far (route queries and `Moved` hops do not count).
    attempts: u32,
    redirects: u32,
    /// The route was refreshed from the index after an `UnknownSubDb`.
    refreshed: bool,
    /// The inner key that answered `UnknownSubDb`.
    unknown_at: Option<InnerKey>,
    /// The route was refreshed after `max_redirects` hops.
    hops_refreshed: bool,
    last: Option<Transient>,
}

impl<O: Operation> Machine<O> {
    pub fn new(op: O, index: Principal, policy: Policy) -> Self {
        Machine {
            op,
            index,
            policy,
            awaiting: Awaiting::Nothing,
            attempts: 0,
            redirects: 0,
            refreshed: false,
            unknown_at: None,
            hops_refreshed: false,
            last: None,
        }
    }

    pub fn op(&self) -> &O {
        &self.op
    }

    /// Replaces the operation's arguments for the next send (a scan's next page).
    pub fn op_mut(&mut self) -> &mut O {
        &mut self.op
    }

    /// Sends made of the operation itself (not route queries).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The last transient failure, if the operation met one.
    pub fn last_transient(&self) -> Option<&Transient> {
        self.last.as_ref()
    }

    /// The first action, and the action after a [`Action::Wait`].
    pub fn resume(&mut self, cache: &RouteCache) -> Action<O::Ok, O::Err> {
        match self.op.target() {
            Target::Index => self.send_op(None),
            Target::Canister(c) => self.send_to(c, None),
            Target::SubDb(outer) => match cache.get(outer) {
                Some(inner) => self.send_op(Some(inner)),
                None => self.send_route(),
            },
        }
    }

    fn send_route(&mut self) -> Action<O::Ok, O::Err> {
        let Target::SubDb(outer) = self.op.target() else {
            unreachable!("only SubDB operations need a route");
        };
        // A route query is a send like any other: one that keeps failing ends in `GaveUp`.
        self.attempts += 1;
        self.awaiting = Awaiting::Route;
        Action::Send(Call {
            canister: self.index,
            method: "route",
            kind: CallKind::Query,
            arg: flotilla_types::dispatch::encode_args((vec![outer.to_string()],)),
        })
    }

    fn send_op(&mut self, at: Option<InnerKey>) -> Action<O::Ok, O::Err> {
        self.send_to(at.map_or(self.index, |k| k.partition), at)
    }

    fn send_to(&mut self, canister: Principal, at: Option<InnerKey>) -> Action<O::Ok, O::Err> {
        self.attempts += 1;
        self.awaiting = Awaiting::Op(at);
        Action::Send(Call {
            canister,
            method: O::METHOD,
            kind: O::KIND,
            arg: self.op.encode(at),
        })
    }

    fn retry(&mut self, why: Transient) -> Action<O::Ok, O::Err> {
        self.last = Some(why);
        self.awaiting = Awaiting::Nothing;
        if self.attempts >= self.policy.max_attempts {
            return Action::Done(Err(Error::GaveUp {
                attempts: self.attempts,
                last: self
                    .last
                    .as_ref()
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            }));
        }
        Action::Wait {
            attempt: self.attempts,
        }
    }

    /// Feeds the result of the last [`Action::Send`].
    pub fn on_reply(
        &mut self,
        cache: &mut RouteCache,
        result: Result<Vec<u8>, crate::TransportError>,
    ) -> Action<O::Ok, O::Err> {
        let awaiting = std::mem::replace(&mut self.awaiting, Awaiting::Nothing);
        let bytes = match result {
            Ok(b) => b,
            Err(e) if e.retryable() => return self.retry(Transient::Transport(e)),
            Err(e) => return Action::Done(Err(Error::Rejected(e))),
        };
        match awaiting {
            Awaiting::Nothing => Action::Done(Err(Error::BadReply {
                method: O::METHOD,
                reason: "a reply arrived with no call in flight".into(),
            })),
            Awaiting::Route => self.on_route(cache, &bytes),
            Awaiting::Op(at) => self.on_op(cache, at, &bytes),
        }
    }

    fn on_route(&mut self, cache: &mut RouteCache, bytes: &[u8]) -> Action<O::Ok, O::Err> {
        let Target::SubDb(outer) = self.op.target() else {
            unreachable!("route queries are made for SubDB operations only");
        };
        let outer = outer.to_string();
        let decoded = flotilla_types::dispatch::decode_args::<(
            Result<Vec<Option<InnerKey>>, RouteError>,
        )>("route", bytes);
        let route = match decoded {
            Ok((Ok(v),)) => v.into_iter().next().flatten(),
            Ok((Err(e),)) => {
                return Action::Done(Err(Error::BadReply {
                    method: "route",
                    reason: e.to_string(),
                }))
            }
            Err(e) => {
                return Action::Done(Err(Error::BadReply {
                    method: "route",
                    reason: e.to_string(),
                }))
            }
        };
        match route {
            None => {
                cache.remove(&outer);
                Action::Done(Err(Error::NotFound { outer_key: outer }))
            }
            Some(inner) if self.refreshed && self.unknown_at == Some(inner) => {
                // The index still names the place that does not know the SubDB.
                Action::Done(Err(Error::Refused(O::Err::unknown())))
            }
            Some(inner) => {
                cache.insert(&outer, inner);
                self.send_op(Some(inner))
            }
        }
    }

    fn on_op(
        &mut self,
        cache: &mut RouteCache,
        at: Option<InnerKey>,
        bytes: &[u8],
    ) -> Action<O::Ok, O::Err> {
        let reply = match O::decode(bytes) {
            Ok(r) => r,
            Err(reason) => {
                return Action::Done(Err(Error::BadReply {
                    method: O::METHOD,
                    reason,
                }))
            }
        };
        let err = match reply {
            Ok(v) => return Action::Done(Ok(v)),
            Err(e) => e,
        };
        match err.class() {
            Class::Final => Action::Done(Err(Error::Refused(err))),
            Class::Transient => self.retry(Transient::Answer(err.to_string())),
            Class::Moved(to) => {
                self.redirects += 1;
                if let Target::SubDb(outer) = self.op.target() {
                    cache.insert(outer, to);
                    if self.redirects > self.policy.max_redirects {
                        if self.hops_refreshed {
                            return Action::Done(Err(Error::TooManyRedirects {
                                outer_key: outer.to_string(),
                                hops: self.policy.max_redirects,
                            }));
                        }
                        // A long chain of tombstones (a SubDB moved many times since this
                        // route was cached): the index knows the current home directly.
                        self.hops_refreshed = true;
                        self.redirects = 0;
                        cache.remove(outer);
                        return self.send_route();
                    }
                }
                // A hop is not a retry.
                self.attempts -= 1;
                self.send_op(Some(to))
            }
            Class::Unknown => match self.op.target() {
                Target::SubDb(outer) if !self.refreshed => {
                    cache.remove(outer);
                    self.refreshed = true;
                    self.unknown_at = at;
                    self.last = Some(Transient::Refreshing);
                    self.send_route()
                }
                _ => Action::Done(Err(Error::Refused(err))),
            },
        }
    }
}
