// Hostile services, a service down for good (issue 12, item 16). Past its
// restart policy (restart.maxRestarts in restart.windowMs) a service that
// keeps dying stays down; kernel.restart (`molt restart <service>`) brings it
// back on purpose, at its current version, from its last snapshot, with a
// fresh restart budget, while its neighbour answers every call.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectHealthy, restarts, underLoad } from "../support/hostile.ts";
import { eventually, rejection, startKernel, type TestKernel } from "../support/kernel.ts";

describe("hostile services: a service down past its restart policy", () => {
  let t: TestKernel;
  const state = (name: string): string | undefined => t.kernel.status().find((s) => s.name === name)?.state;
  /** Kills the service (out of memory); its caller gets ERR_OOM. */
  const kill = async (): Promise<void> => {
    expect((await rejection(t.kernel.call("dies", "die"))).code).toBe("ERR_OOM");
  };
  /** Past the policy: down, and no restart under way. */
  const stayedDown = (): Promise<void> =>
    eventually(() => {
      expect(t.kernel.status().find((s) => s.name === "dies")).toMatchObject({ state: "down", error: { code: "ERR_SERVICE_DOWN" } });
    }, 10_000);
  beforeAll(async () => {
    t = await startKernel({
      services: {
        dies: { entry: "./hostile/down-dies.ts", limits: { memoryMb: 32, timeoutMs: 10_000 } },
        healthy: { entry: "./probe.ts" },
      },
      restart: { maxRestarts: 1, windowMs: 60_000 },
    });
  });
  afterAll(() => t.kernel.stop());

  it("stays down after its second death, and kernel.restart brings it back from its last snapshot while its neighbour answers every call", async () => {
    const version = t.kernel.running("dies");
    await t.kernel.call("dies", "incr", 3);
    await t.kernel.snapshot("dies");
    // Not in the snapshot: lost with the instance.
    await t.kernel.call("dies", "incr", 1);

    const load = await underLoad(t, async () => {
      await kill();
      // The policy allows one restart.
      expect(await eventually(() => t.kernel.call("dies", "ping"), 10_000)).toBe("pong");
      expect(restarts(t, "dies")).toBe(1);
      await kill();
      await stayedDown();
      const whileDown = (await rejection(t.kernel.call("dies", "ping"))).code;
      // Snapshotting every service passes over the one that is down, and keeps its last snapshot.
      const snapshots = await t.kernel.snapshot();
      const restarted = await t.kernel.restart("dies");
      return { whileDown, snapshots, restarted };
    });
    expectHealthy(load);
    expect(load.value.whileDown).toBe("ERR_SERVICE_DOWN");
    expect(load.value.snapshots).toEqual([
      { service: "dies", error: { code: "ERR_SERVICE_DOWN", message: expect.any(String) } },
      expect.objectContaining({ service: "healthy", version: t.kernel.running("healthy") }),
    ]);
    expect(load.value.restarted).toEqual({ service: "dies", version, restarted: true });

    expect(state("dies")).toBe("running");
    expect(t.kernel.status().find((s) => s.name === "dies")).toMatchObject({ version, error: null, restarts: 0 });
    expect(await t.kernel.call("dies", "get")).toBe(3);
    expect(t.kernel.history("dies").at(-1)).toMatchObject({ version, parent: version, via: "restart", outcome: "live", replacedAt: null });
  });

  it("does nothing for a service that is up, and refuses an unknown name with ERR_NO_SERVICE", async () => {
    const records = t.kernel.history("dies").length;
    expect(await t.kernel.restart("dies")).toEqual({ service: "dies", version: t.kernel.running("dies"), restarted: false });
    expect(await t.kernel.restart("healthy")).toEqual({ service: "healthy", version: t.kernel.running("healthy"), restarted: false });
    expect(t.kernel.history("dies")).toHaveLength(records);
    expect((await rejection(t.kernel.restart("nobody"))).code).toBe("ERR_NO_SERVICE");
  });

  it("gives the service its restart budget back: its next death is restarted by the supervisor again", async () => {
    const load = await underLoad(t, async () => {
      await kill();
      return eventually(() => t.kernel.call("dies", "ping"), 10_000);
    });
    expectHealthy(load);
    expect(load.value).toBe("pong");
    expect(restarts(t, "dies")).toBe(1);
    expect(state("dies")).toBe("running");
  });

  it("brings it back once when asked twice at the same time", async () => {
    await kill();
    await stayedDown();
    const records = t.kernel.history("dies").length;
    const both = await Promise.all([t.kernel.restart("dies"), t.kernel.restart("dies")]);
    expect(both.map((r) => r.restarted).sort()).toEqual([false, true]);
    expect(t.kernel.history("dies")).toHaveLength(records + 1);
    expect(await t.kernel.call("dies", "ping")).toBe("pong");
  });
});
