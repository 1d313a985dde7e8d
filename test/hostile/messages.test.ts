// Hostile services, messages: values that cannot cross an isolate boundary
// (functions, symbols, throwing getters, proxies), values past
// limits.maxMessageBytes, and values that must cross intact (cycles, deep
// nesting), beside a healthy service under continuous load. The sender gets
// ERR_UNENCODABLE or ERR_MESSAGE_TOO_LARGE; the receiver never sees the
// message; cycles round-trip with structured-clone semantics.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rejection, startKernel, type TestKernel } from "../support/kernel.ts";
import { underLoad, expectHealthy } from "../support/hostile.ts";

function cyclic(): Record<string, any> {
  const o: Record<string, any> = { name: "o" };
  o.self = o;
  const m = new Map<string, unknown>([["owner", o]]);
  m.set("map", m);
  o.map = m;
  const list: unknown[] = [1];
  list.push(list);
  o.list = list;
  const set = new Set<unknown>();
  set.add(set);
  o.set = set;
  return o;
}

describe("hostile services: unencodable, oversize and cyclic messages", () => {
  let t: TestKernel;
  beforeAll(async () => {
    t = await startKernel({
      services: {
        sender: { entry: "./hostile/messages.ts", bindings: { healthy: "healthy", small: "small" } },
        small: { entry: "./probe.ts", bindings: { sender: "sender" }, limits: { maxMessageBytes: 10_000 } },
        healthy: { entry: "./probe.ts" },
      },
    });
  });
  afterAll(() => t.kernel.stop());

  it("refuses functions, symbols, throwing getters and messages past the receiver's maxMessageBytes in the sender, with codes", async () => {
    const load = await underLoad(t, () => t.kernel.call("sender", "outgoing"));
    expect(load.value).toEqual({
      callFunction: { code: "ERR_UNENCODABLE" },
      callSymbol: { code: "ERR_UNENCODABLE" },
      callThrowingGetter: { code: "ERR_UNENCODABLE" },
      sendFunction: { code: "ERR_UNENCODABLE" },
      sendSymbol: { code: "ERR_UNENCODABLE" },
      callTooLarge: { code: "ERR_MESSAGE_TOO_LARGE" },
      callTooLargeForHealthy: { code: "ERR_MESSAGE_TOO_LARGE" },
      callJustFits: { value: 9000 },
    });
    expectHealthy(load);
  });

  it("drops a one-way message past the receiver's maxMessageBytes, logged with ERR_MESSAGE_TOO_LARGE; the sender goes on", async () => {
    const load = await underLoad(t, () => t.kernel.call("sender", "sendTooLarge"));
    expect(load.value).toBe("sent");
    expect(t.logs).toContainEqual(expect.objectContaining({ msg: "send failed", service: "sender", to: "small", code: "ERR_MESSAGE_TOO_LARGE" }));
    expect(await t.kernel.call("sender", "ping")).toBe("pong");
    expectHealthy(load);
  });

  it("answers ERR_UNENCODABLE for a reply holding a function, a symbol, a throwing getter or a throwing proxy, and serves on", async () => {
    const methods = ["returnFunction", "returnSymbol", "returnFunctionInMap", "returnThrowingGetter", "returnProxy"];
    const load = await underLoad(t, async () => {
      const codes = [];
      for (const method of methods) codes.push((await rejection(t.kernel.call("sender", method))).code);
      return codes;
    });
    expect(load.value).toEqual(methods.map(() => "ERR_UNENCODABLE"));
    expect(await t.kernel.call("sender", "ping")).toBe("pong");
    expectHealthy(load);
  });

  it("refuses a request past the callee's maxMessageBytes, and a reply past the caller's, with ERR_MESSAGE_TOO_LARGE", async () => {
    const load = await underLoad(t, async () => ({
      request: (await rejection(t.kernel.call("small", "echo", "x".repeat(20_000)))).code,
      reply: (await rejection(t.kernel.call("small", "call", { binding: "sender", method: "big", payload: 20_000 }))).code,
      fits: ((await t.kernel.call("small", "call", { binding: "sender", method: "big", payload: 9_000 })) as string).length,
    }));
    expect(load.value).toEqual({ request: "ERR_MESSAGE_TOO_LARGE", reply: "ERR_MESSAGE_TOO_LARGE", fits: 9_000 });
    expectHealthy(load);
  });

  it("carries cyclic objects, Maps, Sets and arrays intact, cycles and all: from the host, back to it, and between services", async () => {
    const load = await underLoad(t, async () => ({
      fromService: (await t.kernel.call("sender", "cyclic")) as Record<string, any>,
      throughHealthy: await t.kernel.call("sender", "cyclicThroughHealthy"),
      fromHost: await t.kernel.call("sender", "cyclicFromCaller", cyclic()),
      echoed: (await t.kernel.call("healthy", "echo", cyclic())) as Record<string, any>,
    }));
    const intact = { self: true, map: true, list: true, set: true };
    for (const o of [load.value.fromService, load.value.echoed]) {
      expect({
        self: o.self === o,
        map: o.map instanceof Map && o.map.get("map") === o.map && o.map.get("owner") === o,
        list: o.list[1] === o.list,
        set: o.set instanceof Set && o.set.has(o.set),
      }).toEqual(intact);
    }
    expect(load.value.throughHealthy).toEqual(intact);
    expect(load.value.fromHost).toEqual(intact);
    expectHealthy(load);
  });

  it("carries deep nesting between services, and answers past what can be encoded or decoded with a code", async () => {
    const load = await underLoad(t, async () => ({
      between1k: await t.kernel.call("sender", "nestedThroughHealthy", 1_000),
      between10k: await t.kernel.call("sender", "nestedThroughHealthy", 10_000),
      between100k: await t.kernel.call("sender", "nestedThroughHealthy", 100_000),
      toHost1k: await t.kernel.call("sender", "nested", 1_000).then(() => "decoded"),
      // The host's decoder has a shallower stack than an isolate's: it gives up between 2,000 and 4,000 levels.
      toHost10k: (await rejection(t.kernel.call("sender", "nested", 10_000))).code,
      toHost100k: (await rejection(t.kernel.call("sender", "nested", 100_000))).code,
    }));
    expect(load.value.between1k).toEqual({ value: 1_000 });
    expect(load.value.between10k).toEqual({ value: 10_000 });
    expect(load.value.between100k).toEqual({ code: "ERR_UNENCODABLE" });
    expect(load.value.toHost1k).toBe("decoded");
    expect(load.value.toHost10k).toBe("ERR_BAD_MESSAGE");
    expect(load.value.toHost100k).toBe("ERR_UNENCODABLE");
    expectHealthy(load);
  });
});
