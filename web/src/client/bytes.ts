// Keys and values are bytes. Strings given where bytes are expected are UTF-8 encoded.

export type BytesLike = Uint8Array | string;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** UTF-8 bytes of a string; a Uint8Array is returned as is. */
export function toBytes(b: BytesLike): Uint8Array {
  return typeof b === "string" ? encoder.encode(b) : b;
}

/** The UTF-8 text of bytes (invalid sequences become U+FFFD). */
export function toText(b: Uint8Array): string {
  return decoder.decode(b);
}

export function toHex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

export function fromHex(h: string): Uint8Array {
  if (h.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(h)) throw new Error(`not hex: ${h}`);
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Lexicographic byte order, the order of keys in a SubDB. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** `n` random bytes from the platform's CSPRNG (crypto.getRandomValues). */
export function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  globalThis.crypto.getRandomValues(b);
  return b;
}
