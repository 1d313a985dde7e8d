// What `molt status`, the admin API and the live view show of a service:
// read from its slot at the moment of asking. Presentation only; nothing
// here changes the slot.

import { Via, type ServiceStatus, type VersionRecord } from "../protocol/admin.ts";

export type { ServiceStatus } from "../protocol/admin.ts";
import type { Slot } from "./slot.ts";


export function serviceStatus(slot: Slot, lastSwap: VersionRecord | null): ServiceStatus {
  const instance = slot.instance;
  return {
    name: slot.name,
    state: instance !== undefined ? "running" : slot.failure !== undefined ? "down" : "starting",
    version: instance?.versionId ?? null,
    semver: instance?.meta.semver ?? null,
    stateVersion: instance?.meta.stateVersion ?? null,
    fixes: [...(instance?.meta.fixes ?? [])],
    uptimeMs: instance === undefined ? 0 : Date.now() - slot.startedAt,
    queueDepth: slot.mailbox.depth,
    inFlight: slot.mailbox.inFlight,
    paused: slot.mailbox.paused,
    restarts: slot.restarts.length,
    isolation: slot.isolation,
    error: slot.failure === undefined ? null : { code: slot.failure.code, message: slot.failure.message },
    lastSwap,
  };
}

/** The last swap or rollback in a service's history: from the end, since the history grows with every swap and restart and status is asked for often. */
export function lastSwap(records: readonly VersionRecord[]): VersionRecord | null {
  for (let i = records.length - 1; i >= 0; i--) if ((records[i] as VersionRecord).via !== Via.START) return records[i] as VersionRecord;
  return null;
}
