// Typed errors of the Flotilla client.
//
// Every Candid error variant a canister can answer keeps its name as the error's `kind`
// (`NotAuthorized`, `ValueTooLarge`, `OuterKeyTaken`, ...); the client adds its own kinds for
// what happens around the call (`UnknownOuterKey`, `GaveUp`, `Rejected`, ...). An index error
// that wraps a partition's (`Partition: CreateSubDbError`) is flattened to the inner kind.

/** The Candid error variants of the index and partition methods the client calls. */
export type CanisterErrorKind =
  // partition
  | "UnknownSubDb"
  | "NotAuthorized"
  | "KeyTooLarge"
  | "ValueTooLarge"
  | "WritesPaused"
  | "InvalidOpId"
  | "Moved"
  | "OpIdConflict"
  | "LimitTooLarge"
  | "InvalidRange"
  | "InvalidCursor"
  | "ZeroLimit"
  | "AnonymousWriter"
  | "TooManyPrincipals"
  | "TooManyKeys"
  | "EmptyBatch"
  | "TooManyOps"
  | "BatchTooLarge"
  | "MetaTooLarge"
  | "InvalidHardCap"
  | "QuotaExceeded"
  // index
  | "InvalidOuterKey"
  | "NoPartitionWasm"
  | "NoCapacity"
  | "InProgress"
  | "PartitionUnavailable"
  | "OuterKeyTaken"
  | "UnknownOuterKey"
  | "TooMany";

/** What the client itself reports. */
export type ClientErrorKind =
  /** Transient failures lasted past the retry budget; a write may or may not have applied. */
  | "GaveUp"
  /** The call was rejected in a way retrying cannot fix (a fatal reject, a certificate that
   * does not verify, a 4xx from the boundary). */
  | "Rejected"
  /** `Moved` answers kept pointing elsewhere. */
  | "TooManyRedirects"
  /** A reply that is not what the method returns. */
  | "BadReply"
  /** An argument the client refuses before any call (a malformed principal, ...). */
  | "InvalidArgument";

export type FlotillaErrorKind = CanisterErrorKind | ClientErrorKind;

export interface FlotillaErrorInit {
  kind: FlotillaErrorKind;
  /** The canister method, e.g. `put`. */
  method?: string;
  /** The SubDB's outer key, when the call named one. */
  outerKey?: string;
  /** The variant's payload (`{len, max}` of a limit, `{to}` of a move, ...). */
  detail?: unknown;
  /** Sends made before giving up (GaveUp). */
  attempts?: number;
  /** The error was answered by a partition through the index (`Partition: ...`). */
  viaIndex?: boolean;
  /** Free text appended to the message (the last transient failure, a reject message). */
  reason?: string;
  cause?: unknown;
}

function describe(kind: FlotillaErrorKind, detail: unknown): string {
  const d = (detail ?? {}) as Record<string, unknown>;
  const lenMax = () => (d.len !== undefined ? ` (${d.len} bytes, at most ${d.max})` : "");
  switch (kind) {
    case "NotAuthorized":
      return "not authorized: the caller may not do this on this SubDB";
    case "UnknownSubDb":
      // A partition answers a caller who may not read a SubDB exactly as for an absent one.
      return "no SubDB here that the caller may read (deleted, never there, or not shared with the caller)";
    case "UnknownOuterKey":
      return "no SubDB has this name";
    case "KeyTooLarge":
      return `key too large${lenMax()}`;
    case "ValueTooLarge":
      return `value too large${lenMax()}`;
    case "WritesPaused":
      return "writes are paused for a move's cutover";
    case "InvalidOpId":
      return `invalid op id (${d.len} bytes; 16 to 32 expected)`;
    case "Moved":
      return "the SubDB moved";
    case "OpIdConflict":
      return "the op id was already used with other arguments";
    case "LimitTooLarge":
      return `scan limit too large (${d.requested}, at most ${d.max})`;
    case "InvalidRange":
      return "invalid scan range (start after end)";
    case "InvalidCursor":
      return "invalid scan cursor";
    case "ZeroLimit":
      return "a scan limit must be at least 1";
    case "AnonymousWriter":
      return "the anonymous principal cannot be a writer";
    case "TooManyPrincipals":
      return `too many principals (${d.len}, at most ${d.max})`;
    case "TooManyKeys":
      return `too many keys in one get_many (${d.len}, at most ${d.max})`;
    case "EmptyBatch":
      return "empty batch";
    case "TooManyOps":
      return `too many ops in one batch (${d.len}, at most ${d.max})`;
    case "BatchTooLarge":
      return `batch too large (${d.bytes} bytes, at most ${d.max})`;
    case "MetaTooLarge":
      return `access lists too large${lenMax()}`;
    case "InvalidHardCap":
      return "invalid hard cap (must be at least 1)";
    case "QuotaExceeded":
      return `the write would take the SubDB past its byte quota (${d.max_bytes} bytes)`;
    case "InvalidOuterKey":
      return `invalid SubDB name (${d.len} bytes; 1 to ${d.max} expected)`;
    case "NoPartitionWasm":
      return "the index has no partition wasm yet";
    case "NoCapacity":
      return "no partition has room right now";
    case "InProgress":
      return "the same operation is still in progress";
    case "PartitionUnavailable":
      return `partition unavailable${d.reason ? `: ${d.reason}` : ""}`;
    case "OuterKeyTaken":
      return "a SubDB with this name already exists";
    case "TooMany":
      return `too many names in one route query (${d.len}, at most ${d.max})`;
    case "GaveUp":
      return "gave up after repeated transient failures (a write may have applied; retrying it is safe)";
    case "Rejected":
      return "the call was rejected";
    case "TooManyRedirects":
      return "the SubDB kept moving during the call";
    case "BadReply":
      return "the reply does not decode";
    case "InvalidArgument":
      return "invalid argument";
  }
}

/** Every failure of a Flotilla client call. Test `kind` (or `isNotAuthorized`). */
export class FlotillaError extends Error {
  readonly kind: FlotillaErrorKind;
  readonly method?: string;
  readonly outerKey?: string;
  readonly detail?: unknown;
  readonly attempts?: number;
  readonly viaIndex: boolean;

  constructor(init: FlotillaErrorInit) {
    const where = [init.method, init.outerKey !== undefined ? JSON.stringify(init.outerKey) : undefined]
      .filter(Boolean)
      .join(" ");
    let msg = describe(init.kind, init.detail);
    if (init.attempts !== undefined) msg += ` after ${init.attempts} attempts`;
    if (init.reason) msg += `: ${init.reason}`;
    super(where ? `${where}: ${msg}` : msg, init.cause !== undefined ? { cause: init.cause } : undefined);
    this.name = "FlotillaError";
    this.kind = init.kind;
    this.method = init.method;
    this.outerKey = init.outerKey;
    this.detail = init.detail;
    this.attempts = init.attempts;
    this.viaIndex = init.viaIndex ?? false;
  }

  /** The caller may not do this (on a partition, or at the index). */
  get isNotAuthorized(): boolean {
    return this.kind === "NotAuthorized";
  }

  /** Whether `e` is a FlotillaError, optionally of one of `kinds`. */
  static is(e: unknown, ...kinds: FlotillaErrorKind[]): e is FlotillaError {
    return e instanceof FlotillaError && (kinds.length === 0 || kinds.includes(e.kind));
  }
}
