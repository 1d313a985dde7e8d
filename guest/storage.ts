// ctx.storage inside the isolate: a service's durable key-value store, kept
// by the kernel (core/lmdb-store.ts), with a cache of records here.
//
// Each message is a transaction: its writes are kept here, seen by its own
// reads, and sent to the kernel in one commit when its handler returns, or
// dropped if it throws. A call or send after a write commits the writes
// before it first, so nothing leaves ahead of the data it may depend on (the
// kernel then holds it until they are on disk). Code that runs outside a
// message (a timer, a hook, a handler's stray continuation after it
// returned) commits each write on its own.
//
// The cache is coherent because only one instance of a service writes: the
// one behind its mailbox. Every other (a swap's new version before its
// cutover, a rehearsal, a scratch copy) is refused by the kernel, and an
// instance empties its cache whenever it goes live.

import type { Packr } from "msgpackr";
import type { StorageListOptions, ServiceStorage, StorageTransaction } from "../sdk/service.ts";
import { keyProblem, MAX_LIST, RECORD_FORMAT, RECORD_HEADER_BYTES, StorageOp, STORAGE_OK } from "../protocol/storage.ts";
import { ErrorCode, MoltError } from "./errors.ts";

type Stored = Uint8Array | null;
type Migrate = (value: unknown, fromStateVersion: number, key: string) => unknown;

export interface StorageDeps {
  /** One request to the kernel, answered before it returns. */
  ask(request: Uint8Array): Uint8Array;
  /** The runtime's message codec: what a message can carry, a value can be. */
  codec: Packr;
  stateVersion(): number;
  migrate(): Migrate | undefined;
  /** Bytes of records the cache keeps. */
  cacheBytes: number;
}

const NativePromise = Promise;
// Captured when the runtime script runs, before any service code: a service
// that replaces them later cannot change what storage stores or answers.
const reflectApply = Reflect.apply;
const isArray = Array.isArray;
const objectEntries = Object.entries;
const defineProperty = Object.defineProperty;
const mapGet = Map.prototype.get;
const mapSet = Map.prototype.set;
const mapHas = Map.prototype.has;
const mapDelete = Map.prototype.delete;
const mapEntries = Map.prototype.entries;
const mapIteratorNext = Object.getPrototypeOf(new Map().entries()).next as () => IteratorResult<[unknown, unknown]>;
const bytesSet = Uint8Array.prototype.set;
const bytesSubarray = Uint8Array.prototype.subarray;
const bytesSlice = Uint8Array.prototype.slice;
const viewGetUint32 = DataView.prototype.getUint32;
const viewSetUint32 = DataView.prototype.setUint32;
const arraySort = Array.prototype.sort;
const stringStartsWith = String.prototype.startsWith;

const get = <K, V>(m: Map<K, V>, k: K): V | undefined => reflectApply(mapGet, m, [k]) as V | undefined;
const set = <K, V>(m: Map<K, V>, k: K, v: V): void => void reflectApply(mapSet, m, [k, v]);
const has = <K, V>(m: Map<K, V>, k: K): boolean => reflectApply(mapHas, m, [k]) as boolean;
const del = <K, V>(m: Map<K, V>, k: K): boolean => reflectApply(mapDelete, m, [k]) as boolean;
/** A map's entries as an array, in order, without its iterator (which a service can replace). */
function entries<K, V>(m: ReadonlyMap<K, V>): [K, V][] {
  const out: [K, V][] = [];
  const it = reflectApply(mapEntries, m, []) as object;
  for (let r = reflectApply(mapIteratorNext, it, []) as IteratorResult<[K, V]>; r.done !== true; r = reflectApply(mapIteratorNext, it, []) as IteratorResult<[K, V]>) out[out.length] = r.value;
  return out;
}
/** A Map for the service whose own `then` is undefined: a promise resolved with it never calls a `then` the service put on Object.prototype. */
class ResultMap<K, V> extends Map<K, V> {}
defineProperty(ResultMap.prototype, "then", { value: undefined, writable: false, enumerable: false, configurable: false });

/**
 * The records this instance has read or written, and its way to the kernel.
 * The write sets of the messages that end in one turn go to the kernel
 * together, in one request (each still applied all or nothing), when the
 * turn's replies leave (`settle`): a crossing costs tens of microseconds,
 * a write set a few. A read of a key in a queued set, a list, or a call or
 * send after a write settles the queue first, so nothing is read or sent
 * ahead of what it depends on.
 */
export class StorageCore {
  readonly #deps: StorageDeps;
  readonly #cache = new Map<string, Stored>();
  #cached = 0;
  /** Write sets waiting for the turn's commit, in the order their messages ended. */
  #queued: ReadonlyMap<string, Stored>[] = [];
  #queuedKeys = new Set<string>();
  #nextTicket = 1;
  #firstQueued = 1;
  /** Tickets whose write set the kernel refused, with why. */
  readonly #refused = new Map<number, MoltError>();

  constructor(deps: StorageDeps) {
    this.#deps = deps;
  }

  /** Forgets every cached record: called when the instance goes live. */
  clear(): void {
    this.#cache.clear();
    this.#cached = 0;
  }

  #ask(request: unknown[]): unknown[] {
    // An exact-size copy: isolated-vm copies a view's whole buffer, and msgpackr's is shared (and sized for the last dump).
    const bytes = reflectApply(bytesSlice, this.#deps.codec.pack(request), []) as Uint8Array;
    const answer = this.#deps.codec.unpack(this.#deps.ask(bytes)) as unknown[];
    if (answer[0] !== STORAGE_OK) throw new MoltError(String(answer[1]), String(answer[2]));
    return answer;
  }

  #remember(key: string, record: Stored): void {
    const before = get(this.#cache, key);
    if (before !== undefined || has(this.#cache, key)) {
      del(this.#cache, key);
      this.#cached -= key.length + (before?.byteLength ?? 0);
    }
    const size = key.length + (record?.byteLength ?? 0);
    if (size > this.#deps.cacheBytes / 4) return;
    set(this.#cache, key, record);
    this.#cached += size;
    // The oldest first: a Map iterates in insertion order, and a hit re-inserts.
    if (this.#cached <= this.#deps.cacheBytes) return;
    // Walked one entry at a time from the oldest (never copied whole: a full
    // cache evicts on every insert), through the captured iterator.
    const it = reflectApply(mapEntries, this.#cache, []) as object;
    while (this.#cached > this.#deps.cacheBytes) {
      const r = reflectApply(mapIteratorNext, it, []) as IteratorResult<[string, Stored]>;
      if (r.done === true) break;
      const old = r.value[0];
      del(this.#cache, old);
      this.#cached -= old.length + (r.value[1]?.byteLength ?? 0);
    }
  }

  /** Queues a message's write set for the turn's commit; its ticket says later whether it was refused. */
  enqueue(writes: ReadonlyMap<string, Stored>): number {
    if (writes.size === 0) return 0;
    this.#queued[this.#queued.length] = writes;
    for (const [key] of entries(writes)) this.#queuedKeys.add(key);
    return this.#nextTicket++;
  }

  get queued(): boolean {
    return this.#queued.length > 0;
  }

  /** Commits every queued write set in one request; those the kernel refuses are kept for `refusal`. */
  settle(): void {
    if (this.#queued.length === 0) return;
    const sets = this.#queued;
    const first = this.#firstQueued;
    this.#queued = [];
    this.#queuedKeys = new Set();
    this.#firstQueued = this.#nextTicket;
    let results: unknown[];
    try {
      const request: unknown[] = [];
      for (let i = 0; i < sets.length; i++) {
        const all = entries(sets[i] as ReadonlyMap<string, Stored>);
        const keys: string[] = [];
        const records: Stored[] = [];
        for (let j = 0; j < all.length; j++) {
          keys[j] = (all[j] as [string, Stored])[0];
          records[j] = (all[j] as [string, Stored])[1];
        }
        request[i] = [keys, records];
      }
      results = this.#ask([StorageOp.COMMIT, request])[1] as unknown[];
    } catch (err) {
      // The request as a whole was refused (the store failed, or cannot be reached): every set with it.
      const e = err instanceof MoltError ? err : new MoltError(ErrorCode.STORAGE_FAILED, String(err));
      for (let i = 0; i < sets.length; i++) this.#refused.set(first + i, e);
      return;
    }
    for (let i = 0; i < sets.length; i++) {
      const result = results[i];
      if (result === null || result === undefined) {
        for (const [key, record] of entries(sets[i] as ReadonlyMap<string, Stored>)) this.#remember(key, record);
      } else {
        const [code, message] = result as [unknown, unknown];
        this.#refused.set(first + i, new MoltError(String(code), String(message)));
      }
    }
  }

  /** Why the kernel refused a ticket's write set, once; undefined if it was applied (or was empty). */
  refusal(ticket: number): MoltError | undefined {
    if (ticket === 0 || this.#refused.size === 0) return undefined;
    const why = this.#refused.get(ticket);
    this.#refused.delete(ticket);
    return why;
  }

  /** The committed records of `keys`, from the cache, the rest in one request. */
  read(keys: readonly string[]): Stored[] {
    if (this.#queued.length > 0) for (const key of keys) if (this.#queuedKeys.has(key)) this.settle();
    const out: Stored[] = new Array<Stored>(keys.length);
    let missing: number[] | undefined;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as string;
      const hit = get(this.#cache, key);
      if (hit === undefined && !has(this.#cache, key)) (missing ??= [])[missing.length] = i;
      else {
        out[i] = hit as Stored;
        // Refreshed: the least recently used goes first.
        del(this.#cache, key);
        set(this.#cache, key, hit as Stored);
      }
    }
    if (missing !== undefined) {
      const asked: string[] = [];
      for (let j = 0; j < missing.length; j++) asked[j] = keys[missing[j] as number] as string;
      const records = this.#ask([StorageOp.GET, asked])[1] as Stored[];
      for (let j = 0; j < missing.length; j++) {
        const record = records[j] ?? null;
        out[missing[j] as number] = record;
        this.#remember(asked[j] as string, record);
      }
    }
    return out;
  }

  /** The committed entries in a range, in key order, asked for a page (the kernel's MAX_LIST) at a time until `limit` or the range's end. */
  list(options: StorageListOptions): [string[], Uint8Array[]] {
    this.settle();
    const keys: string[] = [];
    const records: Uint8Array[] = [];
    const reverse = options.reverse === true;
    let want = options.limit ?? Number.POSITIVE_INFINITY;
    let start = options.start ?? null;
    let end = options.end ?? null;
    while (want > 0) {
      const page = Math.min(want, MAX_LIST);
      const answer = this.#ask([StorageOp.LIST, options.prefix ?? null, start, end, page, reverse]);
      const got = answer[1] as string[];
      const bytes = answer[2] as Uint8Array[];
      for (let i = 0; i < got.length; i++) {
        keys[keys.length] = got[i] as string;
        records[records.length] = bytes[i] as Uint8Array;
      }
      want -= got.length;
      // A short page ends the range, unless the kernel cut it at its byte limit (answer[3]).
      if (got.length < page && answer[3] !== true) break;
      if (got.length === 0) break;
      // The next page starts just past the last key: the key followed by U+0000 is the next in UTF-8 byte order; going down, the last key is the (excluded) end.
      const last = got[got.length - 1] as string;
      if (reverse) end = last;
      else start = `${last}\u0000`;
    }
    return [keys, records];
  }

  /** Applies a write set all together now (after those queued before it), or throws with the kernel's code and writes nothing. */
  commit(writes: ReadonlyMap<string, Stored>): void {
    const ticket = this.enqueue(writes);
    this.settle();
    const why = this.refusal(ticket);
    if (why !== undefined) throw why;
  }

  encode(value: unknown): Uint8Array {
    if (value === undefined) throw new MoltError(ErrorCode.UNENCODABLE, "undefined cannot be stored: delete the key instead");
    let packed: Uint8Array;
    try {
      packed = this.#deps.codec.pack(value);
    } catch (err) {
      if (err instanceof MoltError) throw err;
      throw new MoltError(ErrorCode.UNENCODABLE, `the value cannot be stored: ${(err as Error).message}`);
    }
    const record = new Uint8Array(RECORD_HEADER_BYTES + packed.byteLength);
    record[0] = RECORD_FORMAT;
    reflectApply(viewSetUint32, new DataView(record.buffer), [1, Math.min(this.#deps.stateVersion(), 0xffffffff)]);
    reflectApply(bytesSet, record, [packed, RECORD_HEADER_BYTES]);
    return record;
  }

  /** A record's value, through this version's `migrate` when another stateVersion wrote it. */
  decode(key: string, record: Uint8Array): unknown {
    if (record.byteLength < RECORD_HEADER_BYTES || record[0] !== RECORD_FORMAT) {
      throw new MoltError(ErrorCode.CORRUPT, `the stored value of "${key}" is not a molt record`);
    }
    const from = reflectApply(viewGetUint32, new DataView(record.buffer, record.byteOffset, record.byteLength), [1]) as number;
    const value = this.#deps.codec.unpack(reflectApply(bytesSubarray, record, [RECORD_HEADER_BYTES]) as Uint8Array);
    const migrate = this.#deps.migrate();
    return from === this.#deps.stateVersion() || migrate === undefined ? value : migrate(value, from, key);
  }
}

function checkKey(key: unknown): string {
  const problem = keyProblem(key);
  if (problem !== undefined) throw new MoltError(ErrorCode.BAD_KEY, problem);
  return key as string;
}

function checkKeys(keys: unknown): string[] {
  if (!isArray(keys)) throw new MoltError(ErrorCode.BAD_KEY, "keys come as an array");
  const out: string[] = [];
  for (let i = 0; i < keys.length; i++) out[i] = checkKey(keys[i]);
  return out;
}

/**
 * One transaction's view of the store: its own writes first, then its
 * parent's (a message's, for a `transaction` inside it), then what is
 * committed. A message's transaction commits when its handler returns; one
 * with `auto` commits each write (or each nested transaction) at once.
 */
export class Transaction implements ServiceStorage, StorageTransaction {
  readonly #core: StorageCore;
  readonly #parent: Transaction | undefined;
  #writes: Map<string, Stored> | undefined;
  #auto: boolean;
  #rolledBack = false;
  /** A nested transaction whose run has settled: a write to it now would go nowhere. */
  #ended = false;
  /** The write set queued when the message ended (StorageCore.refusal tells its fate). */
  ticket = 0;

  constructor(core: StorageCore, options: { parent?: Transaction; auto?: boolean } = {}) {
    this.#core = core;
    this.#parent = options.parent;
    this.#auto = options.auto === true;
  }

  /** The record a read in this transaction sees: undefined when no write of this chain touched the key. */
  #written(key: string): Stored | undefined {
    for (let t: Transaction | undefined = this; t !== undefined; t = t.#parent) {
      const w = t.#writes;
      if (w !== undefined && has(w, key)) return get(w, key) as Stored;
    }
    return undefined;
  }

  #records(keys: readonly string[]): Stored[] {
    const out: Stored[] = new Array<Stored>(keys.length);
    const unknown: number[] = [];
    for (let i = 0; i < keys.length; i++) {
      const w = this.#written(keys[i] as string);
      if (w === undefined) unknown[unknown.length] = i;
      else out[i] = w;
    }
    if (unknown.length > 0) {
      const asked: string[] = [];
      for (let j = 0; j < unknown.length; j++) asked[j] = keys[unknown[j] as number] as string;
      const records = this.#core.read(asked);
      for (let j = 0; j < unknown.length; j++) out[unknown[j] as number] = records[j] as Stored;
    }
    return out;
  }

  #write(key: string, record: Stored): void {
    if (this.#rolledBack) throw new MoltError(ErrorCode.USAGE, "this transaction was rolled back");
    if (this.#ended) throw new MoltError(ErrorCode.USAGE, "this transaction has ended: write through its parent");
    if (this.#auto && this.#parent === undefined) {
      const one = new Map<string, Stored>();
      set(one, key, record);
      this.#core.commit(one);
      return;
    }
    set((this.#writes ??= new Map()), key, record);
  }

  get<T = unknown>(key: string): Promise<T | undefined>;
  get<T = unknown>(keys: readonly string[]): Promise<Map<string, T>>;
  get(keyOrKeys: string | readonly string[]): Promise<unknown> {
    return settle(async () => {
      if (typeof keyOrKeys === "string" || !Array.isArray(keyOrKeys)) {
        const key = checkKey(keyOrKeys);
        const record = (this.#records([key])[0] ?? null) as Stored;
        return record === null ? undefined : this.#core.decode(key, record);
      }
      const keys = checkKeys(keyOrKeys);
      const records = this.#records(keys);
      const found = new ResultMap<string, unknown>();
      for (let i = 0; i < keys.length; i++) {
        const record = records[i] as Stored;
        if (record !== null) set(found, keys[i] as string, this.#core.decode(keys[i] as string, record));
      }
      return found;
    });
  }

  put(key: string, value: unknown): Promise<void>;
  put(entries: Readonly<Record<string, unknown>>): Promise<void>;
  put(keyOrEntries: string | Readonly<Record<string, unknown>>, value?: unknown): Promise<void> {
    return settle(async () => {
      if (typeof keyOrEntries === "string") {
        this.#write(checkKey(keyOrEntries), this.#core.encode(value));
        return;
      }
      if (typeof keyOrEntries !== "object" || keyOrEntries === null) throw new MoltError(ErrorCode.BAD_KEY, "put takes a key and a value, or an object of entries");
      // Every entry encoded before any is written: one that cannot be stored writes none.
      const given = objectEntries(keyOrEntries);
      const batch = new Map<string, Stored>();
      for (let i = 0; i < given.length; i++) {
        const [k, v] = given[i] as [string, unknown];
        set(batch, checkKey(k), this.#core.encode(v));
      }
      if (this.#auto && this.#parent === undefined) this.#core.commit(batch);
      else for (const [k, record] of entries(batch)) this.#write(k, record);
    });
  }

  delete(key: string): Promise<boolean>;
  delete(keys: readonly string[]): Promise<number>;
  delete(keyOrKeys: string | readonly string[]): Promise<boolean | number> {
    return settle(async () => {
      const single = typeof keyOrKeys === "string" || !Array.isArray(keyOrKeys);
      const keys = single ? [checkKey(keyOrKeys)] : checkKeys(keyOrKeys);
      const records = this.#records(keys);
      let existing = 0;
      const batch = new Map<string, Stored>();
      for (let i = 0; i < keys.length; i++) {
        if (records[i] !== null) existing++;
        set(batch, keys[i] as string, null);
      }
      if (this.#auto && this.#parent === undefined) this.#core.commit(batch);
      else for (let i = 0; i < keys.length; i++) this.#write(keys[i] as string, null);
      return single ? existing === 1 : existing;
    });
  }

  list<T = unknown>(options: StorageListOptions = {}): Promise<Map<string, T>> {
    return settle(async () => {
      if (typeof options !== "object" || options === null) throw new MoltError(ErrorCode.BAD_REQUEST, "list takes an options object");
      const { prefix, start, end, limit, reverse } = options;
      for (const [name, v] of [["prefix", prefix], ["start", start], ["end", end]] as const) {
        if (v !== undefined && typeof v !== "string") throw new MoltError(ErrorCode.BAD_KEY, `list's ${name} must be a string`);
      }
      if (limit !== undefined && (!Number.isInteger(limit) || limit < 0)) throw new MoltError(ErrorCode.BAD_REQUEST, "list's limit must be a non-negative integer");
      // What this transaction wrote changes the listing: asked for that many more, merged, cut to the limit.
      const mine = new Map<string, Stored>();
      const chain: Transaction[] = [];
      for (let t: Transaction | undefined = this; t !== undefined; t = t.#parent) chain.unshift(t);
      for (const t of chain) if (t.#writes !== undefined) for (const [k, r] of entries(t.#writes)) set(mine, k, r);
      const inRange = (k: string): boolean =>
        (prefix === undefined || (reflectApply(stringStartsWith, k, [prefix]) as boolean)) && (start === undefined || byteOrder(k, start) >= 0) && (end === undefined || byteOrder(k, end) < 0);
      const relevant: [string, Stored][] = [];
      for (const e of entries(mine)) if (inRange(e[0])) relevant[relevant.length] = e;
      const asked = limit === undefined ? undefined : limit + relevant.length;
      const [keys, records] = this.#core.list({ ...options, ...(asked === undefined ? {} : { limit: asked }) });
      const merged = new Map<string, Uint8Array>();
      for (let i = 0; i < keys.length; i++) set(merged, keys[i] as string, records[i] as Uint8Array);
      for (let i = 0; i < relevant.length; i++) {
        const [k, r] = relevant[i] as [string, Stored];
        if (r === null) del(merged, k);
        else set(merged, k, r);
      }
      const all = entries(merged);
      reflectApply(arraySort, all, [(a: [string, Uint8Array], b: [string, Uint8Array]) => byteOrder(a[0], b[0]) * (reverse === true ? -1 : 1)]);
      const out = new ResultMap<string, T>();
      const n = limit === undefined ? all.length : Math.min(limit, all.length);
      for (let i = 0; i < n; i++) {
        const [k, r] = all[i] as [string, Uint8Array];
        set(out, k, this.#core.decode(k, r) as T);
      }
      return out;
    });
  }

  transaction<T>(run: (txn: StorageTransaction) => T | Promise<T>): Promise<T> {
    return settle(async () => {
      if (typeof run !== "function") throw new MoltError(ErrorCode.USAGE, "transaction takes a function");
      const child = new Transaction(this.#core, { parent: this });
      try {
        const result = await run(child);
        child.#finish();
        return result;
      } finally {
        child.#ended = true;
      }
    });
  }

  /** Marks this nested transaction's writes for dropping: nothing it wrote applies. */
  rollback(): void {
    this.#rolledBack = true;
    this.#writes = undefined;
  }

  /** A nested transaction that completed: its writes join its parent's (or commit, at the top of an auto chain). */
  #finish(): void {
    const writes = this.#writes;
    this.#writes = undefined;
    if (this.#rolledBack || writes === undefined) return;
    const parent = this.#parent as Transaction;
    if (parent.#auto && parent.#parent === undefined) parent.#core.commit(writes);
    else for (const [k, r] of entries(writes)) set((parent.#writes ??= new Map()), k, r);
  }

  /** Commits this message's writes so far, now: before a call or send leaves. */
  commitPending(): void {
    const writes = this.#writes;
    // Nothing of its own: what other messages queued still goes first.
    if (writes === undefined || writes.size === 0) return this.#core.settle();
    this.#writes = undefined;
    this.#core.commit(writes);
  }

  /**
   * The message ended: its handler returned (its writes are queued for the
   * turn's commit, `ticket`) or threw (nothing it wrote since its last call
   * or send applies). From now on, each write commits at once.
   */
  end(committed: boolean): void {
    const writes = this.#writes;
    this.#writes = undefined;
    this.#auto = true;
    if (committed && writes !== undefined) this.ticket = this.#core.enqueue(writes);
  }
}

/** Runs an operation as a promise: a synchronous throw becomes its rejection, as callers of an async API expect. */
function settle<T>(run: () => Promise<T>): Promise<T> {
  try {
    return run();
  } catch (err) {
    return NativePromise.reject(err);
  }
}

/** Orders two keys as the store does: by their UTF-8 bytes (code point order, not UTF-16's). */
export function byteOrder(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i) as number;
    const y = b.codePointAt(i) as number;
    if (x !== y) return x < y ? -1 : 1;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}
