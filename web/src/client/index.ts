// Flotilla's TypeScript client. See `flotilla.ts` for the routing policy.
//
//   const client = await connect({ host, identity, indexId, local: true });
//   await client.create("notes");
//   await client.put("notes", "2026-12-07", "hello");
//   const v = await client.get("notes", "2026-12-07"); // Uint8Array | null

export {
  Flotilla,
  type AccessLists,
  type CreateOptions,
  type Entry,
  type FlotillaOptions,
  type GetResult,
  type IndexStats,
  type InnerKey,
  type PrincipalLike,
  type PutOutcome,
  type RouteListener,
  type RoutesPage,
  type ScanOptions,
  type ScanPageOptions,
  type ScanPageResult,
} from "./flotilla.ts";
export { FlotillaError, type FlotillaErrorKind, type CanisterErrorKind, type ClientErrorKind } from "./errors.ts";
export {
  BASE_BACKOFF_MS,
  DEFAULT_POLICY,
  DEFAULT_SCAN_ITEMS,
  MAX_ATTEMPTS,
  MAX_BACKOFF_MS,
  MAX_GET_MANY_KEYS,
  MAX_REDIRECTS,
  MAX_ROUTE_BATCH,
  MAX_SCAN_ITEMS,
  OP_ID_BYTES,
  backoffMs,
  classifyFailure,
  type CallFailure,
  type Policy,
} from "./policy.ts";
export { connect, createAgent, isMainnetHost, DEMO_IMPL_VERSION_PREFIX, MAINNET_DOMAINS, type AgentInfo, type AgentSetup, type ConnectOptions } from "./connect.ts";
export { bytesEqual, compareBytes, fromHex, randomBytes, toBytes, toHex, toText, type BytesLike } from "./bytes.ts";
