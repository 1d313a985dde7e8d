// The router: an instance's calls and sends go only through its own
// bindings, to the service running here or, when a fleet is plugged in, to
// another runtime; a reply past the caller's maxMessageBytes is refused;
// failed sends are logged once, then counted; stdout needs its permission.
// Driven through the bridge it hands an instance, with instances that are
// plain objects answering fixed bytes.

import { afterEach, describe, expect, it, vi } from "vitest";
import { resolveConfig } from "../../core/config.ts";
import { MoltError } from "../../core/errors.ts";
import type { Instance, InstanceBridge } from "../../core/instance.ts";
import { Router, type RemoteServices } from "../../core/router.ts";
import { Slot } from "../../core/slot.ts";
import { decodeReply, encodeOkReply, encodeRequest } from "../../core/wire.ts";
import type { MoltConfig } from "../../sdk/config.ts";
import { stubInstance } from "../support/instances.ts";

interface Logged {
  level: string;
  msg: string;
  [field: string]: unknown;
}

/** An instance that answers every call with `answer`, or rejects every delivery with `fails`. */
function instance(service: string, answer: unknown, fails?: MoltError): Instance & { received: Uint8Array[] } {
  const received: Uint8Array[] = [];
  return Object.assign(
    stubInstance(service, async (kind, request) => {
      if (fails !== undefined) throw fails;
      received.push(request);
      return kind === "call" ? encodeOkReply(answer) : undefined;
    }),
    { received },
  );
}

/** A router over the services of `config`, each with an instance answering `answers[name]`. */
function route(config: MoltConfig, answers: Record<string, unknown> = {}, failures: Record<string, MoltError> = {}) {
  const resolved = resolveConfig(config, "/");
  const slots = new Map<string, Slot>();
  const instances = new Map<string, ReturnType<typeof instance>>();
  for (const [name, spec] of Object.entries(resolved.services)) {
    const slot = new Slot(spec);
    const running = instance(name, answers[name] ?? name, failures[name]);
    slot.attach(running, { code: "", hash: "0".repeat(64), entry: `/${name}.ts` });
    slots.set(name, slot);
    instances.set(name, running);
  }
  const logs: Logged[] = [];
  const printed: string[] = [];
  const router = new Router({ slots, logService: null, log: { log: (level, msg, fields) => logs.push({ level, msg, ...fields }) }, stdout: (text) => printed.push(text) });
  const bridge = (name: string): InstanceBridge => {
    const slot = slots.get(name);
    if (slot === undefined) throw new Error(`no service ${name}`);
    return router.bridge(slot, () => undefined, () => undefined);
  };
  return { router, bridge, instances, logs, printed };
}

/** What a reply decodes to: its value, or the code of the error it carries. */
function outcome(reply: Uint8Array): { value: unknown } | { code: string } {
  try {
    return { value: decodeReply(reply) };
  } catch (err) {
    return { code: (err as MoltError).code };
  }
}

const request = encodeRequest("get", null);

/** A fleet in the config, so that a binding may name a service no runtime here runs; the router never connects to it. */
const FLEET = { nats: "nats://127.0.0.1:1" };

afterEach(() => {
  vi.useRealTimers();
});

describe("calls", () => {
  it("reach the service a declared binding names, with the caller's bytes, and return its reply", async () => {
    const { bridge, instances } = route({ services: { a: { entry: "a.ts", bindings: { store: "b" } }, b: { entry: "b.ts" } } }, { b: { n: 42 } });
    expect(outcome(await bridge("a").call("store", request))).toEqual({ value: { n: 42 } });
    expect(instances.get("b")?.received).toEqual([request]);
  });

  it.each(["b", "nowhere", "__proto__", "toString", "constructor"])("refuse a binding the caller does not declare (%s) with ERR_NO_BINDING, delivering nothing", async (binding) => {
    const { bridge, instances } = route({ services: { a: { entry: "a.ts", bindings: { store: "b" } }, b: { entry: "b.ts" } } });
    expect(outcome(await bridge("a").call(binding, request))).toEqual({ code: "ERR_NO_BINDING" });
    expect(instances.get("b")?.received).toEqual([]);
  });

  it("go to another runtime only when a fleet is plugged in and the service does not run here", async () => {
    const config: MoltConfig = {
      services: { a: { entry: "a.ts", bindings: { far: "far", near: "b" }, limits: { timeoutMs: 1234 } }, b: { entry: "b.ts" } },
      fleet: FLEET,
    };
    const { router, bridge, instances } = route(config);
    expect(outcome(await bridge("a").call("far", request))).toEqual({ code: "ERR_NO_SERVICE" });
    const asked: [string, number][] = [];
    const remote: RemoteServices = {
      call: async (service, _request, timeoutMs) => {
        asked.push([service, timeoutMs]);
        return encodeOkReply("from afar");
      },
      send: () => undefined,
    };
    router.useRemote(remote);
    expect(outcome(await bridge("a").call("far", request))).toEqual({ value: "from afar" });
    // A service running here is preferred to the fleet.
    expect(outcome(await bridge("a").call("near", request))).toEqual({ value: "b" });
    expect(asked).toEqual([["far", 1234]]);
    expect(instances.get("b")?.received).toHaveLength(1);
    router.useRemote(undefined);
    expect(outcome(await bridge("a").call("far", request))).toEqual({ code: "ERR_NO_SERVICE" });
  });

  it("refuse a reply past the caller's maxMessageBytes with ERR_MESSAGE_TOO_LARGE", async () => {
    const config: MoltConfig = { services: { a: { entry: "a.ts", bindings: { b: "b" }, limits: { maxMessageBytes: 1000 } }, b: { entry: "b.ts" } } };
    expect(outcome(await route(config, { b: "x".repeat(2000) }).bridge("a").call("b", request))).toEqual({ code: "ERR_MESSAGE_TOO_LARGE" });
    expect(outcome(await route(config, { b: "x".repeat(900) }).bridge("a").call("b", request))).toEqual({ value: "x".repeat(900) });
  });

  it("carry the callee's failure back as an error reply, never a rejection", async () => {
    const { bridge } = route({ services: { a: { entry: "a.ts", bindings: { b: "b" } }, b: { entry: "b.ts" } } }, {}, { b: new MoltError("ERR_SERVICE_DOWN", "down") });
    expect(outcome(await bridge("a").call("b", request))).toEqual({ code: "ERR_SERVICE_DOWN" });
  });
});

describe("sends", () => {
  it("deliver through a declared binding, and are refused with a log line, not delivered, through any other", async () => {
    const { bridge, instances, logs } = route({ services: { a: { entry: "a.ts", bindings: { b: "b" } }, b: { entry: "b.ts" } } });
    bridge("a").send("b", request);
    bridge("a").send("c", request);
    await vi.waitFor(() => expect(instances.get("b")?.received).toEqual([request]));
    expect(logs).toEqual([expect.objectContaining({ level: "warn", msg: "send refused", service: "a", code: "ERR_NO_BINDING" })]);
  });

  it("go to the fleet for a service that does not run here", () => {
    const { router, bridge } = route({ services: { a: { entry: "a.ts", bindings: { far: "far" } } }, fleet: FLEET });
    const sent: string[] = [];
    router.useRemote({ call: async () => encodeOkReply(null), send: (service) => sent.push(service) });
    bridge("a").send("far", request);
    expect(sent).toEqual(["far"]);
  });

  it("that fail are logged once, then counted once a second, under a kernel code (ERR_OTHER for a service's own)", async () => {
    vi.useFakeTimers();
    const config: MoltConfig = { services: { a: { entry: "a.ts", bindings: { b: "b", c: "c" } }, b: { entry: "b.ts" }, c: { entry: "c.ts" } } };
    const { bridge, logs } = route(config, {}, { b: new MoltError("ERR_MAILBOX_FULL", "full"), c: new MoltError("ERR_MINE", "mine") });
    for (let i = 0; i < 5; i++) bridge("a").send("b", request);
    bridge("a").send("c", request);
    await vi.waitFor(() => expect(logs).toHaveLength(2));
    expect(logs).toEqual([
      expect.objectContaining({ msg: "send failed", service: "a", to: "b", code: "ERR_MAILBOX_FULL" }),
      expect.objectContaining({ msg: "send failed", service: "a", to: "c", code: "ERR_OTHER" }),
    ]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(logs.slice(2)).toEqual([expect.objectContaining({ msg: "send failed", to: "b", code: "ERR_MAILBOX_FULL", alsoFailedInTheLastSecond: 4 })]);
    // A new window starts with a line of its own.
    bridge("a").send("b", request);
    await vi.waitFor(() => expect(logs).toHaveLength(4));
    expect(logs[3]).not.toHaveProperty("alsoFailedInTheLastSecond");
  });
});

describe("stdout", () => {
  it("is written only for a service with permissions.stdout", () => {
    const { bridge, printed } = route({ services: { allowed: { entry: "a.ts", permissions: { stdout: true } }, denied: { entry: "d.ts" } } });
    bridge("allowed").stdout("yes\n");
    bridge("denied").stdout("no\n");
    expect(printed).toEqual(["yes\n"]);
  });
});
