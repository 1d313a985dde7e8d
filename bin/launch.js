#!/usr/bin/env node
// Starts one of molt's entry points (the CLI, the soak) in a child Node with
// what molt needs and a user cannot be expected to pass: Node's
// --no-node-snapshot flag (isolated-vm can crash without it), tsx for the
// TypeScript sources, and the allocator setting chosen below. The child is tied to
// this process through an IPC channel: if the launcher dies, even by SIGKILL,
// the runtime goes with it instead of holding its ports as an orphan.
//
//   node bin/launch.js [node flags…] <script> [args…]
//
// The allocator. Every swap creates and disposes a V8 isolate, and isolates
// run on isolated-vm's threads; with glibc's defaults the freed memory stays
// scattered through the threads' malloc arenas, and resident memory climbs
// with the number of swaps while nothing is leaked (ARCHITECTURE.md, "Memory
// over many swaps"). MOLT_MALLOC=compact fixes glibc's mmap threshold, so
// large blocks keep going to mmap and back to the system when freed: memory
// grows far less, but swaps under load run several times slower. The default,
// "system", leaves glibc as it is.

import { spawn } from "node:child_process";
import { constants } from "node:os";
import { pathToFileURL } from "node:url";

export const MMAP_THRESHOLD = "glibc.malloc.mmap_threshold=131072";

/** The environment additions for MOLT_MALLOC ("system", the default, or "compact"); throws on anything else. */
export function mallocEnv(env) {
  const mode = env.MOLT_MALLOC ?? "system";
  if (mode === "system") return {};
  if (mode !== "compact") throw new Error(`MOLT_MALLOC must be "system" or "compact", not "${mode}"`);
  const tunables = env.GLIBC_TUNABLES ?? "";
  // A threshold the user chose is theirs to keep.
  if (/(^|:)glibc\.malloc\.mmap_threshold=/.test(tunables)) return {};
  return { GLIBC_TUNABLES: tunables === "" ? MMAP_THRESHOLD : `${tunables}:${MMAP_THRESHOLD}` };
}

/** Runs `script` in the child Node and exits as it exits; signals are passed on. */
export function launch(script, args, nodeFlags = []) {
  let extra;
  try {
    extra = mallocEnv(process.env);
  } catch (err) {
    console.error(`molt: ERR_USAGE: ${err.message}`);
    process.exit(2);
  }
  const tsx = import.meta.resolve("tsx");
  const child = spawn(process.execPath, ["--no-node-snapshot", ...nodeFlags, "--import", tsx, script, ...args], {
    stdio: ["inherit", "inherit", "inherit", "ipc"],
    env: { ...process.env, ...extra, MOLT_LAUNCHER: "1" },
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
