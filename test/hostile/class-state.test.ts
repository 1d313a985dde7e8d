// Issue 20, item 6: a state that holds class instances. msgpack carries an
// instance's fields but not its class, so the next version would get
// objects without methods and every handler that calls one would fail. The
// guest runtime refuses such a dump with ERR_STATE_NOT_PLAIN, naming where
// in the state the instance is: a swap rolls back in prepare (its rehearsal
// dumps first), or in its dump step when the state is too large to
// rehearse, and the service keeps serving with its state.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectHealthy, underLoad } from "../support/hostile.ts";
import { rejection, startKernel, type TestKernel } from "../support/kernel.ts";

describe("hostile services: a state holding class instances", () => {
  let t: TestKernel;
  const fixture = (name: string): string => `${t.kernel.config.dir}/${name}.ts`;
  beforeAll(async () => {
    t = await startKernel({
      services: {
        classes: { entry: "./i20c-class-state.ts" },
        large: { entry: "./i20c-class-state.ts", limits: { memoryMb: 64 } },
        kept: { entry: "./i20c-class-state-kept.ts" },
        rich: { entry: "./i20c-plain-rich.ts" },
        healthy: { entry: "./probe.ts" },
      },
    });
    for (const name of ["classes", "kept"]) await t.kernel.call(name, "login", "ada");
  });
  afterAll(() => t.kernel.stop());

  it("a swap is refused in prepare with ERR_STATE_NOT_PLAIN naming the instance's path, nothing paused, the old version serving with its methods", async () => {
    const old = t.kernel.running("classes");
    const load = await underLoad(t, () => t.kernel.swap("classes", fixture("i20c-class-state-v2")));
    expectHealthy(load);
    const report = load.value;
    expect(report).toMatchObject({ outcome: "rolled-back", blackoutMs: null, error: { code: "ERR_STATE_NOT_PLAIN", phase: "prepare" } });
    // Where, and what: the operator can find the object without reading the code.
    expect(report.error?.message).toContain('state.sessions.get("ada")');
    expect(report.error?.message).toContain("Session");
    expect(t.kernel.running("classes")).toBe(old);
    expect(await t.kernel.call("classes", "check", { name: "ada", now: 2000 })).toBe(true);
    expect(t.kernel.history("classes").at(-1)).toMatchObject({ outcome: "rolled-back", code: "ERR_STATE_NOT_PLAIN" });
  });

  it("a snapshot of that state is refused with the same code", async () => {
    expect((await rejection(t.kernel.snapshot("classes"))).code).toBe("ERR_STATE_NOT_PLAIN");
  });

  it("a state too large to rehearse is refused in the dump step; the old instance starts again and serves with its state", async () => {
    // A committed swap of a large plain state (no session yet), so that the next swap skips its rehearsal.
    expect(await t.kernel.call("large", "grow", 300 * 1024)).toBe(300 * 1024);
    const plain = await t.kernel.swap("large", fixture("i20c-class-state-v2"));
    expect(plain.error).toBeUndefined();
    expect(plain.outcome).toBe("committed");
    const v2 = t.kernel.running("large");
    await t.kernel.call("large", "login", "ada");
    const load = await underLoad(t, () => t.kernel.swap("large", fixture("i20c-class-state")));
    expectHealthy(load);
    const report = load.value;
    expect(report).toMatchObject({ outcome: "rolled-back", error: { code: "ERR_STATE_NOT_PLAIN", phase: "dump" } });
    expect(report.blackoutMs).not.toBeNull();
    expect(report.error?.message).toContain('state.sessions.get("ada")');
    expect(t.kernel.running("large")).toBe(v2);
    expect(await t.kernel.call("large", "check", { name: "ada", now: 2000 })).toBe(true);
    expect(await t.kernel.call("large", "count")).toBe(1);
  });

  it("the documented pattern works: dump turns instances into plain data and restore builds them again", async () => {
    const report = await t.kernel.swap("kept", fixture("i20c-class-state-kept-v2"));
    expect(report.error).toBeUndefined();
    expect(report).toMatchObject({ outcome: "committed", to: { semver: "2.0.0" } });
    expect(await t.kernel.call("kept", "check", { name: "ada", now: 2000 })).toBe(true);
    expect(await t.kernel.call("kept", "check", { name: "ada", now: 10 })).toBe(false);
  });

  it("plain data of every kind a dump carries is not refused (Map, Set, Date, binary, null prototype, Error, RegExp, cycles)", async () => {
    const report = await t.kernel.swap("rich", fixture("i20c-plain-rich-v2"));
    expect(report.error).toBeUndefined();
    expect(report.outcome).toBe("committed");
    expect(await t.kernel.call("rich", "keys")).toEqual(["bigint", "buffer", "dictionary", "error", "map", "pattern", "self", "shared"]);
  });
});
