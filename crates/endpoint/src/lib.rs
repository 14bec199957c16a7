//! The Internet Computer's HTTP interface in front of a [`server::Backend`], so that real agents
//! (ic-agent, `@icp-sdk/core`) talk to it exactly as to a replica: `flotilla demo` serves its
//! simulated deployment through it.
//!
//! - [`auth`]: requests authenticated as the IC does it (signatures, delegations, expiry).
//! - [`certify`]: certificates signed with a BLS12-381 root key, served by the status endpoint.
//! - [`server`]: the axum routes (`status`, `query`, `call` v2/v3/v4, `read_state`), replayed
//!   requests answered from their recorded status.
//!
//! What differs from a replica: query replies carry no node signatures (agents must turn query
//! signature verification off), certificates carry no subnet delegation (the endpoint speaks
//! as the root subnet), and `read_state` serves `time` and `request_status` only.

pub mod auth;
pub mod certify;
pub mod server;

pub use certify::RootKey;
pub use server::{router, Answer, Backend, Kind, Reject};
