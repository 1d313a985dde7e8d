// `molt run`: starts a runtime from a config file, prints one ready line per
// listener, and on SIGINT/SIGTERM stops accepting, drains and exits 0.

import type { Socket } from "node:net";
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
import { computeKernelIdentity, kernelIdentity, MOLT_ROOT } from "../core/kernel-version.ts";
import { KernelChain } from "../core/kernel-chain.ts";
import type { HandOut } from "../core/kernel.ts";
import { toMoltError } from "../core/errors.ts";
import type { UpgradePhase } from "../keeper/protocol.ts";
import type { KernelUpgradeReport } from "../protocol/kernel.ts";
import type { FleetMember } from "../fleet/member.ts";
import { KeeperLink } from "./keeper-link.ts";
import { checkPorts, portError, type PortSetting } from "./ports.ts";
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
  /** True while this runtime takes part in a kernel upgrade as the old one. */
  let upgrading = false;
  const onSignal = (signal: string): void => {
    // A second signal (a terminal's Ctrl-C reaches both the launcher and
    // this process) must not cut a graceful stop short.
    if (signalled !== undefined) return;
    signalled = signal;
    // During start-up the signal is acted on once everything has started; during a kernel upgrade, once it has settled.
    if (ready && !upgrading) void stop(signal);
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGTERM", () => onSignal("SIGTERM"));

  // Under a keeper (`molt run`), the keeper holds the sockets and this process is one runtime of a chain.
  const keeper = KeeperLink.open();
  // The build this process loaded, hashed now: files edited while it runs belong to the next runtime.
  kernelIdentity();
  const config = await loadConfig(findConfig(configArg));
  const log = jsonLog();
  // A daemon that serves many services does not die of one stray rejection:
  // it is logged, loudly, and the runtime keeps serving.
  process.on("unhandledRejection", (reason) => log.log("error", "unhandled promise rejection (a bug in molt: please report it)", { error: String(reason) }));
  const kernel = new Kernel(config, { boot: localBoot, log, storage: lmdbStorage(config.dataDir, log) });
  const chain = keeper === undefined ? undefined : new KernelChain(config.dataDir, { log });
  // Watchers of the kernel, built here and handed to the admin API: the kernel keeps no metrics of its own.
  const metrics = new Metrics(() => kernel.loads());
  const live = new Live(() => kernel.status());
  kernel.observe(metrics.observer());
  kernel.observe(live.observer());
  // Only a runtime in a fleet loads the fleet's code (and NATS's). A member that left (a kernel upgrade that then failed) is replaced by a new one.
  const fleet = config.fleet;
  const newMember =
    fleet === null
      ? undefined
      : async (): Promise<FleetMember> =>
          new (await import("../fleet/member.ts")).FleetMember({ kernel, fleet, dataDir: config.dataDir, log, runtimeKernel: kernelIdentity() });
  let member = await newMember?.();
  let ingress: HttpIngress | undefined;
  let admin: AdminServer | undefined;
  /** Where the HTTP listener's requests go: this kernel, or (after an upgrade) the runtime that took over. */
  let target: (service: string, method: string, payload: unknown) => Promise<unknown> = (service, method, payload) => kernel.call(service, method, payload);
  /** Set while an upgrade holds the listener's requests back: `open` lets them go, to this kernel or to the runtime that took over. */
  let gate: { held: Promise<void>; open: () => void } | undefined;
  const holdRequests = (): void => {
    let open: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (open = resolve));
    gate = { held, open };
  };
  const releaseRequests = (): void => {
    gate?.open();
    gate = undefined;
  };
  let handedOver = false;
  const stop = async (signal: string): Promise<void> => {
    console.log(`molt: ${signal}, draining and stopping`);
    setTimeout(() => {
      console.error(`molt: stop took longer than ${STOP_DEADLINE_MS} ms, exiting`);
      leave(1);
    }, STOP_DEADLINE_MS).unref();
    // After a handover the new runtime owns everything: this one answers what it holds (forwarded) and goes.
    if (handedOver) {
      await ingress?.close();
      leave(0);
      return;
    }
    // Other runtimes' calls stop coming here first, and those running finish.
    await member?.leave();
    await ingress?.close();
    await admin?.close();
    await kernel.stop();
    await chain?.stopped().catch(() => undefined);
    console.log("molt: stopped");
    leave(0);
  };

  // A bad admin token, or a port another process holds, refuses the start before any service has started.
  const token = config.admin === null ? undefined : adminToken(config.dataDir);
  const httpPort = config.http === null ? undefined : { setting: "http.port", port: config.http.port, host: config.http.host };
  const adminPort = config.admin === null ? undefined : { setting: "admin.port", port: config.admin.port, host: config.admin.host };
  let held: Map<"http" | "admin", string> | undefined;
  if (keeper === undefined) await checkPorts([httpPort, adminPort].filter((p) => p !== undefined));
  else {
    const listeners = [
      ...(httpPort === undefined ? [] : [{ name: "http" as const, port: httpPort.port, host: httpPort.host }]),
      ...(adminPort === undefined ? [] : [{ name: "admin" as const, port: adminPort.port, host: adminPort.host }]),
    ];
    held = await keeper.listen(listeners, config.kernel).catch((err: unknown) => {
      const setting = (err as { listener?: string }).listener === "admin" ? adminPort : httpPort;
      throw setting === undefined ? err : portError(setting, err);
    });
  }
  /** A server takes the connections the keeper hands over on its listener, or, with no keeper, listens itself. */
  const serve = async (server: Listener, name: "http" | "admin", port: PortSetting | undefined): Promise<void> => {
    const url = held?.get(name);
    if (keeper !== undefined && url !== undefined) {
      server.adopt(url);
      keeper.onConnection(name, (socket) => server.accept(socket));
      return;
    }
    // The port was free a moment ago; another process may still have taken it since.
    await server.listen().catch((err: unknown) => {
      throw port === undefined ? err : portError(port, err);
    });
  };
  let restoreMs = 0;
  let activation: Awaited<ReturnType<KeeperLink["prepared"]>> | undefined;
  try {
    await kernel.prepare();
    activation = await keeper?.prepared();
    const restoreStarted = performance.now();
    try {
      await kernel.activate(activation?.states);
    } catch (err) {
      await keeper?.activateFailed(err);
      // An upgrade's new runtime that failed writes nothing: the old one resumes and owns dataDir.
      if (activation?.via === "upgrade") {
        console.error(`molt: ${toMoltError(err).code}: ${toMoltError(err).message}`);
        leave(1);
      }
      throw err;
    }
    restoreMs = performance.now() - restoreStarted;
    if (config.http !== null) {
      const answering = config.services[config.http.service];
      // The answering service's own message limit bounds what it may answer over HTTP too.
      const maxReplyBytes = answering?.limits.maxMessageBytes ?? DEFAULTS.maxMessageBytes;
      ingress = new HttpIngress({ ...config.http, maxReplyBytes }, (service, method, payload) =>
        // Outside an upgrade a request goes straight through: no extra promise on the HTTP path.
        gate === undefined ? target(service, method, payload) : gate.held.then(() => target(service, method, payload)),
      );
      await serve(ingress, "http", httpPort);
    }
    if (config.admin !== null && token !== undefined) {
      const upgrade =
        keeper === undefined || chain === undefined
          ? undefined
          : async (onPhase: (phase: UpgradePhase, ms: number) => void): Promise<KernelUpgradeReport> => {
              const from = { ...kernelIdentity(), pid: process.pid };
              const phases: { name: UpgradePhase; ms: number }[] = [];
              const note = (name: UpgradePhase, ms: number): void => {
                phases.push({ name, ms: Math.round(ms * 100) / 100 });
                onPhase(name, ms);
              };
              let handing: HandOut | undefined;
              upgrading = true;
              try {
                const { pid, kernel: loaded, blackoutMs } = await keeper.upgrade(
                  {
                    handOut: async (phase) => {
                      holdRequests();
                      await member?.leave();
                      handing = await kernel.handOut(HAND_OUT_DEADLINE_MS);
                      phase("drain", handing.drainMs);
                      phase("dump", handing.dumpMs);
                      return handing.states;
                    },
                    resume: async () => {
                      try {
                        await handing?.resume();
                        member = await newMember?.();
                        member?.join();
                      } finally {
                        // Whatever else failed, requests must never stay held.
                        releaseRequests();
                      }
                    },
                    retire: (forward) => {
                      handedOver = true;
                      target = forward;
                      releaseRequests();
                      void retire(handing);
                    },
                  },
                  note,
                );
                const to = { ...loaded, pid };
                return { from, to, blackoutMs: Math.round(blackoutMs * 100) / 100, phases, services: handing?.states.length ?? 0 };
              } catch (err) {
                const e = toMoltError(err);
                await chain.upgradeFailed({ code: e.code, message: e.message, tried: computeKernelIdentity(MOLT_ROOT) }).catch(() => undefined);
                throw e;
              } finally {
                upgrading = false;
                // A signal that came during the upgrade stops whichever runtime holds the state now.
                if (signalled !== undefined) void stop(signalled);
              }
            };
      admin = new AdminServer(adminRuntime(kernel, metrics, live, { ...(chain === undefined ? {} : { chain }), ...(upgrade === undefined ? {} : { upgrade }) }), { ...config.admin, token });
      await serve(admin, "admin", adminPort);
    }
    // A runtime taking over from another serves first: what follows is outside its blackout.
    if (keeper !== undefined && activation !== undefined) keeper.ready(restoreMs, kernelIdentity(), (service, method, payload) => kernel.call(service, method, payload));
    // With port 0 the CLI cannot know the port from the config: it reads it here.
    if (admin !== undefined) writeAtomic(join(config.dataDir, "admin.json"), `${JSON.stringify({ url: admin.url, pid: process.pid })}\n`);
    member?.join();
  } catch (err) {
    await member?.leave().catch(() => undefined);
    await ingress?.close().catch(() => undefined);
    await admin?.close().catch(() => undefined);
    await kernel.stop();
    throw err;
  }
  if (chain !== undefined && activation !== undefined) {
    const blackoutMs = activation.since === null ? null : Date.now() - activation.since;
    await chain.started({ via: activation.via, blackoutMs }).catch((err: unknown) => log.log("error", "cannot record this runtime in the kernel chain", { error: String(err) }));
  }
  ready = true;
  if (signalled !== undefined) return stop(signalled);

  if (ingress !== undefined && config.http !== null) console.log(`molt: http listening on ${ingress.url} (service ${config.http.service})`);
  if (admin !== undefined) console.log(`molt: admin listening on ${admin.url}`);
  if (member !== undefined && config.fleet !== null) console.log(`molt: fleet node ${member.node}, joining ${config.fleet.nats}`);
  const names = Object.keys(config.services);
  const how = activation === undefined || activation.via === "start" ? "" : activation.via === "upgrade" ? ", upgraded" : ", restarted";
  console.log(`molt: ready${how}, ${names.length} service${names.length === 1 ? "" : "s"} (${names.join(", ")})`);
  if (options.ready !== undefined) options.ready(kernel, config);
  // The check bundles every entry again: it must never hold up or take down a runtime that serves.
  // A runtime taking over from another (an upgrade, a restart) checks later: its first requests come first.
  else setTimeout(() => void warnStaleEntries(kernel, config).catch(() => undefined), activation === undefined || activation.via === "start" ? 0 : 5000).unref();

  /** After a handover: what is still on this runtime's connections goes to the new one, then this process ends. */
  async function retire(handing: HandOut | undefined): Promise<void> {
    await handing?.retire();
    await ingress?.closing(RETIRE_LINGER_MS);
    await admin?.close();
    leave(0);
  }
}

/** What HttpIngress and AdminServer both are: a server that listens, or serves connections accepted elsewhere. */
interface Listener {
  listen(): Promise<unknown>;
  adopt(url: string): void;
  accept(socket: Socket): void;
}

/** How long a kernel upgrade's drain and dumps may take in the old runtime (the keeper waits longer: keeper/keeper.ts). */
const HAND_OUT_DEADLINE_MS = 10_000;

/** How long an old runtime keeps serving its open connections (forwarding) after a handover. */
const RETIRE_LINGER_MS = 15_000;

