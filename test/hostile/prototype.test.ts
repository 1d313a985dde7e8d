// Hostile services, polluted prototypes: isolated-vm reads the options of
// every call across an isolate boundary through the prototype chain, and a
// promise resolved with any object looks up its `then`. A service that puts
// `timeout` (or `then`) on Object.prototype must change nothing on the host
// side: its neighbours keep answering and swapping, and it can itself still
// be swapped out with its state.
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { expectHealthy, underLoad } from "../support/hostile.ts";
import { startKernel, type TestKernel } from "../support/kernel.ts";

describe("hostile services: polluted prototypes", () => {
  let t: TestKernel;
  const fixture = (name: string): string => `${t.kernel.config.dir}/hostile/${name}`;
  const status = (name: string) => t.kernel.status().find((s) => s.name === name);

  beforeAll(async () => {
    t = await startKernel({
      services: {
        poisoner: { entry: "./hostile/proto-timeout.ts", bindings: { neighbour: "neighbour", quiet: "quiet" } },
        neighbour: { entry: "./hostile/proto-neighbour.ts", limits: { timeoutMs: 1000 } },
        quiet: { entry: "./hostile/proto-neighbour.ts", limits: { timeoutMs: 1000 } },
        thenable: { entry: "./hostile/proto-then.ts" },
        early: { entry: "./hostile/proto-then.ts" },
        grabber: { entry: "./hostile/proto-grab.ts", bindings: { peer: "healthy" } },
        healthy: { entry: "./probe.ts" },
      },
      // The then-poisoner's restore records itself in the state, so the
      // verified transfer (rightly) refuses its swaps: what is tested here is
      // the transfer under poisoned prototypes, not the round trip.
      swap: { drainTimeoutMs: 1000, verify: false },
    });
  });
  afterAll(() => t.kernel.stop());

  /** The service's deliveries in flight once they settle: 0, or the wait fails (a wedged mailbox keeps 1 for good). */
  const settledInFlight = (name: string): Promise<number | undefined> =>
    vi.waitFor(
      () => {
        const inFlight = status(name)?.inFlight;
        expect(inFlight).toBe(0);
        return inFlight;
      },
      { timeout: 5000, interval: 100 },
    );
  const swapTo = async (name: string, entry: string): Promise<{ outcome: string; code: string | null }> => {
    const report = await t.kernel.swap(name, fixture(entry));
    return { outcome: report.outcome, code: report.error?.code ?? null };
  };
  const codeOf = (promise: Promise<unknown>): Promise<unknown> => promise.catch((err: { code?: unknown }) => err.code);

  // The reproduction: before the fix, the poisoner's calls never came
  // back (ERR_TIMEOUT), the neighbour kept a delivery in flight for good, and
  // its swap rolled back with ERR_SWAP_DRAIN_TIMEOUT.
  it("sets Object.prototype.timeout and calls a neighbour with large payloads: every call is answered, and the neighbour drains, swaps and answers", async () => {
    const load = await underLoad(t, async () => ({
      calls: await codeOf(t.kernel.call("poisoner", "poisonedCalls", { rounds: 20, bytes: 2_000_000 })),
      inFlight: await settledInFlight("neighbour"),
      swap: await swapTo("neighbour", "proto-neighbour-v2.ts"),
    }));
    expect(load.value).toEqual({ calls: { ok: 20 }, inFlight: 0, swap: { outcome: "committed", code: null } });
    expect(await t.kernel.call("neighbour", "which")).toBe("2.0.0");
    expect(await t.kernel.call("neighbour", "echoed")).toBe(20);
    expect(await t.kernel.call("neighbour", "echo", "still answers")).toBe("still answers");
    expectHealthy(load);
  });

  it("sets Object.prototype.timeout and sends large payloads: the receiver drains, swaps and has every message", async () => {
    const load = await underLoad(t, async () => ({
      sends: await codeOf(t.kernel.call("poisoner", "poisonedSends", { rounds: 20, bytes: 2_000_000 })),
      inFlight: await settledInFlight("quiet"),
      swap: await swapTo("quiet", "proto-neighbour-v2.ts"),
    }));
    expect(load.value).toEqual({ sends: 20, inFlight: 0, swap: { outcome: "committed", code: null } });
    expect(await t.kernel.call("quiet", "echoed")).toBe(20);
    expectHealthy(load);
  });

  // Before the fix, every reply of the poisoned service hung (ERR_TIMEOUT),
  // and so did its dump: its swap rolled back with ERR_SWAP_DUMP.
  it("sets Object.prototype.then: it still answers, its snapshot is written, and a swap takes its state to the new version", async () => {
    const load = await underLoad(t, async () => {
      await t.kernel.call("thenable", "incr", 5);
      return {
        poisoned: await codeOf(t.kernel.call("thenable", "poisonThen")),
        count: await codeOf(t.kernel.call("thenable", "get")),
        items: await codeOf(t.kernel.call("thenable", "items")),
        snapshot: await codeOf(t.kernel.snapshot("thenable").then(([result]) => (result !== undefined && "bytes" in result ? "written" : result))),
        swap: await swapTo("thenable", "proto-then-v2.ts"),
      };
    });
    expect(load.value).toEqual({ poisoned: "poisoned", count: 5, items: [], snapshot: "written", swap: { outcome: "committed", code: null } });
    expect(await t.kernel.call("thenable", "which")).toBe("2.0.0");
    expect(await t.kernel.call("thenable", "get")).toBe(5);
    expect(await t.kernel.call("thenable", "items")).toEqual(["stopped 1.0.0", "restored 2.0.0"]);
    expectHealthy(load);
  });

  it("a version that sets Object.prototype.then as its module loads goes live with the state it is given, and is swapped out again with it", async () => {
    const load = await underLoad(t, async () => {
      await t.kernel.call("early", "incr", 3);
      const into = await swapTo("early", "proto-then-early.ts");
      const live = { which: await codeOf(t.kernel.call("early", "which")), count: await codeOf(t.kernel.call("early", "incr", 1)) };
      const out = await swapTo("early", "proto-then.ts");
      return { into, live, out };
    });
    expect(load.value).toEqual({
      into: { outcome: "committed", code: null },
      live: { which: "3.0.0-early", count: 4 },
      out: { outcome: "committed", code: null },
    });
    expect(await t.kernel.call("early", "which")).toBe("1.0.0");
    expect(await t.kernel.call("early", "get")).toBe(4);
    expect(await t.kernel.call("early", "items")).toEqual(["stopped 1.0.0", "restored 3.0.0-early", "stopped 3.0.0-early", "restored 1.0.0"]);
    expectHealthy(load);
  });

  it("finds no host object in what its calls resolve with (Object.prototype.then set while a call is on its way): answers arrive as its own plain bytes", async () => {
    const load = await underLoad(t, () => t.kernel.call("grabber", "grab"));
    // Nothing settled through its `then`: the answer crossed as bytes whose own `then` the runtime fixed before any service code ran.
    expect(load.value).toEqual({ answer: "hello", caught: [] });
    expectHealthy(load);
  });
});
