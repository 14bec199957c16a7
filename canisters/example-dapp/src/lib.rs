//! An example dapp canister that keeps its data in Flotilla: it holds one
//! `flotilla_client::Client` over the client's ic-cdk transport, and every read or write it
//! serves is one inter-canister call from this canister straight to the partition that holds
//! the SubDB (the index is asked only to create a SubDB or when a route is unknown).
//!
//! The SubDBs it creates are owned by this canister; its own callers are not checked here (a
//! real dapp authorizes them before it reads or writes on their behalf).
//!
//! `calls` answers the inter-canister calls made so far, per canister and method, so a test
//! can see that a cached read is one call to one partition.

use candid::{CandidType, Deserialize, Principal};
use flotilla_client::cdk::CdkTransport;
use flotilla_client::counting::Counting;
use flotilla_client::{Client, CreateOptions};
use ic_cdk::{init, post_upgrade, query, update};
use serde_bytes::ByteBuf;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

type FlotillaClient = Client<Counting<CdkTransport>>;

thread_local! {
    static INDEX: Cell<Option<Principal>> = const { Cell::new(None) };
    static CLIENT: RefCell<Option<Rc<FlotillaClient>>> = const { RefCell::new(None) };
}

/// What went wrong, per operation: the client's final error, in words.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum DappError {
    /// The management canister's `raw_rand` (the op id seed) failed; try again.
    Seed(String),
    /// Flotilla refused the operation or could not be reached.
    Flotilla(String),
}

/// One row of [`calls`].
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CallCount {
    pub canister: Principal,
    pub method: String,
    pub count: u64,
}

#[init]
fn init(index: Principal) {
    INDEX.set(Some(index));
}

#[post_upgrade]
fn post_upgrade(index: Principal) {
    INDEX.set(Some(index));
}

/// The client, made on first use (its op ids are seeded by `raw_rand`).
async fn client() -> Result<Rc<FlotillaClient>, DappError> {
    if let Some(c) = CLIENT.with_borrow(|c| c.clone()) {
        return Ok(c);
    }
    let index = INDEX.get().expect("init sets the index");
    let transport = CdkTransport::from_raw_rand()
        .await
        .map_err(|e| DappError::Seed(e.to_string()))?;
    let fresh = Rc::new(Client::new(Counting::new(transport), index));
    // Two first calls may race through the await above: keep the first client made.
    Ok(CLIENT.with_borrow_mut(|slot| slot.get_or_insert(fresh).clone()))
}

fn flotilla<E: std::fmt::Display>(e: E) -> DappError {
    DappError::Flotilla(e.to_string())
}

/// Creates a SubDB owned by this canister.
#[update]
async fn create(outer: String) -> Result<(), DappError> {
    client()
        .await?
        .create_subdb(&outer, CreateOptions::default())
        .await
        .map(|_| ())
        .map_err(flotilla)
}

#[update]
async fn put(outer: String, key: ByteBuf, value: ByteBuf) -> Result<(), DappError> {
    client()
        .await?
        .put(&outer, &key, &value)
        .await
        .map(|_| ())
        .map_err(flotilla)
}

#[update]
async fn get(outer: String, key: ByteBuf) -> Result<Option<ByteBuf>, DappError> {
    client()
        .await?
        .get(&outer, &key)
        .await
        .map(|v| v.map(ByteBuf::from))
        .map_err(flotilla)
}

/// Inter-canister calls made by the client so far.
#[query]
fn calls() -> Vec<CallCount> {
    CLIENT.with_borrow(|c| match c {
        None => vec![],
        Some(c) => c
            .transport()
            .counts()
            .into_iter()
            .map(|((canister, method), count)| CallCount {
                canister,
                method,
                count,
            })
            .collect(),
    })
}

ic_cdk::export_candid!();

#[cfg(test)]
mod tests {
    use candid_parser::utils::{service_equal, CandidSource};

    #[test]
    fn committed_did_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/example-dapp.did");
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
