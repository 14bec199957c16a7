//! One simulated canister: raw stable memory, a `MemoryManager` over it, the logic object
//! (index, partition, or nothing before install), run status, cycles and a chunk store.
//!
//! The logic object and the memory manager are the canister's heap: an upgrade drops both and
//! re-opens them from the raw memory, which is all that survives, as on the IC.

use candid::Principal;
use flotilla_index::Index;
use flotilla_partition::Partition;
use flotilla_types::SubDbId;
use ic_stable_structures::memory_manager::{MemoryId, MemoryManager, VirtualMemory};
use ic_stable_structures::{Memory, VectorMemory};
use std::collections::{BTreeMap, VecDeque};

pub type Mem = VirtualMemory<VectorMemory>;

/// Bytes per stable-memory page.
pub const PAGE_BYTES: u64 = 65_536;
/// Rounds of request history kept per partition for "recent routed requests".
pub const RECENT_ROUNDS: u64 = 10;

pub enum Logic {
    /// Created, no module installed yet.
    Empty,
    Index(Box<Index<Mem>>),
    Partition(Box<Partition<Mem>>),
}

/// Why a canister could not be re-opened after an upgrade.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    #[error("no module installed")]
    Empty,
    #[error("index: {0}")]
    Index(String),
    #[error("partition: {0}")]
    Partition(String),
}

pub struct Canister {
    pub id: Principal,
    raw: VectorMemory,
    mm: MemoryManager<VectorMemory>,
    pub logic: Logic,
    /// Stopped until this round (calls, ingress and queries are rejected; timers do not run).
    /// `u64::MAX`: stopped by its controller (`stop_canister`) until it starts it again.
    pub stopped_until: Option<u64>,
    /// SHA-256 of the module installed (none: empty).
    pub module: Option<Vec<u8>>,
    pub cycles: u128,
    pub cycles_spent: u128,
    /// Charges refused for want of cycles (execution, ingress, storage), in all.
    pub ran_dry: u64,
    /// The management canister's chunk store for this canister: hash → chunk.
    pub chunk_store: BTreeMap<Vec<u8>, Vec<u8>>,
    pub created_round: u64,
    pub upgrades: u64,
    /// (round, client requests routed here in that round), the last [`RECENT_ROUNDS`].
    pub recent: VecDeque<(u64, u64)>,
    pub requests: u64,
}

impl Canister {
    pub fn new(id: Principal, cycles: u128, round: u64) -> Self {
        let raw = VectorMemory::default();
        let mm = MemoryManager::init_with_bucket_size(raw.clone(), 1);
        Canister {
            id,
            raw,
            mm,
            logic: Logic::Empty,
            stopped_until: None,
            module: None,
            cycles,
            cycles_spent: 0,
            ran_dry: 0,
            chunk_store: BTreeMap::new(),
            created_round: round,
            upgrades: 0,
            recent: VecDeque::new(),
            requests: 0,
        }
    }

    /// Wipes the canister's memory and logic (a reinstall starts from nothing).
    pub fn wipe(&mut self) {
        self.raw = VectorMemory::default();
        self.mm = MemoryManager::init_with_bucket_size(self.raw.clone(), 1);
        self.logic = Logic::Empty;
        self.module = None;
    }

    /// The virtual memories of this canister, for `install`/`open`.
    pub fn memories(&self) -> impl FnMut(MemoryId) -> Mem + '_ {
        |id| self.mm.get(id)
    }

    /// Raw stable memory in use, in bytes (pages × 64 KiB).
    pub fn memory_bytes(&self) -> u64 {
        self.raw.size() * PAGE_BYTES
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped_until.is_some()
    }

    pub fn is_empty(&self) -> bool {
        matches!(self.logic, Logic::Empty)
    }

    pub fn partition(&self) -> Option<&Partition<Mem>> {
        match &self.logic {
            Logic::Partition(p) => Some(p),
            _ => None,
        }
    }

    pub fn partition_mut(&mut self) -> Option<&mut Partition<Mem>> {
        match &mut self.logic {
            Logic::Partition(p) => Some(p),
            _ => None,
        }
    }

    pub fn index(&self) -> Option<&Index<Mem>> {
        match &self.logic {
            Logic::Index(i) => Some(i),
            _ => None,
        }
    }

    pub fn index_mut(&mut self) -> Option<&mut Index<Mem>> {
        match &mut self.logic {
            Logic::Index(i) => Some(i),
            _ => None,
        }
    }

    /// Takes `amount` cycles; false (and nothing taken) if the balance is short.
    pub fn charge(&mut self, amount: u128) -> bool {
        if self.cycles < amount {
            self.ran_dry += 1;
            return false;
        }
        self.cycles -= amount;
        self.cycles_spent += amount;
        true
    }

    /// Drops the heap (logic object and memory manager) and re-opens everything from the raw
    /// stable memory, as `post_upgrade` does.
    pub fn upgrade(&mut self) -> Result<(), UpgradeError> {
        let was = std::mem::replace(&mut self.logic, Logic::Empty);
        let kind = match was {
            Logic::Empty => return Err(UpgradeError::Empty),
            Logic::Index(_) => 0,
            Logic::Partition(_) => 1,
        };
        // `was` (and with it every virtual memory handle) is gone; so is the old manager.
        self.mm = MemoryManager::init_with_bucket_size(self.raw.clone(), 1);
        let mm = &self.mm;
        self.logic = if kind == 0 {
            let i =
                Index::open(|id| mm.get(id)).map_err(|e| UpgradeError::Index(format!("{e:?}")))?;
            Logic::Index(Box::new(i))
        } else {
            let p = Partition::open(|id| mm.get(id))
                .map_err(|e| UpgradeError::Partition(e.to_string()))?;
            Logic::Partition(Box::new(p))
        };
        self.upgrades += 1;
        Ok(())
    }

    /// Counts one client request routed here.
    pub fn note_request(&mut self, round: u64) {
        self.requests += 1;
        match self.recent.back_mut() {
            Some((r, n)) if *r == round => *n += 1,
            _ => self.recent.push_back((round, 1)),
        }
        self.trim_recent(round);
    }

    pub fn trim_recent(&mut self, round: u64) {
        while self
            .recent
            .front()
            .is_some_and(|(r, _)| *r + RECENT_ROUNDS <= round)
        {
            self.recent.pop_front();
        }
    }

    /// Client requests routed here in the last [`RECENT_ROUNDS`] rounds.
    pub fn recent_requests(&self, round: u64) -> u64 {
        self.recent
            .iter()
            .filter(|(r, _)| *r + RECENT_ROUNDS > round)
            .map(|(_, n)| n)
            .sum()
    }

    /// This partition's live SubDBs: (local id, bytes, frozen).
    pub fn live_subdbs(&self) -> Vec<(SubDbId, u64, bool)> {
        let Some(p) = self.partition() else {
            return vec![];
        };
        p.store()
            .list_subdbs(0, usize::MAX)
            .into_iter()
            .map(|s| (s.id, s.bytes, p.store().is_frozen(s.id)))
            .collect()
    }
}

/// Deterministic canister ids, shaped like the IC's: an 8-byte big-endian counter and
/// `0x01 0x01`.
pub fn canister_id(n: u64) -> Principal {
    let mut b = n.to_be_bytes().to_vec();
    b.extend_from_slice(&[1, 1]);
    Principal::from_slice(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_store::Config;
    use flotilla_types::index::IndexInit;
    use flotilla_types::partition::{Access, CreateLocalArgs, PartitionInit, PutArgs};
    use flotilla_types::OpId;
    use serde_bytes::ByteBuf;

    #[test]
    fn ids_are_distinct_and_stable() {
        assert_eq!(canister_id(3), canister_id(3));
        assert_ne!(canister_id(3), canister_id(4));
        assert_eq!(canister_id(0).as_slice().len(), 10);
    }

    #[test]
    fn upgrade_keeps_stable_state_and_drops_the_heap() {
        let index = canister_id(0);
        let mut c = Canister::new(canister_id(1), 0, 0);
        let p =
            Partition::install(c.memories(), &PartitionInit { index }, Config::default()).unwrap();
        c.logic = Logic::Partition(Box::new(p));
        let owner = Principal::from_slice(&[7; 29]);
        let id = c
            .partition_mut()
            .unwrap()
            .create_subdb_local(
                index,
                &CreateLocalArgs {
                    op_id: OpId::from(vec![1; 16]),
                    access: Access {
                        owner,
                        readers: vec![],
                        writers: vec![],
                    },
                    hard_cap: None,
                    max_bytes: None,
                },
            )
            .unwrap();
        c.partition_mut()
            .unwrap()
            .put(
                owner,
                &PutArgs {
                    subdb: id,
                    key: ByteBuf::from(b"k".to_vec()),
                    value: ByteBuf::from(b"v".to_vec()),
                    op_id: OpId::from(vec![2; 16]),
                },
            )
            .unwrap();
        let before = c.memory_bytes();
        c.upgrade().unwrap();
        assert_eq!(c.upgrades, 1);
        assert_eq!(c.memory_bytes(), before);
        assert_eq!(c.live_subdbs(), vec![(id, 2, false)]);
        assert_eq!(c.partition().unwrap().index(), index);

        let mut e = Canister::new(canister_id(2), 0, 0);
        assert_eq!(e.upgrade(), Err(UpgradeError::Empty));
        let i = Index::install(e.memories(), IndexInit::default());
        e.logic = Logic::Index(Box::new(i));
        e.upgrade().unwrap();
        assert!(e.index().is_some());
    }

    #[test]
    fn recent_requests_window() {
        let mut c = Canister::new(canister_id(1), 0, 0);
        c.note_request(1);
        c.note_request(1);
        c.note_request(5);
        assert_eq!(c.recent_requests(5), 3);
        assert_eq!(c.recent_requests(11), 1);
        c.trim_recent(20);
        assert_eq!(c.recent_requests(20), 0);
        assert_eq!(c.requests, 3);
    }

    #[test]
    fn charging_never_overdraws() {
        let mut c = Canister::new(canister_id(1), 100, 0);
        assert!(c.charge(60));
        assert!(!c.charge(60));
        assert_eq!((c.cycles, c.cycles_spent), (40, 60));
    }
}
