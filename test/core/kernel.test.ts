import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, rejection, startKernel, type TestKernel } from "../support/kernel.ts";

const probe = (extra: Record<string, unknown> = {}) => ({ entry: "./probe.ts", ...extra });

describe("messaging between services", () => {
  let t: TestKernel;
  beforeAll(async () => {
    t = await startKernel({
      services: {
        a: probe({ bindings: { b: "b" }, limits: { timeoutMs: 400 } }),
        b: probe({ limits: { maxMessageBytes: 10_000 }, config: { greeting: "hi" } }),
      },
    });
  });
  afterAll(() => t.kernel.stop());

  it("carries a call through a declared binding and returns the callee's result", async () => {
    const value = { n: 1, list: [1, "two", null], nested: { m: new Map([["k", 1]]) }, bytes: new Uint8Array([1, 2]) };
    const result = (await t.kernel.call("a", "call", { binding: "b", method: "echo", payload: value })) as typeof value;
    expect(result.list).toEqual([1, "two", null]);
    expect(result.nested.m).toBeInstanceOf(Map);
    expect(result.nested.m.get("k")).toBe(1);
    expect([...result.bytes]).toEqual([1, 2]);
  });

  it("refuses an undeclared binding with ERR_NO_BINDING", async () => {
    const err = await rejection(t.kernel.call("b", "call", { binding: "a", method: "echo", payload: 1 }));
    expect(err.code).toBe("ERR_NO_BINDING");
    const viaSend = await rejection(t.kernel.call("b", "send", { binding: "nowhere", method: "echo" }));
    expect(viaSend.code).toBe("ERR_NO_BINDING");
  });

  it("answers an unknown method with ERR_NO_HANDLER", async () => {
    expect((await rejection(t.kernel.call("b", "nope"))).code).toBe("ERR_NO_HANDLER");
    expect((await rejection(t.kernel.call("a", "call", { binding: "b", method: "toString" }))).code).toBe("ERR_NO_HANDLER");
  });

  it("gives the caller the callee's error code and message, and both services serve on", async () => {
    const err = await rejection(t.kernel.call("a", "call", { binding: "b", method: "fail", payload: "ERR_CUSTOM" }));
    expect(err.code).toBe("ERR_CUSTOM");
    expect(err.message).toBe("failed on purpose");
    expect(err.service).toBe("b");
    expect((await rejection(t.kernel.call("b", "fail"))).code).toBe("ERR_HANDLER");
    expect(await t.kernel.call("a", "call", { binding: "b", method: "echo", payload: 2 })).toBe(2);
  });

  it("refuses payloads that cannot be encoded with ERR_UNENCODABLE", async () => {
    expect((await rejection(t.kernel.call("a", "callFunction", { binding: "b" }))).code).toBe("ERR_UNENCODABLE");
    expect((await rejection(t.kernel.call("b", "returnSymbol"))).code).toBe("ERR_UNENCODABLE");
    expect((await rejection(t.kernel.call("b", "returnFunction"))).code).toBe("ERR_UNENCODABLE");
    expect((await rejection(t.kernel.call("b", "echo", { f: () => 1 }))).code).toBe("ERR_UNENCODABLE");
  });

  it("refuses messages over maxMessageBytes with ERR_MESSAGE_TOO_LARGE", async () => {
    const big = "x".repeat(20_000);
    expect((await rejection(t.kernel.call("a", "call", { binding: "b", method: "echo", payload: big }))).code).toBe(
      "ERR_MESSAGE_TOO_LARGE",
    );
    expect((await rejection(t.kernel.call("b", "echo", big))).code).toBe("ERR_MESSAGE_TOO_LARGE");
    expect(await t.kernel.call("a", "call", { binding: "b", method: "echo", payload: "small" })).toBe("small");
  });

  it("delivers one-way sends", async () => {
    await t.kernel.call("a", "send", { binding: "b", method: "later", payload: 0 });
    await eventually(async () => expect(await t.kernel.call("b", "log")).toContain("timer fired"));
  });

  it("gives a service its context: name, version, config", async () => {
    const v = (await t.kernel.call("b", "version")) as Record<string, unknown>;
    expect(v.service).toBe("b");
    expect(v.semver).toBe("2.3.4");
    expect(v.stateVersion).toBe(7);
    expect(v.id).toMatch(/^[0-9a-f]{64}$/);
    expect(v.config).toEqual({ greeting: "hi" });
  });
});

describe("deadlines and runaway code", () => {
  let t: TestKernel;
  beforeAll(async () => {
    t = await startKernel({
      services: {
        a: probe({ bindings: { b: "b" }, limits: { timeoutMs: 300 } }),
        b: probe(),
        hog: probe({ limits: { memoryMb: 16, timeoutMs: 5000 } }),
      },
    });
  });
  afterAll(() => t.kernel.stop());

  it("stops a synchronous infinite loop with ERR_TIMEOUT and answers the next call", async () => {
    expect((await rejection(t.kernel.call("a", "spin"))).code).toBe("ERR_TIMEOUT");
    expect(await t.kernel.call("a", "echo", "alive")).toBe("alive");
  });

  it("stops a loop in an awaited continuation with ERR_TIMEOUT and answers the next call, without a restart", async () => {
    const restarts = (): number | undefined => t.kernel.status().find((s) => s.name === "a")?.restarts;
    const before = restarts();
    expect((await rejection(t.kernel.call("a", "spinAfterCall", { binding: "b" }))).code).toBe("ERR_TIMEOUT");
    // The answer that resumed the handler crossed in under the service's deadline, which stopped the loop.
    expect(await eventually(() => t.kernel.call("a", "echo", "alive again"))).toBe("alive again");
    expect(restarts()).toBe(before);
  });

  it("ends a memory bomb with ERR_OOM and restarts the service", async () => {
    expect((await rejection(t.kernel.call("hog", "hog"))).code).toBe("ERR_OOM");
    expect(await eventually(() => t.kernel.call("hog", "echo", 1))).toBe(1);
  });
});

describe("mailboxes", () => {
  let t: TestKernel;
  beforeAll(async () => {
    t = await startKernel({
      services: { one: probe(), many: { entry: "./latch.ts", concurrency: 4 }, small: probe({ queue: 3 }) },
    });
  });
  afterAll(() => t.kernel.stop());

  it("never interleaves a service's handlers by default", async () => {
    await Promise.all(["x", "y", "z"].map((tag) => t.kernel.call("one", "slow", { tag, ms: 20 })));
    expect(await t.kernel.call("one", "log")).toEqual(["enter x", "exit x", "enter y", "exit y", "enter z", "exit z"]);
  });

  it("runs a second handler while the first awaits when the config asks for concurrency", async () => {
    // The first handler is answered only once the second has run: at concurrency 1 it would wait for its deadline.
    const held = t.kernel.call("many", "hold", "x");
    expect(await t.kernel.call("many", "release", "x")).toBe(true);
    expect(await held).toBe("x");
  });

  it("refuses messages past the bound with ERR_MAILBOX_FULL and loses none it accepted", async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => t.kernel.call("small", "slow", { tag: String(i), ms: 10 })),
    );
    const refused = results.filter((r) => r.status === "rejected");
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect((r as PromiseRejectedResult).reason.code).toBe("ERR_MAILBOX_FULL");
    const accepted = results.filter((r) => r.status === "fulfilled").map((r) => (r as PromiseFulfilledResult<string>).value);
    const log = (await t.kernel.call("small", "log")) as string[];
    expect(log.filter((l) => l.startsWith("exit")).map((l) => l.slice(5))).toEqual(accepted);
  });
});

describe("the guest environment", () => {
  let t: TestKernel;
  let server: Server;
  let origin: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === "/redirect") {
        res.writeHead(302, { location: "http://localhost:1/elsewhere" }).end();
        return;
      }
      res.writeHead(200, { "content-type": "text/plain" }).end(`page ${req.url}`);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    process.env.MOLT_TEST_SECRET = "s3cret";
    t = await startKernel({
      services: {
        granted: probe({
          permissions: { net: [`127.0.0.1:${(server.address() as AddressInfo).port}`], env: ["MOLT_TEST_SECRET"], stdout: true },
        }),
        denied: probe(),
      },
    });
  });
  afterAll(async () => {
    await t.kernel.stop();
    await new Promise((r) => server.close(r));
  });

  it("has no process, require or host Function to reach", async () => {
    const r = (await t.kernel.call("denied", "isolation")) as Record<string, unknown>;
    expect(r.process).toBe("undefined");
    expect(r.require).toBe("undefined");
    expect(r.viaThis).toBe("undefined");
    expect(r.viaObject).toBe("undefined");
    expect(r.viaFunction).toBe("undefined");
    expect(r.processViaThis).toBe("threw ReferenceError");
    expect(r.requireViaThis).toBe("threw ReferenceError");
    expect(r.globalScope).toBe("undefined,undefined,undefined,undefined");
    expect(r.globalProcess).toBe("undefined");
    expect(r.globalRequire).toBe("undefined");
    expect(r.globalBuffer).toBe("undefined");
    expect(r.molt).toEqual([]);
  });

  it("provides the web globals", async () => {
    const r = (await t.kernel.call("denied", "web")) as Record<string, any>;
    expect(r.text).toBe("héllo ✓");
    expect(r.encodedLength).toBe(Buffer.byteLength("héllo ✓"));
    expect(r.elapsed).toBeGreaterThan(0);
    expect(r.url).toEqual(["example.com:8443", "/a/b", "1", "#h"]);
    expect(r.cloneIsMap).toBe(true);
    expect(r.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(r.random.some((b: number) => b !== 0)).toBe(true);
    expect(r.b64).toEqual(["bW9sdA==", "molt"]);
    expect(r.microtask).toBe("ran");
  });

  it("drives timers from the host", async () => {
    await t.kernel.call("denied", "startTicking", 10);
    await eventually(async () => expect(await t.kernel.call("denied", "ticks")).toBeGreaterThanOrEqual(3));
    const stopped = (await t.kernel.call("denied", "stopTicking")) as number;
    // The host fires timers in the order they fall due: by the time a 50 ms timeout has fired, a 10 ms interval still armed would have ticked.
    await t.kernel.call("denied", "later", 50);
    await eventually(async () => expect(await t.kernel.call("denied", "log")).toContain("timer fired"));
    expect(await t.kernel.call("denied", "ticks")).toBe(stopped);
  });

  it("fetches a granted host and refuses any other with ERR_PERMISSION", async () => {
    expect(await t.kernel.call("granted", "fetchText", `${origin}/hello`)).toEqual({
      status: 200,
      text: "page /hello",
      type: "text/plain",
    });
    expect((await rejection(t.kernel.call("denied", "fetchText", `${origin}/hello`))).code).toBe("ERR_PERMISSION");
    // A redirect to a host outside the grant is refused too.
    expect((await rejection(t.kernel.call("granted", "fetchText", `${origin}/redirect`))).code).toBe("ERR_PERMISSION");
  });

  it("reads only granted environment variables", async () => {
    expect(await t.kernel.call("granted", "env", "MOLT_TEST_SECRET")).toBe("s3cret");
    expect((await rejection(t.kernel.call("denied", "env", "MOLT_TEST_SECRET"))).code).toBe("ERR_PERMISSION");
    expect((await rejection(t.kernel.call("granted", "env", "PATH"))).code).toBe("ERR_PERMISSION");
  });

  it("writes to stdout only with permissions.stdout", async () => {
    await t.kernel.call("granted", "stdout", "hello stdout\n");
    expect(t.out).toContain("hello stdout\n");
    expect((await rejection(t.kernel.call("denied", "stdout", "nope"))).code).toBe("ERR_PERMISSION");
  });

  it("tags console output with the service's name and version", async () => {
    await t.kernel.call("denied", "console", "hello console");
    const lines = await eventually(() => {
      const found = t.out.filter((l) => l.includes("hello console") || l.includes('"bad'));
      if (found.length < 2) throw new Error("not yet");
      return found.map((l) => JSON.parse(l) as Record<string, unknown>);
    });
    expect(lines[0]).toMatchObject({ level: "info", service: "denied", version: "2.3.4", message: "hello console { n: 1 }" });
    expect(lines[1]).toMatchObject({ level: "error", service: "denied", message: "bad Map(1) { \"k\" => 2 }" });
  });
});

describe("stop order", () => {
  it("stops every service after the services that call it, and the log service last", async () => {
    const { stopOrder } = await import("../../core/kernel.ts");
    const { Slot } = await import("../../core/slot.ts");
    const { resolveConfig } = await import("../../core/config.ts");
    const config = resolveConfig(
      {
        services: {
          log: { entry: "l.ts" },
          kv: { entry: "k.ts" },
          counter: { entry: "c.ts", bindings: { kv: "kv" } },
          gateway: { entry: "g.ts", bindings: { counter: "counter", kv: "kv" } },
          a: { entry: "a.ts", bindings: { b: "b" } },
          b: { entry: "b.ts", bindings: { a: "a" } },
        },
        log: { service: "log" },
      },
      "/",
    );
    const order = stopOrder(Object.values(config.services).map((s) => new Slot(s)), "log").map((s) => s.name);
    expect(order.indexOf("gateway")).toBeLessThan(order.indexOf("counter"));
    expect(order.indexOf("counter")).toBeLessThan(order.indexOf("kv"));
    expect(order.at(-1)).toBe("log");
    expect(order).toHaveLength(6);
  });
});
