// The fleet's inventory, from heartbeat records: grouping by version and
// flagging what a later rollout superseded. Pure functions, no NATS.

import { describe, expect, it } from "vitest";
import type { DesiredRecord, RolloutRecord } from "../../fleet/protocol.ts";
import type { SeenNode } from "../../fleet/nodes.ts";
import { formatService, serviceView, type FleetStatus } from "../../fleet/status.ts";
import { seenNode } from "../support/seen-node.ts";

const V1 = "1".repeat(64);
const V2 = "2".repeat(64);
const V3 = "3".repeat(64);

function node(name: string, version: string | null, live = true): SeenNode {
  return seenNode(name, [{ name: "counter", state: "running", version, semver: version === null ? null : `${version[0]}.0.0`, stateVersion: 1, chain: [] }], live);
}

function rolloutOf(id: string, version: string, from: string[], outcome: RolloutRecord["outcome"]): RolloutRecord {
  return { id, service: "counter", version, semver: null, from, startedAt: "", endedAt: "", outcome, swapped: [], failed: [], skipped: [] };
}

const desired = (version: string, rollout: string, state: DesiredRecord["state"] = "settled"): DesiredRecord => ({
  service: "counter",
  version,
  semver: null,
  entry: "x",
  revision: 3,
  state,
  rollout,
  at: "",
  lastSettled: null,
});

describe("fleet status", () => {
  it("groups runtimes by version and flags the ones a later rollout superseded", () => {
    const status: FleetStatus = {
      at: "",
      nodes: [node("a", V3), node("b", V3), node("c", V2, false), node("d", V1)],
      desired: { counter: desired(V3, "r-3") },
      rollouts: { counter: [rolloutOf("r-2", V2, [V1], "completed"), rolloutOf("r-3", V3, [V2], "completed")] },
    };
    const view = serviceView(status, "counter");
    expect(view.groups.map((g) => [g.version?.[0], g.nodes])).toEqual([
      ["3", ["a", "b"]],
      ["2", ["c"]],
      ["1", ["d"]],
    ]);
    const [current, v2, v1] = view.groups;
    expect(current).toMatchObject({ desired: true, superseded: null });
    // Each older version names the rollout that replaced it, not just the latest.
    expect(v2).toMatchObject({ desired: false, superseded: { by: V3, rollout: "r-3" }, gone: ["c"] });
    expect(v1).toMatchObject({ superseded: { by: V2, rollout: "r-2" } });
    expect(formatService(view)).toMatch(/111111111111 .*1 runtime: d\s+SUPERSEDED by 222222222222 \(rollout r-2\)/);
  });

  it("flags nothing while a rollout is still rolling, or before any rollout", () => {
    const nodes = [node("a", V2), node("b", V1)];
    const rolling = serviceView({ at: "", nodes, desired: { counter: desired(V2, "r-9", "rolling") }, rollouts: {} }, "counter");
    expect(rolling.groups.every((g) => g.superseded === null && !g.desired)).toBe(true);
    const none = serviceView({ at: "", nodes, desired: {}, rollouts: {} }, "counter");
    expect(none.desired).toBeNull();
    expect(none.groups.every((g) => g.superseded === null)).toBe(true);
    expect(formatService(none)).toMatch(/no desired version/);
  });
});
