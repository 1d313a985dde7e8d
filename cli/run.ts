// `molt run`: starts a runtime from a config file, prints one ready line per
// listener, and on SIGINT/SIGTERM stops accepting, drains and exits 0.

import { join } from "node:path";
import { AdminServer, adminRuntime, adminToken } from "../core/admin.ts";
import { DEFAULTS, findConfig, loadConfig, type ResolvedConfig } from "../core/config.ts";
import { writeAtomic } from "../core/disk.ts";
import { HttpIngress } from "../core/http-ingress.ts";
import { quarantinedIsolates } from "../core/isolate-host.ts";
import { Kernel } from "../core/kernel.ts";
import { Live } from "../core/live.ts";
import { localBoot } from "../core/local-boot.ts";
import { lmdbStorage } from "../core/lmdb-store.ts";
import { Metrics } from "../core/metrics.ts";
import { jsonLog } from "../core/log.ts";
import { checkPorts, portError } from "./ports.ts";
import { warnStaleEntries } from "./stale-entries.ts";

/** How long a graceful stop may take before the process exits anyway. */
const STOP_DEADLINE_MS = 30_000;

/**
 * Ends the process with `code`. After an isolate was quarantined (V8 gave up
 * on its heap, see core/isolate-host.ts), one of isolated-vm's threads is
 * parked for good, and a normal exit waits for it forever (isolated-vm joins
 * its threads on the way out). Then the process kills itself instead, once
 * it has told the launcher which code it meant.
 */
function leave(code: number): void {
  if (quarantinedIsolates() === 0) process.exit(code);
  const kill = (): void => {
    process.kill(process.pid, "SIGKILL");
  };
  if (process.send === undefined) kill();
  else process.send({ exitCode: code }, kill);
}

export interface RunOptions {
  /**
   * Called once the runtime is ready (`molt dev` watches files from here).
   * Without it, `molt run` warns of entries that changed on disk since the
   * version a service resumed at was bundled from them.
   */
  ready?: (kernel: Kernel, config: ResolvedConfig) => void;
}

export async function run(configArg: string | undefined, options: RunOptions = {}): Promise<void> {
  // Signals are handled from the first moment, so one that arrives while the
  // runtime starts (or right after its ready line) still stops it gracefully.
  let signalled: string | undefined;
  let ready = false;
  const onSignal = (signal: string): void => {
    // A second signal (a terminal's Ctrl-C reaches both the launcher and
    // this process) must not cut a graceful stop short.
    if (signalled !== undefined) return;
    signalled = signal;
    // During start-up the signal is acted on once everything has started.
    if (ready) void stop(signal);
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGTERM", () => onSignal("SIGTERM"));

  const config = await loadConfig(findConfig(configArg));
  const log = jsonLog();
  // A daemon that serves many services does not die of one stray rejection:
  // it is logged, loudly, and the runtime keeps serving.
  process.on("unhandledRejection", (reason) => log.log("error", "unhandled promise rejection (a bug in molt: please report it)", { error: String(reason) }));
  const kernel = new Kernel(config, { boot: localBoot, log, storage: lmdbStorage(config.dataDir, log) });
  // Watchers of the kernel, built here and handed to the admin API: the kernel keeps no metrics of its own.
  const metrics = new Metrics(() => kernel.loads());
  const live = new Live(() => kernel.status());
  kernel.observe(metrics.observer());
  kernel.observe(live.observer());
  // Only a runtime in a fleet loads the fleet's code (and NATS's).
  const member =
    config.fleet === null
      ? undefined
      : new (await import("../fleet/member.ts")).FleetMember({ kernel, fleet: config.fleet, dataDir: config.dataDir, log });
  let ingress: HttpIngress | undefined;
  let admin: AdminServer | undefined;
  const stop = async (signal: string): Promise<void> => {
    console.log(`molt: ${signal}, draining and stopping`);
    setTimeout(() => {
      console.error(`molt: stop took longer than ${STOP_DEADLINE_MS} ms, exiting`);
      leave(1);
    }, STOP_DEADLINE_MS).unref();
    // Other runtimes' calls stop coming here first, and those running finish.
    await member?.leave();
    await ingress?.close();
    await admin?.close();
    await kernel.stop();
    console.log("molt: stopped");
    leave(0);
  };

  // A bad admin token, or a port another process holds, refuses the start before any service has started.
  const token = config.admin === null ? undefined : adminToken(config.dataDir);
  const httpPort = config.http === null ? undefined : { setting: "http.port", port: config.http.port, host: config.http.host };
  const adminPort = config.admin === null ? undefined : { setting: "admin.port", port: config.admin.port, host: config.admin.host };
  await checkPorts([httpPort, adminPort].filter((p) => p !== undefined));
  try {
    await kernel.start();
    if (config.http !== null) {
      const answering = config.services[config.http.service];
      // The answering service's own message limit bounds what it may answer over HTTP too.
      const maxReplyBytes = answering?.limits.maxMessageBytes ?? DEFAULTS.maxMessageBytes;
      ingress = new HttpIngress({ ...config.http, maxReplyBytes }, (service, method, payload) => kernel.call(service, method, payload));
      // The port was free a moment ago; another process may still have taken it since.
      await ingress.listen().catch((err: unknown) => {
        throw httpPort === undefined ? err : portError(httpPort, err);
      });
    }
    if (config.admin !== null && token !== undefined) {
      admin = new AdminServer(adminRuntime(kernel, metrics, live), { ...config.admin, token });
      await admin.listen().catch((err: unknown) => {
        throw adminPort === undefined ? err : portError(adminPort, err);
      });
      // With port 0 the CLI cannot know the port from the config: it reads it here.
      writeAtomic(join(config.dataDir, "admin.json"), `${JSON.stringify({ url: admin.url, pid: process.pid })}\n`);
    }
    member?.join();
  } catch (err) {
    await member?.leave().catch(() => undefined);
    await ingress?.close().catch(() => undefined);
    await admin?.close().catch(() => undefined);
    await kernel.stop();
    throw err;
  }
  ready = true;
  if (signalled !== undefined) return stop(signalled);

  if (ingress !== undefined && config.http !== null) console.log(`molt: http listening on ${ingress.url} (service ${config.http.service})`);
  if (admin !== undefined) console.log(`molt: admin listening on ${admin.url}`);
  if (member !== undefined && config.fleet !== null) console.log(`molt: fleet node ${member.node}, joining ${config.fleet.nats}`);
  const names = Object.keys(config.services);
  console.log(`molt: ready, ${names.length} service${names.length === 1 ? "" : "s"} (${names.join(", ")})`);
  if (options.ready !== undefined) options.ready(kernel, config);
  // The check bundles every entry again: it must never hold up or take down a runtime that serves.
  else void warnStaleEntries(kernel, config).catch(() => undefined);
}
