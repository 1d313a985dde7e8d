// Hostile services, floods: one handler sends, calls, logs or arms timers by
// the tens of thousands, and services call each other in a cycle, beside a
// healthy service under continuous load. The flooder and the kernel survive,
// messages past a mailbox's bound are refused with ERR_MAILBOX_FULL (a send
// is dropped with a log line), a cycle ends in ERR_TIMEOUT, and the healthy
// service answers every call.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, rejection, startKernel, type TestKernel } from "../support/kernel.ts";
import { underLoad, expectHealthy, restarts } from "../support/hostile.ts";

describe("hostile services: floods", () => {
  let t: TestKernel;
  beforeAll(async () => {
    t = await startKernel({
      services: {
        flooder: { entry: "./hostile/flood.ts", bindings: { sink: "sink" }, limits: { timeoutMs: 60_000, timers: 25_000 } },
        sink: { entry: "./hostile/sink.ts", queue: 100 },
        healthy: { entry: "./probe.ts" },
      },
    });
  });
  afterAll(() => t.kernel.stop());

  it("100,000 ctx.sends from one handler to a slow service: the sender and the kernel survive; each send is delivered or counted in a log line carrying ERR_MAILBOX_FULL", async () => {
    const dropped = () => t.logs.filter((l) => l.msg === "send failed" && l.service === "flooder" && l.to === "sink");
    const load = await underLoad(t, async () => {
      const sent = await t.kernel.call("flooder", "sendFlood", 100_000);
      // Every send ends up delivered or logged as dropped.
      const accounted = await eventually(async () => {
        const taken = (await t.kernel.call("sink", "taken")) as number;
        // Failures are logged once a second per sender, target and code, with the number folded into that line.
        const lost = dropped().reduce((n, l) => n + (l.alsoFailedInTheLastSecond === undefined ? 1 : Number(l.alsoFailedInTheLastSecond)), 0);
        expect(taken + lost).toBe(100_000);
        return { taken, dropped: lost };
      }, 20_000);
      return { sent, accounted, ping: await t.kernel.call("flooder", "ping") };
    });
    expect(load.value.sent).toBe(100_000);
    expect(load.value.ping).toBe("pong");
    expect(load.value.accounted.dropped).toBeGreaterThan(0);
    expect(load.value.accounted.taken).toBeGreaterThan(0);
    expect(dropped().every((l) => l.code === "ERR_MAILBOX_FULL")).toBe(true);
    expectHealthy(load);
  });

  it("2,000 ctx.calls in flight at once to a slow service with a 100-message mailbox: the excess gets ERR_MAILBOX_FULL, the rest are answered", async () => {
    const load = await underLoad(t, () => t.kernel.call("flooder", "callFlood", 2_000));
    const tally = load.value as Record<string, number>;
    expect(Object.keys(tally).sort()).toEqual(["ERR_MAILBOX_FULL", "answered"]);
    expect((tally.answered ?? 0) + (tally.ERR_MAILBOX_FULL ?? 0)).toBe(2_000);
    expect(tally.answered).toBeGreaterThan(0);
    expectHealthy(load);
  });

  it("100,000 console.log lines from one handler: each is printed or counted as dropped past the service's console budget, and the kernel serves on", async () => {
    const before = t.out.length;
    const droppedLines = (): number =>
      t.logs.filter((l) => l.msg === "console output dropped" && l.service === "flooder").reduce((n, l) => n + Number(l.lines), 0);
    const droppedBefore = droppedLines();
    const load = await underLoad(t, async () => {
      const n = await t.kernel.call("flooder", "consoleFlood", 100_000);
      await eventually(() => expect(t.out.length - before + (droppedLines() - droppedBefore)).toBe(100_000), 10_000);
      return n;
    });
    expect(load.value).toBe(100_000);
    expect(droppedLines() - droppedBefore).toBeGreaterThan(0);
    expectHealthy(load);
  });

  it("20,000 timers armed at once: every one fires, and the kernel serves on", async () => {
    const before = (await t.kernel.call("flooder", "fired")) as number;
    const load = await underLoad(t, async () => {
      const n = await t.kernel.call("flooder", "timerFlood", 20_000);
      await eventually(async () => expect(await t.kernel.call("flooder", "fired")).toBe(before + 20_000), 20_000);
      return n;
    });
    expect(load.value).toBe(20_000);
    expectHealthy(load);
  });
});

describe("hostile services: call cycles", () => {
  let t: TestKernel;
  beforeAll(async () => {
    t = await startKernel({
      services: {
        a: { entry: "./probe.ts", bindings: { b: "b" }, limits: { timeoutMs: 300 } },
        b: { entry: "./probe.ts", bindings: { a: "a" }, limits: { timeoutMs: 1000 } },
        selfish: { entry: "./probe.ts", bindings: { self: "selfish" }, limits: { timeoutMs: 300 } },
        healthy: { entry: "./probe.ts" },
      },
    });
  });
  afterAll(() => t.kernel.stop());

  it("A → B → A with concurrency 1 deadlocks until A's deadline: ERR_TIMEOUT, then both answer again", async () => {
    const load = await underLoad(t, async () => {
      const err = await rejection(t.kernel.call("a", "call", { binding: "b", method: "call", payload: { binding: "a", method: "echo", payload: 1 } }));
      const again = [await eventually(() => t.kernel.call("a", "echo", "a")), await eventually(() => t.kernel.call("b", "echo", "b"))];
      return { code: err.code, again };
    });
    expect(load.value).toEqual({ code: "ERR_TIMEOUT", again: ["a", "b"] });
    expectHealthy(load);
  });

  it("a service calling itself through a binding deadlocks until its deadline: ERR_TIMEOUT, then it answers again", async () => {
    const load = await underLoad(t, async () => {
      const err = await rejection(t.kernel.call("selfish", "call", { binding: "self", method: "echo", payload: 1 }));
      return { code: err.code, again: await eventually(() => t.kernel.call("selfish", "echo", "me")) };
    });
    expect(load.value).toEqual({ code: "ERR_TIMEOUT", again: "me" });
    expect(restarts(t, "selfish")).toBe(0);
    expectHealthy(load);
  });
});
