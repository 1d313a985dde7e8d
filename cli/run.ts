// `molt run`: starts a runtime from a config file, prints one ready line per
// listener, and on SIGINT/SIGTERM stops accepting, drains and exits 0.

import { join } from "node:path";
import { AdminServer, adminToken } from "../core/admin.ts";
import { writeAtomic } from "../core/disk.ts";
import { findConfig, loadConfig } from "../core/config.ts";
import { HttpIngress } from "../core/http-ingress.ts";
import { Kernel } from "../core/kernel.ts";

/** How long a graceful stop may take before the process exits anyway. */
const STOP_DEADLINE_MS = 30_000;

export async function run(configArg: string | undefined): Promise<void> {
  const config = await loadConfig(findConfig(configArg));
  const kernel = new Kernel(config);
  await kernel.start();

  let ingress: HttpIngress | undefined;
  if (config.http !== null) {
    ingress = new HttpIngress(config.http, (service, method, payload) => kernel.call(service, method, payload));
    try {
      await ingress.listen();
    } catch (err) {
      await kernel.stop();
      throw err;
    }
    console.log(`molt: http listening on ${ingress.url} (service ${config.http.service})`);
  }
  let admin: AdminServer | undefined;
  if (config.admin !== null) {
    admin = new AdminServer(kernel, { ...config.admin, token: adminToken(config.dataDir) });
    try {
      await admin.listen();
    } catch (err) {
      await ingress?.close();
      await kernel.stop();
      throw err;
    }
    // With port 0 the CLI cannot know the port from the config: it reads it here.
    writeAtomic(join(config.dataDir, "admin.json"), `${JSON.stringify({ url: admin.url, pid: process.pid })}\n`);
    console.log(`molt: admin listening on ${admin.url}`);
  }
  const names = Object.keys(config.services);
  console.log(`molt: ready, ${names.length} service${names.length === 1 ? "" : "s"} (${names.join(", ")})`);

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    // A second signal (a terminal's Ctrl-C reaches both the launcher and
    // this process) must not cut a graceful stop short.
    if (stopping) return;
    stopping = true;
    console.log(`molt: ${signal}, draining and stopping`);
    setTimeout(() => {
      console.error(`molt: stop took longer than ${STOP_DEADLINE_MS} ms, exiting`);
      process.exit(1);
    }, STOP_DEADLINE_MS).unref();
    await ingress?.close();
    await admin?.close();
    await kernel.stop();
    console.log("molt: stopped");
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
}
