// The molt command line. Each command takes --config (default: molt.config.ts
// in the current folder) and --help.

import { parseArgs } from "node:util";
import { MoltError } from "../core/errors.ts";
import { run } from "./run.ts";

const USAGE = `molt — a hot-reloadable microkernel runtime for TypeScript services

Usage: molt <command> [options]

Commands:
  run [config]     start the runtime from a config file (default: ./molt.config.ts)

Options:
  --config <path>  the runtime's config file
  -h, --help       show help for molt or for a command
`;

const HELP: Record<string, string> = {
  run: `Usage: molt run [config] [--config <path>]

Starts every service of the config, each in its own isolate, and the HTTP
listener if the config has one. Prints one line per listener when ready.
SIGINT or SIGTERM stops accepting connections, lets every request in flight
finish, runs each service's stop hook, and exits 0.
`,
};

async function main(argv: string[]): Promise<number> {
  if (!process.execArgv.includes("--no-node-snapshot")) {
    console.error("molt: Node must run with --no-node-snapshot (isolated-vm crashes without it); use bin/molt.js or npm run molt");
    return 1;
  }
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { config: { type: "string" }, help: { type: "boolean", short: "h" } },
  });
  const [command, ...rest] = positionals;
  if (command === undefined || command === "help") {
    process.stdout.write(USAGE);
    return command === undefined && values.help !== true ? 1 : 0;
  }
  if (values.help === true) {
    const help = HELP[command];
    process.stdout.write(help ?? USAGE);
    return help === undefined ? 1 : 0;
  }
  switch (command) {
    case "run":
      await run(values.config ?? rest[0]);
      return -1;
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

main(process.argv.slice(2)).then(
  (code) => {
    // -1: a long-running command that exits on its own.
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    if (err instanceof MoltError) console.error(`molt: ${err.code}: ${err.message}`);
    else console.error("molt:", err);
    process.exit(1);
  },
);
