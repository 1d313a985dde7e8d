// The kernel: the registry of services and their lifecycle, and the routing
// of messages between them through declared bindings. It knows nothing of
// HTTP routing, log formats, timers' semantics or storage: those are services.

import { bundleRuntime, bundleService, shortId, type Bundle } from "./bundle.ts";
import type { ResolvedConfig } from "./config.ts";
import { ErrorCode, MoltError, toMoltError } from "./errors.ts";
import type { Boot, Instance } from "./instance.ts";
import { Inventory, Outcome, Via, type VersionRecord } from "./inventory.ts";
import { bootIsolate } from "./isolate-host.ts";
import { jsonLog, type KernelLog } from "./log.ts";
import { grantedEnv } from "./permissions.ts";
import { Router } from "./router.ts";
import { Slot } from "./slot.ts";
import { SnapshotStore } from "./snapshots.ts";
import { checkStateVersion, swap, type Phase, type SwapReport } from "./swap.ts";
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
  restarts: number;
  error: { code: string; message: string } | null;
  lastSwap: VersionRecord | null;
}

export class Kernel {
  readonly config: ResolvedConfig;
  readonly #slots = new Map<string, Slot>();
  readonly #log: KernelLog;
  readonly #router: Router;
  #boot: Boot | undefined;
  readonly #bootOverride: Boot | undefined;
  #stopping = false;
  #inventory: Inventory | undefined;
  #snapshots: SnapshotStore | undefined;
  readonly #swapping = new Set<string>();

  constructor(config: ResolvedConfig, options: KernelOptions = {}) {
    this.config = config;
    this.#log = options.log ?? jsonLog();
    this.#bootOverride = options.boot;
    for (const spec of Object.values(config.services)) this.#slots.set(spec.name, new Slot(spec));
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
    this.#boot = this.#bootOverride ?? ((spec, bridge) => bootIsolate(spec, bridge, runtime));
    this.#inventory = Inventory.open(this.config.dataDir, this.#log);
    this.#snapshots = new SnapshotStore(this.config.dataDir, this.#log);
    const results = await Promise.allSettled([...this.#slots.values()].map((slot) => this.#launch(slot)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed !== undefined) {
      await this.stop();
      throw failed.reason;
    }
    this.inventory.save();
  }

  get inventory(): Inventory {
    if (this.#inventory === undefined) throw new MoltError(ErrorCode.INTERNAL, "the kernel is not started");
    return this.#inventory;
  }

  /**
   * Hot-swaps a service to the code at `entry` (see swap.ts). Resolves with
   * the report, also for a swap that rolled back; rejects only when the
   * swap cannot begin (unknown service, one already in progress).
   */
  async swap(service: string, entry: string, options: { onPhase?: (phase: Phase, ms: number) => void } = {}): Promise<SwapReport> {
    const slot = this.#slot(service);
    return this.#exclusive(slot, async () => {
      let bundle: Bundle;
      try {
        bundle = await bundleService(entry);
      } catch (err) {
        const e = toMoltError(err);
        throw new MoltError(ErrorCode.SWAP_COMPILE, e.message, { service, cause: e });
      }
      return this.#swap(slot, bundle, Via.SWAP, options.onPhase);
    });
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
      const bundle = this.#store.loadBundle(target.version, target.entry);
      return this.#swap(slot, bundle, Via.ROLLBACK, options.onPhase);
    });
  }

  /** Writes a snapshot of one service, or of all; returns what was written. */
  async snapshot(service?: string): Promise<{ service: string; version: string; stateVersion: number; bytes: number }[]> {
    const slots = service === undefined ? [...this.#slots.values()] : [this.#slot(service)];
    const written = [];
    for (const slot of slots) {
      const instance = slot.instance;
      if (instance === undefined) continue;
      // Queued like a message, so it never runs in the middle of a handler.
      const dump = await slot.mailbox.push(() => instance.dump());
      this.#writeSnapshot(slot, instance, dump);
      written.push({ service: slot.name, version: instance.versionId, stateVersion: instance.meta.stateVersion, bytes: dump.byteLength });
    }
    return written;
  }

  /** Calls a service's handler from the host, as the HTTP ingress does. */
  async call(service: string, method: string, payload?: unknown): Promise<unknown> {
    const reply = await this.#slot(service).deliver("call", encodeRequest(method, payload));
    return decodeReply(reply as Uint8Array);
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
        restarts: slot.restarts.length,
        error: slot.failure === undefined ? null : { code: slot.failure.code, message: slot.failure.message },
        lastSwap: this.#lastSwap(slot.name),
      };
    });
  }

  /** Refuses new messages, lets every queued one finish, runs each `stop`, and disposes the isolates. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    const slots = [...this.#slots.values()];
    // The log service closes last, so the others' final output still reaches it.
    const logName = this.config.log?.service;
    const ordered = [...slots.filter((s) => s.name !== logName), ...slots.filter((s) => s.name === logName)];
    for (const slot of ordered) {
      await slot.mailbox.close();
      const instance = slot.instance;
      if (instance === undefined) continue;
      try {
        await instance.stop();
        // A graceful stop snapshots every service, so that a stop and a start lose nothing.
        if (this.#snapshots !== undefined) this.#writeSnapshot(slot, instance, await instance.dump());
      } catch (err) {
        this.#log.log("error", "stop or final snapshot failed", { service: slot.name, code: toMoltError(err).code, error: String(err) });
      }
      instance.dispose();
    }
  }

  /**
   * First start of a service: at the version the inventory says runs, from
   * its last snapshot; or, on a fresh dataDir, at the config's entry from init.
   */
  async #launch(slot: Slot): Promise<void> {
    const current = this.inventory.current(slot.name);
    let bundle: Bundle | undefined;
    if (current !== undefined) {
      try {
        bundle = this.#store.loadBundle(current.version, current.entry);
      } catch (err) {
        this.#log.log("error", "cannot load the recorded version; starting from the config's entry", {
          service: slot.name,
          version: shortId(current.version),
          error: (err as Error).message,
        });
      }
    }
    bundle ??= await bundleService(slot.spec.entry);
    const instance = await this.#bootInstance(slot, bundle);
    const fresh = await this.#bringUp(slot, instance, bundle);
    if (current === undefined || current.version !== bundle.hash) {
      if (current !== undefined) this.inventory.replaced(slot.name, new Date().toISOString());
      const now = new Date().toISOString();
      this.inventory.add({
        service: slot.name,
        version: bundle.hash,
        semver: instance.meta.semver,
        stateVersion: instance.meta.stateVersion,
        entry: bundle.entry,
        parent: current?.version ?? null,
        via: Via.START,
        requestedAt: now,
        startedAt: now,
        replacedAt: null,
        outcome: Outcome.LIVE,
        ...(fresh ? {} : { message: "restored from snapshot" }),
      });
    }
    this.#store.saveBundle(bundle);
    this.#log.log("info", "service started", {
      service: slot.name,
      version: shortId(instance.versionId),
      semver: instance.meta.semver,
      state: fresh ? "init" : "snapshot",
    });
  }

  /** Gives a booted instance its state (last snapshot, else init), starts it and puts it behind the mailbox. Returns true for fresh state. */
  async #bringUp(slot: Slot, instance: Instance, bundle: Bundle): Promise<boolean> {
    let fresh = true;
    try {
      const snapshot = this.#snapshots?.read(slot.name);
      if (snapshot !== undefined && checkStateVersion(instance, snapshot.stateVersion) === undefined) {
        await instance.restore(snapshot.dump, snapshot.stateVersion);
        fresh = false;
      } else {
        await instance.init();
      }
      await instance.start();
    } catch (err) {
      instance.dispose();
      throw err;
    }
    slot.attach(instance, bundle);
    slot.mailbox.resume();
    return fresh;
  }

  async #bootInstance(slot: Slot, bundle: Bundle): Promise<Instance> {
    const boot = this.#boot as Boot;
    const holder: { instance?: Instance } = {};
    const instance = await boot(
      { service: slot.spec, code: bundle.code, versionId: bundle.hash, env: grantedEnv(slot.spec.permissions) },
      // Only the instance behind the mailbox is restarted when it dies; a swap handles its own.
      this.#router.bridge(slot, (reason) => {
        if (holder.instance !== undefined && holder.instance === slot.instance) void this.#restart(slot, reason);
      }),
    );
    holder.instance = instance;
    return instance;
  }

  async #swap(slot: Slot, bundle: Bundle, via: Via, onPhase?: (phase: Phase, ms: number) => void): Promise<SwapReport> {
    const report = await swap({
      slot,
      bundle,
      via,
      boot: (b) => this.#bootInstance(slot, b),
      inventory: this.inventory,
      log: this.#log,
      settings: this.config.swap,
      ...(onPhase === undefined ? {} : { onPhase }),
    });
    if (report.outcome === "committed" || report.outcome === "unhealthy") {
      this.#store.saveBundle(bundle);
      // The committed state, written after the blackout, off the swap's path.
      await this.snapshot(slot.name).catch((err: unknown) =>
        this.#log.log("error", "snapshot after swap failed", { service: slot.name, error: String(err) }),
      );
    }
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

  #writeSnapshot(slot: Slot, instance: Instance, dump: Uint8Array): void {
    this.#snapshots?.write({
      service: slot.name,
      version: instance.versionId,
      semver: instance.meta.semver,
      stateVersion: instance.meta.stateVersion,
      time: new Date().toISOString(),
      dump,
    });
  }

  #lastSwap(service: string): VersionRecord | null {
    if (this.#inventory === undefined) return null;
    const records = this.#inventory.history(service).filter((r) => r.via !== Via.START);
    return records[records.length - 1] ?? null;
  }

  get #store(): SnapshotStore {
    if (this.#snapshots === undefined) throw new MoltError(ErrorCode.INTERNAL, "the kernel is not started");
    return this.#snapshots;
  }

  /**
   * An instance died on its own (memory limit, a loop past its deadline).
   * Queued messages stay queued while a fresh instance boots, within the
   * restart policy; past it the service is down until an operator acts.
   */
  async #restart(slot: Slot, reason: MoltError): Promise<void> {
    slot.mailbox.pause();
    slot.detach(reason);
    if (this.#stopping) return;
    const now = Date.now();
    const { maxRestarts, windowMs } = this.config.restart;
    while (slot.restarts.length > 0 && (slot.restarts[0] ?? 0) < now - windowMs) slot.restarts.shift();
    if (slot.restarts.length >= maxRestarts) {
      const down = new MoltError(ErrorCode.SERVICE_DOWN, `${slot.name} restarted ${maxRestarts} times in ${windowMs} ms; it stays down`, {
        service: slot.name,
        cause: reason,
      });
      slot.detach(down);
      slot.mailbox.resume();
      this.#log.log("error", "service down", { service: slot.name, code: reason.code, error: reason.message });
      return;
    }
    slot.restarts.push(now);
    this.#log.log("error", "instance died; restarting from its last snapshot", { service: slot.name, code: reason.code, error: reason.message });
    try {
      const bundle = slot.bundle as Bundle;
      await this.#bringUp(slot, await this.#bootInstance(slot, bundle), bundle);
      this.#log.log("info", "service restarted", { service: slot.name, version: shortId(bundle.hash) });
    } catch (err) {
      const e = toMoltError(err);
      this.#log.log("error", "restart failed", { service: slot.name, code: e.code, error: e.message });
      slot.detach(e);
      slot.mailbox.resume();
    }
  }

  #slot(name: string): Slot {
    const slot = this.#slots.get(name);
    if (slot === undefined) throw new MoltError(ErrorCode.NO_SERVICE, `no service named "${name}"`);
    return slot;
  }
}
