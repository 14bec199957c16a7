//! Persisted formats of the partition layer's own regions (ids in
//! [`flotilla_store::memory`]). The version in the state cell covers all three regions.
//!
//! `PARTITION_STATE` — a `StableCell` whose value is:
//! ```text
//! 0..4    magic b"FLPT"
//! 4..6    partition layout version, u16 LE (currently 1)
//! 6       index principal: length n (1..=29)
//! 7..7+n  index principal bytes
//! ```
//! `PARTITION_TOMBSTONES` — `StableBTreeMap<u32, Tomb>`: local SubDB id → where it moved:
//! ```text
//! 0       partition principal: length n (0..=29)
//! 1..1+n  partition principal bytes
//! +0..+4  SubDB id there, u32 LE
//! ```
//! `PARTITION_IMPORTS` — `StableBTreeMap<ImportKey, u32>`: `begin_import` op id (16..=32
//! bytes, verbatim) → the importing SubDB's local id.
//! `PARTITION_TOMB_ACCESS` — `StableBTreeMap<u32, Vec<u8>>`: the local id of a released SubDB
//! → the metadata blob ([`crate::access`] format) it had when released, so its tombstone
//! answers `Moved` only to callers who could read it. Added after layout version 1 without a
//! bump: it is a new region, empty in older memories, and a tombstone without an entry answers
//! `Moved` to no one.

use crate::access::MAX_PRINCIPAL_BYTES;
use crate::PartitionInitError;
use candid::Principal;
use flotilla_types::limits::OP_ID_MAX_BYTES;
use flotilla_types::InnerKey;
use ic_stable_structures::storable::{Bound, Storable};
use std::borrow::Cow;

pub const MAGIC: [u8; 4] = *b"FLPT";
pub const LAYOUT_VERSION: u16 = 1;

/// The state cell's value, kept as raw bytes so that a foreign or newer value is reported as
/// a typed error instead of a panic inside `Storable::from_bytes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawState(pub Vec<u8>);

impl Storable for RawState {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0)
    }

    fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        RawState(bytes.into_owned())
    }

    const BOUND: Bound = Bound::Unbounded;
}

/// The partition's own settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    pub index: Principal,
}

impl State {
    pub fn encode(&self) -> RawState {
        let p = self.index.as_slice();
        let mut b = Vec::with_capacity(7 + p.len());
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&LAYOUT_VERSION.to_le_bytes());
        b.push(p.len() as u8);
        b.extend_from_slice(p);
        RawState(b)
    }

    pub fn decode(raw: &RawState) -> Result<State, PartitionInitError> {
        let b = &raw.0;
        if b.len() < 6 {
            return Err(PartitionInitError::Corrupt);
        }
        if b[..4] != MAGIC {
            return Err(PartitionInitError::BadMagic {
                found: b[..4].try_into().expect("4 bytes"),
            });
        }
        let version = u16::from_le_bytes([b[4], b[5]]);
        if version != LAYOUT_VERSION {
            return Err(PartitionInitError::UnsupportedVersion {
                found: version,
                supported: LAYOUT_VERSION,
            });
        }
        match b.get(6..) {
            Some([n, p @ ..])
                if *n as usize == p.len() && (1..=MAX_PRINCIPAL_BYTES).contains(&p.len()) =>
            {
                Ok(State {
                    index: Principal::from_slice(p),
                })
            }
            _ => Err(PartitionInitError::Corrupt),
        }
    }
}

/// A tombstone: where a SubDB that moved away lives now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tomb(pub InnerKey);

impl Storable for Tomb {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.into_bytes())
    }

    fn into_bytes(self) -> Vec<u8> {
        let p = self.0.partition.as_slice();
        let mut b = Vec::with_capacity(1 + p.len() + 4);
        b.push(p.len() as u8);
        b.extend_from_slice(p);
        b.extend_from_slice(&self.0.subdb.to_le_bytes());
        b
    }

    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        let n = bytes[0] as usize;
        assert!(
            n <= MAX_PRINCIPAL_BYTES && bytes.len() == 1 + n + 4,
            "malformed tombstone"
        );
        Tomb(InnerKey {
            partition: Principal::from_slice(&bytes[1..1 + n]),
            subdb: u32::from_le_bytes(bytes[1 + n..].try_into().expect("4 bytes")),
        })
    }

    const BOUND: Bound = Bound::Bounded {
        max_size: (1 + MAX_PRINCIPAL_BYTES + 4) as u32,
        is_fixed_size: false,
    };
}

/// A `begin_import` op id, as a map key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImportKey(pub Vec<u8>);

impl Storable for ImportKey {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0)
    }

    fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        ImportKey(bytes.into_owned())
    }

    const BOUND: Bound = Bound::Bounded {
        max_size: OP_ID_MAX_BYTES as u32,
        is_fixed_size: false,
    };
}
