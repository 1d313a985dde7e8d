// The kernel: the registry of services and their lifecycle, and the routing
// of messages between them through declared bindings. It knows nothing of
// HTTP routing, log formats, timers' semantics or storage: those are services.

import { bundleRuntime, bundleService, shortId, type Bundle } from "./bundle.ts";
import type { ResolvedConfig } from "./config.ts";
import { ErrorCode, MoltError, toMoltError } from "./errors.ts";
import type { Boot } from "./instance.ts";
import { Inventory, Via, type VersionRecord } from "./inventory.ts";
import { bootCell } from "./cell-host.ts";
import { bootIsolate } from "./isolate-host.ts";
import { jsonLog, type KernelLog } from "./log.ts";
import { Live } from "./live.ts";
import { Metrics } from "./metrics.ts";
import { Router, type RemoteServices } from "./router.ts";
import { Slot } from "./slot.ts";
import { SnapshotStore } from "./snapshots.ts";
import { Supervisor, type SnapshotWritten } from "./supervisor.ts";
import { swap, type Phase, type SwapOptions, type SwapReport } from "./swap.ts";
import type { DeliveryKind } from "../protocol/wire.ts";
import { decodeReply, encodeRequest } from "./wire.ts";

export interface KernelOptions {
  /** How instances are hosted; default: an isolate in this process. */
  boot?: Boot;
  log?: KernelLog;
  /** Where service output goes when no log service is configured, and permitted stdout writes. */
  stdout?: (text: string) => void;
}

export interface ServiceStatus {
  name: string;
  state: "running" | "down" | "starting";
  version: string | null;
  semver: string | null;
  stateVersion: number | null;
  uptimeMs: number;
  queueDepth: number;
  inFlight: number;
  /** True while the mailbox holds deliveries (a swap's blackout, a restart). */
  paused: boolean;
  restarts: number;
  /** Where the service runs: "isolate" in the kernel's process, "process" in a cell (its config's choice, or since it was moved there). */
  isolation: "isolate" | "process";
  error: { code: string; message: string } | null;
  lastSwap: VersionRecord | null;
}

/** One service's entry in a snapshot of every service: what was written, or why nothing was. */
export type SnapshotResult = SnapshotWritten | { service: string; error: { code: string; message: string } };

/** What `kernel.restart` did: `restarted` is false when the service was up already. */
export interface RestartResult {
  service: string;
  version: string;
  restarted: boolean;
}

interface Started {
  inventory: Inventory;
  snapshots: SnapshotStore;
  supervisor: Supervisor;
}

export class Kernel {
  readonly config: ResolvedConfig;
  /** Prometheus metrics of every service; the admin API serves them at /metrics. */
  readonly metrics: Metrics;
  /** Per-second rates and every swap as it ends, for the dashboard. */
  readonly live: Live;
  readonly #slots = new Map<string, Slot>();
  readonly #log: KernelLog;
  readonly #router: Router;
  readonly #bootOverride: Boot | undefined;
  #stopping = false;
  /** What exists once start() has run. */
  #started: Started | undefined;
  readonly #swapping = new Set<string>();
  #snapshotTimer: NodeJS.Timeout | undefined;

  constructor(config: ResolvedConfig, options: KernelOptions = {}) {
    this.config = config;
    this.#log = options.log ?? jsonLog();
    this.#bootOverride = options.boot;
    this.metrics = new Metrics(() =>
      Promise.all(
        [...this.#slots.values()].map(async (slot) => ({
          name: slot.name,
          queueDepth: slot.mailbox.depth,
          inFlight: slot.mailbox.inFlight,
          heapUsedBytes: await slot.instance?.heapUsed?.().catch(() => undefined),
        })),
      ),
    );
    for (const spec of Object.values(config.services)) this.#slots.set(spec.name, new Slot(spec, this.metrics));
    this.live = new Live(() => this.#slots.values());
    this.#router = new Router({
      slots: this.#slots,
      logService: config.log?.service ?? null,
      log: this.#log,
      stdout: options.stdout ?? ((text) => process.stdout.write(text)),
    });
  }

  /**
   * Bundles and boots every service. Each service goes live as soon as it is
   * ready, so a `start` hook that calls another service waits for that one
   * rather than failing.
   */
  async start(): Promise<void> {
    const runtime = await bundleRuntime();
    const inventory = Inventory.open(this.config.dataDir, this.#log);
    const snapshots = new SnapshotStore(this.config.dataDir, this.#log);
    const supervisor = new Supervisor({
      boot:
        this.#bootOverride ??
        ((spec, bridge) => (spec.service.isolation === "process" ? bootCell(spec, bridge, runtime) : bootIsolate(spec, bridge, runtime))),
      router: this.#router,
      inventory,
      snapshots,
      log: this.#log,
      restart: this.config.restart,
      onRestart: (slot) => this.metrics.restarts.inc({ service: slot.name }),
      running: () => !this.#stopping,
    });
    this.#started = { inventory, snapshots, supervisor };
    const results = await Promise.allSettled([...this.#slots.values()].map((slot) => supervisor.launch(slot)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed !== undefined) {
      await this.stop();
      throw failed.reason;
    }
    await this.inventory.save();
    // Periodic snapshots bound what a crash of the whole runtime can lose.
    if (this.config.snapshot.everyMs > 0) {
      // Each service's failure is logged by snapshot() itself; a throw here would be a bug of the kernel's.
      this.#snapshotTimer = setInterval(() => {
        this.snapshot().catch((err: unknown) => this.#log.log("error", "periodic snapshot failed", { error: String(err) }));
      }, this.config.snapshot.everyMs);
      this.#snapshotTimer.unref();
    }
  }

  get inventory(): Inventory {
    return this.#running.inventory;
  }

  get #running(): Started {
    if (this.#started === undefined) throw new MoltError(ErrorCode.INTERNAL, "the kernel is not started");
    return this.#started;
  }

  get #supervisor(): Supervisor {
    return this.#running.supervisor;
  }

  get #snapshotStore(): SnapshotStore {
    return this.#running.snapshots;
  }

  /**
   * Hot-swaps a service to the code at `entry` (see swap.ts). Resolves with
   * the report, also for a swap that rolled back; rejects only when the
   * swap cannot begin (unknown service, one already in progress). With
   * `freshState` the new version starts from its init and the old state is
   * dropped, never dumped.
   */
  async swap(service: string, entry: string, options: SwapOptions = {}): Promise<SwapReport> {
    const slot = this.#slot(service);
    return this.#exclusive(slot, async () => {
      let bundle: Bundle;
      try {
        bundle = await bundleService(entry, options.allowedRoots === undefined ? {} : { allowedRoots: options.allowedRoots });
      } catch (err) {
        const e = toMoltError(err);
        // A file outside the allowed roots is a refusal, not a compile error.
        if (e.code === ErrorCode.PERMISSION) throw e;
        throw new MoltError(ErrorCode.SWAP_COMPILE, e.message, { service, cause: e });
      }
      return this.#swap(slot, bundle, Via.SWAP, options);
    });
  }

  /**
   * Hot-swaps a service to code bundled elsewhere (a fleet rollout brings
   * it). `bundle.hash` must be the sha256 of `bundle.code`.
   */
  async swapBundle(service: string, bundle: Bundle, via: Via = Via.SWAP): Promise<SwapReport> {
    const slot = this.#slot(service);
    return this.#exclusive(slot, () => this.#swap(slot, bundle, via));
  }

  /** A bundle that ran here before, from dataDir; ERR_NO_VERSION when it is not stored. */
  storedBundle(version: string, entry: string): Bundle {
    return this.#snapshotStore.loadBundle(version, entry);
  }

  /** Plugs in the way to services on other runtimes, for bindings that name no local service. */
  useRemote(remote: RemoteServices | undefined): void {
    this.#router.useRemote(remote);
  }

  /** The version id a service runs now, or null while it has no instance. */
  running(service: string): string | null {
    return this.#slot(service).instance?.versionId ?? null;
  }

  /** True when a service of this name runs here. */
  has(service: string): boolean {
    return this.#slots.has(service);
  }

  /** Swaps back to the previous version, or to a recorded one (`to`: a version id or a unique prefix of one). */
  async rollback(service: string, to?: string, options: { onPhase?: (phase: Phase, ms: number) => void } = {}): Promise<SwapReport> {
    const slot = this.#slot(service);
    return this.#exclusive(slot, async () => {
      const target = to === undefined ? this.inventory.previous(service) : this.inventory.find(service, to);
      if (target === undefined) {
        throw new MoltError(
          ErrorCode.NO_VERSION,
          to === undefined ? `${service} has no previous version to roll back to` : `${service} has no recorded version "${to}" (or the prefix is ambiguous)`,
          { service },
        );
      }
      let bundle: Bundle;
      try {
        bundle = this.#snapshotStore.loadBundle(target.version, target.entry);
      } catch (err) {
        const e = toMoltError(err);
        throw new MoltError(e.code, `${service}: ${e.message}`, { service, cause: e });
      }
      return this.#swap(slot, bundle, Via.ROLLBACK, options);
    });
  }

  /**
   * Writes a snapshot of one service (rejecting with its error), or of every
   * service, each on its own: one that is down or cannot dump gets an
   * `error` entry (and a log line), and every other is written all the same.
   */
  async snapshot(service?: string): Promise<SnapshotResult[]> {
    if (service !== undefined) return [await this.#supervisor.snapshot(this.#slot(service))];
    return Promise.all(
      [...this.#slots.values()].map((slot) =>
        this.#supervisor.snapshot(slot).catch((err: unknown): SnapshotResult => {
          const { code, message } = toMoltError(err);
          // A service that is down was logged when it went down; the periodic snapshot must not repeat that every time.
          if (code !== ErrorCode.SERVICE_DOWN) this.#log.log("error", "snapshot failed", { service: slot.name, code, error: message });
          return { service: slot.name, error: { code, message } };
        }),
      ),
    );
  }

  /**
   * Brings a service back on purpose (`molt restart`), typically one its
   * supervisor gave up on: at its current version, from its last snapshot
   * (or init), with a fresh restart budget. Does nothing for a service that
   * is up. ERR_NO_SERVICE for an unknown name.
   */
  async restart(service: string): Promise<RestartResult> {
    const slot = this.#slot(service);
    let restarted = false;
    if (slot.instance === undefined) {
      if (this.#stopping) throw new MoltError(ErrorCode.STOPPING, "the runtime is stopping", { service });
      // A swap whose old instance died under it settles (rolls back) on its own first.
      if (this.#swapping.has(service)) throw new MoltError(ErrorCode.SWAP_BUSY, `a swap of ${service} is in progress`, { service });
      // Two requests at once bring it back once: the second waits for the first and finds it up.
      restarted = await this.#supervisor.revive(slot);
    }
    const version = slot.instance?.versionId;
    if (version === undefined) throw slot.failure ?? new MoltError(ErrorCode.SERVICE_DOWN, `${service} died again as it came back`, { service });
    return { service, version, restarted };
  }

  /** Calls a service's handler from the host, as the HTTP ingress does. */
  async call(service: string, method: string, payload?: unknown): Promise<unknown> {
    const reply = await this.#slot(service).deliver("call", encodeRequest(method, payload));
    return decodeReply(reply as Uint8Array);
  }

  /** Delivers an encoded request as it came (from another runtime); a call resolves with the encoded reply. */
  deliver(service: string, kind: DeliveryKind, request: Uint8Array): Promise<Uint8Array | undefined> {
    return this.#slot(service).deliver(kind, request);
  }

  /** Sends a one-way message to a service from the host. */
  send(service: string, method: string, payload?: unknown): Promise<void> {
    return this.#slot(service).deliver("send", encodeRequest(method, payload)).then(() => undefined);
  }

  status(): ServiceStatus[] {
    return [...this.#slots.values()].map((slot) => {
      const instance = slot.instance;
      return {
        name: slot.name,
        state: instance !== undefined ? "running" : slot.failure !== undefined ? "down" : "starting",
        version: instance?.versionId ?? null,
        semver: instance?.meta.semver ?? null,
        stateVersion: instance?.meta.stateVersion ?? null,
        uptimeMs: instance === undefined ? 0 : Date.now() - slot.startedAt,
        queueDepth: slot.mailbox.depth,
        inFlight: slot.mailbox.inFlight,
        paused: slot.mailbox.paused,
        restarts: slot.restarts.length,
        isolation: slot.isolation,
        error: slot.failure === undefined ? null : { code: slot.failure.code, message: slot.failure.message },
        lastSwap: this.#lastSwap(slot.name),
      };
    });
  }

  /** Refuses new messages, lets every queued one finish, runs each `stop`, and disposes the isolates. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    clearInterval(this.#snapshotTimer);
    const ordered = stopOrder([...this.#slots.values()], this.config.log?.service);
    for (const slot of ordered) {
      await slot.mailbox.close();
      const instance = slot.instance;
      if (instance === undefined) continue;
      try {
        // A graceful stop snapshots every service, so that a stop and a start lose nothing.
        const dump = await instance.dump({ stop: true });
        if (this.#started !== undefined) await this.#started.supervisor.writeSnapshot(slot, instance, dump);
      } catch (err) {
        this.#log.log("error", "stop or final snapshot failed", { service: slot.name, code: toMoltError(err).code, error: String(err) });
      }
      instance.dispose();
    }
    await this.#started?.inventory.flush();
  }

  async #swap(slot: Slot, bundle: Bundle, via: Via, options: SwapOptions = {}): Promise<SwapReport> {
    let settled: Promise<void> | undefined;
    const report = await swap({
      slot,
      bundle,
      via,
      boot: (b) => this.#supervisor.boot(slot, b),
      inventory: this.inventory,
      log: this.#log,
      settings: this.config.swap,
      ...(options.onPhase === undefined ? {} : { onPhase: options.onPhase }),
      ...(options.freshState === true ? { freshState: true } : {}),
      // The committed state is the dump the serving instance restored from:
      // written after the blackout, without dumping again.
      onSettled: (instance, dump, stateVersion) => {
        settled = this.#supervisor.writeSnapshot(slot, instance, dump, stateVersion).catch((err: unknown) =>
          this.#log.log("error", "snapshot after swap failed", { service: slot.name, error: String(err) }),
        );
      },
    });
    await settled;
    if (report.outcome !== "unchanged") {
      this.live.swapped(report);
      this.metrics.swaps.inc({ service: slot.name, outcome: report.outcome });
      if (report.blackoutMs !== null) this.metrics.blackout.observe({ service: slot.name }, report.blackoutMs / 1000);
    }
    if (report.outcome === "committed" || report.outcome === "unhealthy") this.#snapshotStore.saveBundle(bundle);
    this.#log.log(report.outcome === "committed" || report.outcome === "unchanged" ? "info" : "warn", `swap ${report.outcome}`, {
      service: slot.name,
      from: shortId(report.from.version),
      to: report.to === null ? null : shortId(report.to.version),
      blackoutMs: report.blackoutMs,
      ...(report.error === undefined ? {} : { code: report.error.code }),
    });
    return report;
  }

  async #exclusive<T>(slot: Slot, run: () => Promise<T>): Promise<T> {
    if (this.#stopping) throw new MoltError(ErrorCode.STOPPING, "the runtime is stopping", { service: slot.name });
    if (this.#swapping.has(slot.name)) {
      throw new MoltError(ErrorCode.SWAP_BUSY, `a swap of ${slot.name} is already in progress`, { service: slot.name });
    }
    this.#swapping.add(slot.name);
    try {
      return await run();
    } finally {
      this.#swapping.delete(slot.name);
    }
  }

  #lastSwap(service: string): VersionRecord | null {
    if (this.#started === undefined) return null;
    // From the end: the history grows with every swap and restart, status is asked for often.
    const records = this.#started.inventory.history(service);
    for (let i = records.length - 1; i >= 0; i--) if ((records[i] as VersionRecord).via !== Via.START) return records[i] as VersionRecord;
    return null;
  }

  #slot(name: string): Slot {
    const slot = this.#slots.get(name);
    if (slot === undefined) throw new MoltError(ErrorCode.NO_SERVICE, `no service named "${name}"`);
    return slot;
  }
}

/**
 * The order services stop in: every service after all the services that
 * hold a binding to it, so a caller's last queued messages can still reach
 * their callees; the log service last, so everyone's final output reaches
 * it. Services in a binding cycle keep their config order.
 */
export function stopOrder(slots: Slot[], logService: string | undefined): Slot[] {
  const callers = new Map<string, Set<string>>(slots.map((s) => [s.name, new Set<string>()]));
  for (const slot of slots) for (const target of Object.values(slot.spec.bindings)) if (target !== slot.name) callers.get(target)?.add(slot.name);
  for (const slot of slots) if (logService !== undefined && slot.name !== logService) callers.get(logService)?.add(slot.name);
  const order: Slot[] = [];
  const done = new Set<string>();
  while (order.length < slots.length) {
    const ready = slots.find((s) => !done.has(s.name) && [...(callers.get(s.name) ?? [])].every((c) => done.has(c)));
    const next = ready ?? slots.find((s) => !done.has(s.name) && s.name !== logService) ?? slots.find((s) => !done.has(s.name));
    if (next === undefined) break;
    order.push(next);
    done.add(next.name);
  }
  return order;
}
