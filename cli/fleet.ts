// `molt fleet rollout|status`: the fleet's commands. They talk to NATS
// directly, not to one runtime's admin API, and load the fleet's code only
// when run.

import { shortId } from "../core/bundle.ts";
import { MoltError } from "../core/errors.ts";
import type { RolloutEvent } from "../fleet/rollout.ts";

export interface FleetFlags {
  nats: string | undefined;
  json: boolean;
  service?: string | undefined;
  canary?: string | undefined;
  batch?: string | undefined;
  maxFailures?: string | undefined;
}

export async function fleetCommand(sub: string | undefined, args: string[], flags: FleetFlags): Promise<number> {
  const nats = flags.nats ?? process.env.MOLT_NATS;
  if (nats === undefined) throw new MoltError("ERR_USAGE", "molt fleet needs --nats <url> (or MOLT_NATS)");
  switch (sub) {
    case "rollout": {
      const [service, entry] = args;
      if (service === undefined || entry === undefined) throw new MoltError("ERR_USAGE", "usage: molt fleet rollout <service> <entry> --nats <url>");
      const { rollout } = await import("../fleet/rollout.ts");
      try {
        await rollout({
          nats,
          service,
          entry,
          canary: count(flags.canary, "--canary", 1),
          batch: count(flags.batch, "--batch", 1),
          maxFailures: count(flags.maxFailures, "--max-failures", 0, 0),
          onEvent: (event) => process.stdout.write(flags.json ? `${JSON.stringify(event)}\n` : describe(event)),
        });
        return 0;
      } catch (err) {
        if (flags.json && err instanceof MoltError) {
          process.stdout.write(`${JSON.stringify({ type: "error", code: err.code, message: err.message })}\n`);
          return 1;
        }
        throw err;
      }
    }
    case "status": {
      const { formatFleet, formatService, readFleet, serviceView } = await import("../fleet/status.ts");
      const status = await readFleet(nats);
      if (flags.service !== undefined) {
        const view = serviceView(status, flags.service);
        process.stdout.write(flags.json ? `${JSON.stringify(view, null, 2)}\n` : formatService(view));
      } else {
        process.stdout.write(flags.json ? `${JSON.stringify(status, null, 2)}\n` : formatFleet(status));
      }
      return 0;
    }
    default:
      throw new MoltError("ERR_USAGE", "usage: molt fleet rollout|status … (molt fleet --help)");
  }
}

function count(value: string | undefined, flag: string, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new MoltError("ERR_USAGE", `${flag} must be an integer ≥ ${min}`);
  return n;
}

function describe(event: RolloutEvent): string {
  switch (event.type) {
    case "start":
      return `rollout ${event.id}: ${event.service} → ${shortId(event.version)} on ${event.runtimes.length} runtime(s) (${event.runtimes.join(", ")}); canary ${event.canary}, batch ${event.batch}, max failures ${event.maxFailures}\n`;
    case "runtime": {
      const blackout = event.blackoutMs === null ? "" : `  blackout ${event.blackoutMs.toFixed(2)} ms`;
      const error = event.code === undefined ? "" : `  ${event.code}: ${event.message ?? ""}`;
      const note = event.outcome === "skipped" && event.message !== undefined ? `  (${event.message})` : "";
      return `  ${event.stage.padEnd(9)} ${event.node.padEnd(16)} ${event.outcome}${blackout}${error}${note}\n`;
    }
    case "waiting":
      return `  … ${event.message}\n`;
    case "halt":
      return `  ${event.message}\n`;
    case "rollback":
      return `  rollback  ${event.node.padEnd(16)} ${event.outcome}${event.code === undefined ? "" : `  ${event.code}`}\n`;
    case "end":
      return `rollout ${event.outcome}: ${event.swapped} on the new version, ${event.failed} failed, ${event.skipped} skipped, in ${(event.ms / 1000).toFixed(1)} s\n`;
  }
}
