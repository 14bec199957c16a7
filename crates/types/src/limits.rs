//! Every limit Flotilla enforces, by name. Each one is checked where data enters and reported
//! with a typed error that carries the offending size and the limit.

/// Largest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, in bytes. One item always fits in one reply page and one move chunk.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Most items one scan page returns.
pub const MAX_SCAN_ITEMS: u32 = 10_000;
/// Items per scan page when the caller gives no limit.
pub const DEFAULT_SCAN_ITEMS: u32 = 100;
/// The IC's limit on a request or a replicated reply.
pub const MAX_MESSAGE_BYTES: usize = 2 * 1024 * 1024;
/// Byte budget of one scan page or export chunk: 1.9 MiB, leaving room under
/// [`MAX_MESSAGE_BYTES`] for the Candid envelope.
pub const REPLY_BUDGET_BYTES: usize = MAX_MESSAGE_BYTES * 19 / 20;
/// Bytes each item adds to a reply besides its key and value (Candid length prefixes and
/// record framing, rounded up), counted against the budget.
pub const ITEM_OVERHEAD_BYTES: usize = 16;
/// Bounds of an operation id, in bytes.
pub const OP_ID_MIN_BYTES: usize = 16;
pub const OP_ID_MAX_BYTES: usize = 32;
/// Largest opaque SubDB metadata blob (owner and access lists, kept beside the data).
pub const MAX_SUBDB_META_BYTES: usize = 64 * 1024;

const _: () = assert!(MAX_KEY_BYTES + MAX_VALUE_BYTES + ITEM_OVERHEAD_BYTES < REPLY_BUDGET_BYTES);
/// Smallest chunk budget the partition accepts: the largest item plus its overhead, so every
/// chunk stays within its budget.
pub const MIN_CHUNK_BUDGET_BYTES: usize = MAX_KEY_BYTES + MAX_VALUE_BYTES + ITEM_OVERHEAD_BYTES;
/// Most principals in one SubDB access list (readers or writers).
pub const MAX_ACCESS_PRINCIPALS: usize = 100;
/// Longest outer key (a SubDB's stable name), in bytes.
pub const MAX_OUTER_KEY_BYTES: usize = 256;
/// Most outer keys one batched route query resolves.
pub const MAX_ROUTE_BATCH: usize = 1_000;
/// Most routes one routing-snapshot page returns.
pub const MAX_ROUTES_PAGE: u32 = 10_000;
/// Reply bytes one routing-snapshot page fills at most: a page ends (with its cursor) before
/// its routes, each counted as its outer key, its partition principal and
/// [`ROUTE_OVERHEAD_BYTES`], would pass this. Without it, 10,000 routes of the longest outer
/// key would take about 2.9 MB, over the 2 MiB reply of an update.
pub const ROUTES_REPLY_BUDGET_BYTES: usize = REPLY_BUDGET_BYTES;
/// Partitions the index's `stats` lists (the oldest, in creation order); the rest are paged
/// with `partitions`. With moves, both lists stay under [`STATS_REPLY_BUDGET_BYTES`].
pub const MAX_STATS_PARTITIONS: usize = 1_000;
/// Moves in progress `stats` and `list_moves` list (by outer key).
pub const MAX_STATS_MOVES: usize = 1_000;
/// Most partitions one `partitions` page returns.
pub const MAX_PARTITIONS_PAGE: u32 = 5_000;
/// A bound on one `PartitionInfo` in a reply: the principal, eleven numbers and a module hash,
/// with framing.
pub const PARTITION_INFO_MAX_BYTES: usize = 320;
/// A bound on one `MoveInfo` in a reply: the longest outer key, two principals, the phase
/// name and the numbers, with framing.
pub const MOVE_INFO_MAX_BYTES: usize = MAX_OUTER_KEY_BYTES + 256;
/// Reply bytes the index's `stats` and `partitions` fill at most.
pub const STATS_REPLY_BUDGET_BYTES: usize = REPLY_BUDGET_BYTES;
/// A bound on the fleet upgrade `stats` shows: the partitions in progress (a principal, a step
/// name and a number each) and the failures it lists (a principal, a step name and a message).
pub const FLEET_UPGRADE_INFO_MAX_BYTES: usize = 256
    + MAX_UPGRADE_BATCH as usize * 96
    + MAX_UPGRADE_FAILURES_LISTED * (MAX_UPGRADE_MESSAGE_BYTES + 96);
const _: () = assert!(
    MAX_STATS_PARTITIONS * PARTITION_INFO_MAX_BYTES
        + MAX_STATS_MOVES * MOVE_INFO_MAX_BYTES
        + FLEET_UPGRADE_INFO_MAX_BYTES
        < STATS_REPLY_BUDGET_BYTES / 2
);
const _: () =
    assert!((MAX_PARTITIONS_PAGE as usize) * PARTITION_INFO_MAX_BYTES < STATS_REPLY_BUDGET_BYTES);
/// Bytes a route adds to a page besides its outer key and principal: the Candid framing of
/// the record, the text and principal lengths, the local id (a bound, not the exact size).
pub const ROUTE_OVERHEAD_BYTES: usize = 32;
/// Largest partition wasm module the index stores.
pub const MAX_PARTITION_WASM_BYTES: usize = 100 * 1024 * 1024;
/// Largest piece of a partition wasm upload (one ingress message).
pub const MAX_WASM_UPLOAD_CHUNK_BYTES: usize = 1_900_000;

/// Byte budget of one batched write: the sum of its ops' [`crate::BatchOp::budget_bytes`]
/// (key + value + [`ITEM_OVERHEAD_BYTES`] per op; the overhead bounds each op's Candid
/// framing). 1.9 MiB, leaving room under [`MAX_MESSAGE_BYTES`] for the rest of the argument
/// (SubDB id, op id, Candid header) and the ingress envelope (sender, signature, delegations).
pub const MAX_BATCH_BYTES: usize = MAX_MESSAGE_BYTES * 19 / 20;
/// Most ops in one batched write: bounds the work of one message (each put may also evict
/// an item), which must stay under the instruction limit of an update (not yet measured in
/// wasm; see `docs/store.md`).
pub const MAX_BATCH_OPS: usize = 10_000;
/// Most `(SubDB, key)` pairs one `get_many` query reads.
pub const MAX_GET_MANY_KEYS: usize = 1_000;
/// Bytes each `get_many` result adds to the reply besides its value (Candid framing of the
/// result, and room for the largest error, `Moved` with its principal), counted against
/// [`REPLY_BUDGET_BYTES`].
pub const GET_MANY_RESULT_OVERHEAD_BYTES: usize = 64;

// Any single valid op fits in a batch on its own.
const _: () = assert!(MAX_KEY_BYTES + MAX_VALUE_BYTES + ITEM_OVERHEAD_BYTES <= MAX_BATCH_BYTES);
// A batch outcome's counts are recorded in the op log as 16-bit numbers.
const _: () = assert!(MAX_BATCH_OPS <= u16::MAX as usize);
// A reply of only errors (or absent values) always fits, and so does one largest value.
const _: () = assert!(MAX_GET_MANY_KEYS * GET_MANY_RESULT_OVERHEAD_BYTES < REPLY_BUDGET_BYTES);
const _: () = assert!(GET_MANY_RESULT_OVERHEAD_BYTES + MAX_VALUE_BYTES < REPLY_BUDGET_BYTES);

/// Failed steps after which the index drops a partition-creation job (it then no longer
/// counts toward the spare pool; the next `tick` starts a fresh one if the pool is short).
pub const MAX_JOB_FAILURES: u32 = 10;
/// Largest spare pool the index keeps (a larger `spare_pool_target` at install is lowered to
/// this), so one `tick` starts a bounded number of creation jobs.
pub const MAX_SPARE_POOL_TARGET: u32 = 64;
/// Principals added to or removed from the index's allow-list of creators in one call.
pub const MAX_CREATORS_PER_CALL: usize = 1_000;
/// Most changes a partition's change log holds for the SubDBs it is exporting (moves in
/// progress). Past it, the exporting SubDB stops logging and its export answers
/// `ChangeLogFull`: the index calls the move off rather than let the log grow without end.
/// Bounds the work of dropping the log too (`resume_writes`).
pub const MAX_EXPORT_CHANGES: u64 = 50_000;
/// Partitions a fleet upgrade (`upgrade_partitions`) has in progress at once, at most (the
/// default batch is `DEFAULT_UPGRADE_BATCH`): each is stopped, upgraded and started again while
/// the others serve.
pub const MAX_UPGRADE_BATCH: u32 = 50;
pub const DEFAULT_UPGRADE_BATCH: u32 = 5;
/// Failed calls of one step (stop, install, start, status) after which a fleet upgrade gives
/// up on a partition: it is reported failed, started again on the module it runs, and the
/// upgrade goes on with the others.
pub const MAX_UPGRADE_STEP_FAILURES: u32 = 5;
/// Failed partitions a fleet upgrade lists (`FleetUpgradeInfo::failed`); `failed_total`
/// counts them all.
pub const MAX_UPGRADE_FAILURES_LISTED: usize = 100;
/// Bytes of a failure message a fleet upgrade keeps (a management canister's reject text,
/// e.g. the new module's trap in `post_upgrade`).
pub const MAX_UPGRADE_MESSAGE_BYTES: usize = 300;

/// Consecutive failed calls after which the index calls a move off (before the release) or,
/// for the calls that call it off, gives up on reclaiming the target's partial import.
pub const MAX_MOVE_FAILURES: u32 = 10;

// ---- ingress inspection (`canister_inspect_message`) -------------------------------------

/// Bytes an endpoint's argument may take beyond what its data limits allow (the Candid magic
/// and type table, fixed-size fields, length prefixes), when a canister bounds its ingress
/// arguments before running them. Generous: any encoder's legitimate argument fits, including
/// a type table that names a few extra optional fields.
pub const ARG_OVERHEAD_BYTES: usize = 4 * 1024;
/// Bound of an ingress argument made of fixed-size fields, op ids, principals and at most a
/// few keys or outer keys (`get`, `scan`, `delete`, `set_access`, `create_subdb`, ...).
pub const SMALL_ARG_BYTES: usize = 16 * 1024;
/// Largest principal on the Candid wire: the reference tag, a one-byte length, 29 bytes.
pub const PRINCIPAL_WIRE_BYTES: usize = 1 + 1 + 29;

// The largest fixed-shape arguments fit the small bound: a scan (start, end, cursor), and
// access lists of the largest size (owner, readers, writers) with an op id and an outer key.
const _: () =
    assert!(3 * (MAX_KEY_BYTES + ITEM_OVERHEAD_BYTES) + ARG_OVERHEAD_BYTES <= SMALL_ARG_BYTES);
const _: () = assert!(
    MAX_OUTER_KEY_BYTES
        + OP_ID_MAX_BYTES
        + (2 * MAX_ACCESS_PRINCIPALS + 1) * PRINCIPAL_WIRE_BYTES
        + ARG_OVERHEAD_BYTES
        <= SMALL_ARG_BYTES
);
