// ctx.storage as a service uses it (guest/storage.ts over core/lmdb-store.ts):
// the API's answers, each message as one transaction, nested transactions,
// and what a restart on the same dataDir finds.

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { rejection, startKernel, type TestKernel } from "../support/kernel.ts";

const NOTES = { services: { notes: { entry: "./storage/notes.ts" } } };

describe("ctx.storage", () => {
  let running: TestKernel | undefined;
  afterEach(async () => {
    await running?.kernel.stop();
    running = undefined;
  });
  const start = async (config: Parameters<typeof startKernel>[0] = NOTES): Promise<TestKernel> => (running = await startKernel(config));

  it("gets, puts, deletes and lists, in UTF-8 key order", async () => {
    const { kernel } = await start();
    expect(await kernel.call("notes", "put", { key: "a", value: { x: 1, when: new Date(5), tags: new Set(["t"]) } })).toBe(true);
    expect(await kernel.call("notes", "get", "a")).toEqual({ x: 1, when: new Date(5), tags: new Set(["t"]) });
    expect(await kernel.call("notes", "get", "missing")).toBeUndefined();
    expect(await kernel.call("notes", "putMany", { b: 2, c: 3, "a/1": new Uint8Array([1, 2]), "é": 5, "z": 6 })).toBe(5);
    expect(await kernel.call("notes", "getMany", ["a/1", "b", "zz"])).toEqual({ "a/1": new Uint8Array([1, 2]), b: 2 });
    const all = (await kernel.call("notes", "list", {})) as [string, unknown][];
    // "é" (0xc3 0xa9) sorts after "z" (0x7a) by UTF-8 bytes.
    expect(all.map(([k]) => k)).toEqual(["a", "a/1", "b", "c", "z", "é"]);
    expect(await kernel.call("notes", "list", { reverse: true, limit: 2 })).toEqual([["é", 5], ["z", 6]]);
    expect(await kernel.call("notes", "list", { prefix: "a" })).toEqual([["a", expect.anything()], ["a/1", new Uint8Array([1, 2])]]);
    expect(((await kernel.call("notes", "list", { start: "b", end: "z" })) as [string][]).map(([k]) => k)).toEqual(["b", "c"]);
    expect(await kernel.call("notes", "del", "b")).toBe(true);
    expect(await kernel.call("notes", "del", "b")).toBe(false);
    expect(await kernel.call("notes", "del", ["c", "z", "nope"])).toBe(2);
    expect(((await kernel.call("notes", "list", {})) as [string][]).map(([k]) => k)).toEqual(["a", "a/1", "é"]);
  });

  it("applies nothing a throwing message wrote, though the message read its own write", async () => {
    const { kernel } = await start();
    const err = (await kernel.call("notes", "writeThenThrow", { key: "t", value: 1 }).catch((e: unknown) => e)) as { code: string; message: string };
    expect(err.code).toBe("ERR_HANDLER");
    expect(err.message).toContain("saw 1");
    expect(await kernel.call("notes", "get", "t")).toBeUndefined();
  });

  it("keeps a nested transaction's writes only when it completes", async () => {
    const { kernel } = await start();
    expect(await kernel.call("notes", "nested", { key: "n" })).toEqual([
      ["n/kept", 4],
      ["n/outer", 1],
    ]);
    expect(await kernel.call("notes", "getMany", ["n/inner", "n/rolled", "n/kept"])).toEqual({ "n/kept": 4 });
  });

  it("finds every acknowledged write after a stop and a start on the same dataDir", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "molt-storage-"));
    const config = { ...NOTES, dataDir };
    const { kernel } = await start(config);
    await Promise.all(Array.from({ length: 50 }, (_, i) => kernel.call("notes", "put", { key: `k${i}`, value: i })));
    await kernel.stop();
    running = undefined;
    const again = await start(config);
    expect(((await again.kernel.call("notes", "list", { prefix: "k" })) as unknown[]).length).toBe(50);
    expect(await again.kernel.call("notes", "get", "k49")).toBe(49);
  });

  it("reads back every value after writing several times what its record cache holds", async () => {
    // memoryMb 16: a cache of 2 MiB, filled four times over by 8 MiB of values.
    const { kernel } = await start({ services: { notes: { entry: "./storage/notes.ts", limits: { memoryMb: 16 } } } });
    for (let batch = 0; batch < 8; batch++) await kernel.call("notes", "fill", { prefix: `b${batch}/`, count: 256, bytes: 4096 });
    for (let batch = 0; batch < 8; batch++) {
      const got = (await kernel.call("notes", "getMany", [`b${batch}/0`, `b${batch}/255`])) as Record<string, string>;
      expect(Object.keys(got)).toEqual([`b${batch}/0`, `b${batch}/255`]);
      expect(got[`b${batch}/255`]?.length).toBe(4096);
    }
  });

  it("bounds what one request brings into the isolate: a get past it fails with a code, a list pages through it", async () => {
    // memoryMb 16: answers of at most 2 MiB; 1,024 values of 4 KiB are 4 MiB.
    const { kernel } = await start({ services: { notes: { entry: "./storage/notes.ts", limits: { memoryMb: 16 } } } });
    for (let batch = 0; batch < 4; batch++) await kernel.call("notes", "fill", { prefix: `p${batch}/`, count: 256, bytes: 4096 });
    expect(await kernel.call("notes", "listCount", { prefix: "p" })).toBe(1024);
    expect(await kernel.call("notes", "listCount", { prefix: "p", reverse: true, limit: 700 })).toBe(700);
    const some = Array.from({ length: 256 }, (_, i) => `p0/${i}`);
    expect(await kernel.call("notes", "getCount", some)).toBe(256);
    const many = Array.from({ length: 4 }, (_, b) => Array.from({ length: 256 }, (_, i) => `p${b}/${i}`)).flat();
    expect((await rejection(kernel.call("notes", "getCount", many))).code).toBe("ERR_MESSAGE_TOO_LARGE");
  });

  it("lets start only read: a write there refuses the service with ERR_STORAGE_READONLY", async () => {
    const err = (await startKernel({ services: { notes: { entry: "./storage/notes.ts", config: "write-in-start" } } }).catch((e: unknown) => e)) as { code: string };
    expect(err.code).toBe("ERR_STORAGE_READONLY");
  });
});
