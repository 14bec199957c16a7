//! The log of requests from outside the canisters (the simulated users and calls submitted
//! from outside the world): which canister served each, what it answered, and how many
//! inter-canister calls its execution made. The demo's dashboard shows it.

use candid::types::value::IDLValue;
use candid::types::{Label, Type, TypeEnv};
use candid::{IDLArgs, Principal};
use flotilla_types::dispatch::{service_type, MethodKind, MethodSig};
use std::collections::{BTreeMap, VecDeque};

/// Requests kept in the log (older ones are dropped; the totals keep counting).
pub const REQUEST_LOG: usize = 256;

/// Who sent a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requester {
    /// Simulated user `i`.
    User(usize),
    /// A call from outside the world, with its sender.
    External(Principal),
}

/// Which kind of canister served a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Index,
    Partition,
}

/// One request, as executed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// Numbered from 1 in the order the requests executed.
    pub seq: u64,
    pub round: u64,
    pub from: Requester,
    pub canister: Principal,
    pub role: Role,
    pub method: String,
    pub kind: MethodKind,
    /// `Ok`, `Err: <variant>`, `Reject: <why>`, or `Waiting` for an index call that waits
    /// for a partition.
    pub outcome: String,
    /// Inter-canister calls the execution made.
    pub calls: u64,
}

/// The reply types of every method of both canisters, to name what a reply says.
struct ReplyTypes {
    env: TypeEnv,
    rets: BTreeMap<&'static str, Vec<Type>>,
}

impl ReplyTypes {
    fn new(methods: &[MethodSig]) -> ReplyTypes {
        let (env, service) = service_type(methods);
        let rets = methods
            .iter()
            .filter_map(|m| {
                let f = env.get_method(&service, m.name).ok()?;
                Some((m.name, f.rets.clone()))
            })
            .collect();
        ReplyTypes { env, rets }
    }

    /// `Ok`, or `Err: <variant>` for a `Result` reply; `Ok` for any other reply.
    fn describe(&self, method: &str, reply: &[u8]) -> String {
        let Some(types) = self.rets.get(method) else {
            return "Ok".into();
        };
        let Ok(args) = IDLArgs::from_bytes_with_types(reply, &self.env, types) else {
            return "Ok (undecodable reply)".into();
        };
        match args.args.first() {
            Some(IDLValue::Variant(v)) if label(&v.0.id) == "Err" => match &v.0.val {
                IDLValue::Variant(e) => format!("Err: {}", label(&e.0.id)),
                _ => "Err".into(),
            },
            _ => "Ok".into(),
        }
    }
}

fn label(l: &Label) -> String {
    match l {
        Label::Named(n) => n.clone(),
        Label::Id(n) | Label::Unnamed(n) => n.to_string(),
    }
}

pub struct RequestLog {
    records: VecDeque<RequestRecord>,
    total: u64,
    index: ReplyTypes,
    partition: ReplyTypes,
}

impl Default for RequestLog {
    fn default() -> Self {
        RequestLog {
            records: VecDeque::new(),
            total: 0,
            index: ReplyTypes::new(&flotilla_index::dispatch::methods()),
            partition: ReplyTypes::new(&flotilla_partition::dispatch::methods()),
        }
    }
}

/// A request about to be logged: everything but its number and outcome.
pub(crate) struct Executed<'a> {
    pub round: u64,
    pub from: Requester,
    pub canister: Principal,
    pub role: Role,
    pub method: &'a str,
    pub kind: MethodKind,
    pub calls: u64,
}

/// What the execution answered.
pub(crate) enum Answered<'a> {
    Reply(&'a [u8]),
    Reject(&'a str),
    Waiting,
}

impl RequestLog {
    pub(crate) fn record(&mut self, e: Executed, answered: Answered) {
        let types = match e.role {
            Role::Index => &self.index,
            Role::Partition => &self.partition,
        };
        let outcome = match answered {
            Answered::Reply(bytes) => types.describe(e.method, bytes),
            Answered::Reject(why) => format!("Reject: {why}"),
            Answered::Waiting => "Waiting".into(),
        };
        self.total += 1;
        if self.records.len() == REQUEST_LOG {
            self.records.pop_front();
        }
        self.records.push_back(RequestRecord {
            seq: self.total,
            round: e.round,
            from: e.from,
            canister: e.canister,
            role: e.role,
            method: e.method.to_string(),
            kind: e.kind,
            outcome,
            calls: e.calls,
        });
    }

    /// Requests executed so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The kept requests numbered after `seq`, oldest first.
    pub fn after(&self, seq: u64) -> impl Iterator<Item = &RequestRecord> {
        self.records.iter().filter(move |r| r.seq > seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_types::dispatch::encode_args;
    use flotilla_types::GetError;

    fn executed(method: &str) -> Executed<'_> {
        Executed {
            round: 7,
            from: Requester::User(2),
            canister: Principal::anonymous(),
            role: Role::Partition,
            method,
            kind: MethodKind::Query,
            calls: 0,
        }
    }

    #[test]
    fn outcomes_name_the_error_variant() {
        let mut log = RequestLog::default();
        let ok = encode_args((Ok::<Option<serde_bytes::ByteBuf>, GetError>(None),));
        let err = encode_args((Err::<Option<serde_bytes::ByteBuf>, _>(
            GetError::NotAuthorized,
        ),));
        log.record(executed("get"), Answered::Reply(&ok));
        log.record(executed("get"), Answered::Reply(&err));
        log.record(executed("get"), Answered::Reject("canister stopped"));
        let outcomes: Vec<&str> = log.after(0).map(|r| r.outcome.as_str()).collect();
        assert_eq!(
            outcomes,
            ["Ok", "Err: NotAuthorized", "Reject: canister stopped"]
        );
        assert_eq!(log.after(2).count(), 1);
    }

    #[test]
    fn the_log_keeps_the_newest_and_counts_all() {
        let mut log = RequestLog::default();
        for _ in 0..REQUEST_LOG + 10 {
            log.record(executed("has"), Answered::Waiting);
        }
        assert_eq!(log.total(), REQUEST_LOG as u64 + 10);
        assert_eq!(log.after(0).count(), REQUEST_LOG);
        assert_eq!(log.after(0).next().map(|r| r.seq), Some(11));
    }
}
