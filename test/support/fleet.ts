// `molt fleet …` as a user runs it, for the fleet's behaviour tests: to
// completion with its JSON read back, or in the background with its output
// watched as it comes. And, for tests that drive the fleet's code in
// process, a nats-server with the fleet's stores open.

import { spawn } from "node:child_process";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect } from "vitest";
import { connectFleet, openStores, type FleetStores } from "../../fleet/connection.ts";
import { NatsServer } from "./nats.ts";
import { ROOT, runCli } from "./runtime.ts";

export interface BackgroundCli {
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
  /** Resolves once stdout matches; rejects if the command ends without printing it, rather than hanging the test. */
  seen: (re: RegExp) => Promise<void>;
  kill: (signal: NodeJS.Signals) => void;
}

/** `molt fleet <args> --nats <url>` in the background. */
export function startFleetCli(args: string[], nats: string): BackgroundCli {
  const child = spawn(process.execPath, [join(ROOT, "bin", "molt.js"), "fleet", ...args, "--nats", nats], { cwd: ROOT });
  let stdout = "";
  let stderr = "";
  const watchers: { re: RegExp; resolve: () => void }[] = [];
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
    for (const w of [...watchers]) if (w.re.test(stdout)) w.resolve();
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
  return {
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    seen: (re) =>
      re.test(stdout)
        ? Promise.resolve()
        : Promise.race([
            new Promise<void>((resolve) => watchers.push({ re, resolve })),
            exited.then(() => {
              if (!re.test(stdout)) throw new Error(`the command ended without ${re}:\n${stdout}\n${stderr}`);
            }),
          ]),
    kill: (signal) => child.kill(signal),
  };
}

/** `molt fleet <args> --json --nats <url>`, which must exit 0; its output parsed. */
export async function fleetJson<T>(args: string[], nats: string): Promise<T> {
  const out = await runCli(["fleet", ...args, "--json", "--nats", nats]);
  expect(out.code, out.stdout + out.stderr).toBe(0);
  return JSON.parse(out.stdout) as T;
}

export interface FleetNats {
  server: NatsServer;
  nc: NatsConnection;
  stores: FleetStores;
}

/**
 * A nats-server with JetStream and one connection with the fleet's stores
 * open, started before the enclosing describe's tests and stopped after
 * them. Call the returned function inside a test.
 */
export function natsPerSuite(): () => FleetNats {
  let current: FleetNats | undefined;
  beforeAll(async () => {
    const server = await NatsServer.start();
    const nc = await connectFleet({ servers: server.url, name: "test", waitOnFirstConnect: false });
    current = { server, nc, stores: await openStores(nc) };
  });
  afterAll(async () => {
    await current?.nc.close();
    await current?.server.stop();
  });
  return () => {
    if (current === undefined) throw new Error("natsPerSuite: the server exists only inside a test");
    return current;
  };
}
