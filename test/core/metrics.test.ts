import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminServer } from "../../core/admin.ts";
import { CUSTOM_CODES_PER_SERVICE, Metrics } from "../../core/metrics.ts";
import { rejection, startKernel, type TestKernel } from "../support/kernel.ts";
import { sample } from "../support/prometheus.ts";


describe("metrics", () => {
  let t: TestKernel;
  let admin: AdminServer;
  beforeAll(async () => {
    t = await startKernel({ services: { counter: { entry: "./swap/counter-v1.ts", bindings: { slow: "slow" } }, slow: { entry: "./probe.ts" } } });
    admin = new AdminServer(t.admin, { port: 0, host: "127.0.0.1", token: "t0ken", allowedRoots: [t.kernel.config.dir] });
    await admin.listen();
  });
  afterAll(async () => {
    await admin.close();
    await t.kernel.stop();
  });

  it("counts requests by outcome, errors by code, latency, swaps, blackouts, queue depth and heap, named molt_*", async () => {
    for (let i = 0; i < 5; i++) await t.kernel.call("counter", "incr", 1);
    await rejection(t.kernel.call("counter", "nope"));
    await rejection(t.kernel.call("slow", "fail", "ERR_CUSTOM"));
    await t.kernel.swap("counter", `${t.kernel.config.dir}/swap/counter-v2.ts`);
    const res = await fetch(`${admin.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/plain");
    const text = await res.text();
    expect(sample(text, "molt_requests_total", { service: "counter", outcome: "ok" })).toBeGreaterThanOrEqual(5);
    expect(sample(text, "molt_requests_total", { service: "counter", outcome: "error" })).toBe(1);
    expect(sample(text, "molt_errors_total", { service: "counter", code: "ERR_NO_HANDLER" })).toBe(1);
    expect(sample(text, "molt_errors_total", { service: "slow", code: "ERR_CUSTOM" })).toBe(1);
    expect(sample(text, "molt_handler_duration_seconds_count", { service: "counter" })).toBeGreaterThanOrEqual(6);
    expect(sample(text, "molt_swaps_total", { service: "counter", outcome: "committed" })).toBe(1);
    expect(sample(text, "molt_swap_blackout_seconds_count", { service: "counter" })).toBe(1);
    expect(sample(text, "molt_queue_depth", { service: "counter" })).toBe(0);
    expect(sample(text, "molt_isolate_heap_used_bytes", { service: "counter" })).toBeGreaterThan(0);
    for (const line of text.split("\n").filter((l) => l.startsWith("# TYPE"))) expect(line.split(" ")[2]).toMatch(/^molt_/);
  });
});

describe("metrics: error code labels", () => {
  it("labels kernel codes as themselves, a service's first well-formed codes too (per service), and anything else as ERR_OTHER", async () => {
    const metrics = new Metrics(async () => []);
    const label = (service: string, code: string): string => metrics.errors.label(service, code);
    expect(label("a", "ERR_TIMEOUT")).toBe("ERR_TIMEOUT");
    for (const code of ["ERR_", "err_lower", "ERR_DASH-ED", `ERR_${"A".repeat(65)}`, "ERR_X\n", "ERR_X ", "NOT_ERR"]) expect(label("a", code)).toBe("ERR_OTHER");
    expect(label("a", `ERR_${"A".repeat(64)}`)).toBe(`ERR_${"A".repeat(64)}`);
    for (let i = 1; i < CUSTOM_CODES_PER_SERVICE; i++) expect(label("a", `ERR_A_${i}`)).toBe(`ERR_A_${i}`);
    // The allowance is spent: new codes count as ERR_OTHER, admitted ones and kernel codes keep their labels.
    expect(label("a", "ERR_ONE_TOO_MANY")).toBe("ERR_OTHER");
    expect(label("a", "ERR_A_1")).toBe("ERR_A_1");
    expect(label("a", "ERR_NO_HANDLER")).toBe("ERR_NO_HANDLER");
    // Another service has its own allowance.
    expect(label("b", "ERR_ONE_TOO_MANY")).toBe("ERR_ONE_TOO_MANY");
    metrics.errors.inc({ service: "a", code: "ERR_NEVER_SEEN" });
    metrics.errors.inc({ service: "a", code: "x".repeat(30_000) });
    expect(sample(await metrics.text(), "molt_errors_total", { service: "a", code: "ERR_OTHER" })).toBe(2);
  });
});

describe("metrics: rare events", () => {
  it("has every service's swap, blackout and restart series at 0 from the start, before any swap or restart", async () => {
    const t = await startKernel({ services: { counter: { entry: "./swap/counter-v1.ts" }, slow: { entry: "./probe.ts" } } });
    try {
      const text = await t.metrics.text();
      for (const service of ["counter", "slow"]) {
        for (const outcome of ["committed", "rolled-back", "unhealthy"]) expect(sample(text, "molt_swaps_total", { service, outcome })).toBe(0);
        expect(sample(text, "molt_swap_blackout_seconds_count", { service })).toBe(0);
        expect(sample(text, "molt_swap_blackout_seconds_bucket", { service, le: "+Inf" })).toBe(0);
        expect(sample(text, "molt_restarts_total", { service })).toBe(0);
      }
    } finally {
      await t.kernel.stop();
    }
  });
});
