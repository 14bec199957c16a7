//! What every canister boundary's dispatcher shares: a method's kind and signature, the
//! typed error of a call that never reached the logic, and Candid decoding with quotas.
//!
//! A dispatcher maps a method name and its Candid argument bytes to the logic and encodes the
//! reply, exactly as the canister's exported endpoint does. The simulator, the demo's IC HTTP
//! endpoint and the tests call canisters through one (the partition's is
//! `flotilla_partition::dispatch`, the index's `flotilla_index::dispatch`); a test per canister
//! proves its method table equals the committed `.did`.

use candid::ser::{TypeSerialize, ValueSerializer};
use candid::types::internal::TypeContainer;
use candid::types::{FuncMode, Function, Type, TypeInner};
use candid::utils::{ArgumentDecoder, ArgumentEncoder};
use candid::{CandidType, DecoderConfig, TypeEnv};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use thiserror::Error;

/// How a method may be called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MethodKind {
    /// Read-only; callable as a query or as an update.
    Query,
    /// Changes state; callable only as an update.
    Update,
}

/// Adds one Rust type to a [`TypeContainer`] and returns its Candid type.
pub type TypeOf = fn(&mut TypeContainer) -> Type;

/// One method of a canister's interface: its name, kind, argument and reply types.
#[derive(Clone, Debug)]
pub struct MethodSig {
    pub name: &'static str,
    pub kind: MethodKind,
    pub args: Vec<TypeOf>,
    pub rets: Vec<TypeOf>,
}

/// The Candid type of `T`, for [`MethodSig`] tables.
pub fn type_of<T: candid::CandidType>(c: &mut TypeContainer) -> Type {
    c.add::<T>()
}

/// The service type of a method table, with the environment its named types live in.
pub fn service_type(methods: &[MethodSig]) -> (TypeEnv, Type) {
    let mut c = TypeContainer::new();
    let mut service: Vec<(String, Type)> = methods
        .iter()
        .map(|m| {
            let args = m.args.iter().map(|t| t(&mut c)).collect();
            let rets = m.rets.iter().map(|t| t(&mut c)).collect();
            let modes = match m.kind {
                MethodKind::Query => vec![FuncMode::Query],
                MethodKind::Update => vec![],
            };
            let f = TypeInner::Func(Function { modes, args, rets }).into();
            (m.name.to_string(), f)
        })
        .collect();
    service.sort_by(|a, b| a.0.cmp(&b.0));
    (c.env, TypeInner::Service(service).into())
}

/// Checks that a method table is exactly a service from a `.did` file (its environment and
/// service type, without init arguments): same methods, kinds and types.
pub fn check_against_did(
    mut did_env: TypeEnv,
    did_service: &Type,
    methods: &[MethodSig],
) -> Result<(), String> {
    let (env, service) = service_type(methods);
    let service = did_env.merge_type(env, service);
    let mut gamma = std::collections::HashSet::new();
    candid::types::subtype::equal(&mut gamma, &did_env, did_service, &service)
        .map_err(|e| e.to_string())
}

/// A call that did not reach the logic. On the IC each is a reject of the call, never a
/// reply, and nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DispatchError {
    #[error("the canister has no method {method:?}")]
    NoSuchMethod { method: String },
    #[error("{method} is an update method and cannot be called as a query")]
    NotAQuery { method: String },
    #[error("the argument of {method} does not decode: {reason}")]
    BadArgument { method: String, reason: String },
}

/// Decoding quota: Candid work units one argument may cost (see candid's `DecoderConfig`).
/// The largest legitimate argument (a 2 MiB message of blobs) costs about its byte length;
/// ten times the IC's message limit leaves room for any real argument and stops a crafted one
/// (deep nesting, huge vector headers) long before it can burn the instruction limit.
pub const DECODING_QUOTA: usize = 20 * 1024 * 1024;
/// Skipping quota: work spent on fields the receiver does not know (a newer client's extra
/// fields). Small: legitimate extensions are few.
pub const SKIPPING_QUOTA: usize = 10_000;

/// The decoder configuration of every dispatcher and client: [`DECODING_QUOTA`],
/// [`SKIPPING_QUOTA`], and no full error messages (they could echo the input).
pub fn decoder_config() -> DecoderConfig {
    let mut c = DecoderConfig::new();
    c.set_decoding_quota(DECODING_QUOTA)
        .set_skipping_quota(SKIPPING_QUOTA)
        .set_full_error_message(false);
    c
}

/// Decodes a method's argument tuple under the quotas.
pub fn decode_args<'a, T: ArgumentDecoder<'a>>(
    method: &str,
    bytes: &'a [u8],
) -> Result<T, DispatchError> {
    candid::utils::decode_args_with_config(bytes, &decoder_config()).map_err(|e| {
        DispatchError::BadArgument {
            method: method.to_string(),
            reason: e.to_string(),
        }
    })
}

/// Encodes a reply tuple. Every type that crosses a boundary encodes; a failure here is a bug
/// in a type definition, caught by the dispatchers' tests.
pub fn encode_args<T: ArgumentEncoder>(value: T) -> Vec<u8> {
    candid::utils::encode_args(value).expect("boundary types always encode")
}

thread_local! {
    /// [`reply_header`]'s cache: the header of each reply type encoded so far.
    static HEADERS: RefCell<BTreeMap<std::any::TypeId, Rc<[u8]>>> =
        const { RefCell::new(BTreeMap::new()) };
}

/// The Candid header of a one-value message of type `T`: the magic, the type table and the
/// argument type, exactly what candid's `IDLBuilder` writes before the value. Candid builds it
/// anew on every encoding (it constructs `T`'s type, then serializes and deduplicates its
/// table, hashing and comparing whole type trees); it depends on the type alone, so candid's
/// own type serializer builds it here once per type and it is kept for the thread's life.
pub fn reply_header<T: CandidType + 'static>() -> Rc<[u8]> {
    let id = std::any::TypeId::of::<T>();
    if let Some(h) = HEADERS.with_borrow(|m| m.get(&id).cloned()) {
        return h;
    }
    // As `IDLBuilder::new` does: a fresh memo of Rust types to Candid types.
    candid::types::internal::env_clear();
    let mut types = TypeSerialize::new();
    types
        .push_type(&T::ty())
        .and_then(|()| types.serialize())
        .expect("boundary types always encode");
    let mut h = b"DIDL".to_vec();
    h.extend_from_slice(types.get_result());
    let h: Rc<[u8]> = h.into();
    HEADERS.with_borrow_mut(|m| m.insert(id, h.clone()));
    h
}

/// Encodes a one-value reply: byte for byte what `candid::encode_one` writes, from the
/// cached [`reply_header`] and candid's own value serializer. Every type that crosses a
/// boundary encodes; a failure here is a bug in a type definition.
pub fn encode_reply<T: CandidType + 'static>(value: &T) -> Vec<u8> {
    let header = reply_header::<T>();
    let mut values = ValueSerializer::new();
    value
        .idl_serialize(&mut values)
        .expect("boundary types always encode");
    let mut out = Vec::with_capacity(header.len() + values.get_result().len());
    out.extend_from_slice(&header);
    out.extend_from_slice(values.get_result());
    out
}

/// Decodes `bytes` as a `T` without candid's general decoder when `T` has a fast path and
/// the bytes are exactly what candid encodes for it; `None` means "use candid".
///
/// Only [`crate::partition::PutArgs`] has one, the hot write path: candid's decoder costs
/// about 38,000 wasm instructions for a put's 24-byte key and 100-byte value, almost all of
/// it type work (parsing the type table, checking it against `PutArgs`' type, per-field
/// dispatch), which a message whose type table is candid's own for `PutArgs` does not need.
/// The fast path accepts a message only if it starts with that exact header (the magic, the
/// type table and the argument type that [`reply_header`] builds with candid's serializer:
/// what the Rust client and `candid::encode_one` send) and its value is the canonical
/// encoding of the record's fields in field-id order (`key`, `value`, `op_id`: blobs with
/// minimal LEB128 lengths; `subdb`: nat32 LE) with nothing after it. Such a message decodes
/// to the same value through candid (a test compares them on random values and on malformed
/// ones); any other message — another client's equivalent type table, an extra field, an
/// overlong length — goes to candid unchanged, with its quotas. Call [`warm_fast_decoders`]
/// in `init` and `post_upgrade`, before argument types are memoized (it starts candid's memo
/// afresh, as [`reply_header`] does).
pub fn decode_fast<T: 'static>(bytes: &[u8]) -> Option<T> {
    use std::any::{Any, TypeId};
    if TypeId::of::<T>() == TypeId::of::<crate::partition::PutArgs>() {
        let v: Box<dyn Any> = Box::new(put_args_fast(bytes)?);
        return v.downcast::<T>().ok().map(|b| *b);
    }
    None
}

/// Builds the headers [`decode_fast`] compares against.
pub fn warm_fast_decoders() {
    reply_header::<crate::partition::PutArgs>();
}

fn put_args_fast(bytes: &[u8]) -> Option<crate::partition::PutArgs> {
    use serde_bytes::ByteBuf;
    let header = reply_header::<crate::partition::PutArgs>();
    let mut r = bytes.strip_prefix(&header[..])?;
    // Fields in the order of their Candid ids: key 5343647, value 834174833, op_id
    // 868924281, subdb 2226479358.
    let key = fast_blob(&mut r)?;
    let value = fast_blob(&mut r)?;
    let op_id = fast_blob(&mut r)?;
    let subdb = u32::from_le_bytes(r.try_into().ok()?);
    Some(crate::partition::PutArgs {
        subdb,
        key: ByteBuf::from(key),
        value: ByteBuf::from(value),
        op_id: crate::OpId(ByteBuf::from(op_id)),
    })
}

/// A blob: its length in minimal unsigned LEB128 (at most 4 bytes: up to 256 MiB, far above
/// the 2 MiB message), then its bytes.
fn fast_blob(r: &mut &[u8]) -> Option<Vec<u8>> {
    let mut len = 0usize;
    let mut i = 0;
    loop {
        let b = *r.get(i)?;
        len |= ((b & 0x7f) as usize) << (7 * i);
        i += 1;
        if b & 0x80 == 0 {
            if b == 0 && i > 1 {
                return None; // overlong: candid decides
            }
            break;
        }
        if i == 4 {
            return None;
        }
    }
    let (blob, rest) = r[i..].split_at_checked(len)?;
    *r = rest;
    Some(blob.to_vec())
}

/// Builds a dispatcher over a logic type from one table of methods: `query` (query methods
/// only, on `&T`), `update` (every method, on `&mut T`; a query method called as an update
/// runs as on the IC) and `methods()` (the signature table the `.did` tests compare).
///
/// Each entry names the method, its argument tuple and reply type, and the expression that
/// calls the logic, with the logic object and the context bound to the names given.
#[macro_export]
macro_rules! dispatcher {
    (
        logic: $logic:ident < $g:ident : $bound:path >, ctx: $ctx:ty;
        queries { $( $qname:ident ( $($qa:ident : $qt:ty),* ) -> $qr:ty = |$qs:ident, $qc:ident| $qbody:expr ; )* }
        updates { $( $uname:ident ( $($ua:ident : $ut:ty),* ) -> $ur:ty = |$us:ident, $uc:ident| $ubody:expr ; )* }
    ) => {
        /// Every method of this boundary, with its kind and Candid types.
        pub fn methods() -> Vec<$crate::dispatch::MethodSig> {
            use $crate::dispatch::{type_of, TypeOf};
            vec![
                $( $crate::dispatch::MethodSig {
                    name: stringify!($qname),
                    kind: $crate::dispatch::MethodKind::Query,
                    args: vec![$(type_of::<$qt> as TypeOf),*],
                    rets: vec![type_of::<$qr> as TypeOf],
                }, )*
                $( $crate::dispatch::MethodSig {
                    name: stringify!($uname),
                    kind: $crate::dispatch::MethodKind::Update,
                    args: vec![$(type_of::<$ut> as TypeOf),*],
                    rets: vec![type_of::<$ur> as TypeOf],
                }, )*
            ]
        }

        /// The kind of `method`, if this boundary has it.
        pub fn method_kind(method: &str) -> Option<$crate::dispatch::MethodKind> {
            match method {
                $( stringify!($qname) => Some($crate::dispatch::MethodKind::Query), )*
                $( stringify!($uname) => Some($crate::dispatch::MethodKind::Update), )*
                _ => None,
            }
        }

        /// Runs a query method: Candid argument in, Candid reply out. Nothing changes.
        #[allow(unused_variables)]
        pub fn query<$g: $bound>(
            logic: &$logic<$g>,
            ctx: &$ctx,
            method: &str,
            arg: &[u8],
        ) -> Result<Vec<u8>, $crate::dispatch::DispatchError> {
            match method {
                $( stringify!($qname) => {
                    let ($($qa,)*): ($($qt,)*) = $crate::dispatch::decode_args(method, arg)?;
                    let $qs = logic;
                    let $qc = ctx;
                    let reply: $qr = $qbody;
                    Ok($crate::dispatch::encode_reply(&reply))
                } )*
                $( stringify!($uname) => Err($crate::dispatch::DispatchError::NotAQuery {
                    method: method.to_string(),
                }), )*
                _ => Err($crate::dispatch::DispatchError::NoSuchMethod {
                    method: method.to_string(),
                }),
            }
        }

        /// Runs any method as an update: Candid argument in, Candid reply out.
        #[allow(unused_variables)]
        pub fn update<$g: $bound>(
            logic: &mut $logic<$g>,
            ctx: &$ctx,
            method: &str,
            arg: &[u8],
        ) -> Result<Vec<u8>, $crate::dispatch::DispatchError> {
            match method {
                $( stringify!($uname) => {
                    let ($($ua,)*): ($($ut,)*) = $crate::dispatch::decode_args(method, arg)?;
                    let $us = &mut *logic;
                    let $uc = ctx;
                    let reply: $ur = $ubody;
                    Ok($crate::dispatch::encode_reply(&reply))
                } )*
                _ => query(&*logic, ctx, method, arg),
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Entry, GetError, InnerKey, PutError, PutOutcome, ScanError, ScanPage};
    use candid::Principal;
    use serde_bytes::ByteBuf;

    fn same_as_candid<T: CandidType + 'static>(v: T) {
        let want = candid::encode_one(&v).unwrap();
        assert_eq!(encode_reply(&v), want);
        // The second time from the cache, after candid's own encoder rebuilt its memo.
        assert_eq!(encode_reply(&v), want);
    }

    #[test]
    fn cached_replies_are_candids_bytes() {
        let to = InnerKey {
            partition: Principal::from_slice(&[7; 29]),
            subdb: 3,
        };
        same_as_candid::<Result<Option<ByteBuf>, GetError>>(Ok(Some(ByteBuf::from(vec![1; 100]))));
        same_as_candid::<Result<Option<ByteBuf>, GetError>>(Ok(None));
        same_as_candid::<Result<Option<ByteBuf>, GetError>>(Err(GetError::Moved { to }));
        same_as_candid::<Result<Option<ByteBuf>, GetError>>(Err(GetError::KeyTooLarge {
            len: 9,
            max: 8,
        }));
        same_as_candid::<Result<PutOutcome, PutError>>(Ok(PutOutcome {
            replaced: true,
            evicted: 2,
        }));
        same_as_candid::<Result<PutOutcome, PutError>>(Err(PutError::OpIdConflict));
        same_as_candid::<Result<ScanPage, ScanError>>(Ok(ScanPage {
            entries: vec![
                Entry {
                    key: ByteBuf::from(vec![1; 24]),
                    value: ByteBuf::from(vec![2; 100]),
                };
                3
            ],
            next: Some(ByteBuf::from(vec![3])),
        }));
        same_as_candid::<Result<ScanPage, ScanError>>(Err(ScanError::LimitTooLarge {
            requested: 5,
            max: 4,
        }));
        same_as_candid::<Result<(), ScanError>>(Ok(()));
        same_as_candid::<Vec<Option<(u8, String)>>>(vec![None, Some((1, "x".into()))]);
    }

    #[test]
    fn decoding_reports_the_method_and_respects_the_quota() {
        let ok: (u32,) = decode_args("m", &encode_args((7u32,))).unwrap();
        assert_eq!(ok, (7,));
        let e = decode_args::<(u32,)>("m", b"garbage").unwrap_err();
        assert!(matches!(e, DispatchError::BadArgument { ref method, .. } if method == "m"));
        // A vector of 10 M nulls is a few bytes on the wire but costs its length to decode.
        let mut bomb = b"DIDL\x01\x6d\x7f\x01\x00".to_vec();
        let mut n = 10_000_000u64;
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                bomb.push(b);
                break;
            }
            bomb.push(b | 0x80);
        }
        let e = decode_args::<(Vec<()>,)>("m", &bomb).unwrap_err();
        assert!(matches!(e, DispatchError::BadArgument { .. }), "{e:?}");
    }

    fn put(key: Vec<u8>, value: Vec<u8>, op: Vec<u8>, subdb: u32) -> crate::partition::PutArgs {
        crate::partition::PutArgs {
            subdb,
            key: ByteBuf::from(key),
            value: ByteBuf::from(value),
            op_id: crate::OpId(ByteBuf::from(op)),
        }
    }

    /// What candid's decoder answers, or `None` where it refuses.
    fn by_candid(bytes: &[u8]) -> Option<crate::partition::PutArgs> {
        decode_args::<(crate::partition::PutArgs,)>("put", bytes)
            .ok()
            .map(|(a,)| a)
    }

    #[test]
    fn fast_put_args_decode_to_what_candid_decodes() {
        warm_fast_decoders();
        // Lengths around the LEB128 byte boundaries, and a deterministic stream of others.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        let mut lens: Vec<usize> = vec![0, 1, 127, 128, 129, 16_383, 16_384, 1 << 20];
        lens.extend((0..40).map(|_| next(300) as usize));
        for (i, &l) in lens.iter().enumerate() {
            let args = put(
                vec![i as u8; l.min(1024)],
                (0..l).map(|j| (j * 7 + i) as u8).collect(),
                vec![0xab; 16 + i % 17],
                next(u32::MAX as u64 + 1) as u32,
            );
            let bytes = candid::encode_one(&args).unwrap();
            assert_eq!(
                decode_fast::<crate::partition::PutArgs>(&bytes),
                Some(args.clone())
            );
            assert_eq!(by_candid(&bytes), Some(args));
        }
        // The generic path: other types are never fast.
        assert_eq!(decode_fast::<u32>(&candid::encode_one(7u32).unwrap()), None);
    }

    #[test]
    fn fast_put_args_leave_every_other_message_to_candid() {
        warm_fast_decoders();
        let args = put(vec![1; 24], vec![2; 100], vec![3; 16], 5);
        let good = candid::encode_one(&args).unwrap();
        let header = reply_header::<crate::partition::PutArgs>();
        assert!(good.starts_with(&header));
        let fast = |b: &[u8]| decode_fast::<crate::partition::PutArgs>(b);
        // Truncated anywhere, or with a byte after the value: never fast; candid refuses too.
        for n in 0..good.len() {
            assert_eq!(fast(&good[..n]), None, "truncated at {n}");
            assert_eq!(by_candid(&good[..n]), None, "truncated at {n}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(fast(&trailing), None);
        // An overlong length (0x98 0x00 for 24) is left to candid, whatever it answers.
        let at = header.len();
        assert_eq!(good[at], 24);
        let overlong = [&good[..at], &[0x98, 0x00][..], &good[at + 1..]].concat();
        assert_eq!(fast(&overlong), None);
        // The same value under an equivalent but different header (an extra unused type in
        // the table, as another encoder might write): candid decodes it, the fast path does
        // not try.
        let mut other = b"DIDL".to_vec();
        let table = &header[4..];
        other.push(table[0] + 1);
        other.extend_from_slice(&table[1..table.len() - 2]);
        other.extend_from_slice(&[0x6d, 0x7f]); // vec null, unused
        other.extend_from_slice(&table[table.len() - 2..]);
        other.extend_from_slice(&good[header.len()..]);
        assert_eq!(fast(&other), None);
        assert_eq!(by_candid(&other), Some(args));
    }
}
