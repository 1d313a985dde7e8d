// Hostile and careless services against ctx.storage, through a real kernel:
// bad keys and values refused with a code and nothing of their batch
// written; a message that fails writes nothing; nested transactions that
// fail or roll back; a message's writes unseen by the message running
// beside it until it ends; hooks that try to write (only the instance
// behind the mailbox may); one service's keys out of another's reach; a
// quota per service; built-ins replaced before storage is used; and the
// output gate: a call made after a write finds it.

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MoltConfig } from "../../sdk/config.ts";
import { eventually, rejection, startKernel, type TestKernel } from "../support/kernel.ts";

const POLLUTIONS = [
  "object-then",
  "array-map",
  "map-set",
  "map-get",
  "uint8array-subarray",
  // Not "uint8array-set": msgpackr, which encodes everything a service sends
  // (its replies, its calls and its stored values alike), copies binary data
  // with Uint8Array.prototype.set, so a service that replaces it garbles what
  // it sends itself. That harms only the service that did it, as sending
  // garbage on purpose would; the kernel, which never decodes a record, is
  // not affected.
  "dataview-getuint32",
  "dataview-setuint32",
  "string-startswith",
  "promise",
  "json",
] as const;

function config(): MoltConfig {
  const services: Record<string, unknown> = {
    store: { entry: "./storage/h-store.ts" },
    bulk: { entry: "./storage/h-store.ts" },
    notesA: { entry: "./storage/notes.ts" },
    notesB: { entry: "./storage/notes.ts" },
    small: { entry: "./storage/notes.ts", limits: { storageMb: 1 } },
    roomy: { entry: "./storage/notes.ts" },
    a: { entry: "./storage/h-gate-a.ts", bindings: { b: "b" } },
    b: { entry: "./storage/h-gate-b.ts", bindings: { a: "a" } },
    hooksCatch: { entry: "./storage/h-hooks.ts", config: { init: "catch", start: "catch", timer: true } },
    sink: { entry: "./probe.ts" },
    "p-none": { entry: "./storage/h-pollute.ts", config: { pollute: "none" }, bindings: { sink: "sink" } },
    "p-neighbour": { entry: "./storage/h-pollute.ts", config: { pollute: "none" }, bindings: { sink: "sink" } },
  };
  // A storage call that never settles shows as ERR_TIMEOUT, soon.
  for (const p of POLLUTIONS) services[`p-${p}`] = { entry: "./storage/h-pollute.ts", config: { pollute: p }, bindings: { sink: "sink" }, limits: { timeoutMs: 2000 } };
  return { services: services as MoltConfig["services"] };
}

describe("hostile services: ctx.storage", () => {
  let t: TestKernel;
  beforeAll(async () => {
    t = await startKernel(config());
  });
  afterAll(() => t.kernel.stop());

  const call = <T = unknown>(service: string, method: string, payload?: unknown): Promise<T> => t.kernel.call(service, method, payload) as Promise<T>;
  /** The code a call fails with, or what it answers. */
  const codeOf = (promise: Promise<unknown>): Promise<unknown> => promise.catch((err: { code?: unknown }) => err.code);
  const listed = (service: string, prefix: string): Promise<[string, unknown][]> => call(service, "list", { prefix });

  describe("bad input", () => {
    it.each([
      ["key-number", "ERR_BAD_KEY"],
      ["key-empty", "ERR_BAD_KEY"],
      ["key-1025-bytes", "ERR_BAD_KEY"],
      ["key-1025-bytes-multibyte", "ERR_BAD_KEY"],
      ["key-lone-surrogate", "ERR_BAD_KEY"],
      ["get-number", "ERR_BAD_KEY"],
      ["get-keys-with-number", "ERR_BAD_KEY"],
      ["delete-keys-with-object", "ERR_BAD_KEY"],
      ["delete-empty", "ERR_BAD_KEY"],
      ["entries-empty-key", "ERR_BAD_KEY"],
      ["list-prefix-number", "ERR_BAD_KEY"],
      ["list-limit-negative", "ERR_BAD_REQUEST"],
      ["list-limit-fraction", "ERR_BAD_REQUEST"],
      ["value-function", "ERR_UNENCODABLE"],
      ["value-undefined", "ERR_UNENCODABLE"],
      ["value-symbol", "ERR_UNENCODABLE"],
      ["value-nested-function", "ERR_UNENCODABLE"],
      ["entries-one-function", "ERR_UNENCODABLE"],
      ["entries-one-undefined", "ERR_UNENCODABLE"],
    ])("%s is refused with %s, and writes nothing", async (what, code) => {
      const before = await call("store", "list", {});
      expect(await call("store", "bad", what)).toBe(code);
      // Nothing of the refused call, nor of its batch, was stored.
      expect(await call("store", "list", {})).toEqual(before);
    });

    it("a batch with one value that cannot be stored fails its message: none of the batch, nor the writes before it, apply", async () => {
      const err = await rejection(call("store", "batchThenFail", "batch"));
      expect(err.code).toBe("ERR_UNENCODABLE");
      expect(await listed("store", "batch/")).toEqual([]);
    });
  });

  describe("a message is a transaction", () => {
    it("a handler that writes, reads its own write, then throws applies nothing, and the next message sees nothing", async () => {
      expect(await call("store", "put", { key: "wt/kept", value: "before" })).toBe(true);
      const err = await rejection(call("store", "writeThenThrow", "wt"));
      // It saw its own write before it threw.
      expect({ code: err.code, message: err.message }).toEqual({ code: "ERR_FIXTURE", message: "saw written" });
      expect(await listed("store", "wt/")).toEqual([["wt/kept", "before"]]);
      expect(await call("store", "get", "wt/a")).toBeNull();
    });

    it("a handler that writes and throws before it awaits anything applies nothing", async () => {
      expect((await rejection(call("store", "writeThenThrowSync", "wts"))).code).toBe("ERR_FIXTURE");
      expect(await listed("store", "wts/")).toEqual([]);
    });

    it("nested transactions: one that throws or rolls back drops its writes, one that completes joins its parent, and each sees its parents' writes", async () => {
      expect(await call("store", "nestedDeep", "n")).toEqual({
        t1SeesOuter: "o",
        t2SeesT1: "t1",
        t2SeesOuterDeleted: true,
        t2: "ERR_T2",
        t3WriteAfterRollback: "ERR_USAGE",
        t1SeesT4: ["t4", null],
        t5: "ERR_T5",
        list: [
          ["n/outer", "o"],
          ["n/t4", "t4"],
        ],
      });
      // And so the next message finds it.
      expect(await listed("store", "n/")).toEqual([
        ["n/outer", "o"],
        ["n/t4", "t4"],
      ]);
    });

    it("a write to a nested transaction that has already ended applies, or is refused with ERR_USAGE; it never vanishes", async () => {
      const answer = await call("store", "staleTransaction", "stale");
      const stored = await listed("store", "stale/");
      const fate = answer === "ok" ? (stored.length === 1 ? "applied" : "lost") : answer;
      expect(["applied", "ERR_USAGE"]).toContain(fate);
    });

    // The kernel answers at most MAX_LIST (10,000) entries at once: a list
    // that asks for 10,000 while its own message deleted some of them must
    // still get 10,000 when that many remain.
    it("a list with a limit, after deletions in its own message, still fills its limit from what remains", async () => {
      expect(await call("bulk", "fill", { prefix: "many/", count: 10_010 })).toBe(10_010);
      const keys = Array.from({ length: 5 }, (_, i) => `many/${String(i).padStart(6, "0")}`);
      expect(await call("bulk", "deleteThenList", { keys, prefix: "many/", limit: 10_000 })).toEqual({ size: 10_000, first: "many/000005", last: "many/010004" });
    });

    it("a message's writes are seen by its own reads, and not by a message running beside it until it ends", async () => {
      const held = call("store", "writeAndHold", { key: "iso", tag: "iso" });
      await eventually(async () => expect(await call("store", "holding")).toEqual(["iso"]));
      expect(await call("store", "readBeside", "iso")).toEqual({ get: null, many: [], list: [] });
      expect(await call("store", "release", "iso")).toBe(true);
      expect(await held).toEqual([
        "from the held message",
        [
          ["iso", "from the held message"],
          ["iso/2", "also held"],
        ],
      ]);
      expect(await call("store", "readBeside", "iso")).toEqual({
        get: "from the held message",
        many: [
          ["iso", "from the held message"],
          ["iso/2", "also held"],
        ],
        list: [
          ["iso", "from the held message"],
          ["iso/2", "also held"],
        ],
      });
    });
  });

  describe("who may write", () => {
    it("init and start are refused with ERR_STORAGE_READONLY and write nothing; a timer of the live instance writes", async () => {
      expect(await call("hooksCatch", "saw")).toEqual({ init: "ERR_STORAGE_READONLY", start: "ERR_STORAGE_READONLY" });
      await eventually(async () => expect(await call("hooksCatch", "stored")).toEqual([["timer", "written by a timer"]]));
    });

    it.each([
      ["init", { init: "throw" }],
      ["start", { start: "throw" }],
    ])("a service whose %s lets the refusal through does not start, with ERR_STORAGE_READONLY, and writes nothing", async (_hook, hooks) => {
      const dataDir = mkdtempSync(join(tmpdir(), "molt-hooks-"));
      const err = await rejection(startKernel({ dataDir, services: { hooks: { entry: "./storage/h-hooks.ts", config: hooks } } }));
      expect({ code: err.code, service: err.service }).toEqual({ code: "ERR_STORAGE_READONLY", service: "hooks" });
      // Started again without the write: nothing is there.
      const again = await startKernel({ dataDir, services: { hooks: { entry: "./storage/h-hooks.ts", config: {} } } });
      try {
        expect(await again.kernel.call("hooks", "stored")).toEqual([]);
      } finally {
        await again.kernel.stop();
      }
    });

    it("a service never sees another's keys: the same key holds each service's own value", async () => {
      await call("notesA", "put", { key: "shared", value: "A's" });
      expect(await call("notesB", "get", "shared")).toBeUndefined();
      expect(await call("notesB", "list", {})).toEqual([]);
      await call("notesB", "put", { key: "shared", value: "B's" });
      expect([await call("notesA", "get", "shared"), await call("notesB", "get", "shared")]).toEqual(["A's", "B's"]);
      expect(await call("notesB", "del", "shared")).toBe(true);
      expect(await call("notesA", "get", "shared")).toBe("A's");
    });
  });

  describe("quota", () => {
    it("limits.storageMb is per service: a message past it fails with ERR_STORAGE_FULL and writes nothing, a deletion makes room, and a neighbour is not limited by it", async () => {
      const fill = (service: string, prefix: string, count: number): Promise<unknown> => codeOf(call(service, "fill", { prefix, count, bytes: 400_000 }));
      expect(await fill("small", "x", 3)).toBe("ERR_STORAGE_FULL");
      expect(await call("small", "list", { prefix: "x" })).toEqual([]);
      expect(await fill("small", "x", 2)).toBe(2);
      expect(await fill("small", "y", 1)).toBe("ERR_STORAGE_FULL");
      expect((await call<[string, unknown][]>("small", "list", {})).map(([k]) => k)).toEqual(["x0", "x1"]);
      expect(await call("small", "del", "x0")).toBe(true);
      expect(await fill("small", "y", 1)).toBe(1);
      // The same writes fit a service with the default quota.
      expect(await fill("roomy", "x", 3)).toBe(3);
    });
  });

  describe("built-ins replaced before storage is used", () => {
    let reference: { during: unknown; after: unknown };
    beforeAll(async () => {
      await call("p-neighbour", "seed", "NEIGHBOUR's");
      await call("p-neighbour", "exercise");
      await call("p-none", "seed", "one");
      reference = { during: await call("p-none", "exercise"), after: await call("p-none", "readBack") };
    });

    it("the reference service, with nothing replaced, answers as storage should", () => {
      expect(reference).toEqual({
        during: [
          "one",
          "three",
          [
            ["k1", "one"],
            ["k2", "two"],
            ["k3", "three"],
          ],
          [
            ["k1", "one"],
            ["k2", "two"],
            ["k3", "three"],
            ["k4", "four"],
            ["k5", "five"],
          ],
          true,
          [
            ["k5", "five"],
            ["k3", "three"],
          ],
          "six",
        ],
        after: [
          ["k1", "one"],
          ["k2", "two"],
          ["k3", "three"],
          ["k5", "five"],
          ["k6", "six"],
        ],
      });
    });

    // Correct answers and correct data, or a failure with a code (not a
    // hang, which shows as ERR_TIMEOUT) and no value stored that the
    // service did not give — least of all another service's.
    it.each(POLLUTIONS)("%s: storage answers as without it, or fails with a code and stores nothing wrong", async (pollution) => {
      const service = `p-${pollution}`;
      await call(service, "seed", "one");
      const during = await codeOf(call(service, "exercise"));
      // Read with every built-in put back: a record stored wrong fails here, or shows.
      const after = await codeOf(call<[string, unknown][]>(service, "readBack"));
      if (typeof during === "string" || typeof after === "string") {
        const allowed = new Set((reference.after as [string, unknown][]).map(([k, v]) => `${k}=${String(v)}`));
        const wrong = typeof after === "string" ? [`reading back failed with ${after}`] : (after as [string, unknown][]).filter(([k, v]) => !allowed.has(`${k}=${String(v)}`));
        expect({ failedWith: during, hung: during === "ERR_TIMEOUT", wrong }).toEqual({
          failedWith: during,
          hung: false,
          wrong: [],
        });
      } else {
        expect({ during, after }).toEqual(reference);
      }
    });
  });

  describe("the output gate", () => {
    it("a call made after a write leaves once the write is committed: the service called back finds it", async () => {
      expect(await call("a", "writeThenCall", { key: "gate/call", value: "written before the call" })).toBe("written before the call");
    });

    it("a send made after a write leaves once the write is committed: the receiver, asking back, finds it", async () => {
      expect(await call("a", "writeThenSend", { key: "gate/send", value: "written before the send" })).toBe(true);
      await eventually(async () => expect(await call("b", "seen", "gate/send")).toBe("written before the send"));
    });
  });
});
