// A runtime as the fleet's tools see it in a heartbeat (fleet/nodes.ts),
// for the pure-function tests of `molt fleet status` and its advisories.

import type { SeenNode } from "../../fleet/nodes.ts";
import type { NodeService } from "../../fleet/protocol.ts";

/** A runtime running `services`; a dead one last beat a minute ago. */
export function seenNode(name: string, services: NodeService[], live = true): SeenNode {
  return {
    node: name,
    instance: name,
    dataDir: "/d",
    pid: 1,
    host: "h",
    startedAt: "",
    heartbeatAt: "",
    heartbeatMs: 1000,
    services,
    lastError: null,
    stoppedAt: null,
    ageMs: live ? 10 : 60_000,
    live,
  };
}
