//! Ingress inspection: which update calls the index agrees to run, decided before they run, so
//! that a call the logic would refuse anyway costs the canister nothing.
//!
//! The IC asks `canister_inspect_message` about every **ingress** message to an update method,
//! and about a query method called as an update; the canister runs the message only if the
//! inspection accepts it. Inspection is a courtesy check, not a security boundary: it runs on
//! one replica and never sees inter-canister calls or queries called as queries. Every rule
//! here is therefore also enforced by the logic, which stays the authority; inspection only
//! refuses earlier what the logic would refuse too (`tests_fuzz` checks that on every fuzzed
//! call), plus arguments too large to be legitimate.
//!
//! The rules ([`RULES`], one per method of [`crate::dispatch::methods`]), checked in order:
//!
//! 1. a method the index does not have: [`InspectRefusal::UnknownMethod`];
//! 2. a call by the anonymous principal to a method it can never use: `create_subdb` (it cannot
//!    own a SubDB), `delete_subdb` (it owns none) and the admin endpoints (it is never an
//!    admin): [`InspectRefusal::Anonymous`];
//! 3. an admin endpoint (`add_admin`, `remove_admin`, `upload_partition_wasm_chunk`,
//!    `move_subdb`, `cancel_move`, `run_housekeeping`, `update_settings`, `upgrade_partitions`,
//!    `allow_creators`, `disallow_creators`) called by a principal that is not an admin:
//!    [`InspectRefusal::NotAdmin`]. `create_subdb` and `delete_subdb` stay open to every
//!    signed-in caller (the logic decides who owns what);
//! 4. an argument longer than the method's bound ([`Rule::max_arg_bytes`], derived from the
//!    limits of `flotilla_types::limits`): [`InspectRefusal::ArgumentTooLarge`].

use crate::Index;
use candid::Principal;
use flotilla_types::limits::{
    ARG_OVERHEAD_BYTES, ITEM_OVERHEAD_BYTES, MAX_CREATORS_PER_CALL, MAX_MESSAGE_BYTES,
    MAX_OUTER_KEY_BYTES, MAX_ROUTE_BATCH, MAX_WASM_UPLOAD_CHUNK_BYTES, PRINCIPAL_WIRE_BYTES,
    SMALL_ARG_BYTES,
};
use ic_stable_structures::Memory;

/// Bytes of a SHA-256 digest (`WasmChunk::sha256`).
const SHA256_BYTES: usize = 32;

/// Bound of an `upload_partition_wasm_chunk` argument: the largest piece, the module's hash,
/// the Candid overhead.
pub const WASM_CHUNK_ARG_BYTES: usize =
    MAX_WASM_UPLOAD_CHUNK_BYTES + SHA256_BYTES + ARG_OVERHEAD_BYTES;
/// Bound of a `route` argument (called as an update): the most outer keys, each of the
/// largest size with its framing.
pub const ROUTE_ARG_BYTES: usize =
    MAX_ROUTE_BATCH * (MAX_OUTER_KEY_BYTES + ITEM_OVERHEAD_BYTES) + ARG_OVERHEAD_BYTES;

/// Bound of an `allow_creators` / `disallow_creators` argument: the most principals, each of
/// the largest size with its framing.
pub const CREATORS_ARG_BYTES: usize =
    MAX_CREATORS_PER_CALL * PRINCIPAL_WIRE_BYTES + ARG_OVERHEAD_BYTES;

const _: () = assert!(WASM_CHUNK_ARG_BYTES < MAX_MESSAGE_BYTES);
const _: () = assert!(CREATORS_ARG_BYTES < MAX_MESSAGE_BYTES);
const _: () = assert!(ROUTE_ARG_BYTES < MAX_MESSAGE_BYTES);

/// Why the index refuses an ingress message before running it. On the IC the caller gets a
/// reject whose message is this error's text; nothing runs and nothing is charged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InspectRefusal {
    UnknownMethod {
        method: String,
    },
    Anonymous {
        method: &'static str,
    },
    NotAdmin {
        method: &'static str,
    },
    ArgumentTooLarge {
        method: &'static str,
        len: u64,
        max: u64,
    },
}

impl std::fmt::Display for InspectRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InspectRefusal::UnknownMethod { method } => {
                write!(f, "the index has no method {method:?}")
            }
            InspectRefusal::Anonymous { method } => write!(
                f,
                "{method} refuses the anonymous principal: sign the call with an identity"
            ),
            InspectRefusal::NotAdmin { method } => {
                write!(f, "{method} is for the index's admins only")
            }
            InspectRefusal::ArgumentTooLarge { method, len, max } => write!(
                f,
                "the argument of {method} has {len} bytes, over its bound of {max}"
            ),
        }
    }
}

impl std::error::Error for InspectRefusal {}

/// Who may call a method by ingress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Callers {
    /// Anyone, the anonymous principal included (the read paths).
    Anyone,
    /// Anyone but the anonymous principal (creating and deleting SubDBs).
    Authenticated,
    /// The index's admins (never the anonymous principal).
    Admins,
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

/// The rule of every method of the index (a test proves the names are exactly
/// [`crate::dispatch::methods`]).
pub const RULES: &[Rule] = &[
    // Reads: queries, inspected only when called as updates.
    rule("route", Callers::Anyone, ROUTE_ARG_BYTES),
    rule("routes", Callers::Anyone, SMALL_ARG_BYTES),
    rule("stats", Callers::Anyone, SMALL_ARG_BYTES),
    rule("partitions", Callers::Anyone, SMALL_ARG_BYTES),
    rule("list_moves", Callers::Anyone, SMALL_ARG_BYTES),
    // SubDBs.
    rule("create_subdb", Callers::Authenticated, SMALL_ARG_BYTES),
    rule("delete_subdb", Callers::Authenticated, SMALL_ARG_BYTES),
    // Admins.
    rule("add_admin", Callers::Admins, SMALL_ARG_BYTES),
    rule("remove_admin", Callers::Admins, SMALL_ARG_BYTES),
    rule(
        "upload_partition_wasm_chunk",
        Callers::Admins,
        WASM_CHUNK_ARG_BYTES,
    ),
    rule("move_subdb", Callers::Admins, SMALL_ARG_BYTES),
    rule("cancel_move", Callers::Admins, SMALL_ARG_BYTES),
    rule("run_housekeeping", Callers::Admins, SMALL_ARG_BYTES),
    rule("update_settings", Callers::Admins, SMALL_ARG_BYTES),
    rule("allow_creators", Callers::Admins, CREATORS_ARG_BYTES),
    rule("disallow_creators", Callers::Admins, CREATORS_ARG_BYTES),
    rule("upgrade_partitions", Callers::Admins, SMALL_ARG_BYTES),
];

/// The rule of `method`, if the index has it.
pub fn rule_of(method: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.method == method)
}

/// Decides an ingress message to `method` from `caller` (an admin or not) with an argument of
/// `arg_len` bytes: `Ok` to run it, or why not.
pub fn inspect(
    method: &str,
    caller: &Principal,
    arg_len: usize,
    is_admin: bool,
) -> Result<(), InspectRefusal> {
    let Some(r) = rule_of(method) else {
        return Err(InspectRefusal::UnknownMethod {
            method: method.to_string(),
        });
    };
    if r.callers != Callers::Anyone && *caller == Principal::anonymous() {
        return Err(InspectRefusal::Anonymous { method: r.method });
    }
    if r.callers == Callers::Admins && !is_admin {
        return Err(InspectRefusal::NotAdmin { method: r.method });
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

impl<M: Memory> Index<M> {
    /// [`inspect`] on this index's admins.
    pub fn inspect(
        &self,
        method: &str,
        caller: &Principal,
        arg_len: usize,
    ) -> Result<(), InspectRefusal> {
        inspect(method, caller, arg_len, self.is_admin(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::methods;
    use flotilla_types::dispatch::MethodKind;
    use flotilla_types::dispatch::{decode_args, encode_args};
    use flotilla_types::index::{CreateRequest, WasmChunk};
    use flotilla_types::limits::{MAX_ACCESS_PRINCIPALS, OP_ID_MAX_BYTES};
    use flotilla_types::OpId;
    use serde_bytes::ByteBuf;

    const ADMIN: Principal = Principal::from_slice(&[1; 29]);
    const USER: Principal = Principal::from_slice(&[2; 29]);
    const ANON: Principal = Principal::anonymous();

    #[test]
    fn rules_name_exactly_the_dispatcher_methods() {
        let mut rules: Vec<&str> = RULES.iter().map(|r| r.method).collect();
        let mut dispatched: Vec<&str> = methods().iter().map(|m| m.name).collect();
        rules.sort();
        dispatched.sort();
        assert_eq!(rules, dispatched);
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

    /// Every rule, for each caller class (anonymous, a user, an admin) and at and past each
    /// bound.
    #[test]
    fn inspection_table() {
        use InspectRefusal as R;
        let open = ["route", "routes", "stats", "partitions", "list_moves"];
        let signed_in = ["create_subdb", "delete_subdb"];
        let admins = [
            "add_admin",
            "remove_admin",
            "upload_partition_wasm_chunk",
            "move_subdb",
            "cancel_move",
            "run_housekeeping",
            "update_settings",
            "allow_creators",
            "disallow_creators",
            "upgrade_partitions",
        ];
        assert_eq!(open.len() + signed_in.len() + admins.len(), RULES.len());
        let bound = |m: &str| rule_of(m).unwrap().max_arg_bytes;
        assert_eq!(bound("route"), ROUTE_ARG_BYTES);
        assert_eq!(bound("upload_partition_wasm_chunk"), WASM_CHUNK_ARG_BYTES);
        assert_eq!(bound("allow_creators"), CREATORS_ARG_BYTES);
        assert_eq!(bound("disallow_creators"), CREATORS_ARG_BYTES);
        let own_bound = [
            "route",
            "upload_partition_wasm_chunk",
            "allow_creators",
            "disallow_creators",
        ];
        for m in open.iter().chain(&signed_in).chain(&admins) {
            if !own_bound.contains(m) {
                assert_eq!(bound(m), SMALL_ARG_BYTES, "{m}");
            }
        }
        let too_large = |method: &'static str, len: usize| R::ArgumentTooLarge {
            method,
            len: len as u64,
            max: bound(method) as u64,
        };
        // (caller, is admin) for each class.
        let classes = [(ANON, false), (USER, false), (ADMIN, true)];
        for m in open {
            for (who, admin) in classes {
                assert_eq!(inspect(m, &who, 0, admin), Ok(()), "{m} by {who}");
                assert_eq!(inspect(m, &who, bound(m), admin), Ok(()), "{m} by {who}");
                let over = bound(m) + 1;
                assert_eq!(inspect(m, &who, over, admin), Err(too_large(m, over)));
            }
        }
        for m in signed_in {
            assert_eq!(
                inspect(m, &ANON, 10, false),
                Err(R::Anonymous { method: m })
            );
            for (who, admin) in [(USER, false), (ADMIN, true)] {
                assert_eq!(inspect(m, &who, bound(m), admin), Ok(()), "{m} by {who}");
                let over = bound(m) + 1;
                assert_eq!(inspect(m, &who, over, admin), Err(too_large(m, over)));
            }
        }
        for m in admins {
            assert_eq!(
                inspect(m, &ANON, 10, false),
                Err(R::Anonymous { method: m })
            );
            assert_eq!(inspect(m, &USER, 10, false), Err(R::NotAdmin { method: m }));
            assert_eq!(inspect(m, &ADMIN, bound(m), true), Ok(()));
            let over = bound(m) + 1;
            assert_eq!(inspect(m, &ADMIN, over, true), Err(too_large(m, over)));
        }
        for (who, admin) in classes {
            for m in [
                "",
                "nope",
                "Stats",
                "stats ",
                "canister_init",
                "create_subdb_local",
            ] {
                assert_eq!(
                    inspect(m, &who, 0, admin),
                    Err(R::UnknownMethod {
                        method: m.to_string()
                    })
                );
            }
        }
        // Who is refused is decided before the size.
        assert_eq!(
            inspect("add_admin", &USER, usize::MAX, false),
            Err(R::NotAdmin {
                method: "add_admin"
            })
        );
    }

    /// The largest legitimate argument of each bounded endpoint fits its bound with room for
    /// another encoder's type table, and decodes under the dispatchers' quotas.
    #[test]
    fn maximal_arguments_fit_their_bounds() {
        fn fits<T>(method: &str, arg: T)
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
        }
        let name = || "n".repeat(MAX_OUTER_KEY_BYTES);
        fits(
            "route",
            (0..MAX_ROUTE_BATCH).map(|_| name()).collect::<Vec<_>>(),
        );
        fits(
            "upload_partition_wasm_chunk",
            WasmChunk {
                offset: u64::MAX,
                bytes: ByteBuf::from(vec![0xAB; MAX_WASM_UPLOAD_CHUNK_BYTES]),
                total_len: u64::MAX,
                sha256: ByteBuf::from(vec![0xCD; SHA256_BYTES]),
            },
        );
        let list = |n: u8| {
            (0..MAX_ACCESS_PRINCIPALS)
                .map(|_| Principal::from_slice(&[n; 29]))
                .collect()
        };
        fits(
            "create_subdb",
            CreateRequest {
                outer_key: name(),
                op_id: OpId::from(vec![0xFF; OP_ID_MAX_BYTES]),
                hard_cap: Some(u64::MAX),
                owner: Some(Principal::from_slice(&[3; 29])),
                readers: list(4),
                writers: list(5),
            },
        );
        let creators: Vec<Principal> = (0..MAX_CREATORS_PER_CALL)
            .map(|i| Principal::from_slice(&[(i % 251) as u8; 29]))
            .collect();
        fits("allow_creators", creators.clone());
        fits("disallow_creators", creators);
    }
}
