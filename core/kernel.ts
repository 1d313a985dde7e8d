// The kernel: the registry of services and their lifecycle, and the routing
// of messages between them through declared bindings. It knows nothing of
// HTTP routing, log formats, timers' semantics or storage: those are services.

import type { RestartResult } from "../protocol/admin.ts";
import type { DeliveryKind } from "../protocol/wire.ts";
import { bundleService, shortId, type Bundle } from "./bundle.ts";
import type { ResolvedConfig } from "./config.ts";
import { ErrorCode, MoltError, toMoltError } from "./errors.ts";
import type { Boot } from "./instance.ts";
import { Inventory, Via, type VersionRecord } from "./inventory.ts";
import { FailureLog } from "./failure-log.ts";
import { jsonLog, type KernelLog } from "./log.ts";
import { Router, type RemoteServices } from "./router.ts";
import { Slot, type DeliveryObserver } from "./slot.ts";
import { SnapshotStore, type SnapshotResult } from "./snapshots.ts";
import type { StorageProvider } from "./storage.ts";
import { lastSwap, serviceStatus, type ServiceStatus } from "./status.ts";
import { stopOrder } from "./stop-order.ts";
import { HandOut as Handing, type HandedState } from "./handover.ts";
import { Supervisor, type Prepared } from "./supervisor.ts";
import { swap, type SwapOptions, type SwapReport } from "./swap.ts";
import type { State } from "./transfer.ts";
import { decodeReply, encodeRequest } from "./wire.ts";

export type { ServiceStatus } from "./status.ts";
export type { HandedState } from "./handover.ts";

/** A hand-out under way (Kernel.handOut): the states, and the two ways it can end. */
export interface HandOut {
  states: HandedState[];
  drainMs: number;
  dumpMs: number;
  /** The other runtime did not take over: serve again as before. */
  resume(): Promise<void>;
  /** The other runtime serves: dispose everything here, write nothing more. */
  retire(): Promise<void>;
}

export interface KernelOptions {
  /** How instances are hosted (core/local-boot.ts: isolates here, or cells). */
  boot: Boot;
  log?: KernelLog;
  /** Where service output goes when no log service is configured, and permitted stdout writes. */
  stdout?: (text: string) => void;
  /** Each service's durable store (`ctx.storage`); without it, storage requests fail with ERR_STORAGE_FAILED. */
  storage?: StorageProvider;
}

/**
 * What the kernel tells whoever watches it (metrics, the live view): each
 * message's outcome, through an observer made once per service so the hot
 * path calls it without looking anything up; each swap as it ends; each
 * restart after a death.
 */
export interface KernelObserver {
  delivery?(service: string): DeliveryObserver;
  swapped?(report: SwapReport): void;
  restarted?(service: string): void;
}

/** What a scrape reads of a service at the moment it asks. */
export interface ServiceLoad {
  name: string;
  queueDepth: number;
  inFlight: number;
  heapUsedBytes: number | undefined;
}

export type { SnapshotResult, SnapshotWritten } from "./snapshots.ts";
export { stopOrder } from "./stop-order.ts";

export type { RestartResult } from "../protocol/admin.ts";

interface Started {
  inventory: Inventory;
  snapshots: SnapshotStore;
  supervisor: Supervisor;
}

export class Kernel {
  readonly config: ResolvedConfig;
  readonly #slots = new Map<string, Slot>();
  readonly #log: KernelLog;
  readonly #router: Router;
  readonly #boot: Boot;
  readonly #storage: StorageProvider | undefined;
  readonly #observers = new Set<KernelObserver>();
  #stopping = false;
  /** What exists once start() has run. */
  #started: Started | undefined;
  readonly #swapping = new Set<string>();
  /** Services booted by `prepare`, waiting for `activate`. */
  readonly #prepared = new Map<Slot, Prepared>();
  #handingOut = false;
  #snapshotTimer: NodeJS.Timeout | undefined;

  constructor(config: ResolvedConfig, options: KernelOptions) {
    this.config = config;
    this.#log = options.log ?? jsonLog();
    this.#boot = options.boot;
    this.#storage = options.storage;
    for (const spec of Object.values(config.services)) {
      const slot = new Slot(spec);
      // Handler failures are logged on the server, as any other watcher sees them.
      slot.observe(new FailureLog(spec.name, this.#log).observer());
      this.#slots.set(spec.name, slot);
    }
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
    await this.prepare();
    await this.activate();
  }

  /**
   * The first half of `start`, which writes nothing on disk: every service
   * bundled and booted at the version the inventory says runs, with no state
   * and behind a held mailbox. A runtime that takes over from another (a
   * kernel upgrade, a standby) does this while the other still serves.
   */
  async prepare(): Promise<void> {
    const inventory = Inventory.open(this.config.dataDir, this.#log);
    const snapshots = new SnapshotStore(this.config.dataDir, this.#log);
    const supervisor = new Supervisor({
      boot: this.#boot,
      router: this.#router,
      inventory,
      snapshots,
      log: this.#log,
      restart: this.config.restart,
      onRestart: (slot) => {
        for (const o of this.#observers) o.restarted?.(slot.name);
      },
      running: () => !this.#stopping,
    });
    this.#started = { inventory, snapshots, supervisor };
    const slots = [...this.#slots.values()];
    const results = await Promise.allSettled(slots.map((slot) => supervisor.prepare(slot)));
    for (const [i, r] of results.entries()) if (r.status === "fulfilled") this.#prepared.set(slots[i] as Slot, r.value);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed !== undefined) {
      await this.stop();
      throw failed.reason;
    }
  }

  /**
   * The second half: every prepared service takes its state (`states`, as
   * another runtime handed them over, else its last snapshot, else init),
   * starts and serves. The inventory is read again first, as another
   * runtime may have written it since `prepare`.
   */
  async activate(states: readonly HandedState[] = []): Promise<void> {
    const { supervisor, inventory } = this.#running;
    inventory.reload();
    // A store that cannot be trusted (damaged, not molt's) refuses its service, as code that cannot boot does.
    try {
      if (this.#storage !== undefined) for (const slot of this.#slots.values()) slot.store = this.#storage.open(slot.spec);
    } catch (err) {
      await this.stop();
      throw err;
    }
    const given = new Map(states.map((s) => [s.service, s]));
    const results = await Promise.allSettled(
      [...this.#slots.values()].map((slot) => {
        const prepared = this.#prepared.get(slot);
        this.#prepared.delete(slot);
        return prepared === undefined ? supervisor.launch(slot) : supervisor.goLive(slot, prepared, given.get(slot.name));
      }),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed !== undefined) {
      await this.stop();
      throw failed.reason;
    }
    await this.#inventory.save();
    // Handed-over states are written as each service's snapshot, after the services serve: a crash from here on resumes from them.
    for (const state of states) {
      const slot = this.#slots.get(state.service);
      if (slot?.instance !== undefined) {
        void this.#snapshotStore.keep(slot, slot.instance, state.dump, state.stateVersion).catch((err: unknown) =>
          this.#log.log("error", "snapshot of a handed-over state failed", { service: slot.name, error: String(err) }),
        );
      }
    }
    this.#armSnapshots();
  }

  /** Periodic snapshots bound what a crash of the whole runtime can lose. */
  #armSnapshots(): void {
    clearInterval(this.#snapshotTimer);
    if (this.config.snapshot.everyMs <= 0) return;
    // Each service's failure is logged by snapshot() itself; a throw here would be a bug of the kernel's.
    this.#snapshotTimer = setInterval(() => {
      this.snapshot().catch((err: unknown) => this.#log.log("error", "periodic snapshot failed", { error: String(err) }));
    }, this.config.snapshot.everyMs);
    this.#snapshotTimer.unref();
  }

  /**
   * Hands every service out to another runtime (a kernel upgrade): waits
   * until nothing is queued or running, holds every mailbox, dumps every
   * service. `resume` on the result if the other runtime does not take
   * over; `retire` once it has. Nothing is swapped or snapshotted meanwhile.
   */
  async handOut(deadlineMs: number): Promise<HandOut> {
    if (this.#stopping || this.#handingOut) throw new MoltError(ErrorCode.KERNEL_UPGRADE_BUSY, "the runtime is stopping or already handing over");
    if (this.#swapping.size > 0) throw new MoltError(ErrorCode.KERNEL_UPGRADE_BUSY, `a swap is in progress (${[...this.#swapping].join(", ")})`);
    this.#handingOut = true;
    clearInterval(this.#snapshotTimer);
    try {
      const lost = (slot: Slot, reason: MoltError, state: State | undefined): void => this.#supervisor.lost(slot, reason, state);
      const out = await Handing.begin([...this.#slots.values()], deadlineMs, lost);
      return {
        states: out.states,
        drainMs: out.drainMs,
        dumpMs: out.dumpMs,
        resume: async () => {
          await out.resume(lost);
          this.#handingOut = false;
          this.#armSnapshots();
        },
        retire: async () => {
          // This runtime writes nothing more: the other one owns the dataDir now.
          this.#stopping = true;
          out.retire();
          await this.#started?.inventory.flush();
          await this.#storage?.close();
        },
      };
    } catch (err) {
      this.#handingOut = false;
      this.#armSnapshots();
      throw err;
    }
  }

  get #inventory(): Inventory {
    return this.#running.inventory;
  }

  /** Every recorded version of a service, oldest first. */
  history(service: string): readonly VersionRecord[] {
    return this.#inventory.history(service);
  }

  /** The record of a version that ran here (`version`: an id or a unique prefix of one). */
  recorded(service: string, version: string): VersionRecord | undefined {
    return this.#inventory.find(service, version);
  }

  /** Tells `observer` what happens from now on, until the returned function is called. */
  observe(observer: KernelObserver): () => void {
    this.#observers.add(observer);
    const stops = observer.delivery === undefined ? [] : [...this.#slots.values()].map((slot) => slot.observe(observer.delivery?.(slot.name) as DeliveryObserver));
    return () => {
      this.#observers.delete(observer);
      for (const stop of stops) stop();
    };
  }

  /** Queue depth, messages in flight and heap in use of every service, read now. */
  loads(): Promise<ServiceLoad[]> {
    return Promise.all(
      [...this.#slots.values()].map(async (slot) => ({
        name: slot.name,
        queueDepth: slot.mailbox.depth,
        inFlight: slot.mailbox.inFlight,
        heapUsedBytes: await slot.instance?.heapUsed?.().catch(() => undefined),
      })),
    );
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

  /**
   * Swaps back to the previous version, or to a recorded one (`to`: a version
   * id or a unique prefix of one). With `freshState` the older version starts
   * from its init and the current state is dropped: the way back when the
   * older code cannot take the newer stateVersion.
   */
  async rollback(service: string, to?: string, options: Pick<SwapOptions, "onPhase" | "freshState"> = {}): Promise<SwapReport> {
    const slot = this.#slot(service);
    return this.#exclusive(slot, async () => {
      const target = to === undefined ? this.#inventory.previous(service) : this.#inventory.find(service, to);
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
    if (service !== undefined) return [await this.#snapshotStore.take(this.#slot(service))];
    return this.#snapshotStore.takeAll(this.#slots.values());
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
    return [...this.#slots.values()].map((slot) => serviceStatus(slot, this.#started === undefined ? null : lastSwap(this.#started.inventory.history(slot.name))));
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
        if (this.#started !== undefined) await this.#started.snapshots.keep(slot, instance, dump);
      } catch (err) {
        this.#log.log("error", "stop or final snapshot failed", { service: slot.name, code: toMoltError(err).code, error: String(err) });
      }
      instance.dispose();
    }
    await this.#started?.inventory.flush();
    await this.#storage?.close();
  }

  async #swap(slot: Slot, bundle: Bundle, via: Via, options: SwapOptions = {}): Promise<SwapReport> {
    let settled: Promise<void> | undefined;
    const report = await swap({
      slot,
      bundle,
      via,
      boot: (b) => this.#supervisor.boot(slot, b),
      lost: (reason, state) => this.#supervisor.lost(slot, reason, state),
      settled: () => this.#supervisor.settled(slot),
      inventory: this.#inventory,
      log: this.#log,
      settings: this.config.swap,
      ...(options.onPhase === undefined ? {} : { onPhase: options.onPhase }),
      ...(options.freshState === true ? { freshState: true } : {}),
      ...(options.verify === undefined ? {} : { verify: options.verify }),
      ...(options.shadow === undefined ? {} : { shadow: options.shadow }),
      ...(options.expectChange === undefined ? {} : { expectChange: options.expectChange }),
      ...(options.maxDivergence === undefined ? {} : { maxDivergence: options.maxDivergence }),
      ...(options.onShadow === undefined ? {} : { onShadow: options.onShadow }),
      // The committed state is the dump the serving instance restored from:
      // written after the blackout, without dumping again.
      onSettled: (instance, dump, stateVersion) => {
        settled = this.#snapshotStore.keep(slot, instance, dump, stateVersion).catch((err: unknown) =>
          this.#log.log("error", "snapshot after swap failed", { service: slot.name, error: String(err) }),
        );
      },
    });
    await settled;
    if (report.outcome !== "unchanged") for (const o of this.#observers) o.swapped?.(report);
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
    if (this.#handingOut) throw new MoltError(ErrorCode.KERNEL_UPGRADE_BUSY, "the runtime is handing its services over to a new kernel", { service: slot.name });
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

  #slot(name: string): Slot {
    const slot = this.#slots.get(name);
    if (slot === undefined) throw new MoltError(ErrorCode.NO_SERVICE, `no service named "${name}"`);
    return slot;
  }
}
