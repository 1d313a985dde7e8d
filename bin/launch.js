#!/usr/bin/env node
// Starts one of molt's entry points (the CLI, the soak) in a child Node with
// what molt needs and a user cannot be expected to pass: Node's
// --no-node-snapshot flag (isolated-vm can crash without it) and tsx for the
// TypeScript sources. The child is tied to this process through an IPC
// channel: if the launcher dies, even by SIGKILL, the runtime goes with it
// instead of holding its ports as an orphan.
//
//   node bin/launch.js [node flags…] <script> [args…]

import { spawn } from "node:child_process";
import { constants } from "node:os";
import { pathToFileURL } from "node:url";

/** Runs `script` in the child Node and exits as it exits; signals are passed on. */
export function launch(script, args, nodeFlags = []) {
  const tsx = import.meta.resolve("tsx");
  const child = spawn(process.execPath, ["--no-node-snapshot", ...nodeFlags, "--import", tsx, script, ...args], {
    stdio: ["inherit", "inherit", "inherit", "ipc"],
    env: { ...process.env, MOLT_LAUNCHER: "1" },
  });
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(signal, () => {
      if (child.exitCode === null) child.kill(signal);
    });
  }
  // A child that cannot exit normally (see cli/run.ts, leave) says first
  // which code it meant, then kills itself.
  let meant;
  child.on("message", (message) => {
    if (typeof message === "object" && message !== null && Number.isInteger(message.exitCode)) meant = message.exitCode;
  });
  // A child killed by a signal exits as shells report it: 128 + the signal's number.
  child.on("exit", (code, signal) => {
    process.exit(meant ?? code ?? (signal === null ? 1 : 128 + (constants.signals[signal] ?? 0)));
  });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const argv = process.argv.slice(2);
  const at = argv.findIndex((a) => !a.startsWith("-"));
  if (at < 0) {
    console.error("usage: node bin/launch.js [node flags…] <script> [args…]");
    process.exit(2);
  }
  launch(argv[at], argv.slice(at + 1), argv.slice(0, at));
}
