// Hostile services, console floods: each service has a console budget (lines
// and bytes per second, with a few seconds' burst) kept by the kernel. Past
// it, lines are dropped and the kernel logs, per service, how many; a very
// long line is cut short. A flooding service neither floods the log nor
// silences its neighbours, and the healthy service answers every call.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONSOLE_BUDGET } from "../../core/console-sink.ts";
import { eventually, startKernel, type TestKernel } from "../support/kernel.ts";
import { expectHealthy, underLoad } from "../support/hostile.ts";

interface Line {
  service: string;
  level: string;
  message: string;
}

/** The console lines of one service that reached stdout (no log service is configured here). */
function printed(t: TestKernel, service: string): Line[] {
  return t.out.map((text) => JSON.parse(text) as Line).filter((line) => line.service === service);
}

/** What the kernel said it dropped for one service. */
function dropped(t: TestKernel, service: string): { lines: number; bytes: number; warnings: number } {
  const warnings = t.logs.filter((l) => l.msg === "console output dropped" && l.service === service);
  for (const w of warnings) expect(w.level).toBe("warn");
  return {
    lines: warnings.reduce((n, w) => n + Number(w.lines), 0),
    bytes: warnings.reduce((n, w) => n + Number(w.bytes), 0),
    warnings: warnings.length,
  };
}

describe("hostile services: console floods", () => {
  let t: TestKernel;
  beforeAll(async () => {
    t = await startKernel({
      services: {
        flooder: { entry: "./hostile/console-flood.ts", limits: { timeoutMs: 60_000 } },
        neighbour: { entry: "./hostile/console-neighbour.ts" },
        healthy: { entry: "./probe.ts" },
      },
    });
  });
  afterAll(() => t.kernel.stop());

  it("100,000 × 2 KB console.log lines: what is printed stays within the budget, the rest is counted in warnings, and a neighbour's lines all get through", async () => {
    const lines = 100_000;
    const started = performance.now();
    const load = await underLoad(t, async () => {
      const flood = t.kernel.call("flooder", "flood", { lines, chars: 2048 });
      // The neighbour logs a line every 10 ms or so (well within its own budget) while the flood goes on, and a few after it.
      let done = false;
      void flood.finally(() => (done = true));
      const said: string[] = [];
      const say = async (): Promise<void> => {
        said.push((await t.kernel.call("neighbour", "say", `neighbour line ${said.length}`)) as string);
      };
      while (!done) {
        await say();
        await new Promise((r) => setTimeout(r, 10));
      }
      await flood;
      for (let i = 0; i < 5; i++) await say();
      // Every line is either printed or counted as dropped, once the last warning is out.
      await eventually(() => expect(printed(t, "flooder").length + dropped(t, "flooder").lines).toBe(lines), 20_000);
      return said;
    });
    const seconds = (performance.now() - started) / 1000;
    const out = printed(t, "flooder");
    const bytes = out.reduce((n, line) => n + Buffer.byteLength(line.message), 0);
    // The budget refills at its rate for at most as long as the test ran; a line is 2 KB.
    const { linesPerSec, bytesPerSec, burstSeconds } = CONSOLE_BUDGET;
    expect(out.length).toBeLessThanOrEqual(linesPerSec * (burstSeconds + seconds));
    expect(bytes).toBeLessThanOrEqual(bytesPerSec * (burstSeconds + seconds));
    expect(out.length).toBeGreaterThan(0);
    const lost = dropped(t, "flooder");
    expect(lost.lines).toBeGreaterThan(lines / 2);
    expect(lost.bytes).toBeGreaterThan(lost.lines * 2048);
    // One warning a second at most: far fewer warnings than dropped lines.
    expect(lost.warnings).toBeLessThanOrEqual(Math.ceil(seconds) + 1);
    // The neighbour's budget is its own.
    expect(load.value.length).toBeGreaterThan(5);
    expect(printed(t, "neighbour").map((l) => l.message)).toEqual(load.value);
    expect(dropped(t, "neighbour").lines).toBe(0);
    expectHealthy(load);
  });

  it("one 1 MB console.log line is cut to the line limit, with a marker", async () => {
    const before = printed(t, "flooder").length;
    await eventually(async () => {
      // The flood above may have spent the budget: try until a line gets through.
      await t.kernel.call("flooder", "long", 1_000_000);
      expect(printed(t, "flooder").length).toBeGreaterThan(before);
    }, 20_000);
    const line = printed(t, "flooder").at(-1) as Line;
    expect(line.message.startsWith("y".repeat(CONSOLE_BUDGET.maxLineChars))).toBe(true);
    expect(line.message.length).toBeGreaterThan(CONSOLE_BUDGET.maxLineChars);
    expect(line.message.length).toBeLessThan(CONSOLE_BUDGET.maxLineChars + 100);
  });

  it("200 lines of 4 million characters each: cut inside the service before they cross, so the host's memory never holds them", async () => {
    const peakBefore = process.resourceUsage().maxRSS;
    expect(await t.kernel.call("flooder", "flood", { lines: 200, chars: 4_000_000 })).toBe(200);
    // Each line would be 8 MB as a host string: 200 of them took the host from about 100 to 900 MB before.
    const grewKb = process.resourceUsage().maxRSS - peakBefore;
    expect(grewKb).toBeLessThan(300 * 1024);
  });
});
