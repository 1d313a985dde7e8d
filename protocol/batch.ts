// A batch: several messages in one crossing of an isolate boundary, both
// ways (messages and their replies, a guest's calls and their answers). One
// layout for all of them, read and written here by both sides:
//
//   meta:  `width` numbers per entry; the last is the byte length of the
//          entry's body, or -1 when it has none
//   bytes: the bodies, end to end, in entry order
//
// Whatever arrives from the other side is read as hostile: a length that
// does not fit ends the reading.

/** Packs `heads` (width - 1 numbers per entry, flat) and `bodies` into one batch. */
export function packBatch(width: number, heads: readonly number[], bodies: readonly (Uint8Array | undefined)[]): [Float64Array, Uint8Array] {
  const count = bodies.length;
  const meta = new Float64Array(count * width);
  let total = 0;
  for (let i = 0; i < count; i++) total += bodies[i]?.byteLength ?? 0;
  const bytes = new Uint8Array(total);
  let at = 0;
  for (let i = 0; i < count; i++) {
    for (let k = 0; k < width - 1; k++) meta[i * width + k] = heads[i * (width - 1) + k] as number;
    const body = bodies[i];
    meta[i * width + width - 1] = body === undefined ? -1 : body.byteLength;
    if (body !== undefined) {
      bytes.set(body, at);
      at += body.byteLength;
    }
  }
  return [meta, bytes];
}

/**
 * Calls `visit` for each entry with the offset of its numbers in `meta` and
 * its body (a view of `bytes`, undefined when it has none). Returns false,
 * having stopped, at the first entry whose length does not fit, or when the
 * arguments are not a batch at all.
 */
export function readBatch(width: number, meta: unknown, bytes: unknown, visit: (offset: number, body: Uint8Array | undefined) => void): boolean {
  if (!(meta instanceof Float64Array) || !(bytes instanceof Uint8Array)) return false;
  let at = 0;
  for (let offset = 0; offset + width <= meta.length; offset += width) {
    const length = meta[offset + width - 1] as number;
    if (length === -1) {
      visit(offset, undefined);
      continue;
    }
    if (!Number.isInteger(length) || length < 0 || at + length > bytes.length) return false;
    visit(offset, bytes.subarray(at, at + length));
    at += length;
  }
  return true;
}
