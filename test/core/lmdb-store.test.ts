// The host's side of ctx.storage (core/lmdb-store.ts), driven directly with
// requests laid out as a guest sends them (protocol/storage.ts): reads that
// see accepted writes before they reach the disk, lists in UTF-8 byte order
// over the disk and those writes together, commits refused whole (a bad key,
// a record too large, a quota exceeded) with nothing written, a quota count
// that survives a restart, read-only instances, hostile requests answered
// with a code and never a throw, and files that are not molt's refused by
// name, directly and at a kernel's start.

import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { open } from "lmdb";
import { afterEach, describe, expect, it } from "vitest";
import { resolveConfig, type ResolvedService } from "../../core/config.ts";
import { MoltError } from "../../core/errors.ts";
import { lmdbStorage } from "../../core/lmdb-store.ts";
import type { ServiceStore, StorageProvider } from "../../core/storage.ts";
import { decode, encode } from "../../core/wire.ts";
import { MAX_LIST, StorageOp, STORAGE_FAILED, STORAGE_OK } from "../../protocol/storage.ts";
import { rejection, startKernel } from "../support/kernel.ts";
import { FIXTURES, ROOT } from "../support/runtime.ts";

const utf8 = new TextEncoder();
const text = new TextDecoder();
const quiet = { log: (): void => undefined };

/** A service as the kernel resolves it from the config, with these limits. */
function spec(name: string, limits: Record<string, number> = {}): ResolvedService {
  const resolved = resolveConfig({ services: { [name]: { entry: "./x.ts", limits } } }, "/srv/app").services[name];
  if (resolved === undefined) throw new Error(`no service ${name}`);
  return resolved;
}

/** A record as the store keeps it: opaque bytes (here, text). */
const record = (value: string): Uint8Array => utf8.encode(value);
/** A record of `n` bytes. */
const sized = (n: number): Uint8Array => new Uint8Array(n).fill(0x61);

type Answer = { ok: true; rest: unknown[] } | { ok: false; code: string };

/**
 * What a request came to: the code of the whole request's refusal, or of
 * the first write set of a commit that was refused, or "OK".
 */
function outcome(answer: Answer, op: unknown): string {
  if (!answer.ok) return answer.code;
  if (op !== StorageOp.COMMIT) return "OK";
  const refused = (answer.rest[0] as (null | [string, string])[]).find((r) => r !== null);
  return refused === undefined ? "OK" : refused[0];
}

/** One service's store, asked as a guest asks it. */
class Client {
  constructor(readonly store: ServiceStore) {}

  ask(request: unknown, writable = true): Answer {
    return this.raw(encode(request), writable);
  }

  raw(bytes: Uint8Array, writable = true): Answer {
    const answer = decode(this.store.request(bytes, writable)) as unknown[];
    if (answer[0] === STORAGE_OK) return { ok: true, rest: answer.slice(1) };
    expect(answer[0]).toBe(STORAGE_FAILED);
    expect(typeof answer[2]).toBe("string");
    return { ok: false, code: String(answer[1]) };
  }

  /** The code a request is refused with, or "OK". */
  code(request: unknown[], writable = true): string {
    return outcome(this.ask(request, writable), request[0]);
  }

  get(keys: string[]): (string | null)[] {
    const answer = this.ask([StorageOp.GET, keys]);
    if (!answer.ok) throw new Error(`get refused: ${answer.code}`);
    return (answer.rest[0] as (Uint8Array | null)[]).map((r) => (r === null ? null : text.decode(r)));
  }

  /** Several write sets in one request, as a guest's turn sends them: each one's code, or the whole request's. */
  commitSets(sets: Writes[], writable = true): string[] | string {
    const answer = this.ask([StorageOp.COMMIT, sets.map(asSet)], writable);
    if (!answer.ok) return answer.code;
    return (answer.rest[0] as (null | [string, string])[]).map((r) => (r === null ? "OK" : r[0]));
  }

  /** One write set: puts (bytes, or text) and deletions (null), applied all together or not at all. */
  commit(writes: Writes, writable = true): string {
    return this.code([StorageOp.COMMIT, [asSet(writes)]], writable);
  }

  list(options: { prefix?: string; start?: string; end?: string; limit?: number; reverse?: boolean } = {}): [string, string][] {
    const answer = this.ask([StorageOp.LIST, options.prefix ?? null, options.start ?? null, options.end ?? null, options.limit ?? null, options.reverse === true]);
    if (!answer.ok) throw new Error(`list refused: ${answer.code}`);
    const [keys, records] = answer.rest as [string[], Uint8Array[]];
    return keys.map((k, i) => [k, text.decode(records[i])]);
  }
}

type Writes = [string, Uint8Array | string | null][];

/** A write set as a commit carries it: [keys, records]. */
const asSet = (writes: Writes): [string[], (Uint8Array | null)[]] => [writes.map(([k]) => k), writes.map(([, v]) => (typeof v === "string" ? record(v) : v))];

/** Every provider a test opened, by its dataDir: closed after the test, so no environment outlives it. */
const opened: { dataDir: string; provider: StorageProvider }[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((o) => o.provider.close()));
});

function provider(dataDir: string): StorageProvider {
  const p = lmdbStorage(dataDir, quiet);
  opened.push({ dataDir, provider: p });
  return p;
}

const fresh = (): string => mkdtempSync(join(tmpdir(), "molt-lmdb-"));

function client(dataDir = fresh(), service: ResolvedService = spec("svc")): Client {
  return new Client(provider(dataDir).open(service));
}

/** Closes every provider of `dataDir` (waiting for their writes) and opens the service's store again, as a restarted runtime would. */
async function reopen(dataDir: string, service: ResolvedService = spec("svc")): Promise<Client> {
  await Promise.all(opened.filter((o) => o.dataDir === dataDir).map((o) => o.provider.close()));
  return new Client(provider(dataDir).open(service));
}

/** The store's own order: UTF-8 bytes. */
const byUtf8 = (a: string, b: string): number => Buffer.compare(utf8.encode(a), utf8.encode(b));

describe("lmdbStorage: reads and writes", () => {
  it("answers absent keys with null, sees a commit at once, says when it is durable, and reads it from disk after a restart", async () => {
    const dataDir = fresh();
    const c = new Client(provider(dataDir).open(spec("svc")));
    expect(c.get(["a", "b"])).toEqual([null, null]);
    expect(c.store.durable()).toBeUndefined();
    expect(c.commit([["a", "1"], ["b", "2"]])).toBe("OK");
    const durable = c.store.durable();
    expect(durable).toBeInstanceOf(Promise);
    // Seen before it is on disk: the accepted write set answers first.
    expect(c.get(["b", "a", "c"])).toEqual(["2", "1", null]);
    await durable;
    expect(c.store.durable()).toBeUndefined();
    expect(c.get(["a", "b"])).toEqual(["1", "2"]);
    expect(c.commit([["a", null]])).toBe("OK");
    expect(c.get(["a", "b"])).toEqual([null, "2"]);
    // Closing waits for the last commit: nothing accepted is lost by a graceful stop.
    const again = await reopen(dataDir);
    expect(again.get(["a", "b"])).toEqual([null, "2"]);
  });

  it("keeps each service's keys in its own file", async () => {
    const dataDir = fresh();
    const p = provider(dataDir);
    const a = new Client(p.open(spec("alpha")));
    const b = new Client(p.open(spec("beta")));
    expect(a.commit([["k", "alpha's"]])).toBe("OK");
    expect(b.get(["k"])).toEqual([null]);
    expect(b.list()).toEqual([]);
    expect(b.commit([["k", "beta's"]])).toBe("OK");
    await Promise.all([a.store.durable(), b.store.durable()]);
    expect([a.get(["k"]), b.get(["k"])]).toEqual([["alpha's"], ["beta's"]]);
    expect([existsSync(join(dataDir, "storage", "alpha.mdb")), existsSync(join(dataDir, "storage", "beta.mdb"))]).toEqual([true, true]);
  });

  it("creates no file for a service that only reads", () => {
    const dataDir = fresh();
    const c = client(dataDir);
    expect(c.get(["a"])).toEqual([null]);
    expect(c.list()).toEqual([]);
    expect(existsSync(join(dataDir, "storage", "svc.mdb"))).toBe(false);
  });
});

describe("lmdbStorage: list", () => {
  // Keys whose UTF-16 order differs from their UTF-8 order: U+FF5E sorts
  // after U+1F600's surrogates in UTF-16 and before its 4 bytes in UTF-8.
  const ON_DISK = ["a", "a/1", "a/2", "a/3", "a/4", "a0", "b", "b/1", "b/2", "z", "é", "é/1", "€", "\uff5e", "😀", "😀/1", "😀😀"];
  /** Applied after ON_DISK is durable and left pending: deletions that hide disk entries, new keys, an overwrite. */
  const PENDING: [string, string | null][] = [
    ["a/1", null],
    ["a/2", null],
    ["a/2x", "new a/2x"],
    ["b", "b again"],
    ["é", null],
    ["😀/0", "new 😀/0"],
    ["\uff5e", null],
    ["y", "new y"],
    ["missing", null],
  ];
  type Options = { prefix?: string; start?: string; end?: string; limit?: number; reverse?: boolean };
  const QUERIES: Options[] = [
    {},
    { limit: 3 },
    { limit: 3, reverse: true },
    { reverse: true },
    { prefix: "a" },
    { prefix: "a/" },
    { prefix: "a/", limit: 2 },
    { prefix: "a/", limit: 2, reverse: true },
    { prefix: "a/", start: "a/2" },
    { prefix: "a/", start: "a/2", end: "a/4" },
    { prefix: "a/", start: "a/2", end: "a/4", reverse: true },
    { prefix: "a/", start: "0", end: "zzz" },
    { start: "b" },
    { start: "b", reverse: true, limit: 4 },
    { end: "b" },
    { end: "b", reverse: true, limit: 2 },
    { start: "a/3", end: "b/2", limit: 4 },
    { start: "a/3", end: "b/2", limit: 4, reverse: true },
    { prefix: "é" },
    { prefix: "😀" },
    { prefix: "😀", reverse: true },
    { start: "z" },
    { start: "€", end: "😀" },
    { start: "b", end: "a" },
    { limit: 0 },
    { prefix: "nothing" },
    { prefix: "a", limit: 1, reverse: true },
  ];

  /** What a list must answer, from the keys alone. */
  function expected(entries: Map<string, string>, o: Options): [string, string][] {
    const upTo = (k: string): boolean => o.end === undefined || byUtf8(k, o.end) < 0;
    const keys = [...entries.keys()]
      .filter((k) => (o.prefix === undefined || k.startsWith(o.prefix)) && (o.start === undefined || byUtf8(k, o.start) >= 0) && upTo(k))
      .sort(byUtf8);
    if (o.reverse === true) keys.reverse();
    return keys.slice(0, o.limit ?? Infinity).map((k) => [k, entries.get(k) as string]);
  }

  async function seeded(): Promise<{ c: Client; entries: Map<string, string> }> {
    const c = client();
    expect(c.commit(ON_DISK.map((k) => [k, `v ${k}`]))).toBe("OK");
    await c.store.durable();
    return { c, entries: new Map(ON_DISK.map((k) => [k, `v ${k}`])) };
  }

  /** Each query's answer, by the query: a failure names the query it is about. */
  const answers = (c: Client): Record<string, [string, string][]> => Object.fromEntries(QUERIES.map((q) => [JSON.stringify(q), c.list(q)]));
  const expectedAnswers = (entries: Map<string, string>): Record<string, [string, string][]> => Object.fromEntries(QUERIES.map((q) => [JSON.stringify(q), expected(entries, q)]));

  it("orders keys by their UTF-8 bytes, not their UTF-16 units", async () => {
    const { c } = await seeded();
    expect(c.list({ start: "z" }).map(([k]) => k)).toEqual(["z", "é", "é/1", "€", "\uff5e", "😀", "😀/1", "😀😀"]);
  });

  it("answers prefix, start, end, limit and reverse, alone and together, from the disk", async () => {
    const { c, entries } = await seeded();
    expect(answers(c)).toEqual(expectedAnswers(entries));
  });

  it("answers them from the disk and writes not yet on it together: new keys, overwrites, and deletions that hide entries on disk", async () => {
    const { c, entries } = await seeded();
    expect(c.commit(PENDING)).toBe("OK");
    // Still pending while listed: nothing has been awaited since the commit.
    expect(c.store.durable()).toBeDefined();
    for (const [k, v] of PENDING) {
      if (v === null) entries.delete(k);
      else entries.set(k, v);
    }
    expect(answers(c)).toEqual(expectedAnswers(entries));
    // And the same once they are on disk.
    await c.store.durable();
    expect(answers(c)).toEqual(expectedAnswers(entries));
  });

  it("fills a limit past deletions not yet on disk, in both directions", async () => {
    const c = client();
    const keys = Array.from({ length: 20 }, (_, i) => `k${String(i).padStart(2, "0")}`);
    expect(c.commit(keys.map((k) => [k, k]))).toBe("OK");
    await c.store.durable();
    expect(c.commit([...keys.slice(0, 5), ...keys.slice(15)].map((k) => [k, null]))).toBe("OK");
    expect(c.store.durable()).toBeDefined();
    expect(c.list({ limit: 3 }).map(([k]) => k)).toEqual(["k05", "k06", "k07"]);
    expect(c.list({ limit: 3, reverse: true }).map(([k]) => k)).toEqual(["k14", "k13", "k12"]);
  });

  it("cuts a limit past the most a list returns to that most", async () => {
    const c = client();
    const keys = Array.from({ length: MAX_LIST + 5 }, (_, i) => `k${String(i).padStart(6, "0")}`);
    expect(c.commit(keys.map((k) => [k, "v"]))).toBe("OK");
    await c.store.durable();
    const answer = c.ask([StorageOp.LIST, null, null, null, 1e12, false]);
    expect(answer.ok && (answer.rest[0] as string[]).length).toBe(MAX_LIST);
  });
});

describe("lmdbStorage: a commit is refused whole", () => {
  it("refuses a commit with one bad key among good ones, and writes none of it", () => {
    const c = client();
    for (const bad of ["", "k".repeat(1025), "€".repeat(341) + "ab"]) {
      expect(c.commit([["good", "1"], [bad, "2"], ["fine", "3"]])).toBe("ERR_BAD_KEY");
    }
    expect(c.code([StorageOp.COMMIT, [[["good", 7], [record("1"), record("2")]]]])).toBe("ERR_BAD_KEY");
    expect(c.get(["good", "fine"])).toEqual([null, null]);
    expect(c.store.durable()).toBeUndefined();
    // At the limit, counted in UTF-8 bytes: 1,024 of them, in 512 two-byte characters.
    expect(c.commit([["é".repeat(512), "ok"]])).toBe("OK");
  });

  it("refuses a record over maxMessageBytes, with the others of its commit", () => {
    const c = client(fresh(), spec("svc", { maxMessageBytes: 1000 }));
    expect(c.commit([["small", "s"], ["big", sized(1001)]])).toBe("ERR_MESSAGE_TOO_LARGE");
    expect(c.get(["small", "big"])).toEqual([null, null]);
    expect(c.commit([["small", "s"], ["big", sized(1000)]])).toBe("OK");
  });

  it("refuses a commit past limits.storageMb with ERR_STORAGE_FULL, none of its writes seen, and takes it once a deletion frees room", async () => {
    const c = client(fresh(), spec("svc", { storageMb: 1 }));
    expect(c.commit([["a", sized(600_000)]])).toBe("OK");
    expect(c.commit([["b", sized(300_000)], ["c", sized(300_000)]])).toBe("ERR_STORAGE_FULL");
    expect(c.get(["b", "c"])).toEqual([null, null]);
    expect(c.list().map(([k]) => k)).toEqual(["a"]);
    await c.store.durable();
    expect(c.get(["b", "c"])).toEqual([null, null]);
    // An overwrite counts only what it adds: 900 KB in place of 600 KB fits.
    expect(c.commit([["a", sized(900_000)]])).toBe("OK");
    expect(c.commit([["b", sized(300_000)]])).toBe("ERR_STORAGE_FULL");
    expect(c.commit([["a", null], ["b", sized(300_000)], ["c", sized(300_000)]])).toBe("OK");
    expect(c.list().map(([k]) => k)).toEqual(["b", "c"]);
  });

  it("counts a key written twice in one commit once, as its last record", () => {
    const c = client(fresh(), spec("svc", { storageMb: 1 }));
    expect(c.code([StorageOp.COMMIT, [[["a", "a"], [sized(900_000), sized(10)]]]])).toBe("OK");
    expect(c.get(["a"])).toEqual(["a".repeat(10)]);
    expect(c.commit([["b", sized(900_000)]])).toBe("OK");
  });

  it("keeps its quota count across a restart", async () => {
    const dataDir = fresh();
    const c = new Client(provider(dataDir).open(spec("svc", { storageMb: 1 })));
    expect(c.commit([["a", sized(500_000)], ["b", sized(400_000)]])).toBe("OK");
    const again = await reopen(dataDir, spec("svc", { storageMb: 1 }));
    expect(again.commit([["c", sized(200_000)]])).toBe("ERR_STORAGE_FULL");
    expect(again.commit([["b", null]])).toBe("OK");
    expect(again.commit([["c", sized(200_000)]])).toBe("OK");
    const third = await reopen(dataDir, spec("svc", { storageMb: 1 }));
    expect(third.commit([["d", sized(400_000)]])).toBe("ERR_STORAGE_FULL");
    expect(third.commit([["d", sized(300_000)]])).toBe("OK");
  });

  it("applies each write set of one request on its own: a refused set writes nothing, the sets beside it apply, and the quota counts them in order", () => {
    const c = client(fresh(), spec("svc", { storageMb: 1 }));
    const codes = c.commitSets([
      [["a", "1"]],
      [["b", "2"], ["", "bad key"]],
      [["x", sized(600_000)]],
      [["y", sized(600_000)], ["c", "never"]],
      [["c", "3"], ["a", null]],
    ]);
    expect(codes).toEqual(["OK", "ERR_BAD_KEY", "OK", "ERR_STORAGE_FULL", "OK"]);
    expect(c.get(["a", "b", "c", "x", "y"])).toEqual([null, null, "3", "a".repeat(600_000), null]);
  });

  // The store's folder cannot be made (here a file holds its name; on a
  // real disk: no space, no permission): the first write is refused with a
  // molt code, and no read may see a write that never reached the disk.
  it("refuses a commit whose file cannot be created with ERR_STORAGE_FAILED, and no read sees it", () => {
    const dataDir = fresh();
    writeFileSync(join(dataDir, "storage"), "a file where the storage folder goes");
    const c = client(dataDir);
    const code = c.commit([["a", "1"]]);
    expect({ code, read: c.get(["a"]), list: c.list(), durable: c.store.durable() }).toEqual({ code: "ERR_STORAGE_FAILED", read: [null], list: [], durable: undefined });
  });

  it("refuses every write of an instance that is not behind the mailbox with ERR_STORAGE_READONLY, and writes nothing", async () => {
    const dataDir = fresh();
    const c = client(dataDir);
    expect(c.commit([["a", "1"]], false)).toBe("ERR_STORAGE_READONLY");
    expect(existsSync(join(dataDir, "storage", "svc.mdb"))).toBe(false);
    expect(c.commit([["a", "1"]])).toBe("OK");
    await c.store.durable();
    expect(c.commit([["a", null], ["b", "2"]], false)).toBe("ERR_STORAGE_READONLY");
    expect(c.store.durable()).toBeUndefined();
    expect(c.get(["a", "b"])).toEqual(["1", null]);
    // Reads are every instance's.
    expect(c.code([StorageOp.GET, ["a"]], false)).toBe("OK");
  });
});

describe("lmdbStorage: hostile requests", () => {
  const rec = record("x");
  // Each answered with a code, never a throw, and nothing written.
  const HOSTILE: [string, Uint8Array | (() => unknown), string][] = [
    ["bytes that are not msgpack", new Uint8Array([0xc1]), "ERR_BAD_MESSAGE"],
    ["no bytes at all", new Uint8Array(0), "ERR_BAD_MESSAGE"],
    ["msgpack cut short", encode([StorageOp.COMMIT, [[["k"], [rec]]]]).subarray(0, 5), "ERR_BAD_MESSAGE"],
    // [GET, [[[…]]]] nested deeper than any stack: the decoder's recursion must not escape.
    ["arrays nested 200,000 deep", new Uint8Array([0x92, 0x00, ...new Array<number>(200_000).fill(0x91), 0xc0]), "ERR_BAD_MESSAGE"],
    ["a map, not an array", () => ({ op: StorageOp.COMMIT, sets: [[["k"], [rec]]] }), "ERR_BAD_MESSAGE"],
    ["a string", () => "commit", "ERR_BAD_MESSAGE"],
    ["null", () => null, "ERR_BAD_MESSAGE"],
    ["an empty array", () => [], "ERR_BAD_MESSAGE"],
    ["an unknown op", () => [7, [[["k"], [rec]]]], "ERR_BAD_MESSAGE"],
    ["an op as a string", () => [String(StorageOp.COMMIT), [[["k"], [rec]]]], "ERR_BAD_MESSAGE"],
    ["commit: write sets missing", () => [StorageOp.COMMIT], "ERR_BAD_MESSAGE"],
    ["commit: write sets as a string", () => [StorageOp.COMMIT, "sets"], "ERR_BAD_MESSAGE"],
    ["commit: a write set that is not an array", () => [StorageOp.COMMIT, [{ keys: ["k"] }]], "ERR_BAD_MESSAGE"],
    ["commit: keys as a string", () => [StorageOp.COMMIT, [["k", [rec]]]], "ERR_BAD_KEY"],
    ["commit: keys missing", () => [StorageOp.COMMIT, [[]]], "ERR_BAD_KEY"],
    ["commit: a key that is a number", () => [StorageOp.COMMIT, [[[1], [rec]]]], "ERR_BAD_KEY"],
    ["commit: a key that is null", () => [StorageOp.COMMIT, [[[null], [rec]]]], "ERR_BAD_KEY"],
    ["commit: a key that is bytes", () => [StorageOp.COMMIT, [[[record("k")], [rec]]]], "ERR_BAD_KEY"],
    ["commit: fewer records than keys", () => [StorageOp.COMMIT, [[["k", "l"], [rec]]]], "ERR_BAD_MESSAGE"],
    ["commit: more records than keys", () => [StorageOp.COMMIT, [[["k"], [rec, rec]]]], "ERR_BAD_MESSAGE"],
    ["commit: records as bytes", () => [StorageOp.COMMIT, [[["k"], rec]]], "ERR_BAD_MESSAGE"],
    ["commit: records missing", () => [StorageOp.COMMIT, [[["k"]]]], "ERR_BAD_MESSAGE"],
    ["commit: a record that is a string", () => [StorageOp.COMMIT, [[["k", "l"], [rec, "text"]]]], "ERR_BAD_MESSAGE"],
    ["commit: a record that is a number", () => [StorageOp.COMMIT, [[["k"], [5]]]], "ERR_BAD_MESSAGE"],
    ["commit: a record that is an object", () => [StorageOp.COMMIT, [[["k"], [{ length: 1 }]]]], "ERR_BAD_MESSAGE"],
    ["commit: a record that is undefined", () => [StorageOp.COMMIT, [[["k"], [undefined]]]], "ERR_BAD_MESSAGE"],
    ["get: keys as a string", () => [StorageOp.GET, "k"], "ERR_BAD_KEY"],
    ["get: a key that is an object", () => [StorageOp.GET, [{}]], "ERR_BAD_KEY"],
    ["get: a key too long", () => [StorageOp.GET, ["k".repeat(1025)]], "ERR_BAD_KEY"],
    ["list: a prefix that is a number", () => [StorageOp.LIST, 5, null, null, null, false], "ERR_BAD_KEY"],
    ["list: a start that is an object", () => [StorageOp.LIST, null, {}, null, null, false], "ERR_BAD_KEY"],
    ["list: an end that is an array", () => [StorageOp.LIST, null, null, ["z"], null, false], "ERR_BAD_KEY"],
    ["list: a negative limit", () => [StorageOp.LIST, null, null, null, -1, false], "ERR_BAD_REQUEST"],
    ["list: a limit that is not an integer", () => [StorageOp.LIST, null, null, null, 1.5, false], "ERR_BAD_REQUEST"],
    ["list: an infinite limit", () => [StorageOp.LIST, null, null, null, Infinity, false], "ERR_BAD_REQUEST"],
    ["list: a limit that is NaN", () => [StorageOp.LIST, null, null, null, NaN, false], "ERR_BAD_REQUEST"],
    ["list: a limit that is a string", () => [StorageOp.LIST, null, null, null, "5", false], "ERR_BAD_REQUEST"],
    ["list: a limit that is true", () => [StorageOp.LIST, null, null, null, true, false], "ERR_BAD_REQUEST"],
  ];

  it.each(HOSTILE)("answers %s with a code, and writes nothing", async (_name, request, code) => {
    const dataDir = fresh();
    const c = client(dataDir);
    expect(c.commit([["seed", "kept"]])).toBe("OK");
    await c.store.durable();
    const decoded = typeof request === "function" ? request() : undefined;
    const bytes = typeof request === "function" ? encode(decoded) : request;
    let answer: Answer | undefined;
    expect(() => (answer = c.raw(bytes))).not.toThrow();
    expect(answer === undefined ? "thrown" : outcome(answer, Array.isArray(decoded) ? decoded[0] : undefined)).toBe(code);
    expect(c.store.durable()).toBeUndefined();
    expect(c.list()).toEqual([["seed", "kept"]]);
    // The store still answers.
    expect(c.commit([["after", "1"]])).toBe("OK");
  });
});

describe("lmdbStorage: a file that is not molt's", () => {
  /** The file the store of `service` lives in, its folder made. */
  function fileOf(dataDir: string, service = "svc"): string {
    mkdirSync(join(dataDir, "storage"), { recursive: true });
    return join(dataDir, "storage", `${service}.mdb`);
  }

  /** Bytes from a fixed seed: the same "random" file on every run. */
  function noise(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let x = 0x2545f491;
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      out[i] = x & 0xff;
    }
    return out;
  }

  /** Files LMDB opens: the check is molt's own. */
  const FOREIGN: [string, (file: string) => Promise<void>][] = [
    [
      "an LMDB file of something else",
      async (file) => {
        const other = open({ path: file });
        await other.put("hello", "world");
        await other.close();
      },
    ],
    [
      "a molt store of another format version",
      async (file) => {
        const other = open({ path: file, maxDbs: 4 });
        await other.openDB({ name: "molt", encoding: "msgpack" }).put("format", { name: "molt-storage", version: 2 });
        await other.close();
      },
    ],
  ];

  it.each(FOREIGN)("refuses %s with ERR_CORRUPT naming the file", async (_name, damage) => {
    const dataDir = fresh();
    const file = fileOf(dataDir);
    await damage(file);
    let thrown: unknown;
    try {
      provider(dataDir).open(spec("svc"));
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(MoltError);
    expect((thrown as MoltError).code).toBe("ERR_CORRUPT");
    expect((thrown as MoltError).message).toContain(file);
  });

  it.each(FOREIGN)("refuses to start a kernel whose service's store is %s, with ERR_CORRUPT naming the file", async (_name, damage) => {
    const dataDir = fresh();
    const file = fileOf(dataDir, "notes");
    await damage(file);
    const err = await rejection(startKernel({ dataDir, services: { healthy: { entry: "./probe.ts" }, notes: { entry: "./storage/notes.ts" } } }));
    expect({ code: err.code, service: err.service, names: err.message.includes(file) }).toEqual({ code: "ERR_CORRUPT", service: "notes", names: true });
  });

  it("leaves an LMDB file that is not molt's as it found it", async () => {
    const dataDir = fresh();
    const file = fileOf(dataDir);
    await (FOREIGN[0] as [string, (file: string) => Promise<void>])[1](file);
    expect(() => provider(dataDir).open(spec("svc"))).toThrow(MoltError);
    const other = open({ path: file, maxDbs: 4 });
    try {
      // A refused file gains nothing: not even the empty database molt keeps its format in.
      expect([...other.getKeys()].map(String)).toEqual(["hello"]);
    } finally {
      await other.close();
    }
  });

  /**
   * Runs test/fixtures/storage/h-open-store.ts in a child Node: the store
   * of `notes` opened (`open`) or a kernel started with it (`kernel`).
   * Files that are not LMDB's at all are opened there, because the lmdb
   * package crashes the process that opens them (SIGSEGV): here the crash
   * is the child's, and shows as its signal.
   */
  function inChild(mode: "open" | "kernel", dataDir: string): Promise<{ signal: string | null; said: Record<string, unknown> | undefined }> {
    const script = join(FIXTURES, "storage", "h-open-store.ts");
    const child = spawn(process.execPath, ["--no-node-snapshot", "--import", "tsx", script, mode, dataDir, "notes"], { cwd: ROOT });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    return new Promise((resolve) => {
      child.on("exit", (_code, signal) => {
        const line = out.trim().split("\n").pop();
        resolve({ signal, said: line === undefined || line === "" ? undefined : (JSON.parse(line) as Record<string, unknown>) });
      });
    });
  }

  const seen = (file: string, r: { signal: string | null; said: Record<string, unknown> | undefined }): unknown => ({
    signal: r.signal,
    code: r.said?.code,
    service: r.said?.service,
    names: typeof r.said?.message === "string" && r.said.message.includes(file),
  });

  it("refuses a store of random bytes with ERR_CORRUPT naming the file, when opened and when a kernel starts with it, without crashing", async () => {
    const dataDir = fresh();
    const file = fileOf(dataDir, "notes");
    writeFileSync(file, noise(64 * 1024));
    const [opened, started] = await Promise.all([inChild("open", dataDir), inChild("kernel", dataDir)]);
    expect([seen(file, opened), seen(file, started)]).toEqual([
      { signal: null, code: "ERR_CORRUPT", service: "notes", names: true },
      { signal: null, code: "ERR_CORRUPT", service: "notes", names: true },
    ]);
  });

  // What a crash of the file system can leave where a file was being written.
  it("refuses a store of zeros with ERR_CORRUPT naming the file, without crashing", async () => {
    const dataDir = fresh();
    const file = fileOf(dataDir, "notes");
    writeFileSync(file, new Uint8Array(64 * 1024));
    expect(seen(file, await inChild("open", dataDir))).toEqual({ signal: null, code: "ERR_CORRUPT", service: "notes", names: true });
  });

  it("opens its own store again, written by an earlier runtime", async () => {
    const dataDir = fresh();
    const c = new Client(provider(dataDir).open(spec("svc")));
    expect(c.commit([["a", "1"]])).toBe("OK");
    const again = await reopen(dataDir);
    expect(again.get(["a"])).toEqual(["1"]);
  });
});
