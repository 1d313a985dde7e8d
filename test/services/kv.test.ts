// The kv service keeps its entries in ctx.storage: what it acknowledged is
// there after a restart with no snapshot, values keep their types, keys
// storage refuses are refused by code, and a kv from before storage hands
// over the entries its heap held.
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { MoltConfig } from "../../sdk/config.ts";
import { rejection, startKernel, type TestKernel } from "../support/kernel.ts";
import { FIXTURES, ROOT } from "../support/runtime.ts";

const KV = join(ROOT, "services/kv/index.ts");
const KV_HEAD = join(ROOT, "services/kv/v2.ts");
const KV_HEAP = join(FIXTURES, "storage/kv-heap.ts");

const req = (method: string, path: string, body?: string) => ({
  method,
  url: `http://molt.test${path}`,
  headers: {},
  body: body === undefined ? null : new TextEncoder().encode(body),
});
type Answer = { status: number; body?: string | Uint8Array | null };
const text = (res: Answer): string => (typeof res.body === "string" ? res.body : new TextDecoder().decode(res.body ?? new Uint8Array()));

async function withKv(config: Partial<MoltConfig>, run: (t: TestKernel) => Promise<void>, entry = KV): Promise<void> {
  const t = await startKernel({ services: { kv: { entry } }, ...config });
  try {
    await run(t);
  } finally {
    await t.kernel.stop();
  }
}

const fetchKv = async (t: TestKernel, method: string, path: string, body?: string): Promise<Answer> =>
  (await t.kernel.call("kv", "fetch", req(method, path, body))) as Answer;

describe("kv", () => {
  it("keeps a value of every type a message carries, as it was set", async () => {
    const values: Record<string, unknown> = {
      text: "héllo ✓",
      number: 1.5,
      integer: -7,
      bool: false,
      nil: null,
      list: [1, "two", [3], { four: 4 }],
      object: { nested: { deep: [true] } },
      map: new Map<unknown, unknown>([["a", 1], [2, new Set(["b"])]]),
      set: new Set([1, "x"]),
      date: new Date("2024-02-29T12:34:56.789Z"),
      binary: new Uint8Array([0, 1, 254, 255]),
      mixed: { at: new Date(0), tags: new Map([["k", new Uint8Array([7])]]) },
    };
    await withKv({}, async (t) => {
      for (const [key, value] of Object.entries(values)) expect(await t.kernel.call("kv", "set", { key, value })).toBe(true);
      for (const [key, value] of Object.entries(values)) {
        const got = await t.kernel.call("kv", "get", key);
        if (value instanceof Uint8Array) expect(new Uint8Array(got as Uint8Array)).toEqual(value);
        else expect(got, key).toEqual(value);
      }
      expect((await t.kernel.call("kv", "get", "map")) as Map<unknown, unknown>).toBeInstanceOf(Map);
      expect((await t.kernel.call("kv", "get", "date")) as Date).toBeInstanceOf(Date);
      // A set without a value keeps null, as get always answered for it.
      await t.kernel.call("kv", "set", { key: "empty" });
      expect(await t.kernel.call("kv", "get", "empty")).toBeNull();
      expect(await t.kernel.call("kv", "size")).toBe(Object.keys(values).length + 1);
    });
  });

  it("lists by prefix in key order and counts every key, past one page of storage's listing", async () => {
    // Handlers at once, so that the sets share storage's group commits: seeding takes a fraction of a second.
    await withKv({ services: { kv: { entry: KV, concurrency: 16 } } }, async (t) => {
      const keys = Array.from({ length: 1100 }, (_, i) => `item:${String(i).padStart(4, "0")}`);
      // In rounds, within the mailbox's default queue of 1000.
      for (let i = 0; i < keys.length; i += 200) {
        await Promise.all(keys.slice(i, i + 200).map((key, j) => t.kernel.call("kv", "set", { key, value: i + j })));
      }
      await t.kernel.call("kv", "set", { key: "other", value: "o" });
      await t.kernel.call("kv", "set", { key: "item", value: "not under item:" });
      const listed = (await t.kernel.call("kv", "list", { prefix: "item:" })) as { key: string; value: number }[];
      expect(listed.map((e) => e.key)).toEqual(keys);
      expect(listed.map((e) => e.value)).toEqual(keys.map((_, i) => i));
      expect(await t.kernel.call("kv", "size")).toBe(1102);
      expect(await t.kernel.call("kv", "delete", "item:0005")).toBe(true);
      expect(await t.kernel.call("kv", "delete", "item:0005")).toBe(false);
      expect(await t.kernel.call("kv", "size")).toBe(1101);
      expect(JSON.parse(text(await fetchKv(t, "GET", "/?prefix=it")))).toHaveLength(1100);
    });
  });

  it("has every acknowledged write after a stop and a start on the same dataDir, with its snapshot gone", async () => {
    let dataDir = "";
    await withKv({}, async (t) => {
      dataDir = t.kernel.config.dataDir;
      await t.kernel.call("kv", "set", { key: "when", value: new Date(86_400_000) });
      expect((await fetchKv(t, "PUT", "/colour", "teal")).status).toBe(200);
      expect((await fetchKv(t, "PUT", "/gone", "soon")).status).toBe(200);
      expect((await fetchKv(t, "DELETE", "/gone")).status).toBe(200);
    });
    // The graceful stop wrote kv's snapshot: without it, only storage can bring the entries back.
    const snapshots = readdirSync(join(dataDir, "snapshots")).filter((f) => f.startsWith("kv"));
    expect(snapshots.length).toBeGreaterThan(0);
    for (const f of snapshots) rmSync(join(dataDir, "snapshots", f));

    await withKv({ dataDir }, async (t) => {
      expect(await t.kernel.call("kv", "get", "when")).toEqual(new Date(86_400_000));
      expect(text(await fetchKv(t, "GET", "/colour"))).toBe("teal");
      expect((await fetchKv(t, "GET", "/gone")).status).toBe(404);
      expect(await t.kernel.call("kv", "list", {})).toEqual([
        { key: "colour", value: "teal" },
        { key: "when", value: new Date(86_400_000) },
      ]);
    });
  });

  it("refuses a key storage cannot take with ERR_BAD_KEY, by message and as a 400 over HTTP, writing nothing", async () => {
    await withKv({}, async (t) => {
      const long = "x".repeat(2000);
      for (const [method, payload] of [
        ["set", { key: long, value: 1 }],
        ["get", long],
        ["delete", long],
        ["get", ""],
        ["set", { key: 42, value: 1 }],
      ] as const) {
        expect((await rejection(t.kernel.call("kv", method, payload))).code, `${method} ${JSON.stringify(payload).slice(0, 40)}`).toBe("ERR_BAD_KEY");
      }
      for (const method of ["PUT", "GET", "DELETE"]) {
        const answer = await fetchKv(t, method, `/${long}`, "v");
        expect(answer.status, method).toBe(400);
        expect(JSON.parse(text(answer))).toMatchObject({ error: { code: "ERR_BAD_KEY", message: expect.any(String) } });
      }
      const undecodable = await fetchKv(t, "GET", "/%FF");
      expect(undecodable.status).toBe(400);
      expect(JSON.parse(text(undecodable))).toMatchObject({ error: { code: "ERR_BAD_REQUEST" } });
      expect(await t.kernel.call("kv", "size")).toBe(0);
    });
  });

  it("answers HEAD in version 2.1 with the status a GET would have", async () => {
    await withKv(
      {},
      async (t) => {
        expect((await fetchKv(t, "PUT", "/here", "v")).status).toBe(200);
        expect(await fetchKv(t, "HEAD", "/here")).toEqual({ status: 200 });
        expect(await fetchKv(t, "HEAD", "/absent")).toEqual({ status: 404 });
        expect(await fetchKv(t, "HEAD", `/${"x".repeat(2000)}`)).toEqual({ status: 400 });
      },
      KV_HEAD,
    );
  });

  describe("taking over from a kv that kept its entries in the heap", () => {
    it("reads the old entries, writes into storage, deletes from both, and keeps them across swaps", async () => {
      await withKv(
        {},
        async (t) => {
          await t.kernel.call("kv", "set", { key: "a", value: new Map([["x", 1]]) });
          await t.kernel.call("kv", "set", { key: "b", value: "old b" });
          await t.kernel.call("kv", "set", { key: "c", value: "old c" });
          const report = await t.kernel.swap("kv", KV);
          expect(report.outcome, JSON.stringify(report)).toBe("committed");
          expect(t.kernel.status().find((s) => s.name === "kv")).toMatchObject({ semver: "2.0.0", stateVersion: 2 });

          // Reads fall back to the heap's entries.
          expect(await t.kernel.call("kv", "get", "a")).toEqual(new Map([["x", 1]]));
          expect(text(await fetchKv(t, "GET", "/b"))).toBe("old b");
          // A write goes to storage and wins over the old entry; a delete removes it wherever it is.
          await t.kernel.call("kv", "set", { key: "b", value: "new b" });
          await t.kernel.call("kv", "set", { key: "d", value: "new d" });
          expect(await t.kernel.call("kv", "delete", "c")).toBe(true);
          expect(await t.kernel.call("kv", "delete", "c")).toBe(false);
          const expected = [
            { key: "a", value: new Map([["x", 1]]) },
            { key: "b", value: "new b" },
            { key: "d", value: "new d" },
          ];
          expect(await t.kernel.call("kv", "list", {})).toEqual(expected);
          expect(await t.kernel.call("kv", "size")).toBe(3);

          // To 2.1 and back: the state (the old entries) moves, storage stays where it is.
          for (const entry of [KV_HEAD, KV]) expect((await t.kernel.swap("kv", entry)).outcome).toBe("committed");
          expect(await t.kernel.call("kv", "list", {})).toEqual(expected);
          expect(await t.kernel.call("kv", "delete", "b")).toBe(true);
          expect(await t.kernel.call("kv", "get", "b")).toBeNull();
          expect(await t.kernel.call("kv", "size")).toBe(2);
        },
        KV_HEAP,
      );
    });
  });
});
