// The verified transfer (issue 17, item 1): in prepare, the state goes to
// the new version and back into a scratch instance of the old one, and a
// swap whose state comes back different is refused before anything pauses.

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AdminServer, type AdminRuntime } from "../../core/admin.ts";
import type { SwapOptions } from "../../core/swap.ts";
import { AdminPath, type HistoryBody, type SwapProgress } from "../../protocol/admin.ts";
import { firstDifference } from "../../core/state-diff.ts";
import { kernelPerTest, startKernel, type TestKernel } from "../support/kernel.ts";

const v = (name: string): string => `./verify/${name}.ts`;
const entry = (t: TestKernel, name: string): string => `${t.kernel.config.dir}/${v(name)}`;
const USERS = { services: { users: { entry: v("users-v1") } } };
const JOINED = 'state.users.get("u7").joined';

describe("the verified transfer", () => {
  const kernel = kernelPerTest(USERS);

  it("refuses a v2 whose restore changes a field with ERR_SWAP_ROUNDTRIP and its path, in prepare; v1 serves on with its state", async () => {
    const t = kernel();
    const version = t.kernel.running("users");
    const report = await t.kernel.swap("users", entry(t, "users-v2-lossy"));
    expect(report.outcome).toBe("rolled-back");
    expect(report.error).toMatchObject({ code: "ERR_SWAP_ROUNDTRIP", phase: "prepare" });
    expect(report.blackoutMs).toBeNull();
    expect(report.verify).toEqual({ ok: false, path: JOINED });
    expect(t.kernel.running("users")).toBe(version);
    expect(await t.kernel.call("users", "which")).toBe("v1");
    expect(await t.kernel.call("users", "get", "u7")).toEqual({ name: "Grace", joined: new Date(7500), tags: new Set() });
    expect(t.kernel.history("users").at(-1)).toMatchObject({ outcome: "rolled-back", code: "ERR_SWAP_ROUNDTRIP", verify: { ok: false, path: JOINED } });
  });

  it("commits an equivalent v2 (the same state rebuilt in another order) with verify ok, and records it", async () => {
    const t = kernel();
    await t.kernel.call("users", "add", { id: "u9", name: "Linus" });
    const report = await t.kernel.swap("users", entry(t, "users-v2-same"));
    expect(report.error).toBeUndefined();
    expect(report.outcome).toBe("committed");
    expect(report.verify).toEqual({ ok: true });
    expect(await t.kernel.call("users", "which")).toBe("v2");
    expect(await t.kernel.call("users", "count")).toBe(3);
    expect(t.kernel.history("users").at(-1)).toMatchObject({ outcome: "live", verify: { ok: true } });
  });

  it("commits a v2 with a stateVersion v1 cannot restore, and says the check was skipped and why", async () => {
    const t = kernel();
    const report = await t.kernel.swap("users", entry(t, "users-v2-state2"));
    expect(report.outcome).toBe("committed");
    expect(report.verify?.ok).toBe(false);
    expect(report.verify?.path).toBeUndefined();
    expect(report.verify?.skipped).toContain("stateVersion 2");
    expect(await t.kernel.call("users", "get", "u7")).toMatchObject({ joinedMs: 7500 });
  });

  it("skips the check on a fresh-state swap, which hands no state over", async () => {
    const t = kernel();
    const report = await t.kernel.swap("users", entry(t, "users-v2-lossy"), { freshState: true });
    expect(report.outcome).toBe("committed");
    expect(report.verify).toEqual({ ok: false, skipped: expect.stringContaining("fresh state") });
  });
});

describe("the verified transfer turned off", () => {
  let t: TestKernel | undefined;
  afterEach(async () => {
    await t?.kernel.stop();
    t = undefined;
  });

  it("by the config's swap.verify: false lets the lossy v2 commit, recorded as skipped", async () => {
    t = await startKernel({ ...USERS, swap: { verify: false } });
    const report = await t.kernel.swap("users", entry(t, "users-v2-lossy"));
    expect(report.outcome).toBe("committed");
    expect(report.verify).toEqual({ ok: false, skipped: "turned off" });
    expect(t.kernel.history("users").at(-1)).toMatchObject({ outcome: "live", verify: { ok: false, skipped: "turned off" } });
  });
});

describe("the admin API", () => {
  let t: TestKernel;
  let server: AdminServer;
  let base: string;
  const asked: SwapOptions[] = [];
  const token = "0123456789abcdef".repeat(4);
  const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };

  beforeEach(async () => {
    t = await startKernel(USERS);
    // The runtime as the admin API sees it, noting the options each swap is asked with.
    const runtime: AdminRuntime = { ...t.admin, swap: (service, at, options) => (asked.push(options ?? {}), t.admin.swap(service, at, options)) };
    server = new AdminServer(runtime, { port: 0, host: "127.0.0.1", token, allowedRoots: [t.kernel.config.dir] });
    base = `http://127.0.0.1:${(await server.listen()).port}`;
  });
  afterEach(async () => {
    await server.close();
    await t.kernel.stop();
    asked.length = 0;
  });

  const swap = async (body: Record<string, unknown>): Promise<SwapProgress[]> => {
    const res = await fetch(`${base}${AdminPath.swap("users")}`, { method: "POST", headers, body: JSON.stringify(body) });
    return (await res.text())
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as SwapProgress);
  };

  it("passes a swap body's verify: false on to the runtime, and refuses one that is not a boolean", async () => {
    await swap({ entry: entry(t, "users-v2-same"), verify: false });
    expect(asked.map((o) => o.verify)).toEqual([false]);
    const bad = await fetch(`${base}${AdminPath.swap("users")}`, { method: "POST", headers, body: JSON.stringify({ entry: entry(t, "users-v2-same"), verify: "no" }) });
    expect(bad.status).toBe(400);
    expect(asked).toHaveLength(1);
  });

  it("shows what each version was checked against in its history", async () => {
    const refused = await swap({ entry: entry(t, "users-v2-lossy") });
    expect(refused.at(-1)).toMatchObject({ event: "report", report: { outcome: "rolled-back", verify: { ok: false, path: JOINED } } });
    await swap({ entry: entry(t, "users-v2-same") });
    const { records } = (await (await fetch(`${base}${AdminPath.history("users")}`)).json()) as HistoryBody;
    expect(records.map((r) => r.verify)).toEqual([undefined, { ok: false, path: JOINED }, { ok: true }]);
  });
});

describe("firstDifference", () => {
  it.each([
    ["the same rich state, filled in another order", { m: new Map([["a", 1], ["b", 2]]), s: new Set([1, { x: 1 }]), d: new Date(5), b: new Uint8Array([1]) }, { b: new Uint8Array([1]), d: new Date(5), s: new Set([{ x: 1 }, 1]), m: new Map([["b", 2], ["a", 1]]) }, undefined],
    ["a changed Date", { d: new Date(1) }, { d: new Date(2) }, "state.d"],
    ["a changed byte", { b: new Uint8Array([1, 2]) }, { b: new Uint8Array([1, 3]) }, "state.b"],
    ["a missing Map entry", new Map([["k", 1]]), new Map(), 'state.get("k")'],
    ["an extra Set element", new Set([1]), new Set([1, 2]), "state.values()[1]"],
    ["a shorter array", [1, 2], [1], "state[1]"],
    ["a Map become an object", { m: new Map() }, { m: {} }, "state.m"],
    ["a key that needs quoting", { "a b": 1 }, { "a b": 2 }, 'state["a b"]'],
  ])("finds %s", (_, a, b, path) => {
    expect(firstDifference(a, b, "state")).toBe(path);
  });

  it("compares cyclic states by structure", () => {
    const a: Record<string, unknown> = { n: 1 };
    a.self = a;
    const b: Record<string, unknown> = { n: 1 };
    b.self = { n: 1, self: b };
    expect(firstDifference(a, b, "state")).toBeUndefined();
    const c: Record<string, unknown> = { n: 2 };
    c.self = c;
    expect(firstDifference(a, { n: 1, self: c }, "state")).toBe("state.self.n");
  });
});
