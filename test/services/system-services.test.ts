import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { rejection, startKernel, type TestKernel } from "../support/kernel.ts";
import { ROOT } from "../support/runtime.ts";

const req = (method: string, path: string, body?: string) => ({
  method,
  url: `http://molt.test${path}`,
  headers: {},
  body: body === undefined ? null : new TextEncoder().encode(body),
});
const text = (res: unknown) => {
  const body = (res as { body?: unknown }).body;
  return typeof body === "string" ? body : new TextDecoder().decode(body as Uint8Array);
};

describe("system services", () => {
  let t: TestKernel;
  beforeAll(async () => {
    t = await startKernel(
      {
        services: {
          gateway: {
            entry: "./services/gateway/index.ts",
            bindings: { counter: "counter", kv: "kv", api: "counter" },
            config: { routes: { "/counter": "counter", "/kv": "kv", "/api/v2/": "api" } },
          },
          counter: { entry: "./services/counter/index.ts" },
          kv: { entry: "./services/kv/index.ts" },
          log: { entry: "./services/log/index.ts", permissions: { stdout: true }, config: { level: "warn" } },
          chatty: { entry: join(ROOT, "test/fixtures/probe.ts") },
        },
        log: { service: "log" },
      },
      ROOT,
    );
  });
  afterAll(() => t.kernel.stop());

  describe("kv", () => {
    it("gets, sets, deletes and lists by prefix, keeping any msgpack value", async () => {
      await t.kernel.call("kv", "set", { key: "user:1", value: { name: "ada", tags: new Set(["x"]) } });
      await t.kernel.call("kv", "set", { key: "user:2", value: 2 });
      await t.kernel.call("kv", "set", { key: "other", value: "o" });
      const user = (await t.kernel.call("kv", "get", "user:1")) as { name: string; tags: Set<string> };
      expect(user.name).toBe("ada");
      expect(user.tags).toBeInstanceOf(Set);
      expect(await t.kernel.call("kv", "get", "missing")).toBeNull();
      expect((await t.kernel.call("kv", "list", { prefix: "user:" })) as { key: string }[]).toHaveLength(2);
      expect(await t.kernel.call("kv", "delete", "user:2")).toBe(true);
      expect(await t.kernel.call("kv", "delete", "user:2")).toBe(false);
      expect(((await t.kernel.call("kv", "list", { prefix: "user:" })) as { key: string }[]).map((e) => e.key)).toEqual(["user:1"]);
      expect((await rejection(t.kernel.call("kv", "get", ""))).code).toBe("ERR_BAD_KEY");
    });

    it("speaks HTTP: PUT, GET, DELETE and list", async () => {
      expect((await t.kernel.call("kv", "fetch", req("PUT", "/greeting", "hello"))) as object).toMatchObject({ status: 200 });
      expect(text(await t.kernel.call("kv", "fetch", req("GET", "/greeting")))).toBe("hello");
      expect(JSON.parse(text(await t.kernel.call("kv", "fetch", req("GET", "/?prefix=gree"))))).toEqual([{ key: "greeting", value: "hello" }]);
      expect((await t.kernel.call("kv", "fetch", req("DELETE", "/greeting"))) as object).toMatchObject({ status: 200 });
      expect((await t.kernel.call("kv", "fetch", req("GET", "/greeting"))) as object).toMatchObject({ status: 404 });
    });
  });

  describe("gateway", () => {
    it("routes by longest path prefix to a binding's fetch, with the prefix stripped", async () => {
      await t.kernel.call("counter", "reset");
      expect(text(await t.kernel.call("gateway", "fetch", req("POST", "/counter/incr", "5")))).toBe("5\n");
      expect(text(await t.kernel.call("gateway", "fetch", req("GET", "/api/v2/")))).toBe("5\n");
      expect(text(await t.kernel.call("gateway", "fetch", req("GET", "/counter")))).toBe("5\n");
      expect(await t.kernel.call("gateway", "routes")).toEqual({ "/api/v2": "api", "/counter": "counter", "/kv": "kv" });
    });

    it("answers 404 for a path no route covers, and does not match a mere prefix of a segment", async () => {
      expect((await t.kernel.call("gateway", "fetch", req("GET", "/nowhere"))) as object).toMatchObject({ status: 404 });
      expect((await t.kernel.call("gateway", "fetch", req("GET", "/counterfeit"))) as object).toMatchObject({ status: 404 });
    });
  });

  describe("counter", () => {
    it("counts by message and keeps a bounded history", async () => {
      await t.kernel.call("counter", "reset");
      for (let i = 0; i < 150; i++) await t.kernel.call("counter", "incr", 1);
      expect(await t.kernel.call("counter", "get")).toBe(150);
      expect((await t.kernel.call("counter", "history")) as number[]).toHaveLength(100);
      expect((await rejection(t.kernel.call("counter", "incr", "x"))).code).toBe("ERR_HANDLER");
    });
  });

  describe("log", () => {
    it("writes one pino-shaped JSON line per record at or above its level, tagged with service and version", async () => {
      await t.kernel.call("chatty", "console", "below the level");
      const stats = async () => (await t.kernel.call("log", "stats")) as { written: number; dropped: number };
      await vi.waitFor(async () => {
        const { written, dropped } = await stats();
        expect(written + dropped).toBeGreaterThanOrEqual(2);
      }, { timeout: 10_000, interval: 50 });
      const lines = t.out.filter((l) => l.includes('"service":"chatty"')).map((l) => JSON.parse(l) as Record<string, unknown>);
      // console.log is "info", below "warn": dropped; console.error passes.
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({ level: 50, service: "chatty", version: "2.3.4" });
      expect(lines[0]?.msg).toContain("bad Map(1)");
      expect(typeof lines[0]?.time).toBe("number");
      expect(await stats()).toMatchObject({ written: 1, dropped: 1 });
    });

    it("changes level at run time and refuses unknown levels", async () => {
      expect(await t.kernel.call("log", "setLevel", "debug")).toBe("debug");
      expect((await rejection(t.kernel.call("log", "setLevel", "loud"))).code).toBe("ERR_BAD_LEVEL");
    });
  });
});
