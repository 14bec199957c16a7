// The notes app's model, over the Flotilla client (no DOM: the node tests run it too).
//
// Each user's notes live in a private SubDB named `notes/<principal text>`. A note's key is
// its creation time, 8 bytes of big-endian milliseconds, then 4 random bytes, so keys sort by
// creation and a reverse scan lists the newest first. Its value is the UTF-8 JSON
// `{title, body, updated}`. The notebook's reader list is kept in the notebook itself under a
// key starting with 0xff, past every note's key (the list of notes scans below 0xff).

import { Principal } from "@icp-sdk/core/principal";
import { Flotilla, FlotillaError, type InnerKey, randomBytes, toBytes, toHex, toText } from "./client/index.ts";

/** Notes per page of the list. */
export const NOTES_PAGE = 10;

/** Where the notes' keys end (exclusive): keys from here on are the notebook's own records. */
const NOTES_END = Uint8Array.of(0xff);
/** The notebook's reader list (JSON array of principal texts). */
const READERS_KEY = Uint8Array.of(0xff, ...toBytes("readers"));

export function notebookName(owner: Principal | string): string {
  return `notes/${typeof owner === "string" ? owner : owner.toText()}`;
}

/** A fresh note key: `ms` as 8 big-endian bytes, then 4 random bytes. */
export function noteKey(ms: number = Date.now(), rand: Uint8Array = randomBytes(4)): Uint8Array {
  const key = new Uint8Array(12);
  new DataView(key.buffer).setBigUint64(0, BigInt(Math.floor(ms)));
  key.set(rand.subarray(0, 4), 8);
  return key;
}

/** The creation time (ms) in a note key. */
export function noteKeyTime(key: Uint8Array): number {
  if (key.length < 8) return 0;
  return Number(new DataView(key.buffer, key.byteOffset, 8).getBigUint64(0));
}

export interface Note {
  key: Uint8Array;
  /** Hex of the key: a stable id for the page. */
  id: string;
  title: string;
  body: string;
  /** Last edit, ms since the epoch. */
  updated: number;
  /** Creation, ms since the epoch (from the key). */
  created: number;
}

export function encodeNote(n: { title: string; body: string; updated: number }): Uint8Array {
  return toBytes(JSON.stringify({ title: n.title, body: n.body, updated: n.updated }));
}

/** A note from its stored bytes; a value that is not a note's JSON shows as its text. */
export function decodeNote(key: Uint8Array, value: Uint8Array): Note {
  const created = noteKeyTime(key);
  let title = "";
  let body = "";
  let updated = created;
  try {
    const v = JSON.parse(toText(value)) as { title?: unknown; body?: unknown; updated?: unknown };
    title = typeof v.title === "string" ? v.title : "";
    body = typeof v.body === "string" ? v.body : "";
    updated = typeof v.updated === "number" ? v.updated : created;
  } catch {
    body = toText(value);
  }
  return { key, id: toHex(key), title, body, updated, created };
}

export interface NotesPage {
  notes: Note[];
  /** The cursor for `page()` to continue; `null` when no older note remains. */
  next: Uint8Array | null;
}

/** One user's notebook, as its owner or as a reader sees it. */
export class Notebook {
  readonly client: Flotilla;
  readonly owner: string;
  readonly name: string;

  constructor(client: Flotilla, owner: Principal | string) {
    this.client = client;
    this.owner = typeof owner === "string" ? Principal.fromText(owner.trim()).toText() : owner.toText();
    this.name = notebookName(this.owner);
  }

  /** Makes sure the notebook exists (its owner only): its route, creating it on first use. */
  async ensure(): Promise<InnerKey> {
    try {
      return await this.client.route(this.name);
    } catch (e) {
      if (!FlotillaError.is(e, "UnknownOuterKey")) throw e;
    }
    try {
      return await this.client.create(this.name);
    } catch (e) {
      // Created meanwhile (another tab, or a create whose reply was lost).
      if (FlotillaError.is(e, "OuterKeyTaken")) return this.client.route(this.name, { fresh: true });
      throw e;
    }
  }

  /** Where the notebook lives, as the client last learned it (no call), or from the index. */
  async location(): Promise<InnerKey> {
    return this.client.route(this.name);
  }

  /** One page of notes, newest first; pass the previous page's `next` to continue. */
  async page(cursor: Uint8Array | null = null, limit: number = NOTES_PAGE): Promise<NotesPage> {
    const p = await this.client.scanPage(this.name, { reverse: true, to: NOTES_END, limit, cursor });
    return { notes: p.entries.map((e) => decodeNote(e.key, e.value)), next: p.next };
  }

  /** Writes a new note (no `key`) or replaces one (the same key). */
  async save(n: { key?: Uint8Array; title: string; body: string }, now: number = Date.now()): Promise<Note> {
    const key = n.key ?? noteKey(now);
    const value = encodeNote({ title: n.title, body: n.body, updated: now });
    await this.client.put(this.name, key, value);
    return decodeNote(key, value);
  }

  async remove(key: Uint8Array): Promise<boolean> {
    return this.client.delete(this.name, key);
  }

  /** The principals the notebook is shared with (read-only), as its owner recorded them. */
  async readers(): Promise<string[]> {
    const v = await this.client.get(this.name, READERS_KEY);
    if (!v) return [];
    try {
      const list = JSON.parse(toText(v)) as unknown;
      return Array.isArray(list) ? list.filter((x): x is string => typeof x === "string") : [];
    } catch {
      return [];
    }
  }

  /** Sets the read-only sharing list (its owner only); the list is recorded in the notebook. */
  async setReaders(readers: string[]): Promise<string[]> {
    const list = [...new Set(readers.map((r) => Principal.fromText(r.trim()).toText()))].sort();
    await this.client.setAccess(this.name, { readers: list, writers: [] });
    await this.client.put(this.name, READERS_KEY, JSON.stringify(list));
    return list;
  }

  /** Shares the notebook read-only with `reader`. */
  async share(reader: string): Promise<string[]> {
    let p: string;
    try {
      p = Principal.fromText(reader.trim()).toText();
    } catch (e) {
      throw new FlotillaError({ kind: "InvalidArgument", reason: `not a principal: ${JSON.stringify(reader)}`, cause: e });
    }
    if (p === this.owner) throw new FlotillaError({ kind: "InvalidArgument", reason: "that is the notebook's owner" });
    const now = await this.readers();
    return this.setReaders([...now, p]);
  }

  /** Stops sharing with `reader`. */
  async unshare(reader: string): Promise<string[]> {
    const now = await this.readers();
    return this.setReaders(now.filter((r) => r !== reader));
  }
}
