// The notes app (`/notes`): each user's notes in a private SubDB `notes/<principal>`, read
// and written straight at its partition through the Flotilla client.
//
// Users are Ed25519 identities generated in the browser and kept in localStorage; "New user"
// makes another, the selector switches between them.

import { Ed25519KeyIdentity } from "@icp-sdk/core/identity";
import { createAgent, Flotilla, FlotillaError, type InnerKey } from "./client/index.ts";
import { byId, h, hostSetup, loadConfig, type PageConfig, setText, shortPrincipal } from "./common.ts";
import { type Note, Notebook, NOTES_PAGE } from "./notebook.ts";

const STORE_IDENTITIES = "flotilla.notes.identities";
const STORE_CURRENT = "flotilla.notes.current";
/** How long the page waits for a requested move to complete. */
const MOVE_WAIT_MS = 120_000;

interface StoredUser {
  /** `Ed25519KeyIdentity.toJSON()`: public and secret key, hex. */
  key: [string, string];
}

// ---- identities ---------------------------------------------------------------------------

function loadUsers(): StoredUser[] {
  try {
    const v = JSON.parse(localStorage.getItem(STORE_IDENTITIES) ?? "[]") as unknown;
    return Array.isArray(v) ? (v as StoredUser[]).filter((u) => Array.isArray(u?.key) && u.key.length === 2) : [];
  } catch {
    return [];
  }
}

function saveUsers(users: StoredUser[], current: number): void {
  localStorage.setItem(STORE_IDENTITIES, JSON.stringify(users));
  localStorage.setItem(STORE_CURRENT, String(current));
}

function newUser(): StoredUser {
  const id = Ed25519KeyIdentity.generate();
  return { key: id.toJSON() as [string, string] };
}

function identityOf(u: StoredUser): Ed25519KeyIdentity {
  return Ed25519KeyIdentity.fromParsedJson(u.key);
}

// ---- the page -----------------------------------------------------------------------------

function describeError(e: unknown, context: string): string {
  if (e instanceof FlotillaError) {
    switch (e.kind) {
      case "NotAuthorized":
        return `Not authorized: ${context}`;
      case "UnknownOuterKey":
        return `No such notebook: ${context}`;
      case "InvalidArgument":
        return e.message;
      case "ValueTooLarge":
        return "This note is too large (at most 1 MiB).";
      case "GaveUp":
        return "The network kept failing; try again (nothing was written twice).";
      default:
        return e.message;
    }
  }
  return e instanceof Error ? e.message : String(e);
}

class NotesApp {
  private config: PageConfig;
  private users: StoredUser[];
  private current: number;
  private client!: Flotilla;
  private me!: string;
  private mine!: Notebook;
  /** The notebook shown: the user's own, or another user's opened read-only. */
  private view!: Notebook;
  private notes: Note[] = [];
  private cursor: Uint8Array | null = null;
  private editing: Note | null = null;
  private unlisten: (() => void) | null = null;
  /** Bumped on every switch of user or notebook: answers for an older view are dropped. */
  private generation = 0;

  constructor(config: PageConfig) {
    this.config = config;
    this.users = loadUsers();
    const cur = Number(localStorage.getItem(STORE_CURRENT) ?? "0");
    if (this.users.length === 0) this.users.push(newUser());
    this.current = Number.isInteger(cur) && cur >= 0 && cur < this.users.length ? cur : 0;
    saveUsers(this.users, this.current);

    byId("switch-user").addEventListener("click", () => {
      this.users.push(newUser());
      void this.useUser(this.users.length - 1);
    });
    byId<HTMLSelectElement>("user-select").addEventListener("change", (e) => {
      void this.useUser(Number((e.target as HTMLSelectElement).value));
    });
    byId("note-form").addEventListener("submit", (e) => {
      e.preventDefault();
      void this.saveNote();
    });
    byId("cancel-edit").addEventListener("click", () => this.stopEditing());
    byId("load-more").addEventListener("click", () => void this.loadMore());
    byId("share-form").addEventListener("submit", (e) => {
      e.preventDefault();
      void this.share();
    });
    byId("open-form").addEventListener("submit", (e) => {
      e.preventDefault();
      void this.openOther();
    });
    byId("my-notebook").addEventListener("click", () => void this.showNotebook(this.mine));
    byId("copy-principal").addEventListener("click", () => {
      void navigator.clipboard?.writeText(this.me).then(
        () => this.showInfo("Your principal is copied: give it to someone to share notebooks."),
        () => this.showInfo(this.me),
      );
    });
    const move = byId<HTMLButtonElement>("move-notebook");
    move.hidden = !config.demo;
    move.addEventListener("click", () => void this.moveNotebook());
  }

  async useUser(i: number): Promise<void> {
    this.current = i;
    saveUsers(this.users, i);
    const identity = identityOf(this.users[i]!);
    this.me = identity.getPrincipal().toText();
    this.renderUsers();
    setText(byId("principal"), this.me);
    const gen = ++this.generation;
    this.clearError();
    this.setBusy(true);
    try {
      const { agent } = await createAgent({ ...hostSetup(), identity });
      if (gen !== this.generation) return;
      this.client = new Flotilla({ agent, indexId: this.config.index });
      this.unlisten?.();
      this.unlisten = this.client.onRouteChange((outer, inner) => {
        if (outer === this.view?.name) this.renderLocation(inner);
      });
      this.mine = new Notebook(this.client, this.me);
      await this.showNotebook(this.mine);
    } catch (e) {
      if (gen === this.generation) this.showError(describeError(e, "cannot reach the index"));
    } finally {
      this.setBusy(false);
    }
  }

  start(): Promise<void> {
    return this.useUser(this.current);
  }

  private renderUsers(): void {
    const sel = byId<HTMLSelectElement>("user-select");
    sel.replaceChildren(
      ...this.users.map((u, i) =>
        h("option", { value: i, selected: i === this.current }, `User ${i + 1} · ${shortPrincipal(identityOf(u).getPrincipal())}`),
      ),
    );
  }

  /** Shows `nb`: the user's own notebook (created on first use) or another's, read-only. */
  private async showNotebook(nb: Notebook): Promise<void> {
    const gen = ++this.generation;
    const own = nb.owner === this.me;
    this.view = nb;
    this.stopEditing();
    this.notes = [];
    this.cursor = null;
    this.clearError();
    document.body.classList.toggle("readonly", !own);
    byId("editor").hidden = !own;
    byId("share-panel").hidden = !own;
    byId("my-notebook").hidden = own;
    byId<HTMLButtonElement>("move-notebook").hidden = !own || !this.config.demo;
    setText(byId("notebook-title"), own ? "My notebook" : `Notebook of ${shortPrincipal(nb.owner)} (read-only)`);
    byId("notebook-title").title = nb.name;
    this.renderNotes();
    this.showContent(false);
    try {
      if (own) await nb.ensure();
      const page = await nb.page(null, NOTES_PAGE);
      if (gen !== this.generation) return;
      this.notes = page.notes;
      this.cursor = page.next;
      this.showContent(true);
      this.renderNotes();
      this.renderLocation(await nb.location());
      if (own) this.renderReaders(await nb.readers());
    } catch (e) {
      if (gen !== this.generation) return;
      this.showContent(false);
      // A partition tells a caller who may not read a SubDB nothing of it: the answer of an
      // absent SubDB (`UnknownSubDb`).
      if (!own && (FlotillaError.is(e, "NotAuthorized") || FlotillaError.is(e, "UnknownSubDb"))) {
        this.showError(`Not authorized: ${nb.owner} has not shared this notebook with you.`);
      } else if (!own && FlotillaError.is(e, "UnknownOuterKey")) {
        this.showError(`No notebook: ${nb.owner} has no notes here.`);
      } else {
        this.showError(describeError(e, nb.name));
      }
    }
  }

  /** The list, the location and "load more" are shown only for a notebook we may read. */
  private showContent(show: boolean): void {
    byId("notes-panel").hidden = !show;
    byId("notebook-location").hidden = !show;
  }

  private renderLocation(inner: InnerKey | null): void {
    if (!inner) return;
    setText(byId("notebook-name"), this.view.name);
    setText(byId("notebook-partition"), inner.partition.toText());
    setText(byId("notebook-partition-short"), shortPrincipal(inner.partition));
    setText(byId("notebook-subdb"), String(inner.subdb));
    const el = byId("notebook-location");
    el.dataset.partition = inner.partition.toText();
    el.dataset.subdb = String(inner.subdb);
  }

  private renderNotes(): void {
    const own = this.view?.owner === this.me;
    const list = byId("notes");
    list.replaceChildren(
      ...this.notes.map((n) =>
        h(
          "li",
          { class: "note", "data-testid": "note", "data-key": n.id },
          h("h3", { class: "note-title" }, n.title || "(untitled)"),
          n.body ? h("p", { class: "note-body" }, n.body) : null,
          h(
            "div",
            { class: "note-meta" },
            h("time", { datetime: new Date(n.updated).toISOString() }, new Date(n.updated).toLocaleString()),
            own
              ? h(
                  "span",
                  { class: "note-actions" },
                  h("button", { type: "button", class: "link", "data-testid": "edit", onclick: () => this.startEditing(n) }, "Edit"),
                  h("button", { type: "button", class: "link danger", "data-testid": "delete", onclick: () => void this.deleteNote(n) }, "Delete"),
                )
              : null,
          ),
        ),
      ),
    );
    byId("notes-empty").hidden = this.notes.length > 0;
    byId("load-more").hidden = this.cursor === null;
    setText(byId("notes-count"), this.cursor === null ? `${this.notes.length}` : `${this.notes.length}+`);
  }

  private renderReaders(readers: string[]): void {
    const ul = byId("readers");
    ul.replaceChildren(
      ...readers.map((r) =>
        h(
          "li",
          { "data-testid": "reader" },
          h("code", {}, r),
          h("button", { type: "button", class: "link danger", onclick: () => void this.unshare(r) }, "Remove"),
        ),
      ),
    );
    byId("readers-empty").hidden = readers.length > 0;
  }

  private startEditing(n: Note): void {
    this.editing = n;
    byId<HTMLInputElement>("note-title").value = n.title;
    byId<HTMLTextAreaElement>("note-body").value = n.body;
    setText(byId("save-note"), "Save changes");
    byId("cancel-edit").hidden = false;
    byId("editor").classList.add("editing");
    byId<HTMLInputElement>("note-title").focus();
  }

  private stopEditing(): void {
    this.editing = null;
    byId<HTMLInputElement>("note-title").value = "";
    byId<HTMLTextAreaElement>("note-body").value = "";
    setText(byId("save-note"), "Add note");
    byId("cancel-edit").hidden = true;
    byId("editor").classList.remove("editing");
  }

  private async saveNote(): Promise<void> {
    const title = byId<HTMLInputElement>("note-title").value.trim();
    const body = byId<HTMLTextAreaElement>("note-body").value;
    if (!title && !body.trim()) {
      this.showError("Write a title or a note first.");
      return;
    }
    const editing = this.editing;
    const nb = this.view;
    const button = byId<HTMLButtonElement>("save-note");
    button.disabled = true;
    await this.busy(async () => {
      const saved = await nb.save({ key: editing?.key, title, body });
      if (nb !== this.view) return;
      if (editing) {
        this.notes = this.notes.map((n) => (n.id === saved.id ? saved : n));
      } else {
        // The newest key: it goes first, and the cursor (an older key) stays valid.
        this.notes = [saved, ...this.notes];
      }
      // Clear the form unless it was changed meanwhile.
      const unchanged =
        byId<HTMLInputElement>("note-title").value.trim() === title && byId<HTMLTextAreaElement>("note-body").value === body;
      if (unchanged && this.editing === editing) this.stopEditing();
      this.renderNotes();
    }, nb.name);
    button.disabled = false;
  }

  private async deleteNote(n: Note): Promise<void> {
    const nb = this.view;
    await this.busy(async () => {
      await nb.remove(n.key);
      if (nb !== this.view) return;
      this.notes = this.notes.filter((x) => x.id !== n.id);
      if (this.editing?.id === n.id) this.stopEditing();
      this.renderNotes();
    }, nb.name);
  }

  private async loadMore(): Promise<void> {
    if (this.cursor === null) return;
    const nb = this.view;
    const gen = this.generation;
    await this.busy(async () => {
      const page = await nb.page(this.cursor, NOTES_PAGE);
      if (gen !== this.generation) return;
      const have = new Set(this.notes.map((n) => n.id));
      this.notes.push(...page.notes.filter((n) => !have.has(n.id)));
      this.cursor = page.next;
      this.renderNotes();
    }, nb.name);
  }

  private async share(): Promise<void> {
    const input = byId<HTMLInputElement>("share");
    const who = input.value.trim();
    if (!who) return;
    await this.busy(async () => {
      const readers = await this.mine.share(who);
      input.value = "";
      this.renderReaders(readers);
      this.showInfo(`Shared read-only with ${who}.`);
    }, this.mine.name);
  }

  private async unshare(who: string): Promise<void> {
    await this.busy(async () => {
      this.renderReaders(await this.mine.unshare(who));
    }, this.mine.name);
  }

  private async openOther(): Promise<void> {
    const input = byId<HTMLInputElement>("open-notebook");
    const who = input.value.trim();
    if (!who) return;
    let nb: Notebook;
    try {
      nb = new Notebook(this.client, who);
    } catch {
      this.showError(`Not a principal: ${who}`);
      return;
    }
    await this.busy(() => this.showNotebook(nb), nb.name);
  }

  /** The demo's admin moves this notebook to another partition; the page then shows where
   * the client finds it, once the move has completed. */
  private async moveNotebook(): Promise<void> {
    const nb = this.mine;
    const btn = byId<HTMLButtonElement>("move-notebook");
    await this.busy(async () => {
      const before = (await nb.location()).partition.toText();
      const r = await fetch("/flotilla/demo/move", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ outer_key: nb.name }),
      });
      const answer = (await r.json().catch(() => ({}))) as { target?: string; error?: string };
      if (!r.ok || !answer.target) throw new Error(`The move was refused: ${answer.error ?? `HTTP ${r.status}`}`);
      const target = answer.target;
      btn.disabled = true;
      this.showInfo(`Moving ${nb.name} from ${shortPrincipal(before)} to ${shortPrincipal(target)}…`);
      const deadline = Date.now() + MOVE_WAIT_MS;
      for (;;) {
        // The index's directory flips at the cutover; until then the old home serves.
        const [now] = await this.client.routeMany([nb.name]);
        if (now && now.partition.toText() === target) break;
        if (Date.now() > deadline) throw new Error("The move did not complete in time.");
        await new Promise((res) => setTimeout(res, 500));
      }
      // Read through the client: the old home answers `Moved { to }`, the client follows it
      // and its route cache (and so the location shown) changes by itself.
      if (this.view === nb) {
        const page = await nb.page(null, NOTES_PAGE);
        if (this.view === nb && this.notes.length <= NOTES_PAGE) {
          this.notes = page.notes;
          this.cursor = page.next;
          this.renderNotes();
        }
        this.renderLocation(await nb.location());
      }
      this.showInfo(`Moved: ${nb.name} now lives on ${target}.`);
    }, nb.name);
    btn.disabled = false;
  }

  private async busy(fn: () => Promise<void>, context: string): Promise<void> {
    this.clearError();
    this.setBusy(true);
    try {
      await fn();
    } catch (e) {
      this.showError(describeError(e, context));
    } finally {
      this.setBusy(false);
    }
  }

  private setBusy(b: boolean): void {
    document.body.classList.toggle("busy", b);
    byId("busy").hidden = !b;
  }

  private showError(msg: string): void {
    const el = byId("error");
    el.className = "message error";
    setText(el, msg);
    el.hidden = false;
  }

  private showInfo(msg: string): void {
    const el = byId("info");
    setText(el, msg);
    el.hidden = false;
  }

  private clearError(): void {
    const el = byId("error");
    setText(el, "");
    el.hidden = true;
    byId("info").hidden = true;
  }
}

async function main(): Promise<void> {
  try {
    const config = await loadConfig();
    await new NotesApp(config).start();
  } catch (e) {
    const el = byId("error");
    el.hidden = false;
    setText(el, `Cannot start: ${e instanceof Error ? e.message : String(e)}`);
  }
}

void main();
