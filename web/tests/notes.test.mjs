// The notes app's model (src/notebook.ts) against a running `flotilla demo`: the same code
// the page runs, without the DOM.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Ed25519KeyIdentity } from "@icp-sdk/core/identity";
import { importTs, startDemo } from "./support.mjs";

const [F, N] = await importTs("src/client/index.ts", "src/notebook.ts");
const { Notebook, noteKey, noteKeyTime, notebookName, decodeNote, encodeNote, NOTES_PAGE } = N;

let demo;
before(async () => {
  demo = await startDemo();
});
after(async () => {
  await demo?.stop();
});

async function user() {
  const identity = Ed25519KeyIdentity.generate();
  const client = await F.connect({ host: demo.url, identity, indexId: demo.index, local: true });
  return { identity, client, me: identity.getPrincipal().toText() };
}

test("note keys: 8 bytes of big-endian milliseconds, then 4 random bytes", () => {
  const k = noteKey(0x0102030405, new Uint8Array([9, 8, 7, 6]));
  assert.deepEqual([...k], [0, 0, 0, 1, 2, 3, 4, 5, 9, 8, 7, 6]);
  assert.equal(noteKeyTime(k), 0x0102030405);
  const n = decodeNote(k, encodeNote({ title: "t", body: "b", updated: 7 }));
  assert.deepEqual([n.title, n.body, n.updated, n.created], ["t", "b", 7, 0x0102030405]);
  assert.equal(notebookName("aaaaa-aa"), "notes/aaaaa-aa");
  // Keys sort by time.
  const a = noteKey(1000);
  const b = noteKey(1001);
  assert.ok(F.compareBytes(a, b) < 0);
});

test("a notebook: created on first use, newest first, pages of 10 with no gaps or repeats", async () => {
  const u = await user();
  const nb = new Notebook(u.client, u.me);
  assert.equal(nb.name, `notes/${u.me}`);
  const inner = await nb.ensure();
  // Again: it exists, same place.
  assert.equal((await nb.ensure()).subdb, inner.subdb);
  // Another client of the same user that never saw the create: OuterKeyTaken is handled too.
  const again = new Notebook((await F.connect({ host: demo.url, identity: u.identity, indexId: demo.index, local: true })), u.me);
  assert.equal((await again.ensure()).subdb, inner.subdb);

  const t0 = Date.now();
  const saved = [];
  for (let i = 0; i < 23; i++) saved.push(await nb.save({ title: `note ${i}`, body: `body ${i}` }, t0 + i));
  // Reader list records are not notes.
  await nb.share((await user()).me);

  const seen = [];
  let cursor = null;
  let pages = 0;
  do {
    const page = await nb.page(cursor);
    pages++;
    assert.ok(page.notes.length <= NOTES_PAGE);
    seen.push(...page.notes.map((n) => n.title));
    cursor = page.next;
  } while (cursor !== null);
  assert.equal(pages, 3);
  assert.deepEqual(seen, saved.map((n) => n.title).reverse());

  // Edit: same key, same place in the list, new content.
  const target = saved[20];
  await nb.save({ key: target.key, title: "edited", body: "new body" }, t0 + 100);
  const first = await nb.page(null);
  assert.equal(first.notes[2].title, "edited");
  assert.equal(first.notes[2].updated, t0 + 100);
  assert.equal(first.notes[2].id, target.id);

  // Delete from the middle of the first page, then continue from its cursor: nothing lost.
  assert.equal(await nb.remove(saved[18].key), true);
  const rest = [];
  let c = first.next;
  while (c !== null) {
    const p = await nb.page(c);
    rest.push(...p.notes.map((n) => n.title));
    c = p.next;
  }
  assert.deepEqual(rest, saved.slice(0, 13).map((n) => n.title).reverse());
});

test("sharing read-only; another user is refused, distinguishably", async () => {
  const owner = await user();
  const reader = await user();
  const stranger = await user();
  const mine = new Notebook(owner.client, owner.me);
  await mine.ensure();
  await mine.save({ title: "secret", body: "for readers only" });

  const asStranger = new Notebook(stranger.client, owner.me);
  // A stranger learns nothing of the notebook: the answer of an absent SubDB.
  await assert.rejects(() => asStranger.page(null), (e) => e instanceof F.FlotillaError && e.kind === "UnknownSubDb");

  assert.deepEqual(await mine.share(reader.me), [reader.me]);
  assert.deepEqual(await mine.readers(), [reader.me]);
  const asReader = new Notebook(reader.client, owner.me);
  const page = await asReader.page(null);
  assert.deepEqual(page.notes.map((n) => n.title), ["secret"]);
  // Read-only.
  await assert.rejects(() => asReader.save({ title: "x", body: "y" }), (e) => e.kind === "NotAuthorized");
  await assert.rejects(() => asReader.share(stranger.me), (e) => e.kind === "NotAuthorized");
  // Sharing again keeps the earlier readers.
  const second = await user();
  assert.deepEqual(await mine.share(second.me), [reader.me, second.me].sort());
  assert.deepEqual((await new Notebook(second.client, owner.me).page(null)).notes.length, 1);
  // Unsharing.
  await mine.unshare(reader.me);
  await assert.rejects(() => asReader.page(null), (e) => e.kind === "UnknownSubDb");
  // A bad principal, or the owner, are refused before any call.
  await assert.rejects(() => mine.share("not-a-principal"), (e) => e.kind === "InvalidArgument");
  await assert.rejects(() => mine.share(owner.me), (e) => e.kind === "InvalidArgument");
  // A notebook nobody created.
  const nobody = await user();
  await assert.rejects(() => new Notebook(owner.client, nobody.me).page(null), (e) => e.kind === "UnknownOuterKey");
});
