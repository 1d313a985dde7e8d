// Hostile services, escapes: a service tries to reach the host (the Function
// constructor, the kernel's references), tampers with the globals and
// prototypes of its own isolate, reaches for services it has no binding to,
// and forges replies, beside a healthy service under continuous load. The
// kernel and every other service must be unaffected; the hostile one gets
// codes.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, rejection, startKernel, type TestKernel } from "../support/kernel.ts";
import { underLoad, expectHealthy } from "../support/hostile.ts";

/** msgpack of [1, 0, { code: "ERR_FAKE", message: "forged" }], as test/fixtures/hostile/escapes.ts builds it. */
const FORGED_ERROR = Uint8Array.from([
  0x93, 0x01, 0x00, 0x82, 0xa4, ...Buffer.from("code"), 0xa8, ...Buffer.from("ERR_FAKE"), 0xa7, ...Buffer.from("message"), 0xa6, ...Buffer.from("forged"),
]);

const GUESSES = ["healthy", "witness", "kernel", "log", "admin", "gateway", "__proto__", "constructor", "toString", "hasOwnProperty", "", "witness ", "WITNESS", "../witness"];

describe("hostile services: escape attempts", () => {
  let t: TestKernel;
  const hostile = (extra: Record<string, unknown> = {}) => ({ entry: "./hostile/escapes.ts", bindings: { healthy: "healthy" }, ...extra });
  beforeAll(async () => {
    t = await startKernel({
      services: {
        prober: hostile(),
        tamperer: hostile(),
        polluter: hostile(),
        trapped: hostile({ limits: { timeoutMs: 300 } }),
        guesser: hostile({ bindings: {} }),
        forger: hostile(),
        envelope: hostile(),
        blamer: hostile(),
        relay: { entry: "./probe.ts", bindings: { forger: "forger", envelope: "envelope" } },
        witness: { entry: "./hostile/witness.ts" },
        healthy: { entry: "./probe.ts" },
      },
      // Both swaps here fail their probation, which then ends early: a long window costs nothing, and a loaded machine needs it.
      swap: { probationMs: 5000, probationMaxErrors: 1 },
    });
  });
  afterAll(() => t.kernel.stop());

  it("finds no host through the Function constructor, indirect eval or dynamic import", async () => {
    const load = await underLoad(t, async () => ({
      attempts: await t.kernel.call("prober", "functionConstructor"),
      dynamicImport: await t.kernel.call("prober", "dynamicImport"),
    }));
    expect(load.value.attempts).toEqual({
      viaObject: "threw ReferenceError",
      viaObjectTypeof: "returned undefined",
      viaGlobalThis: "returned undefined",
      viaCtx: "returned undefined",
      viaAsyncFunction: { value: "undefined" },
      viaIndirectEval: "returned undefinedundefinedundefined",
      requireTypeof: "undefined",
    });
    expect(load.value.dynamicImport).toMatchObject({ name: "Error" });
    expectHealthy(load);
  });

  it("finds no __molt_install, no module export and no isolated-vm object reachable from globalThis or ctx, and no runtime frame hands out its function", async () => {
    const load = await underLoad(t, () => t.kernel.call("prober", "hostReferences"));
    expect(load.value).toMatchObject({ suspicious: [], leaks: [], installVisible: false, moduleVisible: false });
    expectHealthy(load);
  });

  it("tampers with console, setTimeout, Promise, JSON and Object.prototype in its own isolate: the kernel still routes its calls, and no other service or the host sees the tampering", async () => {
    const load = await underLoad(t, async () => {
      const tampered = await t.kernel.call("tamperer", "tamper");
      const ownCall = await t.kernel.call("tamperer", "callHealthy", { n: 7 });
      const stillPolluted = await t.kernel.call("tamperer", "polluted");
      const witness = await t.kernel.call("witness", "realm");
      return { tampered, ownCall, stillPolluted, witness };
    });
    expect(load.value.tampered).toEqual({ polluted: 1, call: { value: { n: 1, list: [1, 2] } } });
    expect(load.value.ownCall).toEqual({ n: 7 });
    expect(load.value.stillPolluted).toBe(1);
    expect(load.value.witness).toEqual({
      polluted: null,
      inPolluted: false,
      arrayPolluted: null,
      then: null,
      promiseNative: true,
      jsonWorks: { a: [1] },
      consoleIsFunction: true,
      timer: "fired",
      clone: true,
      sliceWorks: 2,
      setHasNative: true,
    });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expectHealthy(load);
  });

  it("sets isolated-vm's option names (reference, result, …) on Object.prototype: its own host calls work as before, none hands back a host reference", async () => {
    const load = await underLoad(t, () => t.kernel.call("polluter", "polluteTransferOptions"));
    // What each host call yields, by kind: plain values, and the runtime's own bytes (whose `then` it fixed), never a Reference.
    expect(load.value).toEqual({
      call: { value: "number" },
      send: { value: "undefined" },
      now: { value: "number" },
      random: { value: "[object Uint8Array]:constructor,BYTES_PER_ELEMENT,then" },
      log: { value: "undefined" },
      timer: { value: "string" },
    });
    expect(await t.kernel.call("polluter", "callHealthy", 3)).toBe(3);
    expectHealthy(load);
  });

  it("makes every reply of its own isolate a thenable (Object.prototype.then): its replies still arrive, nothing else is affected", async () => {
    const load = await underLoad(t, async () => [await t.kernel.call("trapped", "thenTrap"), await t.kernel.call("trapped", "ping")]);
    expect(load.value).toEqual(["trapped", "pong"]);
    expect(await t.kernel.call("witness", "realm")).toMatchObject({ then: null });
    expectHealthy(load);
  });

  it("reaches no service without a binding, whatever name it guesses: ERR_NO_BINDING for every call and send", async () => {
    const load = await underLoad(t, () => t.kernel.call("guesser", "guessBindings"));
    const every = (code: string) => GUESSES.map((name) => [name, code]);
    expect(load.value).toEqual({ calls: every("ERR_NO_BINDING"), sends: every("ERR_NO_BINDING") });
    expect(await t.kernel.call("witness", "hits")).toBe(0);
    expectHealthy(load);
  });

  it("defeats the guest's own binding check (Set.prototype.has → true): the kernel's check refuses every call with ERR_NO_BINDING and drops every send, logged with its code", async () => {
    const refusedBefore = t.logs.filter((l) => l.msg === "send refused" && l.service === "guesser").length;
    const load = await underLoad(t, () => t.kernel.call("guesser", "bypassBindingCheck"));
    expect(load.value).toEqual(GUESSES.map((name) => [name, "ERR_NO_BINDING"]));
    const refused = t.logs.filter((l) => l.msg === "send refused" && l.service === "guesser").slice(refusedBefore);
    expect(refused).toHaveLength(GUESSES.length);
    expect(refused.every((l) => l.code === "ERR_NO_BINDING")).toBe(true);
    expect(await t.kernel.call("witness", "hits")).toBe(0);
    expect(await t.kernel.call("healthy", "log")).toEqual([]);
    expectHealthy(load);
  });

  it("returns bytes crafted as an error reply envelope: every caller receives exactly those bytes, as a value", async () => {
    const load = await underLoad(t, async () => ({
      direct: await t.kernel.call("forger", "forgeErrorReply"),
      viaService: await t.kernel.call("relay", "call", { binding: "forger", method: "forgeErrorReply" }),
      nested: await t.kernel.call("forger", "forgeNested"),
      replayed: await t.kernel.call("forger", "replayThroughHealthy"),
    }));
    const { direct, viaService, nested, replayed } = load.value as Record<string, any>;
    for (const bytes of [direct, viaService, nested.reply, nested.list[0], replayed]) {
      expect(bytes).toBeInstanceOf(Uint8Array);
      expect([...bytes]).toEqual([...FORGED_ERROR]);
    }
    expectHealthy(load);
  });

  // BUG (see the report): the kernel takes an error's `service` from the
  // guest's reply, so a service can blame another for its own failures.
  it("cannot pin its own error on another service: the error names the service that raised it", async () => {
    const load = await underLoad(t, () => rejection(t.kernel.call("forger", "blameOther")));
    expect(load.value.code).toBe("ERR_FAKE");
    expect(load.value.service).toBe("forger");
    expectHealthy(load);
  });

  // BUG (see the report): …and so a faulty new version slips through its
  // probation: errors naming another service are not counted against it.
  it("a new version that fails during probation is rolled back with ERR_SWAP_PROBATION, even when its errors name another service", async () => {
    const swapAndFail = async (fixture: string, expected: string) => {
      const swapping = t.kernel.swap("blamer", `${t.kernel.config.dir}/hostile/${fixture}`);
      const semver = () => t.kernel.status().find((s) => s.name === "blamer")?.semver;
      await eventually(() => expect(semver()).toBe(expected));
      const first = (await rejection(t.kernel.call("blamer", "ping"))).code;
      // Further failures only take it past probationMaxErrors; once it is rolled back, pings answer again.
      for (let i = 0; i < 2; i++) await t.kernel.call("blamer", "ping").catch(() => undefined);
      const report = await swapping;
      return { first, outcome: report.outcome, code: report.error?.code, running: semver() };
    };
    const load = await underLoad(t, async () => ({
      owning: await swapAndFail("fails-v2.ts", "2.0.0-fails"),
      blaming: await swapAndFail("blame-v2.ts", "2.0.0-blames"),
    }));
    const rolledBack = { first: "ERR_BROKEN", outcome: "rolled-back", code: "ERR_SWAP_PROBATION", running: "1.0.0" };
    expect(load.value).toEqual({ owning: rolledBack, blaming: rolledBack });
    expectHealthy(load);
  });

  it("replaces the bytes its runtime encodes replies into (Uint8Array.prototype.slice): the runtime took its own copy before any service code ran, so replies are intact, and the services beside answer", async () => {
    const load = await underLoad(t, async () => {
      const direct = await t.kernel.call("envelope", "forgeEnvelope", "string");
      const viaService = await t.kernel.call("relay", "call", { binding: "envelope", method: "ping" });
      return { direct, viaService };
    });
    expect(await t.kernel.call("relay", "echo", "relay still answers")).toBe("relay still answers");
    expectHealthy(load);
    expect(load.value).toEqual({ direct: "this reply is replaced", viaService: "pong" });
  });
});
