// The TypeScript client against a running `flotilla demo` (real HTTP, real agent, the IC's
// interface): node --test tests/client.test.mjs (after `npm run bindgen`; the demo binary
// from ../target/release/flotilla or $FLOTILLA_BIN).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { HttpAgent, AnonymousIdentity, TransportError, HttpFetchErrorCode } from "@icp-sdk/core/agent";
import { Ed25519KeyIdentity } from "@icp-sdk/core/identity";
import { importTs, startDemo } from "./support.mjs";

const [F] = await importTs("src/client/index.ts");
const { Flotilla, FlotillaError, connect, toBytes, toText, MAX_ATTEMPTS } = F;

let demo;
const run = Date.now().toString(36);

/** A client for `identity` against the demo, made as every page and app makes it. */
async function clientFor(identity, policy) {
  return connect({ host: demo.url, identity, indexId: demo.index, local: true, policy });
}

/** `fn` must throw a FlotillaError of `kind`. */
async function rejects(fn, kind) {
  await assert.rejects(fn, (e) => {
    assert.ok(e instanceof FlotillaError, `expected a FlotillaError, got ${e}`);
    assert.equal(e.kind, kind, e.message);
    return true;
  });
}

/** An agent whose next `n` calls of `method` (update or query) fail with a transport error
 * after (`afterSend`) or before the request reached the demo. */
function flakyAgent(agent, method, { n = 1, afterSend = true } = {}) {
  let left = n;
  const seen = [];
  const lost = () => TransportError.fromCode(new HttpFetchErrorCode(new Error("connection reset (test)")));
  const wrap = (name) => async (canisterId, fields, ...rest) => {
    if (fields.methodName === method) seen.push(fields.arg);
    if (fields.methodName === method && left > 0) {
      left--;
      if (afterSend) await agent[name](canisterId, fields, ...rest);
      throw lost();
    }
    return agent[name](canisterId, fields, ...rest);
  };
  const proxy = new Proxy(agent, {
    get(target, prop) {
      if (prop === "update" || prop === "query") return wrap(prop);
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  return { agent: proxy, seen };
}

before(async () => {
  demo = await startDemo();
});

after(async () => {
  await demo?.stop();
});

describe("the TypeScript client against the demo", () => {
  const alice = Ed25519KeyIdentity.generate();
  const bob = Ed25519KeyIdentity.generate();
  let a;
  let b;
  let anon;
  const notes = `notes/${run}`;
  const other = `other/${run}`;

  before(async () => {
    a = await clientFor(alice);
    b = await clientFor(bob);
    anon = await clientFor(new AnonymousIdentity());
  });

  test("create caches the route; the same name again is OuterKeyTaken", async () => {
    const inner = await a.create(notes);
    assert.equal(typeof inner.subdb, "number");
    assert.equal(a.cachedRoute(notes).partition.toText(), inner.partition.toText());
    const fresh = await b.route(notes);
    assert.equal(fresh.partition.toText(), inner.partition.toText());
    assert.equal(fresh.subdb, inner.subdb);
    await rejects(() => b.create(notes), "OuterKeyTaken");
    await a.create(other, { hardCap: 1000 });
  });

  test("put, get, has, delete", async () => {
    const first = await a.put(notes, "k1", "v1");
    assert.equal(first.replaced, false);
    const second = await a.put(notes, "k1", "v1b");
    assert.equal(second.replaced, true);
    assert.equal(toText(await a.get(notes, "k1")), "v1b");
    assert.equal(await a.get(notes, "missing"), null);
    assert.equal(await a.has(notes, "k1"), true);
    assert.equal(await a.has(notes, "missing"), false);
    assert.equal(await a.delete(notes, "k1"), true);
    assert.equal(await a.delete(notes, "k1"), false);
    assert.equal(await a.get(notes, "k1"), null);
    // Bytes in, bytes out.
    const key = new Uint8Array([0, 255, 1, 128]);
    const value = new Uint8Array([9, 8, 7, 0, 6]);
    await a.put(notes, key, value);
    assert.deepEqual(await a.get(notes, key), value);
    await a.delete(notes, key);
  });

  test("limits are typed errors", async () => {
    await rejects(() => a.put(notes, "x".repeat(1025), "v"), "KeyTooLarge");
    await rejects(() => a.scanPage(notes, { limit: 0 }), "ZeroLimit");
    await rejects(() => a.scanPage(notes, { from: "b", to: "a" }), "InvalidRange");
    await rejects(() => a.create(""), "InvalidOuterKey");
  });

  test("scan pages forward and in reverse with cursors; the generator follows them", async () => {
    const keys = Array.from({ length: 25 }, (_, i) => `item-${String(i).padStart(3, "0")}`);
    for (const k of keys) await a.put(notes, k, `value of ${k}`);
    // Forward, 10 per page: 10, 10, 5, then no cursor.
    const seen = [];
    let cursor = null;
    let pages = 0;
    do {
      const page = await a.scanPage(notes, { limit: 10, cursor });
      pages++;
      seen.push(...page.entries.map((e) => toText(e.key)));
      for (const e of page.entries) assert.equal(toText(e.value), `value of ${toText(e.key)}`);
      cursor = page.next;
    } while (cursor !== null);
    assert.deepEqual(seen, keys);
    assert.ok(pages >= 3, `pages ${pages}`);
    // Reverse, 10 per page: newest (largest) first, no gaps, no repeats.
    const rev = [];
    cursor = null;
    do {
      const page = await a.scanPage(notes, { reverse: true, limit: 10, cursor });
      rev.push(...page.entries.map((e) => toText(e.key)));
      cursor = page.next;
    } while (cursor !== null);
    assert.deepEqual(rev, [...keys].reverse());
    // The async generator across pages of 7, reverse, with a total limit.
    const gen = [];
    for await (const e of a.scan(notes, { reverse: true, page: 7, limit: 20 })) gen.push(toText(e.key));
    assert.deepEqual(gen, [...keys].reverse().slice(0, 20));
    // A range [from, to).
    const range = [];
    for await (const e of a.scan(notes, { from: "item-005", to: "item-012", page: 3 })) range.push(toText(e.key));
    assert.deepEqual(range, keys.slice(5, 12));
  });

  test("getMany groups by partition, reports each pair's own answer", async () => {
    await a.put(other, "o1", "one");
    await a.put(other, "o2", "two");
    const fresh = await clientFor(alice); // empty route cache: routes come from one index query
    const results = await fresh.getMany([
      [notes, "item-000"],
      [other, "o1"],
      [notes, "nope"],
      [other, "o2"],
      [`absent/${run}`, "k"],
      [notes, "item-024"],
    ]);
    assert.equal(results.length, 6);
    assert.deepEqual(
      results.slice(0, 4).map((r) => (r.ok ? (r.value ? toText(r.value) : null) : r.error.kind)),
      ["value of item-000", "one", null, "two"],
    );
    assert.equal(results[4].ok, false);
    assert.equal(results[4].error.kind, "UnknownOuterKey");
    assert.equal(toText(results[5].value), "value of item-024");
    // Bob may read neither: each pair gets the answer of an absent SubDB.
    const refused = await b.getMany([
      [notes, "item-000"],
      [other, "o1"],
    ]);
    for (const r of refused) {
      assert.equal(r.ok, false);
      assert.equal(r.error.kind, "UnknownSubDb");
    }
  });

  test("another identity and the anonymous principal learn nothing: the answer of an absent SubDB", async () => {
    await rejects(() => b.get(notes, "item-000"), "UnknownSubDb");
    await rejects(() => b.put(notes, "x", "y"), "UnknownSubDb");
    await rejects(() => b.scanPage(notes, { limit: 5 }), "UnknownSubDb");
    await rejects(() => anon.get(notes, "item-000"), "UnknownSubDb");
    await rejects(() => b.setAccess(notes, { readers: [bob.getPrincipal()], writers: [] }), "UnknownSubDb");
    // The same answer as for a place that holds no SubDB at all.
    const right = await a.route(notes);
    for (const who of [bob, new AnonymousIdentity()]) {
      const c = await clientFor(who);
      c.rememberRoute(notes, { partition: right.partition, subdb: 4_000_000 });
      await rejects(() => c.get(notes, "item-000"), "UnknownSubDb");
    }
    // Bob's listing of routes does not show Alice's names; hers does.
    assert.ok(!(await b.allRoutes()).routes.some((r) => r.outerKey === notes));
    assert.ok((await a.allRoutes()).routes.some((r) => r.outerKey === notes));
    // Anonymous may not create a SubDB either.
    await rejects(() => anon.create(`anon/${run}`), "NotAuthorized");
  });

  test("setAccess shares read-only", async () => {
    await a.setAccess(notes, { readers: [bob.getPrincipal().toText()], writers: [] });
    assert.equal(toText(await b.get(notes, "item-001")), "value of item-001");
    await rejects(() => b.put(notes, "x", "y"), "NotAuthorized");
    await rejects(() => b.setAccess(notes, { readers: [], writers: [] }), "NotAuthorized");
    await rejects(() => a.setAccess(notes, { readers: ["not a principal"], writers: [] }), "InvalidArgument");
  });

  test("a stale inner key: UnknownSubDb refreshes the route from the index once", async () => {
    const right = await a.route(notes);
    const c = await clientFor(alice);
    const changes = [];
    c.onRouteChange((k, inner) => changes.push([k, inner && `${inner.partition.toText()}/${inner.subdb}`]));
    c.rememberRoute(notes, { partition: right.partition, subdb: 4_000_000 });
    assert.equal(toText(await c.get(notes, "item-002")), "value of item-002");
    assert.equal(c.cachedRoute(notes).subdb, right.subdb);
    assert.ok(changes.some(([, v]) => v === `${right.partition.toText()}/${right.subdb}`), JSON.stringify(changes));
    // A name the index never knew.
    await rejects(() => c.get(`never/${run}`, "k"), "UnknownOuterKey");
    await rejects(() => c.route(`never/${run}`), "UnknownOuterKey");
  });

  test("a write whose reply is lost is retried with the same op id and applied once", async () => {
    const base = await HttpAgent.create({ host: demo.url, identity: alice, shouldFetchRootKey: true, verifyQuerySignatures: false });
    const flaky = flakyAgent(base, "put", { n: 1, afterSend: true });
    const c = new Flotilla({ agent: flaky.agent, indexId: demo.index, policy: { baseBackoffMs: 20 } });
    await c.put(notes, "lost-reply", "first");
    // The first put reached the partition, its reply was lost, the retry carried the same
    // argument bytes (the same op id) and was answered from the op log.
    assert.equal(flaky.seen.length, 2);
    assert.deepEqual(flaky.seen[0], flaky.seen[1]);
    assert.equal(toText(await c.get(notes, "lost-reply")), "first");
    // A new put has a new op id.
    await c.put(notes, "lost-reply", "second");
    assert.equal(flaky.seen.length, 3);
    assert.notDeepEqual(flaky.seen[2], flaky.seen[1]);
    // The retried write answered as the first application did: not `replaced`.
    const flaky2 = flakyAgent(base, "put", { n: 1, afterSend: true });
    const c2 = new Flotilla({ agent: flaky2.agent, indexId: demo.index, policy: { baseBackoffMs: 20 } });
    const outcome = await c2.put(notes, "lost-reply-2", "x");
    assert.equal(outcome.replaced, false);
  });

  test("transient failures past the budget end in GaveUp; fatal ones are not retried", async () => {
    const base = await HttpAgent.create({ host: demo.url, identity: alice, shouldFetchRootKey: true, verifyQuerySignatures: false });
    const flaky = flakyAgent(base, "get", { n: 100, afterSend: false });
    const c = new Flotilla({ agent: flaky.agent, indexId: demo.index, policy: { baseBackoffMs: 1, maxBackoffMs: 2 } });
    await c.route(notes);
    await rejects(() => c.get(notes, "item-000"), "GaveUp");
    assert.equal(flaky.seen.length, MAX_ATTEMPTS);
    // An agent that did not fetch the demo's root key cannot verify its certificates.
    const untrusting = await HttpAgent.create({ host: demo.url, identity: alice, verifyQuerySignatures: false });
    const d = new Flotilla({ agent: untrusting, indexId: demo.index, policy: { baseBackoffMs: 1 } });
    d.rememberRoute(notes, await a.route(notes));
    await rejects(() => d.put(notes, "k", "v"), "Rejected");
  });

  test("stats and routes of the index", async () => {
    const s = await a.stats();
    // Alice is no admin: the figures, but neither the admin list nor moves' names.
    assert.equal(s.caller_is_admin, false);
    assert.deepEqual(s.admins, []);
    assert.deepEqual(s.moves, []);
    assert.ok(s.partitions.length >= 1);
    assert.ok(s.subdbs >= 2n);
    assert.ok(s.move_cap_bytes > 0n);
    const all = await a.allRoutes();
    assert.ok(all.routes.some((r) => r.outerKey === notes));
    assert.ok(all.version >= 1n);
  });

  test("a SubDB that moves is followed: Moved { to } updates the cache", { timeout: 240_000 }, async () => {
    const big = `big/${run}`;
    const home = await a.create(big);
    // `stale` learns the route now and is not used again until the SubDB has moved.
    const stale = await clientFor(alice);
    assert.equal((await stale.route(big)).partition.toText(), home.partition.toText());
    const changes = [];
    stale.onRouteChange((k, inner) => {
      if (k === big && inner) changes.push(inner.partition.toText());
    });
    // Fill it past the demo's move cap (256 KiB): the index moves the largest SubDB away.
    // The writer follows the move itself if it happens while it writes.
    const chunk = "x".repeat(30_000);
    for (let i = 0; i < 12; i++) await a.put(big, `k${String(i).padStart(2, "0")}`, chunk);
    const deadline = Date.now() + 200_000;
    let moved = null;
    while (Date.now() < deadline) {
      const now = await b.routeMany([big]);
      if (now[0] && now[0].partition.toText() !== home.partition.toText()) {
        moved = now[0];
        break;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.ok(moved, "the index did not move the SubDB");
    // `stale` still caches the old home: its next read is answered `Moved` and followed.
    assert.equal(stale.cachedRoute(big).partition.toText(), home.partition.toText());
    assert.equal((await stale.get(big, "k00")).length, 30_000);
    assert.equal(stale.cachedRoute(big).partition.toText(), moved.partition.toText());
    assert.equal(stale.cachedRoute(big).subdb, moved.subdb);
    assert.deepEqual(changes, [moved.partition.toText()]);
    // Writes follow too, and the scan sees every item once.
    await stale.put(big, "k99", "after the move");
    const keys = [];
    for await (const e of stale.scan(big, { page: 5 })) keys.push(toText(e.key));
    assert.equal(keys.length, 13);
    assert.equal(keys.at(-1), "k99");
  });

  test("drop: the name is gone, a stale cache ends in UnknownOuterKey", async () => {
    const gone = `gone/${run}`;
    await a.create(gone);
    await a.put(gone, "k", "v");
    const c = await clientFor(alice);
    await c.route(gone);
    await rejects(() => b.drop(gone), "NotAuthorized");
    await a.drop(gone);
    assert.equal(a.cachedRoute(gone), undefined);
    await rejects(() => c.get(gone, "k"), "UnknownOuterKey");
    await rejects(() => a.drop(gone), "UnknownOuterKey");
  });
});

test("connect: the demo turns query signature verification off, nothing else does", async () => {
  const { createAgent, isMainnetHost } = F;
  const info = await createAgent({ host: demo.url, local: true });
  assert.equal(info.demo, true);
  assert.match(info.implVersion, /^flotilla-demo/);
  assert.ok(info.agent.rootKey && info.agent.rootKey.length === 133);
  assert.equal(isMainnetHost("https://icp-api.io"), true);
  assert.equal(isMainnetHost("https://xyz.icp0.io"), true);
  assert.equal(isMainnetHost("http://127.0.0.1:4950"), false);
  assert.deepEqual(toBytes("é"), new Uint8Array([0xc3, 0xa9]));
});
