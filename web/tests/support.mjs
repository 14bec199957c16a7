// Test support: start `flotilla demo` on a free port and bundle the TypeScript sources for
// node (node 20 cannot import .ts itself).

import { spawn } from "node:child_process";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import * as esbuild from "esbuild";

export const WEB = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** The demo binary: $FLOTILLA_BIN, else ../target/release/flotilla. */
export function demoBinary() {
  const bin = process.env.FLOTILLA_BIN ?? join(WEB, "..", "target", "release", "flotilla");
  if (!existsSync(bin)) {
    throw new Error(`no demo binary at ${bin}: run \`cargo build --release -p flotilla-cli\` or set FLOTILLA_BIN`);
  }
  return bin;
}

/**
 * Starts `flotilla demo --listen 127.0.0.1:0` with `args` and waits (up to `timeoutMs`: the
 * report runs first) until it serves. Returns `{ url, index, stop, output }`.
 */
export async function startDemo({ args = ["--ops", "500"], timeoutMs = 180_000 } = {}) {
  const child = spawn(demoBinary(), ["demo", "--listen", "127.0.0.1:0", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stderr.on("data", (d) => (err += d));
  const ready = new Promise((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error(`the demo did not serve within ${timeoutMs} ms:\n${out}\n${err}`)), timeoutMs);
    child.stdout.on("data", (d) => {
      out += d;
      const url = /Serving the IC HTTP interface at (http:\/\/[0-9.:]+)/.exec(out);
      const index = /index canister\s+([a-z0-9-]+)/.exec(out);
      if (url && index) {
        clearTimeout(timer);
        resolveReady({ url: url[1], index: index[1] });
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the demo exited (${code}) before serving:\n${out}\n${err}`));
    });
  });
  let found;
  try {
    found = await ready;
  } catch (e) {
    child.kill("SIGKILL");
    throw e;
  }
  const stop = () =>
    new Promise((done) => {
      if (child.exitCode !== null || child.signalCode !== null) return done();
      child.once("exit", () => done());
      child.kill("SIGTERM");
      setTimeout(() => child.kill("SIGKILL"), 3_000).unref();
    });
  return { ...found, stop, output: () => out, pid: child.pid };
}

/**
 * Bundles TypeScript entries (relative to web/) into web/.test-build/ as ESM for node, with
 * shared modules split out (one FlotillaError class for all), and imports them in order.
 */
export async function importTs(...entries) {
  // One folder per test process: node --test may run files in parallel.
  const outdir = join(WEB, ".test-build", String(process.pid));
  rmSync(outdir, { recursive: true, force: true });
  mkdirSync(outdir, { recursive: true });
  process.once("exit", () => rmSync(outdir, { recursive: true, force: true }));
  const names = entries.map((e) => e.replace(/\.ts$/, "").replace(/[/\\]/g, "_"));
  await esbuild.build({
    entryPoints: Object.fromEntries(entries.map((e, i) => [names[i], join(WEB, e)])),
    bundle: true,
    splitting: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    outdir,
    outExtension: { ".js": ".mjs" },
    logLevel: "error",
  });
  return Promise.all(names.map((n) => import(pathToFileURL(join(outdir, `${n}.mjs`)).href)));
}
