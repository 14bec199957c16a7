//! Ingress inspection: which update calls the partition agrees to run, decided before they run,
//! so that a call the logic would refuse anyway costs the canister nothing.
//!
//! The IC asks `canister_inspect_message` about every **ingress** message to an update method,
//! and about a query method called as an update; the canister runs the message only if the
//! inspection accepts it. Inspection is a courtesy check, not a security boundary: it runs on
//! one replica, and it never sees inter-canister calls (the index's housekeeping calls) or
//! queries called as queries. Every rule here is therefore also enforced by the logic, which
//! stays the authority; inspection only refuses earlier what the logic would refuse too
//! (`tests_fuzz` checks that on every fuzzed call), plus arguments too large to be legitimate.
//!
//! The rules ([`RULES`], one per method of [`crate::dispatch::methods`]), checked in order:
//!
//! 1. a method the partition does not have: [`InspectRefusal::UnknownMethod`];
//! 2. an index-only method (housekeeping and `delete_subdb`: exactly the endpoints the logic
//!    guards with `require_index`) called by anyone but the index:
//!    [`InspectRefusal::IndexOnly`]. The index is a canister and calls them inter-canister,
//!    so on the IC every ingress to them is refused; only a partition installed with a user
//!    principal as its index (a test bed) is called so by ingress;
//! 3. a write (`put`, `delete`, `batch`, `set_access`) by the anonymous principal, which never
//!    counts as a writer or an owner: [`InspectRefusal::Anonymous`]. Reads stay open to it (a
//!    SubDB that lists the anonymous principal as a reader is public);
//! 4. an argument longer than the method's bound ([`Rule::max_arg_bytes`], derived from the
//!    limits of `flotilla_types::limits`): [`InspectRefusal::ArgumentTooLarge`].

use candid::Principal;
use flotilla_types::limits::{
    ARG_OVERHEAD_BYTES, ITEM_OVERHEAD_BYTES, MAX_BATCH_BYTES, MAX_GET_MANY_KEYS, MAX_KEY_BYTES,
    MAX_MESSAGE_BYTES, MAX_VALUE_BYTES, OP_ID_MAX_BYTES, SMALL_ARG_BYTES,
};

/// Bound of a `put` argument: the largest key and value, an op id, the Candid overhead.
pub const PUT_ARG_BYTES: usize =
    MAX_KEY_BYTES + MAX_VALUE_BYTES + OP_ID_MAX_BYTES + ARG_OVERHEAD_BYTES;
/// Bound of a `batch` argument: the batch budget (which counts each op's framing), an op id,
/// the Candid overhead.
pub const BATCH_ARG_BYTES: usize = MAX_BATCH_BYTES + OP_ID_MAX_BYTES + ARG_OVERHEAD_BYTES;
/// Bound of a `get_many` argument: the most pairs, each with the largest key and its framing.
pub const GET_MANY_ARG_BYTES: usize =
    MAX_GET_MANY_KEYS * (MAX_KEY_BYTES + ITEM_OVERHEAD_BYTES) + ARG_OVERHEAD_BYTES;
/// Bound of an `import_chunk` argument: a chunk fills a whole reply of the source, so only
/// the IC's own message limit bounds it.
pub const IMPORT_CHUNK_ARG_BYTES: usize = MAX_MESSAGE_BYTES;

const _: () = assert!(PUT_ARG_BYTES < MAX_MESSAGE_BYTES);
const _: () = assert!(BATCH_ARG_BYTES < MAX_MESSAGE_BYTES);
const _: () = assert!(GET_MANY_ARG_BYTES < MAX_MESSAGE_BYTES);

/// Why the partition refuses an ingress message before running it. On the IC the caller gets
/// a reject whose message is this error's text; nothing runs and nothing is charged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InspectRefusal {
    #[error("the partition has no method {method:?}")]
    UnknownMethod { method: String },
    #[error("{method} is called by the partition's index only, inter-canister")]
    IndexOnly { method: &'static str },
    #[error("{method} refuses the anonymous principal: sign the call with an identity")]
    Anonymous { method: &'static str },
    #[error("the argument of {method} has {len} bytes, over its bound of {max}")]
    ArgumentTooLarge {
        method: &'static str,
        len: u64,
        max: u64,
    },
}

/// Who may call a method by ingress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Callers {
    /// Anyone, the anonymous principal included (reads: a public SubDB answers everyone).
    Anyone,
    /// Anyone but the anonymous principal (writes: it is never a writer or an owner).
    Authenticated,
    /// The index only (the endpoints the logic guards with `require_index`).
    Index,
}

/// One method's ingress rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub method: &'static str,
    pub callers: Callers,
    /// Longest argument accepted, in bytes.
    pub max_arg_bytes: usize,
}

const fn rule(method: &'static str, callers: Callers, max_arg_bytes: usize) -> Rule {
    Rule {
        method,
        callers,
        max_arg_bytes,
    }
}

/// The rule of every method of the partition (a test proves the names are exactly
/// [`crate::dispatch::methods`]).
pub const RULES: &[Rule] = &[
    // Reads: queries, inspected only when called as updates.
    rule("get", Callers::Anyone, SMALL_ARG_BYTES),
    rule("has", Callers::Anyone, SMALL_ARG_BYTES),
    rule("scan", Callers::Anyone, SMALL_ARG_BYTES),
    rule("subdb_stats", Callers::Anyone, SMALL_ARG_BYTES),
    rule("get_many", Callers::Anyone, GET_MANY_ARG_BYTES),
    // Writes.
    rule("put", Callers::Authenticated, PUT_ARG_BYTES),
    rule("delete", Callers::Authenticated, SMALL_ARG_BYTES),
    rule("batch", Callers::Authenticated, BATCH_ARG_BYTES),
    rule("set_access", Callers::Authenticated, SMALL_ARG_BYTES),
    // The index's.
    rule("delete_subdb", Callers::Index, SMALL_ARG_BYTES),
    rule("create_subdb_local", Callers::Index, SMALL_ARG_BYTES),
    rule("stats", Callers::Index, SMALL_ARG_BYTES),
    rule("export_chunk", Callers::Index, SMALL_ARG_BYTES),
    rule("begin_export", Callers::Index, SMALL_ARG_BYTES),
    rule("export_delta", Callers::Index, SMALL_ARG_BYTES),
    rule("begin_import", Callers::Index, SMALL_ARG_BYTES),
    rule("import_chunk", Callers::Index, IMPORT_CHUNK_ARG_BYTES),
    rule("abort_import", Callers::Index, SMALL_ARG_BYTES),
    rule("resume_writes", Callers::Index, SMALL_ARG_BYTES),
    rule("release", Callers::Index, SMALL_ARG_BYTES),
];

/// The rule of `method`, if the partition has it.
pub fn rule_of(method: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.method == method)
}

/// Decides an ingress message to `method` from `caller` with an argument of `arg_len` bytes,
/// on a partition whose index is `index`: `Ok` to run it, or why not.
pub fn inspect(
    method: &str,
    caller: &Principal,
    arg_len: usize,
    index: &Principal,
) -> Result<(), InspectRefusal> {
    let Some(r) = rule_of(method) else {
        return Err(InspectRefusal::UnknownMethod {
            method: method.to_string(),
        });
    };
    match r.callers {
        Callers::Anyone => {}
        Callers::Authenticated if *caller == Principal::anonymous() => {
            return Err(InspectRefusal::Anonymous { method: r.method })
        }
        Callers::Authenticated => {}
        Callers::Index if caller != index => {
            return Err(InspectRefusal::IndexOnly { method: r.method })
        }
        Callers::Index => {}
    }
    if arg_len > r.max_arg_bytes {
        return Err(InspectRefusal::ArgumentTooLarge {
            method: r.method,
            len: arg_len as u64,
            max: r.max_arg_bytes as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::{methods, MethodKind};
    use flotilla_types::dispatch::{decode_args, encode_args};
    use flotilla_types::limits::{MAX_ACCESS_PRINCIPALS, MAX_BATCH_OPS, OP_ID_MAX_BYTES};
    use flotilla_types::partition::{
        Access, BatchArgs, CreateLocalArgs, GetArgs, GetManyArgs, PutArgs, ScanRequest,
        SetAccessArgs,
    };
    use flotilla_types::{batch_budget_bytes, BatchOp, OpId, ScanArgs};
    use serde_bytes::ByteBuf;

    const INDEX: Principal = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 7, 1, 1]);
    const USER: Principal = Principal::from_slice(&[0xA1; 29]);
    const ANON: Principal = Principal::anonymous();

    #[test]
    fn rules_name_exactly_the_dispatcher_methods() {
        let mut rules: Vec<&str> = RULES.iter().map(|r| r.method).collect();
        let mut dispatched: Vec<&str> = methods().iter().map(|m| m.name).collect();
        rules.sort();
        dispatched.sort();
        assert_eq!(rules, dispatched);
        // Reads are the queries; queries are open to everyone.
        for m in methods() {
            let r = rule_of(m.name).unwrap();
            assert_eq!(
                m.kind == MethodKind::Query,
                r.callers == Callers::Anyone,
                "{}",
                m.name
            );
            assert!(r.max_arg_bytes <= MAX_MESSAGE_BYTES, "{}", m.name);
        }
    }

    /// Every rule, for each caller class and at and past each bound.
    #[test]
    fn inspection_table() {
        use InspectRefusal as R;
        let open = ["get", "has", "scan", "subdb_stats", "get_many"];
        let writes = ["put", "delete", "batch", "set_access"];
        let index_only = [
            "delete_subdb",
            "create_subdb_local",
            "stats",
            "export_chunk",
            "begin_export",
            "export_delta",
            "begin_import",
            "import_chunk",
            "abort_import",
            "resume_writes",
            "release",
        ];
        assert_eq!(open.len() + writes.len() + index_only.len(), RULES.len());
        let bound = |m: &str| rule_of(m).unwrap().max_arg_bytes;
        let small = SMALL_ARG_BYTES;
        for (m, b) in [
            ("get", small),
            ("has", small),
            ("scan", small),
            ("subdb_stats", small),
            ("get_many", GET_MANY_ARG_BYTES),
            ("put", PUT_ARG_BYTES),
            ("delete", small),
            ("batch", BATCH_ARG_BYTES),
            ("set_access", small),
            ("import_chunk", MAX_MESSAGE_BYTES),
            ("release", small),
        ] {
            assert_eq!(bound(m), b, "{m}");
        }
        let too_large = |method: &'static str, len: usize| R::ArgumentTooLarge {
            method,
            len: len as u64,
            max: bound(method) as u64,
        };
        for m in open {
            for who in [ANON, USER, INDEX] {
                assert_eq!(inspect(m, &who, 0, &INDEX), Ok(()), "{m} by {who}");
                assert_eq!(inspect(m, &who, bound(m), &INDEX), Ok(()), "{m} by {who}");
                let over = bound(m) + 1;
                assert_eq!(inspect(m, &who, over, &INDEX), Err(too_large(m, over)));
            }
        }
        for m in writes {
            assert_eq!(
                inspect(m, &ANON, 10, &INDEX),
                Err(R::Anonymous { method: m })
            );
            for who in [USER, INDEX] {
                assert_eq!(inspect(m, &who, bound(m), &INDEX), Ok(()), "{m} by {who}");
                let over = bound(m) + 1;
                assert_eq!(inspect(m, &who, over, &INDEX), Err(too_large(m, over)));
            }
        }
        for m in index_only {
            for who in [ANON, USER] {
                assert_eq!(
                    inspect(m, &who, 10, &INDEX),
                    Err(R::IndexOnly { method: m }),
                    "{m} by {who}"
                );
            }
            // On the IC the index is a canister and never sends ingress; a partition whose
            // index is a user principal (a test bed) is called so.
            assert_eq!(inspect(m, &USER, bound(m), &USER), Ok(()));
            let over = bound(m) + 1;
            assert_eq!(inspect(m, &USER, over, &USER), Err(too_large(m, over)));
        }
        for who in [ANON, USER, INDEX] {
            for m in [
                "",
                "nope",
                "GET",
                "get ",
                "canister_inspect_message",
                "http_request",
            ] {
                assert_eq!(
                    inspect(m, &who, 0, &INDEX),
                    Err(R::UnknownMethod {
                        method: m.to_string()
                    })
                );
            }
        }
        // Who is refused is decided before the size.
        assert_eq!(
            inspect("put", &ANON, usize::MAX, &INDEX),
            Err(R::Anonymous { method: "put" })
        );
        assert_eq!(
            inspect("stats", &USER, usize::MAX, &INDEX),
            Err(R::IndexOnly { method: "stats" })
        );
    }

    fn op_id() -> OpId {
        OpId::from(vec![0xFF; OP_ID_MAX_BYTES])
    }

    fn principal(n: u8) -> Principal {
        Principal::from_slice(&[n; 29])
    }

    fn put_op(k: usize, v: usize) -> BatchOp {
        BatchOp::Put {
            key: ByteBuf::from(vec![0xEE; k]),
            value: ByteBuf::from(vec![0xDD; v]),
        }
    }

    /// Checks that `arg`, encoded, fits `method`'s bound with room for another encoder's type
    /// table, and decodes under the dispatchers' quotas.
    fn fits<T>(method: &str, arg: T) -> usize
    where
        T: candid::CandidType + for<'de> candid::Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        let bytes = encode_args((&arg,));
        let max = rule_of(method).unwrap().max_arg_bytes;
        assert!(
            bytes.len() + ARG_OVERHEAD_BYTES / 2 <= max,
            "{method}: a maximal argument takes {} bytes, bound {max}",
            bytes.len()
        );
        let (back,): (T,) = decode_args(method, &bytes).unwrap();
        assert_eq!(back, arg, "{method}");
        bytes.len()
    }

    /// The largest legitimate argument of each bounded endpoint fits its bound (and decodes
    /// under the quotas), so inspection never refuses a call the logic would accept.
    #[test]
    fn maximal_arguments_fit_their_bounds() {
        let key = || ByteBuf::from(vec![0xAB; MAX_KEY_BYTES]);
        fits(
            "put",
            PutArgs {
                subdb: u32::MAX,
                key: key(),
                value: ByteBuf::from(vec![1; MAX_VALUE_BYTES]),
                op_id: op_id(),
            },
        );
        // A batch at the byte budget with the largest items, and one at the op count.
        let largest = MAX_KEY_BYTES + MAX_VALUE_BYTES + ITEM_OVERHEAD_BYTES;
        let mut big: Vec<BatchOp> = (0..MAX_BATCH_BYTES / largest)
            .map(|_| put_op(MAX_KEY_BYTES, MAX_VALUE_BYTES))
            .collect();
        let left = MAX_BATCH_BYTES - batch_budget_bytes(&big);
        big.push(put_op(
            MAX_KEY_BYTES,
            left - MAX_KEY_BYTES - ITEM_OVERHEAD_BYTES,
        ));
        let each = MAX_BATCH_BYTES / MAX_BATCH_OPS - ITEM_OVERHEAD_BYTES;
        let many: Vec<BatchOp> = (0..MAX_BATCH_OPS).map(|_| put_op(1, each - 1)).collect();
        let deletes: Vec<BatchOp> = (0..MAX_BATCH_BYTES / (MAX_KEY_BYTES + ITEM_OVERHEAD_BYTES))
            .map(|_| BatchOp::Delete { key: key() })
            .collect();
        for ops in [big, many, deletes] {
            assert!(batch_budget_bytes(&ops) <= MAX_BATCH_BYTES);
            fits(
                "batch",
                BatchArgs {
                    subdb: u32::MAX,
                    ops,
                    op_id: op_id(),
                },
            );
        }
        fits(
            "get_many",
            GetManyArgs {
                keys: (0..MAX_GET_MANY_KEYS)
                    .map(|_| GetArgs {
                        subdb: u32::MAX,
                        key: key(),
                    })
                    .collect(),
            },
        );
        fits(
            "scan",
            ScanRequest {
                subdb: u32::MAX,
                args: ScanArgs {
                    start: Some(key()),
                    end: Some(key()),
                    cursor: Some(key()),
                    limit: Some(u32::MAX),
                    max_bytes: Some(u32::MAX),
                    reverse: true,
                },
            },
        );
        let list = |n: u8| (0..MAX_ACCESS_PRINCIPALS).map(|_| principal(n)).collect();
        fits(
            "set_access",
            SetAccessArgs {
                subdb: u32::MAX,
                readers: list(1),
                writers: list(2),
            },
        );
        fits(
            "create_subdb_local",
            CreateLocalArgs {
                access: Access {
                    owner: principal(3),
                    readers: list(1),
                    writers: list(2),
                },
                op_id: op_id(),
                hard_cap: Some(u64::MAX),
                max_bytes: None,
            },
        );
    }
}
