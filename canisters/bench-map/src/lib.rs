//! The benchmark baseline: a bare `StableBTreeMap<Vec<u8>, Vec<u8>>` in one `MemoryManager`
//! region (the layout the partition uses), with get, put, delete and a bounded forward scan.
//! No access control, no op ids, no accounting: what the partition costs on top of this is
//! its overhead (`flotilla-testbed`'s `bench` measures both in one run).

use ic_cdk::{query, update};
use ic_stable_structures::memory_manager::{MemoryId, MemoryManager, VirtualMemory};
use ic_stable_structures::{DefaultMemoryImpl, StableBTreeMap};
use serde_bytes::ByteBuf;
use std::cell::RefCell;

type Mem = VirtualMemory<DefaultMemoryImpl>;

/// Most items one `scan` returns.
const MAX_SCAN: u32 = 1000;

thread_local! {
    static MEMORY: MemoryManager<DefaultMemoryImpl> = MemoryManager::init(DefaultMemoryImpl::default());
    static MAP: RefCell<StableBTreeMap<Vec<u8>, Vec<u8>, Mem>> =
        RefCell::new(StableBTreeMap::init(MEMORY.with(|m| m.get(MemoryId::new(0)))));
}

#[query]
fn get(key: ByteBuf) -> Option<ByteBuf> {
    MAP.with_borrow(|m| m.get(&key.into_vec()).map(ByteBuf::from))
}

/// Inserts or replaces; answers whether the key had a value.
#[update]
fn put(key: ByteBuf, value: ByteBuf) -> bool {
    MAP.with_borrow_mut(|m| m.insert(key.into_vec(), value.into_vec()).is_some())
}

/// Answers whether the key had a value.
#[update]
fn delete(key: ByteBuf) -> bool {
    MAP.with_borrow_mut(|m| m.remove(&key.into_vec()).is_some())
}

/// Up to `limit` (at most 1000) items from `start` on, in key order.
#[query]
fn scan(start: ByteBuf, limit: u32) -> Vec<(ByteBuf, ByteBuf)> {
    MAP.with_borrow(|m| {
        m.range(start.into_vec()..)
            .take(limit.min(MAX_SCAN) as usize)
            .map(|e| {
                let (k, v) = e.into_pair();
                (ByteBuf::from(k), ByteBuf::from(v))
            })
            .collect()
    })
}

#[query]
fn len() -> u64 {
    MAP.with_borrow(|m| m.len())
}

ic_cdk::export_candid!();

#[cfg(test)]
mod tests {
    use candid_parser::utils::{service_equal, CandidSource};

    /// The committed `bench-map.did` is this code's interface
    /// (`FLOTILLA_UPDATE_DID=1 cargo test -p flotilla-bench-map-canister` rewrites it).
    #[test]
    fn committed_did_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/bench-map.did");
        let code = super::__export_service();
        if std::env::var_os("FLOTILLA_UPDATE_DID").is_some() {
            std::fs::write(path, &code).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap();
        if let Err(e) = service_equal(CandidSource::Text(&committed), CandidSource::Text(&code)) {
            panic!("{path} is out of date ({e}). The code's interface:\n{code}");
        }
    }
}
