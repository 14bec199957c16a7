//! SubDB access lists and byte quota, kept in the store's opaque per-SubDB metadata blob.
//!
//! The blob lives beside the SubDB's data and travels with it (export chunk 0 carries it), so
//! whichever partition holds a SubDB decides every request from its own memory — the byte
//! quota included, which therefore survives moves with no change to the move protocol.
//!
//! Format, versions 1 and 2 (hand-written so that a check costs a few byte comparisons and no
//! allocation; Candid or CBOR decoding on every request would cost far more):
//!
//! ```text
//! 0        format version: 1 (no byte quota) or 2 (with one)
//! 1        owner: length n (0..=29)
//! 2..2+n   owner: principal bytes
//!          readers: count, u16 LE; then per principal: length (u8, 0..=29) ++ bytes
//!          writers: count, u16 LE; then the same
//!          version 2 only: max_bytes, u64 LE (the SubDB's byte quota)
//! ```
//!
//! Nothing may follow (the writers in version 1, `max_bytes` in version 2). A SubDB without a
//! quota is written as version 1, so blobs written before quotas existed are read unchanged.
//! A blob this build cannot parse — another version, a truncated list, trailing bytes —
//! grants nothing: every check fails closed (only the index can still delete such a SubDB).
//!
//! Rules: the owner may do everything; writers read and write items; readers read them. The
//! anonymous principal never counts as an owner or writer; listing it as a reader makes the
//! SubDB readable by everyone.

use candid::Principal;
use flotilla_types::partition::Access;

/// Version byte of the format above without a byte quota.
pub const META_VERSION: u8 = 1;
/// Version byte of the format above with a byte quota (`max_bytes` after the writers).
pub const META_VERSION_QUOTA: u8 = 2;
/// Longest principal the IC issues, in bytes.
pub const MAX_PRINCIPAL_BYTES: usize = 29;

const ANONYMOUS: &[u8] = Principal::anonymous().as_slice();

/// Bytes `access` takes once encoded without a quota (8 more with one).
pub fn encoded_len(access: &Access) -> usize {
    let list = |l: &[Principal]| 2 + l.iter().map(|p| 1 + p.as_slice().len()).sum::<usize>();
    1 + 1 + access.owner.as_slice().len() + list(&access.readers) + list(&access.writers)
}

/// Encodes `access` with the byte quota `max_bytes` (version 2), or without one (version 1).
///
/// # Panics
/// As [`encode`].
pub fn encode_with_quota(access: &Access, max_bytes: Option<u64>) -> Vec<u8> {
    let mut out = encode(access);
    if let Some(max) = max_bytes {
        out[0] = META_VERSION_QUOTA;
        out.extend_from_slice(&max.to_le_bytes());
    }
    out
}

/// Encodes `access`.
///
/// # Panics
/// If a list holds more than `u16::MAX` principals. Callers check the lists first (against
/// [`flotilla_types::limits::MAX_ACCESS_PRINCIPALS`], or the encoded length against
/// [`flotilla_types::limits::MAX_SUBDB_META_BYTES`], which bounds the count well below that).
pub fn encode(access: &Access) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(access));
    out.push(META_VERSION);
    push_principal(&mut out, &access.owner);
    for list in [&access.readers, &access.writers] {
        let count = u16::try_from(list.len()).expect("access list length checked by the caller");
        out.extend_from_slice(&count.to_le_bytes());
        for p in list {
            push_principal(&mut out, p);
        }
    }
    out
}

fn push_principal(out: &mut Vec<u8>, p: &Principal) {
    let b = p.as_slice();
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

/// Decodes a whole blob's access lists; `None` if it is not a valid blob (see [`quota`]).
pub fn decode(meta: &[u8]) -> Option<Access> {
    let v = AccessView::parse(meta)?;
    let list = |l: List<'_>| l.iter().map(Principal::from_slice).collect();
    Some(Access {
        owner: Principal::from_slice(v.owner),
        readers: list(v.readers),
        writers: list(v.writers),
    })
}

/// The byte quota of a blob; `None` if it has none or does not parse.
pub fn quota(meta: &[u8]) -> Option<u64> {
    AccessView::parse(meta)?.max_bytes
}

/// A parsed blob that borrows its bytes: checks walk the lists in place.
#[derive(Clone, Copy, Debug)]
pub struct AccessView<'a> {
    owner: &'a [u8],
    readers: List<'a>,
    writers: List<'a>,
    max_bytes: Option<u64>,
}

/// One validated list: `bytes` holds exactly `count` length-prefixed principals.
#[derive(Clone, Copy, Debug)]
struct List<'a> {
    bytes: &'a [u8],
}

impl<'a> List<'a> {
    fn iter(self) -> impl Iterator<Item = &'a [u8]> {
        let mut rest = self.bytes;
        std::iter::from_fn(move || {
            let (&len, tail) = rest.split_first()?;
            let (p, tail) = tail.split_at(len as usize);
            rest = tail;
            Some(p)
        })
    }

    fn contains(self, p: &[u8]) -> bool {
        self.iter().any(|x| x == p)
    }
}

/// Splits one length-prefixed principal off `b`.
fn take_principal(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&len, rest) = b.split_first()?;
    let len = len as usize;
    if len > MAX_PRINCIPAL_BYTES || rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

/// Splits one counted list off `b`, checking every entry.
fn take_list(b: &[u8]) -> Option<(List<'_>, &[u8])> {
    let count = u16::from_le_bytes(b.get(..2)?.try_into().ok()?);
    let body = &b[2..];
    let mut rest = body;
    for _ in 0..count {
        rest = take_principal(rest)?.1;
    }
    let used = body.len() - rest.len();
    Some((
        List {
            bytes: &body[..used],
        },
        rest,
    ))
}

impl<'a> AccessView<'a> {
    /// Checks the whole blob's structure; `None` if it is not a valid version-1 or
    /// version-2 blob.
    pub fn parse(meta: &'a [u8]) -> Option<Self> {
        let (&version, rest) = meta.split_first()?;
        if version != META_VERSION && version != META_VERSION_QUOTA {
            return None;
        }
        let (owner, rest) = take_principal(rest)?;
        let (readers, rest) = take_list(rest)?;
        let (writers, rest) = take_list(rest)?;
        let max_bytes = if version == META_VERSION_QUOTA {
            Some(u64::from_le_bytes(rest.try_into().ok()?))
        } else {
            rest.is_empty().then_some(())?;
            None
        };
        Some(AccessView {
            owner,
            readers,
            writers,
            max_bytes,
        })
    }

    /// The SubDB's byte quota, if it has one.
    pub fn max_bytes(&self) -> Option<u64> {
        self.max_bytes
    }

    /// The owner (never the anonymous principal).
    pub fn is_owner(&self, caller: &Principal) -> bool {
        let c = caller.as_slice();
        c != ANONYMOUS && self.owner == c
    }

    /// The owner or a writer (never the anonymous principal).
    pub fn may_write(&self, caller: &Principal) -> bool {
        self.is_owner(caller)
            || (caller.as_slice() != ANONYMOUS && self.writers.contains(caller.as_slice()))
    }

    /// Anyone who may write, any reader, and everyone when the anonymous principal is a reader.
    pub fn may_read(&self, caller: &Principal) -> bool {
        self.may_write(caller)
            || self.readers.contains(caller.as_slice())
            || self.readers.contains(ANONYMOUS)
    }
}
