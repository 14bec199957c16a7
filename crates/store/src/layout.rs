//! Persisted formats of the store's fixed-size records.
//!
//! Header (`STORE_HEADER`, 32 bytes inside a `StableCell`):
//! ```text
//! 0..4   magic  b"FLST"
//! 4..6   layout version, u16 LE (currently 2)
//! 6      current op-log generation (0 = OPS_LOG_A, 1 = OPS_LOG_B)
//! 7      reserved, 0
//! 8..16  op-log window: local records per generation, u64 LE
//! 16..24 last change version handed out by export tracking, u64 LE
//! 24..28 epoch of OPS_LOG_A, u32 LE: how many times it was (re)started, from 1; its records
//!        carry the epoch they were written in, so a stale one is recognized (see `oplog.rs`)
//! 28..32 epoch of OPS_LOG_B, u32 LE
//! ```
//! Version 1 (migrated by `Store::init`, see `oplog::OpLog::migrate_v1`) differed only in
//! 24..32: the number of records this node wrote into the current generation, u64 LE, and in
//! keeping the op log in two `StableBTreeMap`s (`OPS_GEN_A`, `OPS_GEN_B`).
//! Slot (`SUBDB_SLOTS`, 40 bytes each, index = local SubDB id):
//! ```text
//! 0      state (see `SlotState`)
//! 1      frozen: 1 while writes are paused for a move cutover
//! 2      exporting: 1 while changes are tracked for a live move
//! 3..8   reserved, 0
//! 8..16  hard cap, u64 LE, 0 = none
//! 16..24 items, u64 LE
//! 24..32 bytes (sum of key and value lengths), u64 LE
//! 32..40 next import chunk number, u64 LE (while importing)
//! ```
//! Data key (`DATA`): `subdb id u32 BE ++ user key`; value: the user value, verbatim.
//! Export frontier (`EXPORT_FRONTIER`, per SubDB id): `1 ++ key` = items up to and including
//! `key` were exported; `2` = all items were. Dirty keys (`DIRTY_KEYS`):
//! `subdb id u32 BE ++ tag ++ key` → version u64; tag 0 = item key, 1 = op id. Dirty log
//! (`DIRTY_LOG`): `subdb id u32 BE ++ version u64 BE` → `tag ++ key`.
//! Throttle (`EXPORT_THROTTLE`, per SubDB id whose writers a move throttles, 16 bytes):
//! `seq u64 LE` (the delta chunk whose export granted the budget) ++ `left u64 LE` (bytes of
//! changes still admitted until the next delta chunk's export).
//! Op-log record (`OPS_LOG_A`, `OPS_LOG_B`, 72 bytes each, appended): see `oplog.rs`.

use ic_stable_structures::storable::{Bound, Storable};
use std::borrow::Cow;

pub const MAGIC: [u8; 4] = *b"FLST";
pub const LAYOUT_VERSION: u16 = 2;
/// The layout `Store::init` migrates from (op log in two `StableBTreeMap`s).
pub const LAYOUT_VERSION_V1: u16 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub magic: [u8; 4],
    pub version: u16,
    pub op_gen: u8,
    pub op_window: u64,
    pub dirty_version: u64,
    /// Epoch of each op-log generation (never 0 once written by this version).
    pub op_epochs: [u32; 2],
}

impl Header {
    pub fn new(op_window: u64) -> Self {
        Header {
            magic: MAGIC,
            version: LAYOUT_VERSION,
            op_gen: 0,
            op_window,
            dirty_version: 0,
            op_epochs: [1, 1],
        }
    }

    /// Bytes 24..32 read as version 1 wrote them: the local records of the current
    /// generation.
    pub fn v1_op_local(&self) -> u64 {
        u64::from(self.op_epochs[0]) | u64::from(self.op_epochs[1]) << 32
    }
}

impl Storable for Header {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned((*self).into_bytes())
    }

    fn into_bytes(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_BYTES);
        b.extend_from_slice(&self.magic);
        b.extend_from_slice(&self.version.to_le_bytes());
        b.push(self.op_gen);
        b.push(0);
        b.extend_from_slice(&self.op_window.to_le_bytes());
        b.extend_from_slice(&self.dirty_version.to_le_bytes());
        b.extend_from_slice(&self.op_epochs[0].to_le_bytes());
        b.extend_from_slice(&self.op_epochs[1].to_le_bytes());
        b
    }

    /// Decoding never fails: a foreign magic or version is kept as read and refused by
    /// `Store::init` with a typed error.
    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        let mut b = [0u8; HEADER_BYTES];
        let n = bytes.len().min(HEADER_BYTES);
        b[..n].copy_from_slice(&bytes[..n]);
        Header {
            magic: b[0..4].try_into().unwrap(),
            version: u16::from_le_bytes([b[4], b[5]]),
            op_gen: b[6],
            op_window: u64::from_le_bytes(b[8..16].try_into().unwrap()),
            dirty_version: u64::from_le_bytes(b[16..24].try_into().unwrap()),
            op_epochs: [
                u32::from_le_bytes(b[24..28].try_into().unwrap()),
                u32::from_le_bytes(b[28..32].try_into().unwrap()),
            ],
        }
    }

    const BOUND: Bound = Bound::Bounded {
        max_size: HEADER_BYTES as u32,
        is_fixed_size: true,
    };
}

const HEADER_BYTES: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotState {
    /// Serving reads and writes.
    Live = 1,
    /// Receiving chunks of a move; invisible to readers until finished.
    Importing = 2,
    /// Deleted; items are still being reclaimed.
    Purging = 3,
    /// Deleted and fully reclaimed.
    Gone = 4,
}

impl SlotState {
    fn from_u8(v: u8) -> SlotState {
        match v {
            1 => SlotState::Live,
            2 => SlotState::Importing,
            3 => SlotState::Purging,
            _ => SlotState::Gone,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub state: SlotState,
    pub frozen: bool,
    pub exporting: bool,
    pub hard_cap: u64,
    pub items: u64,
    pub bytes: u64,
    pub import_seq: u64,
}

impl Slot {
    pub fn new(state: SlotState, hard_cap: Option<u64>) -> Self {
        Slot {
            state,
            frozen: false,
            exporting: false,
            hard_cap: hard_cap.unwrap_or(0),
            items: 0,
            bytes: 0,
            import_seq: 0,
        }
    }

    pub fn hard_cap(&self) -> Option<u64> {
        (self.hard_cap != 0).then_some(self.hard_cap)
    }
}

const SLOT_BYTES: usize = 40;

impl Storable for Slot {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.into_bytes())
    }

    fn into_bytes(self) -> Vec<u8> {
        let mut b = vec![0u8; SLOT_BYTES];
        b[0] = self.state as u8;
        b[1] = self.frozen as u8;
        b[2] = self.exporting as u8;
        b[8..16].copy_from_slice(&self.hard_cap.to_le_bytes());
        b[16..24].copy_from_slice(&self.items.to_le_bytes());
        b[24..32].copy_from_slice(&self.bytes.to_le_bytes());
        b[32..40].copy_from_slice(&self.import_seq.to_le_bytes());
        b
    }

    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        let u = |r: std::ops::Range<usize>| u64::from_le_bytes(bytes[r].try_into().unwrap());
        Slot {
            state: SlotState::from_u8(bytes[0]),
            frozen: bytes[1] == 1,
            exporting: bytes[2] == 1,
            hard_cap: u(8..16),
            items: u(16..24),
            bytes: u(24..32),
            import_seq: u(32..40),
        }
    }

    const BOUND: Bound = Bound::Bounded {
        max_size: SLOT_BYTES as u32,
        is_fixed_size: true,
    };
}

/// The write budget of a SubDB whose move throttles its writers (see `Store::export_delta`):
/// what the export of delta chunk `seq` granted, less what writes have used since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle {
    pub seq: u64,
    pub left: u64,
}

const THROTTLE_BYTES: usize = 16;

impl Storable for Throttle {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.into_bytes())
    }

    fn into_bytes(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(THROTTLE_BYTES);
        b.extend_from_slice(&self.seq.to_le_bytes());
        b.extend_from_slice(&self.left.to_le_bytes());
        b
    }

    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        let u = |r: std::ops::Range<usize>| u64::from_le_bytes(bytes[r].try_into().unwrap());
        Throttle {
            seq: u(0..8),
            left: u(8..16),
        }
    }

    const BOUND: Bound = Bound::Bounded {
        max_size: THROTTLE_BYTES as u32,
        is_fixed_size: true,
    };
}

/// Scope of op-log records of SubDB creations (no SubDB id exists yet).
pub const CREATE_SCOPE: u32 = u32::MAX;

/// `subdb id u32 BE ++ key`: the key shape of the data map.
pub fn scoped_key(scope: u32, suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + suffix.len());
    k.extend_from_slice(&scope.to_be_bytes());
    k.extend_from_slice(suffix);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_keeps_foreign_magic() {
        let h = Header::new(1234);
        assert_eq!(Header::from_bytes(h.to_bytes()), h);
        let mut raw = h.into_bytes();
        raw[0] = b'X';
        assert_eq!(Header::from_bytes(Cow::Owned(raw)).magic, *b"XLST");
    }

    #[test]
    fn v1_op_local_reads_bytes_24_to_32() {
        let mut raw = Header::new(5).into_bytes();
        raw[4..6].copy_from_slice(&LAYOUT_VERSION_V1.to_le_bytes());
        raw[24..32].copy_from_slice(&0x1_0000_0007u64.to_le_bytes());
        let h = Header::from_bytes(Cow::Owned(raw));
        assert_eq!(h.version, LAYOUT_VERSION_V1);
        assert_eq!(h.v1_op_local(), 0x1_0000_0007);
    }

    #[test]
    fn slot_round_trips() {
        let s = Slot {
            state: SlotState::Importing,
            frozen: true,
            exporting: true,
            hard_cap: 7,
            items: 9,
            bytes: u64::MAX,
            import_seq: 3,
        };
        let b = s.to_bytes();
        assert_eq!(b.len(), SLOT_BYTES);
        assert_eq!(Slot::from_bytes(b), s);
    }

    #[test]
    fn throttle_round_trips() {
        let t = Throttle {
            seq: 9,
            left: u64::MAX - 1,
        };
        let b = t.to_bytes();
        assert_eq!(b.len(), THROTTLE_BYTES);
        assert_eq!(Throttle::from_bytes(b), t);
    }

    #[test]
    fn scoped_keys_of_one_scope_are_contiguous() {
        let a = scoped_key(1, b"\xff\xff");
        let b = scoped_key(2, b"");
        assert!(a < b);
    }
}
