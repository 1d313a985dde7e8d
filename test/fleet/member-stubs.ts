// What the fleet's in-process tests hand the fleet code instead of a real
// runtime: a heartbeat record as a runtime writes it, and a kernel that
// runs one service ("api") on one version.

import type { MemberKernel } from "../../fleet/member.ts";
import { encodeRecord, type NodeRecord } from "../../fleet/protocol.ts";
import type { ServiceStatus } from "../../protocol/admin.ts";

export const V1 = "a1".repeat(32);

/** An encoded heartbeat of a runtime running "api" on V1, with any fields replaced. */
export function heartbeat(node: string, fields: Partial<NodeRecord> = {}): Uint8Array {
  const record: NodeRecord = {
    node,
    instance: `${node}-1`,
    dataDir: "/d",
    pid: 1,
    host: "h",
    startedAt: "",
    heartbeatAt: "",
    heartbeatMs: 60_000,
    services: [{ name: "api", state: "running", version: V1, semver: "1.0.0", stateVersion: 1, fixes: [], chain: [] }],
    lastError: null,
    stoppedAt: null,
    ...fields,
  };
  return encodeRecord(record);
}

/**
 * A kernel that runs "api" on V1, declaring `fixes`, and stores no other
 * version: enough for a member to join and heartbeat. Swaps reject unless
 * the test gives `swapBundle`.
 */
export function stubKernel(fixes: string[], swapBundle?: MemberKernel["swapBundle"]): MemberKernel {
  const status: ServiceStatus = {
    name: "api",
    state: "running",
    version: V1,
    semver: "1.0.0",
    stateVersion: 1,
    fixes,
    uptimeMs: 0,
    queueDepth: 0,
    inFlight: 0,
    paused: false,
    restarts: 0,
    isolation: "isolate",
    error: null,
    lastSwap: null,
  };
  return {
    useRemote: () => undefined,
    status: () => [status],
    history: () => [],
    recorded: () => undefined,
    has: (service: string) => service === "api",
    running: () => V1,
    deliver: () => Promise.reject(new Error("not in this test")),
    swapBundle: swapBundle ?? (() => Promise.reject(new Error("not in this test"))),
    storedBundle: () => {
      throw new Error("not stored here");
    },
  } as unknown as MemberKernel;
}
