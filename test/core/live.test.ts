import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminServer } from "../../core/admin.ts";
import { startKernel, type TestKernel } from "../support/kernel.ts";

describe("live view (server-sent events)", () => {
  let t: TestKernel;
  let admin: AdminServer;
  beforeAll(async () => {
    t = await startKernel({ services: { counter: { entry: "./swap/counter-v1.ts", bindings: { slow: "slow" } }, slow: { entry: "./probe.ts" } } });
    admin = new AdminServer(t.kernel, { port: 0, host: "127.0.0.1", token: "t", allowedRoots: [t.kernel.config.dir] });
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
    for (let i = 0; i < 40 && !events.some((e) => e.event === "tick" && e.data.services.some((s: any) => s.name === "counter" && s.rps > 0)); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    controller.abort();
    await reading;
    const swap = events.find((e) => e.event === "swap");
    expect(swap?.data.report).toMatchObject({ service: "counter", outcome: "committed" });
    const busy = events.find((e) => e.event === "tick" && e.data.services.some((s: any) => s.name === "counter" && s.rps > 0));
    const counter = busy?.data.services.find((s: any) => s.name === "counter");
    expect(counter.p99Ms).toBeGreaterThan(0);
    expect(counter.semver).toMatch(/^[12]\.0\.0$/);
  });
});
