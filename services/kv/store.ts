// Where kv keeps its entries: in ctx.storage, each user's key under a prefix
// of its own, so that any string a user picks maps to one storage key and
// leaves the rest of the key space free for kv's own records later.
//
// `legacy` is the heap map of a kv from before storage (stateVersion 1),
// carried over by `restore`, which may only read. Reads fall back to it, a
// write puts the key in storage, which from then on shadows its legacy copy,
// and a delete removes both. A set never touches the heap: if the store
// refuses its commit (ERR_STORAGE_FULL), the old value is still there.

import type { ServiceStorage } from "molt/service";

export type State = { legacy: Map<string, unknown> };

const PREFIX = "k:";
/** Entries asked of storage at once, when listing everything under a prefix. */
const PAGE = 1000;

/** A user's key, checked; storage itself refuses one that is too long (ERR_BAD_KEY). */
function checkKey(key: unknown): string {
  if (typeof key !== "string" || key === "") throw Object.assign(new TypeError("a key is a non-empty string"), { code: "ERR_BAD_KEY" });
  return key;
}

/** The value under `key`, or undefined when there is none. */
export async function read(state: State, storage: ServiceStorage, key: string): Promise<unknown> {
  const value = await storage.get(PREFIX + checkKey(key));
  if (value !== undefined || !state.legacy.has(key)) return value;
  return state.legacy.get(key) ?? null;
}

export async function write(storage: ServiceStorage, key: string, value: unknown): Promise<void> {
  // Storage keeps no undefined (a message may carry one): stored as null, which `get` answered for it before.
  await storage.put(PREFIX + checkKey(key), value === undefined ? null : value);
}

/** Whether the key existed. */
export async function remove(state: State, storage: ServiceStorage, key: string): Promise<boolean> {
  const stored = await storage.delete(PREFIX + checkKey(key));
  return state.legacy.delete(key) || stored;
}

/** Every entry whose key starts with `prefix`, in no particular order. */
export async function entries(state: State, storage: ServiceStorage, prefix: string): Promise<Map<string, unknown>> {
  const found = new Map<string, unknown>();
  let start: string | undefined;
  for (;;) {
    const page = await storage.list({ prefix: PREFIX + prefix, ...(start === undefined ? {} : { start }), limit: PAGE });
    let last = "";
    for (const [key, value] of page) {
      found.set(key.slice(PREFIX.length), value);
      last = key;
    }
    if (page.size < PAGE) break;
    // The next key after `last` in storage's byte order.
    start = `${last}\0`;
  }
  for (const [key, value] of state.legacy) if (key.startsWith(prefix) && !found.has(key)) found.set(key, value);
  return found;
}
