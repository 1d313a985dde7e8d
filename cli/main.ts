// The molt command line. Each command takes --config (default: molt.config.ts
// in the current folder) and --help.

import { dirname, isAbsolute, resolve } from "node:path";
import { parseArgs } from "node:util";
import { ErrorCode, MoltError } from "../core/errors.ts";
import { historyCommand, restartCommand, rollbackCommand, snapshotCommand, statusCommand, swapCommand } from "./commands.ts";
import { initCommand } from "./init.ts";
import { kernelHistoryCommand, upgradeCommand } from "./kernel-commands.ts";

const USAGE = `molt — a hot-reloadable microkernel runtime for TypeScript services

Usage: molt <command> [options]

Commands:
  init [folder]                     scaffold a project: a config, a service and its v2
  run [config]                      start the runtime from a config file
  dev [config]                      run it, and hot-swap each service when its files change
  swap <service> <entry>            hot-swap a running service to the code at <entry>
                                    (--fresh-state: start it from init, dropping its state)
  rollback <service> [--to <ver>]   swap back to the previous (or a named) version
                                    (--fresh-state: start it from init, dropping its state)
  status [--json]                   every service: version, stateVersion, uptime, queue, last swap
  history <service> [--json]        every version of a service: parent, when, outcome, blackout
  history --kernel [--json]         every runtime molt itself ran as: build, how it came, how it ended
  upgrade [--json]                  replace the runtime with the molt code on disk, keeping every state
  restart <service>                 bring back a service its supervisor gave up on
  snapshot [service]                write a snapshot of one service, or of all, now
  bench swap <service> <a> <b>      swap a service back and forth under load: blackout, phases, latency
  fleet rollout <service> <entry>   roll a new version out across a fleet of runtimes (--nats <url>)
  fleet status                      every runtime of a fleet and the versions it runs (--nats <url>)
                                    (--advisory <id>: which runtimes run a version that fixes it)
  fleet advisory add|show|revoke    advisories: what fixes a problem, and a claim withdrawn

Options:
  --config <path>  the runtime's config file (default: ./molt.config.ts)
  --json           machine-readable output
  -h, --help       show help for molt or for a command
`;

const HELP: Record<string, string> = {
  run: `Usage: molt run [config] [--config <path>]

Starts every service of the config, each in its own isolate, the HTTP
listener and the admin API if the config has them. Prints one line per
listener when ready. On an existing dataDir each service resumes at its last
committed version from its last snapshot. SIGINT or SIGTERM stops accepting
connections, lets every request in flight finish, runs each service's stop
hook, snapshots every service, and exits 0.
`,
  dev: `Usage: molt dev [config] [--config <path>]

Runs the config as \`molt run\` does, then watches every service's entry and
every file its bundle imports. When one is saved, that service is swapped
live to the new code, keeping its state, and the outcome and blackout are
printed. A compile error or a refused swap is printed, and the runtime goes
on serving the running version. A service whose entry changed since the
version it resumed at is swapped once at start.
`,
  init: `Usage: molt init [folder]

Scaffolds a molt project in <folder> (default: the current folder):
molt.config.ts, a service in services/hello/ with a v2 beside it (a new
stateVersion and its migration), a tsconfig.json for service code and a
README.md. Refuses with ERR_EXISTS, writing nothing, if any of these files
already exists.
`,
  swap: `Usage: molt swap <service> <entry> [--fresh-state] [--no-verify]
                 [--shadow N [--expect-change m1,m2] [--max-divergence K]]
                 [--config <path>] [--json]

Replaces a running service with the code at <entry> while the runtime serves:
prepare, quiesce, dump, restore, cutover, commit, each printed with its
duration as it ends, then the blackout (mailbox paused → resumed) and the new
version id. Any failure rolls back to the running version with its state;
the command then exits 1 and prints the error code.

<entry> and every file its bundle reads must be inside admin.allowedRoots
(by real path: a symlink that leads outside does not count as inside), or
the swap is refused with ERR_PERMISSION and nothing changes.

--fresh-state  the escape hatch for a service whose state cannot be dumped
               (ERR_SWAP_DUMP): the new version starts from its init, the
               old state is dropped, and the inventory records that it was.
--no-verify    skip the verified transfer: by default prepare takes the state
               to the new version and back into a scratch instance of the
               running one, and refuses the swap (ERR_SWAP_ROUNDTRIP, with the
               path of the first value that differs) if it comes back changed.
--shadow N     shadow traffic before the cutover: the new version runs beside
               the running one, on a copy of its state, and the next N
               messages to the service go to both; the running version answers
               the callers, the new one runs off their path with no side
               effects (its calls are answered with what the running version's
               identical calls got; its sends, fetches, output and storage
               writes are not performed). Replies and the final states are
               compared; the report shows each divergence's method, payload and
               both replies. Past --max-divergence (default 0) the swap is
               refused with ERR_SWAP_SHADOW and nothing changes. Default: the
               config's swap.shadow (0: none).
--expect-change m1,m2
               methods the new version is meant to answer differently: their
               divergences are reported but not counted.
--max-divergence K
               how many divergences are allowed (default 0).
`,
  rollback: `Usage: molt rollback <service> [--to <version>] [--fresh-state] [--config <path>] [--json]

Swaps back to the version the current one replaced, or to any version in the
service's history (a version id or a unique prefix, as \`molt history\` shows).
The older code's restore receives the newer stateVersion: it migrates down or
refuses with ERR_STATE_VERSION, and nothing changes.

--fresh-state  the older version starts from its init and the current state
               is dropped: the way back when it cannot take the newer
               stateVersion (ERR_STATE_VERSION).
`,
  status: `Usage: molt status [--config <path>] [--json]

Every service: state, running version, semver, stateVersion, uptime, queue
depth (waiting+running) and its last swap. Above them, the kernel: molt's
version and semver, the runtime's pid, when it started, and how many
upgrades and restarts since \`molt run\` (--json: "kernel").
`,
  history: `Usage: molt history <service> [--config <path>] [--json]
       molt history --kernel [--config <path>] [--json]

The inventory of one service: every version that ran or was tried, its
parent, how it came (start, swap, rollback), when it started and was
replaced, the outcome with its error code, and the blackout.

--kernel  the same for molt itself: every runtime that ran on this dataDir
          (the last 1,000), its version (the hash of molt's code) and
          semver, the one before it, how it came (start: molt run; upgrade:
          molt upgrade; restart: the runtime before it died), its pid, when
          it started and ended, the outcome (live, replaced, crashed,
          stopped) and the blackout on its way in; then each upgrade tried
          from it that did not take, with its error code.
`,
  upgrade: `Usage: molt upgrade [--config <path>] [--json]

Replaces the running runtime (the kernel and every isolate) with a new one
started from the molt code on disk now, e.g. after \`git pull && npm ci\` or
an edit under core/, while the keeper (\`molt run\`) holds the sockets:
boot (every service, from its current bundle, outside the blackout), drain,
dump, handover, restore, sockets, each printed with its duration as it
ends; then the blackout and how many services' state was carried. The admin
API, metrics, fleet membership and inventory carry on.

If any phase fails, the old runtime resumes as it was and the command exits
1 with ERR_KERNEL_UPGRADE_<PHASE>. ERR_KERNEL_UPGRADE_BUSY: an upgrade is
already running. ERR_KERNEL_UPGRADE_UNAVAILABLE: no keeper started this
runtime (\`molt dev\` does not). \`molt history --kernel\` shows every upgrade.
`,
  snapshot: `Usage: molt snapshot [service] [--config <path>] [--json]

Writes a snapshot of one service (or of every service) to dataDir now. One
service's failure does not stop the others': each failure is printed with
its error code, and the command then exits 1.
`,
  restart: `Usage: molt restart <service> [--config <path>] [--json]

Brings back a service that is down because it died more often than the
restart policy allows (restart.maxRestarts in restart.windowMs): a new
instance of the version it ran, from its last snapshot (or init). A service
that is running is left as it is. Exits 0 in both cases, 1 with
ERR_NO_SERVICE for an unknown service or the code of a failed start.
`,
  bench: `Usage: molt bench swap <service> <entry-a> <entry-b> [--swaps N] [--load <url>]
                  [--connections C] [--method M] [--body B] [--duration-between <ms>]
                  [--stop-on-failure] [--report <file.html>] [--config <path>] [--json]

Swaps a running service back and forth between two entries, N times
(default 50), through the admin API, --duration-between ms apart (default
250). With --load, autocannon drives HTTP load at <url> the whole time, with
C connections (default 8), method M (default GET) and body B; the first
second warms up. Then it prints p50, p99 and max of the blackout and of each
phase (over the committed swaps), client latency in steady state and for
requests that overlapped a swap, and failed requests by status.
--json prints the same as one object; --report writes a self-contained HTML
page: a blackout histogram, latency over time with every swap marked, and
the phase breakdown.

Both entries are bundled before the first swap: code that does not compile
stops it there with ERR_SWAP_COMPILE; an unknown service is ERR_NO_SERVICE.
A swap that rolls back is counted and reported, and the benchmark goes on
(the next swap tries the same entry again) unless --stop-on-failure.
Ctrl-C lets the swap in flight finish, prints what was measured, and says
which version the service was left on.
Exit 0: every swap committed and no request failed; 1 otherwise; 130 after
Ctrl-C.
`,
};

async function main(argv: string[]): Promise<number> {
  if (!process.execArgv.includes("--no-node-snapshot")) {
    console.error("molt: Node must run with --no-node-snapshot (isolated-vm crashes without it); use bin/molt.js or npm run molt");
    return 1;
  }
  // The fleet's commands parse their own flags and print their own help (cli/fleet.ts), loaded only when asked for.
  if (argv[0] === "fleet") return (await import("./fleet.ts")).fleetMain(argv.slice(1));
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: "string" },
      json: { type: "boolean" },
      to: { type: "string" },
      "fresh-state": { type: "boolean" },
      "no-verify": { type: "boolean" },
      shadow: { type: "string" },
      "expect-change": { type: "string" },
      "max-divergence": { type: "string" },
      swaps: { type: "string" },
      load: { type: "string" },
      connections: { type: "string" },
      method: { type: "string" },
      body: { type: "string" },
      "duration-between": { type: "string" },
      report: { type: "string" },
      "stop-on-failure": { type: "boolean" },
      kernel: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  const [command, ...rest] = positionals;
  if (command === undefined || command === "help") {
    process.stdout.write(USAGE);
    return command === undefined && values.help !== true ? 1 : 0;
  }
  if (values.help === true) {
    // An own key only: `molt __proto__ --help` is no command.
    const help = Object.hasOwn(HELP, command) ? HELP[command] : undefined;
    process.stdout.write(help ?? USAGE);
    return help === undefined ? 1 : 0;
  }
  const common = { config: values.config, json: values.json === true };
  const need = (n: number, usage: string): void => {
    if (rest.length < n) throw new MoltError(ErrorCode.USAGE, `usage: molt ${usage}`);
  };
  switch (command) {
    case "init":
      return initCommand(rest[0]);
    case "run": {
      // `molt run` becomes the keeper, which never loads the kernel, isolated-vm or NATS: the runtime is its child.
      const config = values.config ?? rest[0];
      return (await import("../keeper/keeper.ts")).keep(config === undefined ? [] : [resolve(config)]);
    }
    case "dev":
      await (await import("./dev.ts")).devCommand(values.config ?? rest[0]);
      return -1;
    case "swap":
      need(2, "swap <service> <entry> [--fresh-state] [--no-verify]");
      if (values["fresh-state"] === true && values.shadow !== undefined) {
        throw new MoltError(ErrorCode.USAGE, "--shadow compares the new version with the running one from the same state; --fresh-state drops that state, so they cannot go together");
      }
      return swapCommand(rest[0] as string, rest[1] as string, {
        ...common,
        freshState: values["fresh-state"] === true,
        verify: values["no-verify"] !== true,
        ...(values.shadow === undefined ? {} : { shadow: wholeNumber(values.shadow, "--shadow") }),
        ...(values["max-divergence"] === undefined ? {} : { maxDivergence: wholeNumber(values["max-divergence"], "--max-divergence") }),
        ...(values["expect-change"] === undefined ? {} : { expectChange: values["expect-change"].split(",").map((m) => m.trim()).filter((m) => m !== "") }),
      });
    case "rollback":
      need(1, "rollback <service> [--to <version>] [--fresh-state]");
      return rollbackCommand(rest[0] as string, values.to, { ...common, freshState: values["fresh-state"] === true });
    case "status":
      return statusCommand(common);
    case "history":
      if (values.kernel === true) return kernelHistoryCommand(common);
      need(1, "history <service> | history --kernel");
      return historyCommand(rest[0] as string, common);
    case "upgrade":
      return upgradeCommand(common);
    case "snapshot":
      return snapshotCommand(rest[0], common);
    case "restart":
      need(1, "restart <service>");
      return restartCommand(rest[0] as string, common);
    case "bench":
      return (await import("./bench-swap.ts")).benchCommand(rest, {
        ...common,
        swaps: values.swaps,
        load: values.load,
        connections: values.connections,
        method: values.method,
        body: values.body,
        durationBetween: values["duration-between"],
        report: values.report,
        stopOnFailure: values["stop-on-failure"],
      });
    default:
      console.error(`molt: unknown command "${command}"\n\n${USAGE}`);
      return 1;
  }
}

// Started by bin/molt.js: when the launcher is gone, so is this process.
if (process.env.MOLT_LAUNCHER === "1" && process.channel !== undefined) {
  process.channel.unref();
  process.on("disconnect", () => process.exit(1));
}

/**
 * The folder the user ran the command in. `npm run molt -- …` (and
 * `npm --prefix <molt> run molt -- …`) runs the script from the package's
 * folder, named by npm_package_json, and names the user's folder in
 * INIT_CWD. Every process npm starts inherits both, though, so INIT_CWD
 * counts only while the current folder is still the package's: a tool that
 * started molt in a folder of its own meant that folder.
 */
function userFolder(cwd: string, env: NodeJS.ProcessEnv): string {
  const { INIT_CWD: initCwd, npm_package_json: packageJson } = env;
  if (initCwd === undefined || !isAbsolute(initCwd) || packageJson === undefined) return cwd;
  return resolve(dirname(packageJson)) === resolve(cwd) ? initCwd : cwd;
}

// Every relative path the user gives (a config, an entry to swap, the init
// folder) and the default config are resolved from here.
try {
  process.chdir(userFolder(process.cwd(), process.env));
} catch {
  // A folder that has gone since npm started: the current one is all there is.
}

main(process.argv.slice(2)).then(
  (code) => {
    // -1: a long-running command that exits on its own.
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    if (err instanceof MoltError) console.error(`molt: ${err.code}: ${err.message}`);
    else if (err instanceof TypeError && (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) console.error(`molt: ${err.message}`);
    else console.error("molt:", err);
    process.exit(1);
  },
);

/** A flag's value as a whole number of at least 0, or ERR_USAGE naming the flag. */
function wholeNumber(value: string, flag: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isSafeInteger(n) || n < 0) throw new MoltError(ErrorCode.USAGE, `${flag} takes a whole number (got "${value}")`);
  return n;
}
