// Hostile services, metric labels: a service chooses its error codes, so a
// code must not become a metric label (or any long-lived host-side key)
// unchecked. Kernel codes are labelled as themselves, a few well-formed codes
// of the service's own too, and everything else counts as ERR_OTHER: /metrics
// stays small however many codes a service invents, and the healthy service
// answers every call meanwhile.
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MoltError } from "../../core/errors.ts";
import { CUSTOM_CODES_PER_SERVICE } from "../../core/metrics.ts";
import { Router } from "../../core/router.ts";
import type { Slot } from "../../core/slot.ts";
import { eventually, rejection, startKernel, type TestKernel } from "../support/kernel.ts";
import { expectHealthy, underLoad } from "../support/hostile.ts";

/** The molt_errors_total series of one service: code label → count. */
function errorSeries(text: string, service: string): Map<string, number> {
  const series = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line.startsWith("molt_errors_total{") || !line.includes(`service="${service}"`)) continue;
    const code = /code="((?:[^"\\]|\\.)*)"/.exec(line)?.[1] ?? "";
    series.set(code, Number(line.slice(line.lastIndexOf(" ") + 1)));
  }
  return series;
}

describe("hostile services: error codes as metric labels", () => {
  let t: TestKernel;
  beforeAll(async () => {
    t = await startKernel({
      services: {
        random: { entry: "./hostile/labels-codes.ts" },
        many: { entry: "./hostile/labels-codes.ts" },
        healthy: { entry: "./probe.ts" },
      },
    });
  });
  afterAll(() => t.kernel.stop());

  it("300 errors with random 30 KB codes: one ERR_OTHER series counts all 300, and /metrics stays small", async () => {
    const load = await underLoad(t, async () => {
      const codes: string[] = [];
      for (let i = 0; i < 300; i++) codes.push((await rejection(t.kernel.call("random", "failRandom", 30_000))).code);
      return codes;
    });
    // The caller still gets the service's own code, cut to a bounded length (core/errors.ts); the label is ERR_OTHER.
    expect(load.value.every((code) => code.length > 128 && code.length < 200)).toBe(true);
    const text = await t.metrics.text();
    expect([...errorSeries(text, "random")]).toEqual([["ERR_OTHER", 300]]);
    // Three services' worth of histograms and counters, not 300 × 30 KB of labels.
    expect(text.length).toBeLessThan(100_000);
    expectHealthy(load);
  });

  it("300 distinct well-formed codes and some malformed ones: a few get their own series, the rest count as ERR_OTHER, and kernel codes keep theirs", async () => {
    const malformed = ["err_lower", "ERR_", `ERR_${"A".repeat(65)}`, "ERR_DASH-ED", "ERR_NEWLINE\n", "ERR_ÜML"];
    const load = await underLoad(t, async () => {
      for (let i = 0; i < 300; i++) await rejection(t.kernel.call("many", "fail", `ERR_MANY_${i}`));
      for (const code of malformed) await rejection(t.kernel.call("many", "fail", code));
      // A kernel code, raised by the kernel and by the service, once the service's own allowance is spent.
      await rejection(t.kernel.call("many", "nope"));
      await rejection(t.kernel.call("many", "fail", "ERR_TIMEOUT"));
    });
    const series = errorSeries(await t.metrics.text(), "many");
    const own = [...series.keys()].filter((code) => code.startsWith("ERR_MANY_"));
    expect(own.length).toBe(CUSTOM_CODES_PER_SERVICE);
    for (const code of own) expect(series.get(code)).toBe(1);
    expect(series.get("ERR_OTHER")).toBe(300 - CUSTOM_CODES_PER_SERVICE + malformed.length);
    expect(series.get("ERR_NO_HANDLER")).toBe(1);
    expect(series.get("ERR_TIMEOUT")).toBe(1);
    expect(series.size).toBe(CUSTOM_CODES_PER_SERVICE + 3);
    expectHealthy(load);
  });
});

describe("hostile services: error codes as keys of the kernel's own maps", () => {
  it("300 sends failing with random 30 KB codes and messages: one failure key for the pair, and the logged code and message are bounded", async () => {
    const random = (chars: number): string => randomBytes(chars / 2).toString("hex");
    // A receiver whose every delivery fails with a code and message nobody chose from a fixed set.
    const receiver = { name: "receiver", deliver: () => Promise.reject(new MoltError(`ERR_${random(30_000)}`, random(30_000))) } as unknown as Slot;
    const sender = { name: "sender", spec: { bindings: { out: "receiver" } } } as unknown as Slot;
    const logs: Record<string, unknown>[] = [];
    const router = new Router({
      slots: new Map([
        ["receiver", receiver],
        ["sender", sender],
      ]),
      logService: null,
      log: { log: (level, msg, fields) => logs.push({ level, msg, ...fields }) },
      stdout: () => undefined,
    });
    const bridge = router.bridge(sender, () => undefined, () => undefined);
    for (let i = 0; i < 300; i++) bridge.send("out", new Uint8Array(1));
    const failed = () => logs.filter((l) => l.msg === "send failed");
    // The first failure is logged, the other 299 are folded into one line a second later.
    await eventually(() => expect(failed().reduce((n, l) => n + Number(l.alsoFailedInTheLastSecond ?? 1), 0)).toBe(300), 5000);
    expect(failed().length).toBe(2);
    for (const line of failed()) {
      expect(line.code).toBe("ERR_OTHER");
      expect(String(line.error).length).toBeLessThan(2048);
    }
  });
});
