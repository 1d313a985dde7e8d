#!/usr/bin/env node
// The installed `molt` command. isolated-vm needs Node's --no-node-snapshot
// flag (without it Node 20+ can crash), and molt's sources are TypeScript run
// through tsx; a user cannot be expected to pass either, so this launcher
// starts the CLI in a child Node with both. The child is tied to this process
// through an IPC channel: if the launcher dies, even by SIGKILL, the runtime
// goes with it instead of holding its ports as an orphan.

import { spawn } from "node:child_process";
import { constants } from "node:os";
import { fileURLToPath } from "node:url";

const cli = fileURLToPath(new URL("../cli/main.ts", import.meta.url));
const tsx = import.meta.resolve("tsx");
const child = spawn(process.execPath, ["--no-node-snapshot", "--import", tsx, cli, ...process.argv.slice(2)], {
  stdio: ["inherit", "inherit", "inherit", "ipc"],
  env: { ...process.env, MOLT_LAUNCHER: "1" },
});
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => {
    if (child.exitCode === null) child.kill(signal);
  });
}
// A child killed by a signal exits as shells report it: 128 + the signal's number.
child.on("exit", (code, signal) => {
  process.exit(code ?? (signal === null ? 1 : 128 + (constants.signals[signal] ?? 0)));
});
