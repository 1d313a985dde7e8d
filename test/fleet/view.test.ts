// Reading the fleet at scale, against a real nats-server: a listing streams
// every heartbeat through one consumer instead of one get per runtime; a
// tool's view follows the fleet through one watch; and fleet members can
// share a connection they do not own, as the fleet-scale benchmark packs
// them.

import type { KV } from "@nats-io/kv";
import { describe, expect, it, vi } from "vitest";
import type { ResolvedFleet } from "../../core/config.ts";
import { FleetMember } from "../../fleet/member.ts";
import { readNodes } from "../../fleet/nodes.ts";
import { NodesView } from "../../fleet/view.ts";
import { natsPerSuite } from "../support/fleet.ts";
import { heartbeat, stubKernel } from "./member-stubs.ts";

/** The bucket with its `get` counted: what a listing must not call once per runtime. */
function counted(kv: KV): { kv: KV; gets: () => number } {
  let gets = 0;
  const proxy = new Proxy(kv, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver) as unknown;
      if (key === "get" && typeof value === "function") {
        return (...args: unknown[]) => {
          gets++;
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { kv: proxy, gets: () => gets };
}

describe("reading the fleet", () => {
  const nats = natsPerSuite();

  it("lists 300 runtimes through one consumer, with no get per runtime", async () => {
    const { stores } = nats();
    await Promise.all(Array.from({ length: 300 }, (_, i) => stores.nodes.put(`n${String(i).padStart(3, "0")}`, heartbeat(`n${String(i).padStart(3, "0")}`))));
    // Rewritten: the listing has the latest record, once.
    await stores.nodes.put("n007", heartbeat("n007", { stoppedAt: "then" }));
    const { kv, gets } = counted(stores.nodes);
    const nodes = await readNodes(kv);
    expect(gets()).toBe(0);
    expect(nodes).toHaveLength(300);
    expect(nodes[0]?.node).toBe("n000");
    expect(nodes.find((n) => n.node === "n007")).toMatchObject({ stoppedAt: "then", live: false });
    expect(nodes.filter((n) => n.live)).toHaveLength(299);
  });

  it("a tool's view follows joins, restarts and changes through its one watch, without listing again", async () => {
    const { stores } = nats();
    const { kv, gets } = counted(stores.nodes);
    const view = await NodesView.open(kv);
    try {
      const before = view.nodes().length;
      expect(view.takeNew()).toEqual([]);
      await stores.nodes.put("late", heartbeat("late"));
      await stores.nodes.put("n001", heartbeat("n001", { services: [] }));
      await stores.nodes.put("n002", heartbeat("n002", { instance: "n002-restarted" }));
      await vi.waitFor(() => {
        expect(view.get("n001")?.services).toEqual([]);
        expect(view.get("n002")?.instance).toBe("n002-restarted");
      });
      // A new runtime and a restarted one are offered to the tool again; a plain change is not.
      expect(view.takeNew()).toEqual(["late", "n002"]);
      expect(view.nodes()).toHaveLength(before + 1);
      expect(gets()).toBe(0);
    } finally {
      await view.close();
    }
  });

  it("a member on a shared connection heartbeats its fixes and kernel, and leaving does not close the connection", async () => {
    const { server, nc, stores } = nats();
    const fleet: ResolvedFleet = { nats: server.url, node: "shared-1", heartbeatMs: 60_000, reconcileMs: 60_000 } as ResolvedFleet;
    const log = { log: () => undefined };
    const members = ["shared-1", "shared-2"].map(
      (node) =>
        new FleetMember({
          kernel: stubKernel(["MOLT-1"]),
          fleet: { ...fleet, node },
          dataDir: "/nonexistent",
          log,
          connection: { nc, stores },
          runtimeKernel: { version: "k".repeat(64), semver: "0.9.0" },
        }),
    );
    for (const m of members) m.join();
    await Promise.all(members.map((m) => m.joined()));
    const seen = (await readNodes(stores.nodes)).filter((n) => n.node.startsWith("shared-"));
    expect(seen.map((n) => [n.node, n.live, n.kernel?.semver, n.services[0]?.fixes])).toEqual([
      ["shared-1", true, "0.9.0", ["MOLT-1"]],
      ["shared-2", true, "0.9.0", ["MOLT-1"]],
    ]);
    await members[0]?.leave();
    expect(nc.isClosed()).toBe(false);
    const after = (await readNodes(stores.nodes)).filter((n) => n.node.startsWith("shared-"));
    expect(after.map((n) => [n.node, n.live])).toEqual([
      ["shared-1", false],
      ["shared-2", true],
    ]);
    await members[1]?.leave();
    expect(nc.isClosed()).toBe(false);
  });
});
