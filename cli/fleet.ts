// `molt fleet rollout|status|advisory`: the fleet's commands. They talk to
// NATS directly, not to one runtime's admin API, and load the fleet's code
// only when run. They parse their own flags (`fleetMain`), so the fleet's
// options live beside the commands that use them.

import { parseArgs } from "node:util";
import { shortId } from "../core/bundle.ts";
import { ErrorCode, MoltError } from "../core/errors.ts";
import type { AdvisoryRecord } from "../fleet/protocol.ts";
import type { RolloutEvent } from "../fleet/rollout.ts";

export const FLEET_HELP = `Usage: molt fleet rollout <service> <entry> --nats <url> [--canary N] [--batch M]
                          [--waves P1,P2,…,100] [--max-failures K] [--pause <ms>] [--force] [--json]
       molt fleet status --nats <url> [--service <name> | --advisory <id>] [--json]
       molt fleet advisory add <id> [--title T] [--severity S] [--fixed-in <version>]… --nats <url>
       molt fleet advisory show <id> [--json] --nats <url>
       molt fleet advisory revoke <id> --version <version> --nats <url>

rollout: bundles <entry>, publishes it to the fleet by content hash, and
swaps <service> live on every runtime that runs it: canaries first, one at
a time, until N of them took the new version (default 1), then M runtimes at
a time (default 1), with --pause milliseconds between steps. Each swap is
the one \`molt swap\` does, rolled back on the runtime if it fails. More than
K failed swaps (default 0) halt the rollout: every runtime it asked goes
back to its previous version and the fleet's desired version to what it
was. A runtime that does not answer is skipped and converges once the
rollout completes. Ctrl-C halts the same way. Progress is printed as it
happens (--json: one JSON object per line).
--waves 1,5,25,100 replaces batches with waves: after each wave, that
percentage of the runtimes that run the service runs the new version
(rounded up; increasing, the last 100). Within a wave M swaps are in flight
at once, the next runtime asked as soon as one answers; --pause waits
between waves. Each wave's start and end are printed as they happen.
Exit 0: completed. Exit 1 with ERR_ROLLOUT_HALTED (halted, runtimes taken
back), ERR_ROLLOUT_BUSY (another rollout of the service runs or was
interrupted: --force takes over), ERR_NO_SERVICE (no live runtime runs it),
ERR_FLEET (NATS unreachable, or lost for more than 30 s mid-rollout: the
runtimes stay as they are; run again with --force), ERR_SWAP_COMPILE,
ERR_USAGE (a bad --waves).

status: every runtime that announced itself, its kernel, its services,
each one's version, semver, stateVersion, the advisories it fixes and its
recent history, and its last heartbeat. With --service, the runtimes
grouped by the version they run, the ones on a version a later rollout
superseded flagged. With --advisory, the runtimes in three groups, each
counted and broken down by version: fixed (the version they run fixes it),
vulnerable (it does not), unknown (no recent heartbeat). Only the services
the advisory concerns are judged: those with a version that declares it or
is named in it; every service when none is. Exit 1 with ERR_NO_ADVISORY for
an id no advisory has.

advisory: a named problem and the versions that fix it, kept in the fleet
(JetStream KV molt_advisories). A version fixes advisory X when its module
declares X in \`fixes\`, or \`add --fixed-in\` names it, and \`revoke\` has not
withdrawn it. Cumulative by declaration: a version counts only by what it
declares itself (or is named for), never by what the versions before it
fixed, so each release lists every fix it still contains. add creates the
advisory or updates it (the fields given; --fixed-in adds versions, and
names a revoked one as a fix again). revoke withdraws a version's claim
when its fix proved incomplete: it then counts as vulnerable, whatever its
module declares. Versions are content ids or prefixes of at least 8 hex
digits, as \`molt fleet status\` prints them. --severity: low, medium, high
or critical.

--nats defaults to $MOLT_NATS. A runtime in a fleet converges to the fleet's
settled version on its own: a local \`molt swap\` there lasts until its next
reconcile (fleet.reconcileMs).
`;

export interface FleetFlags {
  nats: string | undefined;
  json: boolean;
  service?: string | undefined;
  canary?: string | undefined;
  batch?: string | undefined;
  maxFailures?: string | undefined;
  pause?: string | undefined;
  force?: boolean | undefined;
  waves?: string | undefined;
  advisory?: string | undefined;
  title?: string | undefined;
  severity?: string | undefined;
  fixedIn?: string[] | undefined;
  version?: string | undefined;
}

/** `molt fleet …` from its own arguments (everything after "fleet"): parses the fleet's flags and runs the command. */
export async function fleetMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      nats: { type: "string" },
      json: { type: "boolean" },
      service: { type: "string" },
      canary: { type: "string" },
      batch: { type: "string" },
      "max-failures": { type: "string" },
      pause: { type: "string" },
      force: { type: "boolean" },
      waves: { type: "string" },
      advisory: { type: "string" },
      title: { type: "string" },
      severity: { type: "string" },
      "fixed-in": { type: "string", multiple: true },
      version: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help === true) {
    process.stdout.write(FLEET_HELP);
    return 0;
  }
  const [sub, ...args] = positionals;
  return fleetCommand(sub, args, {
    nats: values.nats,
    json: values.json === true,
    service: values.service,
    canary: values.canary,
    batch: values.batch,
    maxFailures: values["max-failures"],
    pause: values.pause,
    force: values.force,
    waves: values.waves,
    advisory: values.advisory,
    title: values.title,
    severity: values.severity,
    fixedIn: values["fixed-in"],
    version: values.version,
  });
}

export async function fleetCommand(sub: string | undefined, args: string[], flags: FleetFlags): Promise<number> {
  if (sub !== "rollout" && sub !== "status" && sub !== "advisory") {
    throw new MoltError(ErrorCode.USAGE, "usage: molt fleet rollout|status|advisory --nats <url> … (see molt fleet --help)");
  }
  const nats = flags.nats ?? process.env.MOLT_NATS;
  try {
    if (nats === undefined) throw new MoltError(ErrorCode.USAGE, "molt fleet needs --nats <url> (or MOLT_NATS)");
    if (sub === "rollout") return await rolloutCommand(nats, args, flags);
    if (sub === "advisory") return await advisoryCommand(nats, args, flags);
    return await statusCommand(nats, flags);
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
  const [{ rollout }, { parseWaves }] = await Promise.all([import("../fleet/rollout.ts"), import("../fleet/waves.ts")]);
  // Checked before anything is bundled or published: a bad list changes nothing.
  const waves = flags.waves === undefined ? undefined : parseWaves(flags.waves);
  const options = {
    canary: count(flags.canary, "--canary", 1),
    batch: count(flags.batch, "--batch", 1),
    maxFailures: count(flags.maxFailures, "--max-failures", 0, 0),
    pauseMs: count(flags.pause, "--pause", 0, 0),
  };
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
    ...options,
    ...(waves === undefined ? {} : { waves }),
    force: flags.force === true,
    signal: abort.signal,
    onEvent: (event) => process.stdout.write(flags.json ? `${JSON.stringify(event)}\n` : describe(event)),
  });
  return 0;
}

async function statusCommand(nats: string, flags: FleetFlags): Promise<number> {
  if (flags.advisory !== undefined) {
    if (flags.service !== undefined) throw new MoltError(ErrorCode.USAGE, "--service and --advisory are two views of the fleet: give one");
    const [{ readAdvisoryStatus }, { formatAdvisoryStatus }, { checkAdvisoryId }] = await Promise.all([
      import("../fleet/status.ts"),
      import("../fleet/advisory-status.ts"),
      import("../fleet/advisory.ts"),
    ]);
    const status = await readAdvisoryStatus(nats, checkAdvisoryId(flags.advisory));
    process.stdout.write(flags.json ? `${JSON.stringify(status, null, 2)}\n` : formatAdvisoryStatus(status));
    return 0;
  }
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

async function advisoryCommand(nats: string, args: string[], flags: FleetFlags): Promise<number> {
  const [action, rawId] = args;
  const usage = "usage: molt fleet advisory add|show|revoke <id> --nats <url> (see molt fleet --help)";
  if ((action !== "add" && action !== "show" && action !== "revoke") || rawId === undefined) throw new MoltError(ErrorCode.USAGE, usage);
  const advisories = await import("../fleet/advisory.ts");
  const id = advisories.checkAdvisoryId(rawId);
  // Flags are checked before NATS is reached: a mistyped command changes nothing.
  const change = {
    ...(flags.title === undefined ? {} : { title: flags.title }),
    ...(flags.severity === undefined ? {} : { severity: advisories.checkSeverity(flags.severity) }),
    ...(flags.fixedIn === undefined ? {} : { fixedIn: flags.fixedIn.map((v) => advisories.checkVersion(v, "--fixed-in")) }),
  };
  const revoked = action === "revoke" ? advisories.checkVersion(flags.version ?? "", "--version") : undefined;
  const { connectFleet } = await import("../fleet/connection.ts");
  const nc = await connectFleet({ servers: nats, name: "advisory", waitOnFirstConnect: false });
  try {
    let record: AdvisoryRecord;
    if (action === "add") {
      const kv = await advisories.openAdvisories(nc, true);
      record = await advisories.changeAdvisory(kv, id, (current) => advisories.addToAdvisory(current, id, change));
    } else {
      // Neither show nor revoke makes an advisory (or the bucket) that is not there.
      const kv = await advisories.openAdvisories(nc, false);
      record = await advisories.readAdvisory(kv, id);
      if (kv !== null && revoked !== undefined) record = await advisories.changeAdvisory(kv, id, (current) => advisories.revokeInAdvisory(advisories.present(current, id), revoked));
    }
    process.stdout.write(flags.json ? `${JSON.stringify(record, null, 2)}\n` : describeAdvisory(record));
    return 0;
  } finally {
    await nc.close().catch(() => undefined);
  }
}

function describeAdvisory(a: AdvisoryRecord): string {
  return [
    `${a.id}${a.title === null ? "" : `  ${a.title}`}`,
    `  severity: ${a.severity ?? "-"}`,
    `  fixed in: versions that declare it${a.fixedIn.length === 0 ? "" : `, and ${a.fixedIn.map(shortId).join(", ")}`}`,
    `  revoked:  ${a.revoked.length === 0 ? "-" : a.revoked.map(shortId).join(", ")}`,
    `  created ${a.createdAt}, updated ${a.updatedAt}`,
    "",
  ].join("\n");
}

function count(value: string | undefined, flag: string, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new MoltError(ErrorCode.USAGE, `${flag} must be an integer ≥ ${min}`);
  return n;
}

/** Runtimes named in a rollout's first line before the rest are only counted. */
const NAMES_SHOWN = 10;

function describe(event: RolloutEvent): string {
  switch (event.type) {
    case "start": {
      const names = event.runtimes.slice(0, NAMES_SHOWN).join(", ") + (event.runtimes.length > NAMES_SHOWN ? ` and ${event.runtimes.length - NAMES_SHOWN} more` : "");
      const steps = event.waves === undefined ? `batch ${event.batch}` : `waves ${event.waves.join(",")}% (${event.batch} at once)`;
      return `rollout ${event.id}: ${event.service} → ${shortId(event.version)} on ${event.runtimes.length} runtime(s) (${names}); canary ${event.canary}, ${steps}, max failures ${event.maxFailures}\n`;
    }
    case "wave":
      return event.phase === "start"
        ? `wave ${event.wave}/${event.waves}: to ${event.percent}% (${event.target} of ${event.runtimes} runtimes), ${event.onNew} on the new version now\n`
        : `wave ${event.wave}/${event.waves} done: ${event.onNew} of ${event.runtimes} runtimes on the new version, ${event.failed} failed\n`;
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
