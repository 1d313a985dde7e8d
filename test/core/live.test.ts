import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { AdminServer } from "../../core/admin.ts";
import { startKernel, type TestKernel } from "../support/kernel.ts";

describe("live view (server-sent events)", () => {
  let t: TestKernel;
  let admin: AdminServer;
  beforeAll(async () => {
    t = await startKernel({ services: { counter: { entry: "./swap/counter-v1.ts", bindings: { slow: "slow" } }, slow: { entry: "./probe.ts" } } });
    admin = new AdminServer(t.admin, { port: 0, host: "127.0.0.1", token: "t", allowedRoots: [t.kernel.config.dir] });
    await admin.listen();
  });
  afterAll(async () => {
    await admin.close();
    await t.kernel.stop();
  });

  it("sends a tick a second with each service's rate and p99, and every swap as it ends", async () => {
    const controller = new AbortController();
    const res = await fetch(`${admin.url}/v1/events`, { signal: controller.signal });
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    const events: { event: string; data: any }[] = [];
    const reading = (async () => {
      let buffer = "";
      const decoder = new TextDecoder();
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buffer += decoder.decode(chunk, { stream: true });
          let end: number;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const event = /^event: (.*)$/m.exec(block)?.[1] ?? "";
            const data = /^data: (.*)$/m.exec(block)?.[1] ?? "null";
            events.push({ event, data: JSON.parse(data) });
          }
        }
      } catch {
        // aborted
      }
    })();
    const load = (async () => {
      for (let i = 0; i < 200; i++) await t.kernel.call("counter", "incr", 1);
    })();
    await load;
    await t.kernel.swap("counter", `${t.kernel.config.dir}/swap/counter-v2.ts`);
    // Calls to the new version, until a tick reports them: its tick cannot be one from before the swap.
    const busy = (): { rps: number; p99Ms: number; semver: string } | undefined =>
      events
        .filter((e) => e.event === "tick")
        .flatMap((e) => e.data.services)
        .find((s: any) => s.name === "counter" && s.rps > 0 && s.semver === "2.0.0");
    await vi.waitFor(
      async () => {
        for (let i = 0; i < 20; i++) await t.kernel.call("counter", "incr", 1);
        expect(busy()).toBeDefined();
      },
      { timeout: 5000, interval: 100 },
    );
    controller.abort();
    await reading;
    const swap = events.find((e) => e.event === "swap");
    expect(swap?.data.report).toMatchObject({ service: "counter", outcome: "committed" });
    expect(busy()?.p99Ms).toBeGreaterThan(0);
  });
});
