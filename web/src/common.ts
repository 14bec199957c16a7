// What the dashboard and the notes app share: the page's configuration, DOM helpers and
// formatting.

import type { Principal } from "@icp-sdk/core/principal";
import { isMainnetHost } from "./client/index.ts";

/** `GET /flotilla/config` of the host that served the page. */
export interface PageConfig {
  /** The index canister id. */
  index: string;
  /** The host is `flotilla demo` (its observer and demo controls exist). */
  demo: boolean;
}

export async function loadConfig(): Promise<PageConfig> {
  const r = await fetch("/flotilla/config", { cache: "no-store" });
  if (!r.ok) throw new Error(`GET /flotilla/config: HTTP ${r.status}`);
  const c = (await r.json()) as Partial<PageConfig>;
  if (typeof c.index !== "string" || c.index === "") throw new Error("GET /flotilla/config: no index id");
  return { index: c.index, demo: c.demo === true };
}

/** The agent's host: the origin that served the page. Off mainnet the root key is fetched. */
export function hostSetup(): { host: string; local: boolean } {
  const host = window.location.origin;
  return { host, local: !isMainnetHost(host) };
}

type Attrs = Record<string, string | number | boolean | undefined | null | ((e: Event) => void)>;
type Child = Node | string | number | null | undefined | false;

/** A DOM element: `h("div", { class: "x", "data-testid": "y", onclick: f }, "text", child)`. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.replace(/^on/, ""), v as EventListener);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === "number" ? String(c) : c);
  }
  return el;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`no element #${id}`);
  return el as T;
}

/** Sets an element's text only when it changed (no needless layout). */
export function setText(el: Element, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

export function formatBytes(n: number | bigint): string {
  let v = Number(n);
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${UNITS[u]}`;
}

export function formatCount(n: number | bigint): string {
  return Number(n).toLocaleString("en-US");
}

/** Cycles in the IC's units: `1.52 T`, `480 B` (billion), `3.1 M`. */
export function formatCycles(n: number | bigint): string {
  const v = Number(n);
  for (const [unit, size] of [["T", 1e12], ["B", 1e9], ["M", 1e6]] as const) {
    if (v >= size) return `${(v / size).toFixed(v >= 100 * size ? 0 : 2)} ${unit}`;
  }
  return String(v);
}

/** The first group of a principal's text, enough to tell canisters apart: `rrkah…`. */
export function shortPrincipal(p: Principal | string): string {
  const t = typeof p === "string" ? p : p.toText();
  const dash = t.indexOf("-");
  return dash > 0 && t.length > 12 ? `${t.slice(0, dash)}…` : t;
}

export function principalText(p: Principal | string): string {
  return typeof p === "string" ? p : p.toText();
}
