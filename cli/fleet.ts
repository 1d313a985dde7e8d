// `molt fleet rollout|status`: the fleet's commands. They talk to NATS
// directly, not to one runtime's admin API, and load the fleet's code only
// when run.

import { shortId } from "../core/bundle.ts";
import { ErrorCode, MoltError } from "../core/errors.ts";
import type { RolloutEvent } from "../fleet/rollout.ts";

export interface FleetFlags {
  nats: string | undefined;
  json: boolean;
  service?: string | undefined;
  canary?: string | undefined;
  batch?: string | undefined;
  maxFailures?: string | undefined;
  pause?: string | undefined;
  force?: boolean | undefined;
}

export async function fleetCommand(sub: string | undefined, args: string[], flags: FleetFlags): Promise<number> {
  if (sub !== "rollout" && sub !== "status") throw new MoltError(ErrorCode.USAGE, "usage: molt fleet rollout|status --nats <url> … (see molt fleet --help)");
  const nats = flags.nats ?? process.env.MOLT_NATS;
  try {
    if (nats === undefined) throw new MoltError(ErrorCode.USAGE, "molt fleet needs --nats <url> (or MOLT_NATS)");
    return sub === "rollout" ? await rolloutCommand(nats, args, flags) : await statusCommand(nats, flags);
  } catch (err) {
    // With --json, errors are JSON on stdout too, like everything else.
    if (flags.json && err instanceof MoltError) {
      process.stdout.write(`${JSON.stringify({ type: "error", code: err.code, message: err.message })}\n`);
      return 1;
    }
    throw err;
  }
}

async function rolloutCommand(nats: string, args: string[], flags: FleetFlags): Promise<number> {
  const [service, entry] = args;
  if (service === undefined || entry === undefined) throw new MoltError(ErrorCode.USAGE, "usage: molt fleet rollout <service> <entry> --nats <url>");
  const { rollout } = await import("../fleet/rollout.ts");
  // Ctrl-C halts the rollout after the step in progress and takes the runtimes back; a second one exits at once.
  const abort = new AbortController();
  const onSignal = (): void => {
    if (abort.signal.aborted) process.exit(130);
    process.stderr.write("molt: interrupted; halting the rollout and taking the runtimes back (again to exit at once)\n");
    abort.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  await rollout({
    nats,
    service,
    entry,
    canary: count(flags.canary, "--canary", 1),
    batch: count(flags.batch, "--batch", 1),
    maxFailures: count(flags.maxFailures, "--max-failures", 0, 0),
    pauseMs: count(flags.pause, "--pause", 0, 0),
    force: flags.force === true,
    signal: abort.signal,
    onEvent: (event) => process.stdout.write(flags.json ? `${JSON.stringify(event)}\n` : describe(event)),
  });
  return 0;
}

async function statusCommand(nats: string, flags: FleetFlags): Promise<number> {
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

function count(value: string | undefined, flag: string, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new MoltError(ErrorCode.USAGE, `${flag} must be an integer ≥ ${min}`);
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
    case "end": {
      const swapped = event.outcome === "completed" ? `${event.swapped.length} on the new version` : `${event.swapped.length} had swapped and were taken back`;
      return `rollout ${event.outcome}: ${swapped}, ${event.failed.length} failed, ${event.skipped.length} skipped, in ${(event.ms / 1000).toFixed(1)} s\n`;
    }
  }
}
