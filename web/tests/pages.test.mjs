// The dashboard and the notes app in headless Chromium (playwright-core) against a running
// `flotilla demo`, which serves the pages it embeds (web/dist) beside the IC interface. Needs
// a Chromium: $CHROMIUM, else /usr/bin/chromium (Debian's `chromium` package, installed by
// scripts/install-web-tools.sh). With $SCREENSHOT_DIR set, saves dashboard.png and notes.png
// there (docs/screenshots holds the committed ones).

import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { startDemo } from "./support.mjs";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
/** The listed note whose title is exactly `title`. */
function noteTitled(page, title) {
  const exact = new RegExp(`^${title.replace(/[()]/g, "\\$&")}$`);
  return page.getByTestId("note").filter({ has: page.locator("h3", { hasText: exact }) });
}

const SCREENSHOTS = process.env.SCREENSHOT_DIR;
/** Saves a screenshot of `page` as `name` when $SCREENSHOT_DIR is set. */
async function screenshot(page, name, fullPage = false) {
  if (!SCREENSHOTS) return;
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(SCREENSHOTS, name), fullPage });
}

describe("pages in a browser", { timeout: 300_000 }, () => {
  let demo;
  let base;
  let browser;

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: run scripts/install-web-tools.sh or set CHROMIUM`);
    const { chromium } = await import("playwright-core");
    // The demo's own run first (4,000 operations, 256 KiB move cap): several partitions and
    // completed moves before the pages open; its users keep writing while they are open.
    demo = await startDemo({ args: [] });
    base = demo.url;
    // The flags Chromium needs on a machine with no outside network.
    const args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
    browser = await chromium.launch({ executablePath: CHROMIUM, args });
  });

  after(async () => {
    await browser?.close();
    await demo?.stop();
  });

  async function newPage() {
    const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    return { page, errors, context };
  }

  test("the dashboard shows the fleet from the index", async () => {
    const { page, errors, context } = await newPage();
    await page.goto(`${base}/`);
    await page.getByTestId("status").filter({ hasText: "live" }).waitFor({ timeout: 20_000 });
    const count = Number(await page.getByTestId("partition-count").textContent());
    assert.ok(count >= 4, `partition count ${count}`);
    assert.equal(await page.getByTestId("partition").count(), count);
    const moves = Number((await page.getByTestId("moves-completed").textContent()).replace(/,/g, ""));
    assert.ok(moves >= 1, `moves completed ${moves}`);
    // The request log fills from the observer; every partition read and write made no call.
    await page.getByTestId("request-log").locator("tbody tr").nth(5).waitFor({ timeout: 20_000 });
    assert.equal((await page.getByTestId("calls-per-read").textContent()).trim(), "0");
    assert.equal((await page.getByTestId("calls-per-write").textContent()).trim(), "0");
    // Charts need a few refreshes to draw a line.
    await page.waitForTimeout(4_000);
    await screenshot(page, "dashboard.png", true);
    assert.match(await page.getByTestId("routing-version").textContent(), /^\d+$/);
    assert.match(await page.getByTestId("subdb-count").textContent(), /^[\d,]+$/);
    // The index's cycles care: its balance and reserve in the IC's units.
    assert.match(await page.getByTestId("index-cycles").textContent(), /^[\d.]+ [TBM]$/);
    assert.match(await page.getByTestId("cycles-reserve").textContent(), /^[\d.]+ [TBM]$/);
    assert.match(await page.getByTestId("top-ups").textContent(), /^[\d,]+$/);
    const first = page.getByTestId("partition").first();
    assert.match(await first.getAttribute("data-partition"), /^[a-z0-9-]+-cai$/);
    assert.match(await first.getByTestId("partition-percent").textContent(), /%$/);
    assert.deepEqual(errors, []);
    await context.close();
  });

  test("the notes app: create, list newest first with load more, edit, delete, users, sharing", async () => {
    const { page, errors, context } = await newPage();
    await page.goto(`${base}/notes`);
    const principal = page.getByTestId("principal");
    await page.getByTestId("notebook-location").waitFor({ state: "visible", timeout: 30_000 });
    const alice = (await principal.textContent()).trim();
    assert.match(alice, /^[a-z0-9-]{20,}$/);
    assert.match(await page.getByTestId("notebook-name").textContent(), new RegExp(`^notes/${alice}$`));
    assert.match(await page.getByTestId("notebook-partition").textContent(), /-cai$/);
    assert.match(await page.getByTestId("notebook-subdb").textContent(), /^\d+$/);

    for (let i = 1; i <= 30; i++) {
      await page.getByTestId("note-title").fill(`Note ${i}`);
      await page.getByTestId("note-body").fill(`Body of note ${i}`);
      await page.getByTestId("save-note").click();
      await noteTitled(page, `Note ${i}`).waitFor();
    }
    // A fresh load lists 10, newest first; each "load more" brings the next 10 (a reverse scan
    // resumed at its cursor): all 30 in order, none missing, none twice.
    await page.reload();
    await page.getByTestId("note").first().waitFor();
    const titles = async () => page.getByTestId("note").locator("h3").allTextContents();
    const newestFirst = (n) => Array.from({ length: n }, (_, i) => `Note ${30 - i}`);
    assert.deepEqual(await titles(), newestFirst(10));
    await screenshot(page, "notes.png");
    for (const n of [20, 30]) {
      await page.getByTestId("load-more").click();
      await page.waitForFunction((n) => document.querySelectorAll('[data-testid="note"]').length === n, n);
      assert.deepEqual(await titles(), newestFirst(n));
    }
    await page.waitForFunction(() => !document.querySelector('[data-testid="load-more"]')?.checkVisibility());

    // Edit note 5, delete note 7.
    const n5 = noteTitled(page, "Note 5");
    await n5.getByTestId("edit").click();
    await page.getByTestId("note-title").fill("Note 5 (edited)");
    await page.getByTestId("save-note").click();
    await noteTitled(page, "Note 5 (edited)").waitFor();
    await noteTitled(page, "Note 7").getByTestId("delete").click();
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="note"]').length === 29);
    await page.reload();
    await page.getByTestId("note").first().waitFor();
    for (const n of [20, 29]) {
      await page.getByTestId("load-more").click();
      await page.waitForFunction((n) => document.querySelectorAll('[data-testid="note"]').length === n, n);
    }
    const after = await titles();
    assert.ok(after.includes("Note 5 (edited)") && !after.includes("Note 7"), JSON.stringify(after));

    // A second user: a new identity, refused Alice's notebook with a clear message.
    await page.getByTestId("switch-user").click();
    await page.waitForFunction((a) => document.querySelector('[data-testid="principal"]').textContent.trim() !== a, alice);
    const bob = (await principal.textContent()).trim();
    await page.getByTestId("notebook-location").waitFor({ state: "visible" });
    await page.getByTestId("open-notebook").fill(alice);
    await page.getByTestId("open-notebook-submit").click();
    await page.getByTestId("error").filter({ hasText: "Not authorized" }).waitFor();
    assert.equal(await page.getByTestId("note").count(), 0);
    assert.equal(await page.getByTestId("notebook-location").isVisible(), false);

    // Back to Alice (the selector keeps both), share with Bob.
    await page.getByTestId("user-select").selectOption({ index: 0 });
    await page.waitForFunction((a) => document.querySelector('[data-testid="principal"]').textContent.trim() === a, alice);
    await page.getByTestId("note").first().waitFor();
    await page.getByTestId("share").fill(bob);
    await page.getByTestId("share-submit").click();
    await page.getByTestId("reader").filter({ hasText: bob }).waitFor();

    // Bob reads it, read-only.
    await page.getByTestId("user-select").selectOption({ index: 1 });
    await page.waitForFunction((b) => document.querySelector('[data-testid="principal"]').textContent.trim() === b, bob);
    await page.getByTestId("open-notebook").fill(alice);
    await page.getByTestId("open-notebook-submit").click();
    await page.getByTestId("note").first().waitFor();
    assert.equal(await page.getByTestId("note").count(), 10);
    assert.equal(await page.getByTestId("edit").count(), 0);
    assert.equal(await page.getByTestId("note-title").isVisible(), false);
    assert.deepEqual(errors, []);
    await context.close();
  });

  test("a note written before a forced move is there after it, at the new partition", async () => {
    const { page, errors, context } = await newPage();
    await page.goto(`${base}/notes`);
    await page.getByTestId("notebook-location").waitFor({ state: "visible", timeout: 30_000 });
    await page.getByTestId("note-title").fill("before the move");
    await page.getByTestId("save-note").click();
    await page.getByTestId("note").first().waitFor();
    const before = await page.getByTestId("notebook-partition").textContent();
    await page.getByTestId("move-notebook").click();
    await page.waitForFunction(
      (b) => document.querySelector('[data-testid="notebook-partition"]').textContent !== b,
      before,
      { timeout: 120_000 },
    );
    assert.notEqual(await page.getByTestId("notebook-partition").textContent(), before);
    assert.equal(await page.getByTestId("note").count(), 1);
    // A fresh page (no cached route) finds the note at the new partition.
    await page.reload();
    await noteTitled(page, "before the move").waitFor();
    assert.notEqual(await page.getByTestId("notebook-partition").textContent(), before);
    assert.deepEqual(errors, []);
    await context.close();
  });
});
