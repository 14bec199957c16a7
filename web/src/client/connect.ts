// Making the agent: one code path for mainnet, a local replica and `flotilla demo`.
//
// - Mainnet: the agent's built-in root key, nothing fetched; query signatures verified.
// - A local replica: the root key is fetched from its status endpoint (the agent trusts the
//   endpoint it talks to, as every local setup does); query signatures verified.
// - The demo (`impl_version` starting with `flotilla-demo`): as a local replica, but query
//   signature verification off — the demo has no nodes and so no node keys to sign query
//   replies with (`docs/endpoint.md`). Updates stay certified and verified.

import { HttpAgent, type Identity } from "@icp-sdk/core/agent";
import { Flotilla, type PrincipalLike } from "./flotilla.ts";
import type { Policy } from "./policy.ts";

/** What the demo's status endpoint names itself, at the start of `impl_version`. */
export const DEMO_IMPL_VERSION_PREFIX = "flotilla-demo";

/** Hosts of the IC mainnet's boundary (as the Rust client's `Network::parse`). */
export const MAINNET_DOMAINS = ["icp-api.io", "ic0.app", "icp0.io"];

/** Whether `host` is a mainnet boundary (any subdomain of `MAINNET_DOMAINS`). */
export function isMainnetHost(host: string): boolean {
  let name: string;
  try {
    name = new URL(host).hostname;
  } catch {
    return false;
  }
  return MAINNET_DOMAINS.some((d) => name === d || name.endsWith(`.${d}`));
}

export interface AgentSetup {
  /** `https://icp-api.io` for mainnet, `http://127.0.0.1:8000` for icp-cli's local network,
   * the demo's address, or `window.location.origin`. */
  host: string;
  /** The caller; anonymous if unset. */
  identity?: Identity;
  /** Not mainnet: fetch the root key from the host (never do this on mainnet). */
  local: boolean;
}

export interface AgentInfo {
  agent: HttpAgent;
  /** The host is `flotilla demo` (query signatures are not verified). */
  demo: boolean;
  /** The status endpoint's `impl_version`, when it was read. */
  implVersion?: string;
}

/** An HttpAgent set up for the host (see the top of this file). */
export async function createAgent(setup: AgentSetup): Promise<AgentInfo> {
  const { host, identity, local } = setup;
  if (!local) {
    return { agent: await HttpAgent.create({ host, identity }), demo: false };
  }
  const probe = await HttpAgent.create({ host, identity, shouldFetchRootKey: true });
  const status = (await probe.status()) as { impl_version?: unknown };
  const implVersion = typeof status.impl_version === "string" ? status.impl_version : undefined;
  const demo = implVersion?.startsWith(DEMO_IMPL_VERSION_PREFIX) ?? false;
  if (!demo) return { agent: probe, demo, implVersion };
  const agent = await HttpAgent.create({
    host,
    identity,
    rootKey: probe.rootKey ?? undefined,
    shouldFetchRootKey: probe.rootKey === null,
    verifyQuerySignatures: false,
  });
  return { agent, demo, implVersion };
}

export interface ConnectOptions extends AgentSetup {
  indexId: PrincipalLike;
  policy?: Partial<Policy>;
}

/** A client for the index at `indexId` on `host` (see `createAgent`). */
export async function connect(opts: ConnectOptions): Promise<Flotilla> {
  const { agent } = await createAgent(opts);
  return new Flotilla({ agent, indexId: opts.indexId, policy: opts.policy });
}
