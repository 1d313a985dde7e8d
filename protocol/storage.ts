// What the guest runtime and the kernel's store agree on for `ctx.storage`:
// the requests a guest sends (msgpack, one crossing each), the answers, the
// limits on keys, and the layout of a stored record. The kernel keeps the
// records as opaque bytes: it reads a record's length, never its value.

/** A storage request: [op, ...args], msgpack-encoded by the guest. */
export const StorageOp = {
  /** [GET, keys]: answered [OK, records], a record or null per key, in order. */
  GET: 0,
  /** [LIST, prefix, start, end, limit, reverse]: answered [OK, keys, records] in key order (UTF-8 byte order). */
  LIST: 1,
  /**
   * [COMMIT, sets]: the write sets of one turn of the guest, in order, each
   * [keys, records] (a record, or null to delete, per key) and applied all
   * or nothing; answered [OK, results], a result per set: null, or
   * [code, message] for one refused (the others apply).
   */
  COMMIT: 2,
} as const;
export type StorageOp = (typeof StorageOp)[keyof typeof StorageOp];

/** An answer's first element. A failure is [FAILED, code, message]: nothing was written. */
export const STORAGE_OK = 1;
export const STORAGE_FAILED = 0;

/** Longest key, in UTF-8 bytes: well inside LMDB's own limit (1,978 bytes in the build molt uses). */
export const MAX_KEY_BYTES = 1024;

/** A list asks for at most this many entries at once; a larger `limit` is cut to it. */
export const MAX_LIST = 10_000;

/**
 * A stored record: one format byte, the stateVersion of the version that
 * wrote it (uint32, big-endian), then the value as msgpack. The kernel never
 * looks past the header; the reading version decides, from the
 * stateVersion, whether its `migrate` must see the value first.
 */
export const RECORD_FORMAT = 1;
export const RECORD_HEADER_BYTES = 5;

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Whether a key is one the store takes: a string of 1 to MAX_KEY_BYTES UTF-8 bytes. */
export function keyProblem(key: unknown): string | undefined {
  if (typeof key !== "string") return `a key must be a string, not ${key === null ? "null" : typeof key}`;
  if (key.length === 0) return "a key must not be empty";
  // A lone surrogate would reach the store as U+FFFD, and two keys would be one.
  if (LONE_SURROGATE.test(key)) return "a key must be well-formed Unicode (it has a lone surrogate)";
  // A UTF-16 code unit is at most 3 UTF-8 bytes: only long keys need counting.
  if (key.length * 3 > MAX_KEY_BYTES && utf8Length(key) > MAX_KEY_BYTES) return `a key is at most ${MAX_KEY_BYTES} UTF-8 bytes`;
  return undefined;
}

/** The UTF-8 length of a string, lone surrogates counted as U+FFFD (3 bytes), as TextEncoder writes them. */
export function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}
