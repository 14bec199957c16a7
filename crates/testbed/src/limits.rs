//! Every limit the testbed enforces, named. Figures follow the IC interface specification and
//! the replica's published limits where those exist; the others are the testbed's own and say
//! so.

/// Instructions one update call, timer or response callback may execute (IC: 40 B).
pub const UPDATE_INSTRUCTIONS: u64 = 40_000_000_000;
/// Instructions one query may execute (IC: 5 B).
pub const QUERY_INSTRUCTIONS: u64 = 5_000_000_000;
/// Instructions an install, reinstall or upgrade may execute, `pre_upgrade` and
/// `post_upgrade` together (IC: 300 B).
pub const INSTALL_INSTRUCTIONS: u64 = 300_000_000_000;
/// Payload of an ingress message or an inter-canister request, and of a reply (IC: 2 MiB).
pub const MAX_PAYLOAD_BYTES: usize = 2 * 1024 * 1024;
/// Size of one chunk in a canister's chunk store (IC: 1 MiB).
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;
/// Chunks one canister's chunk store holds (IC: 100).
pub const MAX_CHUNKS: usize = 100;
/// A wasm module, decompressed (IC: 100 MiB).
pub const MAX_WASM_BYTES: usize = 100 * 1024 * 1024;
/// Stable memory one canister may grow to. The IC allows 500 GiB; the testbed keeps stable
/// memory in RAM, so it stops at 4 GiB (testbed's own).
pub const MAX_STABLE_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Length of one `debug_print` line kept in the log (testbed's own).
pub const MAX_DEBUG_PRINT_BYTES: usize = 16 * 1024;
/// Rounds [`crate::Testbed::await_ingress`] waits for a message to finish before it gives up
/// (testbed's own).
pub const MAX_AWAIT_ROUNDS: u32 = 10_000;
/// Native stack a wasm call may use (the replica's figure: 5 MiB).
pub const MAX_WASM_STACK_BYTES: usize = 5 * 1024 * 1024;

/// Bytes of one wasm (and stable memory) page.
pub const WASM_PAGE_BYTES: u64 = 65_536;
/// Granularity of the stable-memory undo journal (the IC's OS page).
pub const JOURNAL_PAGE_BYTES: u64 = 4096;

/// Instructions charged for one System API call on top of the wasm instructions (the
/// replica charges a fixed overhead per call; the testbed charges this flat figure).
pub const SYSTEM_API_CALL_INSTRUCTIONS: u64 = 20;
/// Extra instructions charged for `call_perform` (the replica's figure is of this order).
pub const CALL_PERFORM_INSTRUCTIONS: u64 = 5_000;
/// Extra instructions charged for one `stable64_grow`.
pub const STABLE_GROW_INSTRUCTIONS: u64 = 100;
/// Instructions charged per byte copied between the canister and the system
/// (argument, reply, stable memory, call data): one.
pub const INSTRUCTIONS_PER_BYTE: u64 = 1;

/// What `cost_call` answers for a call: this base fee plus [`CALL_BYTE_FEE_CYCLES`] per byte
/// of method name and payload (the IC's fees on a 13-node subnet). The testbed charges no
/// cycles for calls; canisters only ask.
pub const CALL_FEE_CYCLES: u128 = 260_000;
/// See [`CALL_FEE_CYCLES`].
pub const CALL_BYTE_FEE_CYCLES: u128 = 1_000;
