// Hostile services, memory: large binary data into an isolate that holds
// most of its limit already. A reply to its ctx.call (no permission needed)
// or a fetch body that does not fit used to abort the whole process
// ("terminate called after throwing an instance of 'ivm::FatalRuntimeError'",
// or of a RangeError): isolated-vm copied a promise's result into the isolate
// where a failed allocation is not caught. Now it fails that one service with
// ERR_OOM, and its neighbour answers every call meanwhile.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, rejection, startKernel, type TestKernel } from "../support/kernel.ts";
import { expectHealthy, underLoad } from "../support/hostile.ts";

describe("hostile services: large binary data into a nearly full isolate", () => {
  let t: TestKernel;
  let server: Server;
  let url: string;
  const blob = Buffer.alloc(80 * 1024 * 1024, 7);
  beforeAll(async () => {
    server = createServer((_req, res) => res.end(blob));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/blob`;
    const full = { entry: "./hostile/headroom.ts", bindings: { source: "source" }, limits: { memoryMb: 128, timeoutMs: 30_000 } };
    t = await startKernel({
      services: {
        puller: full,
        downloader: { ...full, limits: { ...full.limits, maxMessageBytes: 100 * 1024 * 1024 }, permissions: { net: ["127.0.0.1"] } },
        source: { entry: "./hostile/blob-source.ts" },
        healthy: { entry: "./probe.ts" },
      },
      restart: { maxRestarts: 5, windowMs: 60_000 },
    });
  });
  afterAll(async () => {
    await t.kernel.stop();
    await new Promise((resolve) => server.close(resolve));
  });

  it("4 MB ctx.call replies into a service holding ~118 of its 128 MiB: ERR_OOM for that service, nothing else", async () => {
    expect(await t.kernel.call("puller", "fill", 118)).toBeGreaterThan(0);
    const load = await underLoad(t, async () => {
      const err = await rejection(t.kernel.call("puller", "pull", { count: 20, bytes: 4_000_000 }));
      const again = await eventually(() => t.kernel.call("puller", "ping"), 10_000);
      return { code: err.code, again };
    });
    expect(load.value).toEqual({ code: "ERR_OOM", again: "pong" });
    expectHealthy(load);
  });

  it("an 80 MB fetch body into a service holding ~100 of its 128 MiB: ERR_OOM for that service, nothing else", async () => {
    expect(await t.kernel.call("downloader", "fill", 100)).toBeGreaterThan(0);
    const load = await underLoad(t, async () => {
      const err = await rejection(t.kernel.call("downloader", "download", { url, count: 3 }));
      const again = await eventually(() => t.kernel.call("downloader", "ping"), 10_000);
      return { code: err.code, again };
    });
    expect(load.value).toEqual({ code: "ERR_OOM", again: "pong" });
    expectHealthy(load);
  });
});
