// ctx.storage on LMDB (the `lmdb` package): one environment per service,
// `dataDir/storage/<service>.mdb`, so a service sees only its own data, a
// damaged file costs only its service, and a quota is a count per file.
// This is the only file that imports lmdb.
//
// A write set is checked whole before anything is written (keys, sizes,
// quota), so a refused commit writes nothing. Accepted commits are handed to
// LMDB as one transaction each; LMDB gathers the transactions that arrive
// while it is writing into one group commit, synced to disk before their
// promises settle (overlappingSync off). Until then the write set is kept in
// memory (`#pending`), so reads see it at once; the kernel holds the
// service's outputs until `durable()` settles.

import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { open, type Database, type RootDatabase, type Transaction } from "lmdb";
import { keyProblem, MAX_LIST, StorageOp, STORAGE_OK } from "../protocol/storage.ts";
import type { ResolvedService } from "./config.ts";
import { ErrorCode, MoltError, toMoltError } from "./errors.ts";
import type { KernelLog } from "./log.ts";
import type { ServiceStore, StorageProvider, StoreScratch } from "./storage.ts";
import { decode, encode, encodeStorageFailure } from "./wire.ts";

/** What molt writes in a store's meta database, and refuses a file without. */
const FORMAT = "molt-storage";
const FORMAT_VERSION = 1;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();
const NO_UPPER: Uint8Array = new Uint8Array(0);

type Stored = Uint8Array | null;

/** A failure answer: nothing was written. */
const failed = encodeStorageFailure;

/** A store the kernel can trust, or none: ERR_CORRUPT naming the file otherwise. */
export function lmdbStorage(dataDir: string, log: KernelLog): StorageProvider {
  const dir = join(dataDir, "storage");
  const stores = new Map<string, LmdbStore>();
  return {
    open(service: ResolvedService): ServiceStore {
      let store = stores.get(service.name);
      if (store === undefined) {
        store = new LmdbStore(join(dir, `${service.name}.mdb`), service, log);
        stores.set(service.name, store);
      }
      return store;
    },
    async close(): Promise<void> {
      await Promise.all([...stores.values()].map((s) => s.close()));
      stores.clear();
    },
  };
}

/** The byte after every key that starts with `prefix` (none: the prefix is all 0xff). */
function upperBound(prefix: Uint8Array): Uint8Array {
  const end = new Uint8Array(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] !== 0xff) {
      end[i] = (end[i] as number) + 1;
      return end.subarray(0, i + 1);
    }
  }
  return NO_UPPER;
}

/** Whether a file starts as LMDB's do (its meta page's magic): the lmdb package crashes the process on a file that does not. */
function looksLikeLmdb(file: string): boolean {
  const head = Buffer.alloc(32);
  const fd = openSync(file, "r");
  try {
    if (readSync(fd, head, 0, 32, 0) < 32) return false;
  } finally {
    closeSync(fd);
  }
  return head.readUInt32LE(24) === 0xbeefc0de || head.readUInt32LE(16) === 0xbeefc0de;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

/**
 * A shadow's view of the store: the accepted writes and an LMDB read
 * transaction as they were when it began (so what the running version writes
 * later is not seen), and the shadow's own writes, which go nowhere else.
 */
/** A write set as checked: each key with its UTF-8 bytes and its record (null: delete). */
type Checked = Map<string, { k: Uint8Array; record: Stored }>;

class LmdbScratch implements StoreScratch {
  readonly writes = new Map<string, Stored>();
  readonly pending: ReadonlyMap<string, Stored>;
  txn: Transaction | undefined;

  constructor(pending: ReadonlyMap<string, Stored>, txn: Transaction | undefined) {
    this.pending = pending;
    this.txn = txn;
  }

  close(): void {
    this.txn?.done();
    this.txn = undefined;
  }
}

class LmdbStore implements ServiceStore {
  readonly #file: string;
  readonly #service: string;
  readonly #limitBytes: number;
  readonly #maxRecordBytes: number;
  readonly #maxAnswerBytes: number;
  readonly #log: KernelLog;
  #env: RootDatabase | undefined;
  #data: Database<Uint8Array, Uint8Array> | undefined;
  #meta: Database<unknown, string> | undefined;
  /** Keys and values, in bytes, counting accepted writes not yet on disk. */
  #bytes = 0;
  /** Accepted writes not yet on disk, by key: what reads see first. */
  readonly #pending = new Map<string, { record: Stored; commit: number }>();
  #commits = 0;
  #unsettled = 0;
  #last: Promise<void> = Promise.resolve();
  #failure: MoltError | undefined;

  constructor(file: string, service: ResolvedService, log: KernelLog) {
    this.#file = file;
    this.#service = service.name;
    this.#limitBytes = service.limits.storageMb * 1024 * 1024;
    this.#maxRecordBytes = service.limits.maxMessageBytes;
    // An answer enters the isolate whole: an eighth of its heap, at most 16 MiB (one value, bounded by its own limit, always fits).
    this.#maxAnswerBytes = Math.min(16 * 1024 * 1024, (service.limits.memoryMb * 1024 * 1024) / 8);
    this.#log = log;
    // A store on disk is checked now, before the service serves anything from it.
    if (existsSync(file)) this.#open();
  }

  #open(): Database<Uint8Array, Uint8Array> {
    if (this.#data !== undefined) return this.#data;
    mkdirSync(join(this.#file, ".."), { recursive: true, mode: 0o700 });
    const existed = existsSync(this.#file);
    if (existed && !looksLikeLmdb(this.#file)) {
      throw new MoltError(ErrorCode.CORRUPT, `the storage file ${this.#file} of ${this.#service} is not an LMDB file; it is refused rather than served from`, { service: this.#service });
    }
    let env: RootDatabase;
    try {
      env = open({ path: this.#file, overlappingSync: false, maxDbs: 4, mapSize: 1 << 30 });
    } catch (err) {
      throw new MoltError(ErrorCode.CORRUPT, `the storage file ${this.#file} of ${this.#service} cannot be opened (${(err as Error).message}); it is refused rather than served from`, {
        service: this.#service,
        cause: err,
      });
    }
    try {
      const meta = env.openDB<unknown, string>({ name: "molt", encoding: "msgpack", ...(existed ? { create: false } : {}) });
      const format = meta.get("format") as { name?: unknown; version?: unknown } | undefined;
      if (existed && (format?.name !== FORMAT || format.version !== FORMAT_VERSION)) {
        throw new MoltError(
          ErrorCode.CORRUPT,
          `the storage file ${this.#file} of ${this.#service} is not a molt store of format ${FORMAT_VERSION} (found ${format === undefined ? "none" : JSON.stringify(format)}); it is refused rather than served from`,
          { service: this.#service },
        );
      }
      if (!existed) meta.putSync("format", { name: FORMAT, version: FORMAT_VERSION });
      const bytes = meta.get("bytes");
      this.#bytes = typeof bytes === "number" ? bytes : 0;
      // Private like the rest of dataDir (the lmdb package creates its files 0664).
      for (const file of [this.#file, `${this.#file}-lock`]) if (existsSync(file)) chmodSync(file, 0o600);
      this.#env = env;
      this.#meta = meta;
      this.#data = env.openDB<Uint8Array, Uint8Array>({ name: "data", encoding: "binary", keyEncoding: "binary" });
      return this.#data;
    } catch (err) {
      void env.close();
      if (err instanceof MoltError) throw err;
      throw new MoltError(ErrorCode.CORRUPT, `the storage file ${this.#file} of ${this.#service} cannot be read (${(err as Error).message}); it is refused rather than served from`, {
        service: this.#service,
        cause: err,
      });
    }
  }

  /** A view of the store as it is now, for a shadow: see StoreScratch. */
  scratch(): StoreScratch {
    const pending = new Map<string, Stored>();
    for (const [key, { record }] of this.#pending) pending.set(key, record);
    const txn = this.#data?.useReadTransaction();
    return new LmdbScratch(pending, txn);
  }

  request(bytes: Uint8Array, writable: boolean, given?: StoreScratch): Uint8Array {
    // Only this file makes scratches: any other object is none of them.
    const scratch = given instanceof LmdbScratch ? given : undefined;
    if (this.#failure !== undefined) return failed(this.#failure.code, this.#failure.message);
    let request: unknown;
    try {
      request = decode(bytes);
    } catch {
      return failed(ErrorCode.BAD_MESSAGE, "an undecodable storage request");
    }
    if (!Array.isArray(request)) return failed(ErrorCode.BAD_MESSAGE, "a storage request is an array");
    try {
      switch (request[0]) {
        case StorageOp.GET:
          return this.#get(request[1], scratch);
        case StorageOp.LIST:
          return this.#list(request, scratch);
        case StorageOp.COMMIT:
          if (!writable) {
            return failed(
              ErrorCode.STORAGE_READONLY,
              `only the instance of ${this.#service} that serves its messages writes its storage: init, restore and start, and every trial run of a new version, only read`,
            );
          }
          return this.#commitSets(request[1], scratch);
        default:
          return failed(ErrorCode.BAD_MESSAGE, "an unknown storage operation");
      }
    } catch (err) {
      const e = err instanceof MoltError ? err : new MoltError(ErrorCode.STORAGE_FAILED, `${this.#service}'s storage failed: ${(err as Error).message}`);
      return failed(e.code, e.message);
    }
  }

  durable(): Promise<void> | undefined {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return this.#unsettled === 0 ? undefined : this.#last;
  }

  async close(): Promise<void> {
    const env = this.#env;
    this.#env = this.#data = this.#meta = undefined;
    if (env === undefined) return;
    await this.#last.catch(() => undefined);
    await env.close();
  }

  /** The record under a key as a read sees it: an accepted write first, then the disk. */
  #read(key: string, scratch?: LmdbScratch, encoded?: Uint8Array): Stored {
    if (scratch !== undefined) {
      if (scratch.writes.has(key)) return scratch.writes.get(key) as Stored;
      if (scratch.pending.has(key)) return scratch.pending.get(key) as Stored;
      const found = scratch.txn === undefined ? undefined : this.#data?.get((encoded ?? utf8.encode(key)) as Buffer, { transaction: scratch.txn });
      return found === undefined ? null : new Uint8Array(found);
    }
    const pending = this.#pending.get(key);
    if (pending !== undefined) return pending.record;
    const data = this.#data;
    if (data === undefined) return null;
    const found = data.getBinary((encoded ?? utf8.encode(key)) as Buffer);
    return found === undefined ? null : new Uint8Array(found);
  }

  #keys(keys: unknown): string[] {
    if (!Array.isArray(keys)) throw new MoltError(ErrorCode.BAD_KEY, "keys come as an array");
    for (const key of keys) {
      const problem = keyProblem(key);
      if (problem !== undefined) throw new MoltError(ErrorCode.BAD_KEY, problem);
    }
    return keys as string[];
  }

  #get(keys: unknown, scratch?: LmdbScratch): Uint8Array {
    const asked = this.#keys(keys);
    if (asked.length > MAX_LIST) throw new MoltError(ErrorCode.BAD_REQUEST, `a get asks for at most ${MAX_LIST} keys at once`);
    let bytes = 0;
    const records = asked.map((key, i) => {
      const record = this.#read(key, scratch);
      bytes += record?.byteLength ?? 0;
      // The answer is built in the kernel's memory and copied into the isolate: bounded, whatever the guest asks.
      if (bytes > this.#maxAnswerBytes && i > 0) {
        throw new MoltError(ErrorCode.MESSAGE_TOO_LARGE, `the values asked for in one get pass ${this.#maxAnswerBytes} bytes: ask for fewer keys at once`);
      }
      return record;
    });
    return encode([STORAGE_OK, records]);
  }

  #list(request: unknown[], scratch?: LmdbScratch): Uint8Array {
    const [, prefix, start, end, limit, reverse] = request;
    const text = (value: unknown, what: string): string | undefined => {
      if (value === undefined || value === null) return undefined;
      if (typeof value !== "string") throw new MoltError(ErrorCode.BAD_KEY, `list's ${what} must be a string`);
      return value;
    };
    const prefixBytes = utf8.encode(text(prefix, "prefix") ?? "");
    const startText = text(start, "start");
    const endText = text(end, "end");
    const count = limit === undefined || limit === null ? MAX_LIST : typeof limit === "number" ? limit : Number.NaN;
    if (!Number.isInteger(count) || count < 0) throw new MoltError(ErrorCode.BAD_REQUEST, "list's limit must be a non-negative integer");
    const max = Math.min(count, MAX_LIST);
    // The range: [max(prefix, start), min(end, after prefix)).
    let lower: Uint8Array = prefixBytes;
    if (startText !== undefined) {
      const s = utf8.encode(startText);
      if (compareBytes(s, lower) > 0) lower = s;
    }
    let upper: Uint8Array | undefined = prefixBytes.length === 0 ? undefined : upperBound(prefixBytes);
    if (upper !== undefined && upper.length === 0) upper = undefined;
    if (endText !== undefined) {
      const e = utf8.encode(endText);
      if (upper === undefined || compareBytes(e, upper) < 0) upper = e;
    }
    const inRange = (key: Uint8Array): boolean => compareBytes(key, lower) >= 0 && (upper === undefined || compareBytes(key, upper) < 0);
    const found = new Map<string, { key: Uint8Array; record: Uint8Array }>();
    // Accepted writes not yet on disk change what the disk holds: deletions
    // among them may hide entries, so the disk is asked for that many more.
    let hidden = 0;
    const pending: [string, Uint8Array, Stored][] = [];
    const overlay = (key: string, record: Stored): void => {
      const k = utf8.encode(key);
      if (!inRange(k)) return;
      pending.push([key, k, record]);
      hidden++;
    };
    if (scratch === undefined) for (const [key, { record }] of this.#pending) overlay(key, record);
    else {
      // A shadow sees the store as it was when it began, and its own writes over it (applied after, so they win).
      for (const [key, record] of scratch.pending) overlay(key, record);
      for (const [key, record] of scratch.writes) overlay(key, record);
    }
    const data = this.#data;
    const transaction = scratch?.txn;
    if (data !== undefined && max > 0 && (scratch === undefined || transaction !== undefined)) {
      // LMDB's ranges include their start and exclude their end: going down,
      // the start is the (excluded) upper bound and the lower bound must be
      // kept, so the range is read open-ended and cut here.
      const range =
        reverse === true
          ? data.getRange({ ...(upper === undefined ? {} : { start: upper as Buffer }), reverse: true, limit: max + hidden + 1, ...(transaction === undefined ? {} : { transaction }) })
          : data.getRange({
              ...(lower.length === 0 ? {} : { start: lower as Buffer }),
              ...(upper === undefined ? {} : { end: upper as Buffer }),
              limit: max + hidden,
              ...(transaction === undefined ? {} : { transaction }),
            });
      for (const { key, value } of range) {
        if (!inRange(key)) {
          if (reverse === true && compareBytes(key, lower) < 0) break;
          continue;
        }
        found.set(fromUtf8.decode(key), { key: new Uint8Array(key), record: new Uint8Array(value) });
      }
    }
    for (const [key, k, record] of pending) {
      if (record === null) found.delete(key);
      else found.set(key, { key: k, record });
    }
    const sorted = [...found.entries()].sort((a, b) => compareBytes(a[1].key, b[1].key) * (reverse === true ? -1 : 1)).slice(0, max);
    // A page stops at the answer's byte limit (at least one entry, which a value's own limit bounds); the guest asks again from there.
    let bytes = 0;
    let cut = sorted.length;
    for (let i = 0; i < sorted.length; i++) {
      bytes += (sorted[i] as [string, { record: Uint8Array }])[1].record.byteLength;
      if (bytes > this.#maxAnswerBytes && i > 0) {
        cut = i;
        break;
      }
    }
    const page = sorted.slice(0, cut);
    return encode([STORAGE_OK, page.map(([key]) => key), page.map(([, v]) => v.record), cut < sorted.length]);
  }

  /**
   * The write sets of one turn of the guest, in order, each applied all or
   * nothing: a refused one is answered with its code and the others go on.
   * Those accepted go to LMDB as one transaction.
   */
  #commitSets(sets: unknown, scratch?: LmdbScratch): Uint8Array {
    if (!Array.isArray(sets)) throw new MoltError(ErrorCode.BAD_MESSAGE, "a commit carries a list of write sets");
    // Opened (and its byte count read) before any set is checked and counted.
    if (sets.length > 0 && scratch === undefined) this.#open();
    const accepted: Checked[] = [];
    const results = sets.map((set: unknown) => {
      try {
        if (!Array.isArray(set)) throw new MoltError(ErrorCode.BAD_MESSAGE, "a write set is [keys, records]");
        if (scratch !== undefined) {
          for (const [key, { record }] of this.#check(set[0], set[1], scratch)) scratch.writes.set(key, record);
          return null;
        }
        const writes = this.#check(set[0], set[1]);
        if (writes.size > 0) accepted.push(writes);
        return null;
      } catch (err) {
        const e = toMoltError(err);
        return [e.code, e.message];
      }
    });
    if (accepted.length > 0) this.#write(accepted);
    return encode([STORAGE_OK, results]);
  }

  /** A write set checked whole, and counted against the quota at once: nothing of it is written if any of it is refused. */
  #check(keysValue: unknown, recordsValue: unknown, scratch?: LmdbScratch): Checked {
    const keys = this.#keys(keysValue);
    if (!Array.isArray(recordsValue) || recordsValue.length !== keys.length) {
      throw new MoltError(ErrorCode.BAD_MESSAGE, "a commit has one record (or null) per key");
    }
    // Checked whole first: a refused commit writes nothing.
    const writes: Checked = new Map();
    let delta = 0;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as string;
      const record = recordsValue[i] as unknown;
      if (record !== null && !(record instanceof Uint8Array)) throw new MoltError(ErrorCode.BAD_MESSAGE, "a record is bytes or null");
      if (record !== null && record.byteLength > this.#maxRecordBytes) {
        throw new MoltError(ErrorCode.MESSAGE_TOO_LARGE, `a value of ${record.byteLength} bytes exceeds ${this.#service}'s maxMessageBytes (${this.#maxRecordBytes})`);
      }
      // Encoded once: the quota counts it, the read before it and LMDB's write use it.
      const k = writes.get(key)?.k ?? utf8.encode(key);
      const before = writes.has(key) ? (writes.get(key) as { record: Stored }).record : this.#read(key, scratch, k);
      delta += (record === null ? 0 : k.byteLength + record.byteLength) - (before === null ? 0 : k.byteLength + before.byteLength);
      writes.set(key, { k, record });
    }
    if (delta > 0 && this.#bytes + delta > this.#limitBytes) {
      throw new MoltError(
        ErrorCode.STORAGE_FULL,
        `${this.#service}'s storage would hold ${this.#bytes + delta} bytes, past its limits.storageMb (${this.#limitBytes / 1024 / 1024} MiB)`,
      );
    }
    // A scratch overlay's writes are checked as the store's would be, and kept there alone.
    if (scratch !== undefined || writes.size === 0) return writes;
    this.#bytes += delta;
    const commit = this.#commits + 1;
    for (const [key, { record }] of writes) this.#pending.set(key, { record, commit });
    return writes;
  }

  /** Hands accepted write sets to LMDB as one transaction; reads see them at once, and `durable()` waits for them. */
  #write(sets: Checked[]): void {
    const data = this.#open();
    const meta = this.#meta as Database<unknown, string>;
    const total = this.#bytes;
    const commit = ++this.#commits;
    this.#unsettled++;
    const written = data.transaction(() => {
      for (const writes of sets) {
        for (const { k, record } of writes.values()) {
          if (record === null) void data.remove(k as Buffer);
          else void data.put(k as Buffer, record as Buffer);
        }
      }
      void meta.put("bytes", total);
    });
    // Chained: a reply waits for every commit before it, and one that failed fails all that follow.
    const before = this.#last;
    this.#last = Promise.all([before, written]).then(
      () => {
        this.#unsettled--;
        for (const writes of sets) for (const key of writes.keys()) if (this.#pending.get(key)?.commit === commit) this.#pending.delete(key);
      },
      (err: unknown) => {
        this.#unsettled--;
        this.#failure ??= new MoltError(ErrorCode.STORAGE_FAILED, `${this.#service}'s storage could not be written to ${this.#file}: ${(err as Error).message}`, {
          service: this.#service,
          cause: err,
        });
        this.#log.log("error", "storage write failed: the service's outputs are held back until it is restarted", { service: this.#service, file: this.#file, error: String(err) });
        throw this.#failure;
      },
    );
    // Nobody may await this one (no output waits): its failure is logged above.
    this.#last.catch(() => undefined);
  }
}
