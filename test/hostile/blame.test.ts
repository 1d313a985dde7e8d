// Hostile services, blame: what a reply's header says about who failed is
// the guest's to write, so a guest (or a tampered runtime) could name
// another service. A callee's error that names its caller, or none, is
// taken as the callee's own; a service's own error that names a service it
// has no binding to counts against its probation all the same.

import { describe, expect, it } from "vitest";
import { resolveConfig } from "../../core/config.ts";
import type { Instance } from "../../core/instance.ts";
import { Router } from "../../core/router.ts";
import { Slot } from "../../core/slot.ts";
import { encode, encodeOkReply, encodeRequest } from "../../core/wire.ts";
import { replyFailure } from "../../protocol/wire.ts";
import { stubInstance } from "../support/instances.ts";
import { FIXTURES } from "../support/runtime.ts";

/** An instance whose every reply is `reply`. */
const answering = (service: string, reply: Uint8Array): Instance => stubInstance(service, async () => reply);

/** An error reply as a tampered runtime could write it: any code, any service, in the header and the body. */
const forged = (code: string, service: string | null): Uint8Array =>
  encode([1, 0, code, service, { code, message: "forged", ...(service === null ? {} : { service }) }]);

function slots(replies: Record<string, Uint8Array>): Map<string, Slot> {
  const config = resolveConfig(
    { services: { victim: { entry: "./probe.ts", bindings: { framer: "framer" } }, framer: { entry: "./probe.ts" } } },
    FIXTURES,
  );
  const map = new Map<string, Slot>();
  for (const spec of Object.values(config.services)) {
    const slot = new Slot(spec);
    slot.attach(answering(spec.name, replies[spec.name] ?? encodeOkReply("ok")), { code: "", hash: "0".repeat(64), entry: spec.entry });
    map.set(spec.name, slot);
  }
  return map;
}

describe("hostile services: blame", () => {
  it.each([
    ["names its caller", forged("ERR_FRAMED", "victim"), "ERR_FRAMED"],
    ["names no service", forged("ERR_FRAMED", null), "ERR_FRAMED"],
    ["is not an error envelope at all", encode([1, 0, "ERR_FRAMED"]), "ERR_BAD_RESPONSE"],
  ])("a callee's error that %s reaches the caller as the callee's own failure", async (_what, reply, code) => {
    const map = slots({ framer: reply });
    const router = new Router({ slots: map, logService: null, log: { log: () => undefined }, stdout: () => undefined });
    const bridge = router.bridge(map.get("victim") as Slot, () => undefined, () => undefined);
    const answer = await bridge.call("framer", encodeRequest("frame", null));
    expect(replyFailure(answer)).toEqual({ code, service: "framer" });
  });

  it("a callee's error naming a third service is passed on as it is (relayed from that service)", async () => {
    const map = slots({ framer: forged("ERR_DEEP", "deeper") });
    const router = new Router({ slots: map, logService: null, log: { log: () => undefined }, stdout: () => undefined });
    const answer = await router.bridge(map.get("victim") as Slot, () => undefined, () => undefined).call("framer", encodeRequest("frame", null));
    expect(replyFailure(answer)).toEqual({ code: "ERR_DEEP", service: "deeper" });
  });
});
