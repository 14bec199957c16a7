// The retry and redirect policy, the same as the Rust client's (`crates/client/src/core.rs`),
// and the classification of a failed call.

/** Sends of one operation, route queries to the index included, before it gives up. */
export const MAX_ATTEMPTS = 12;
/** `Moved` hops one operation follows before asking the index for the current home. */
export const MAX_REDIRECTS = 8;
/** The smallest wait before a retry, in milliseconds. */
export const BASE_BACKOFF_MS = 200;
/** The largest spread of a retry's wait, in milliseconds. */
export const MAX_BACKOFF_MS = 5_000;

/** Names per `route` query to the index (`limits::MAX_ROUTE_BATCH`). */
export const MAX_ROUTE_BATCH = 1_000;
/** Pairs per `get_many` query to a partition (`limits::MAX_GET_MANY_KEYS`). */
export const MAX_GET_MANY_KEYS = 1_000;
/** Items per scan page when none is asked (`limits::DEFAULT_SCAN_ITEMS`). */
export const DEFAULT_SCAN_ITEMS = 100;
/** Most items one scan page may be asked for (`limits::MAX_SCAN_ITEMS`). */
export const MAX_SCAN_ITEMS = 10_000;
/** Bytes of a fresh op id. */
export const OP_ID_BYTES = 16;

export interface Policy {
  /** Sends of one operation, first one included (route queries count), before `GaveUp`. */
  maxAttempts: number;
  /** `Moved` hops followed before the index is asked; as many again end in `TooManyRedirects`. */
  maxRedirects: number;
  baseBackoffMs: number;
  maxBackoffMs: number;
}

export const DEFAULT_POLICY: Readonly<Policy> = Object.freeze({
  maxAttempts: MAX_ATTEMPTS,
  maxRedirects: MAX_REDIRECTS,
  baseBackoffMs: BASE_BACKOFF_MS,
  maxBackoffMs: MAX_BACKOFF_MS,
});

/** The wait before retry number `attempt` (1 for the first): base + jitter mod min(base × 2^attempt, max). */
export function backoffMs(policy: Policy, attempt: number, jitter: number): number {
  const base = policy.baseBackoffMs;
  const cap = Math.max(1, Math.min(base * 2 ** Math.min(attempt, 16), policy.maxBackoffMs));
  return base + (jitter % cap);
}

/** A call that brought no reply from the method. */
export interface CallFailure {
  /** Worth trying again with the same arguments (and so the same op id). */
  retryable: boolean;
  message: string;
  /** The IC reject code (1 SysFatal … 6 SysUnknown), when the call was rejected. */
  rejectCode?: number;
  /** The HTTP status, when the boundary answered with an error status. */
  httpStatus?: number;
}

/**
 * Classifies what an agent call threw, as the Rust client's agent transport does: a reject is
 * retried unless it is fatal, an invalid destination or a canister's explicit reject; no
 * answer at all (network, timeout) is retried; HTTP 429 and 5xx are retried; anything else (a
 * certificate that does not verify, a reply that does not parse, another 4xx) is final.
 */
export function classifyFailure(e: unknown): CallFailure {
  const err = e as { message?: unknown; cause?: { code?: unknown; kind?: unknown } } | null;
  const message = err && typeof err.message === "string" ? err.message : String(e);
  const code = err?.cause?.code as
    | { rejectCode?: unknown; status?: unknown; name?: unknown; toErrorMessage?: () => string }
    | undefined;
  const kind = err?.cause?.kind;
  if (code === undefined || kind === undefined) {
    // Not an AgentError: a failure of the client's own code or of decoding.
    return { retryable: false, message };
  }
  const short = typeof code.toErrorMessage === "function" ? code.toErrorMessage() : message;
  if (typeof code.rejectCode === "number") {
    const rc = code.rejectCode;
    return { retryable: rc !== 1 && rc !== 3 && rc !== 4, message: short, rejectCode: rc };
  }
  if (typeof code.status === "number") {
    const s = code.status;
    return { retryable: s === 429 || s >= 500, message: short, httpStatus: s };
  }
  if (kind === "Transport") return { retryable: true, message: short };
  if (code.name === "TimeoutWaitingForResponseErrorCode") return { retryable: true, message: short };
  return { retryable: false, message: short };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
