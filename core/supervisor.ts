// Supervision: bringing instances of a service up and keeping them up. An
// instance boots at a version, takes its state (the last snapshot if its
// code can restore it, else init), starts, and goes behind the mailbox. One
// that dies on its own is replaced the same way under the restart policy
// (at most `maxRestarts` in `windowMs`, as OTP supervisors count), its
// queued messages kept; past the policy the service stays down, and its
// messages fail with ERR_SERVICE_DOWN, until an operator brings it back
// (`revive`, behind `molt restart`). Snapshots of a live service are taken
// here too, one service at a time, each on its own.

import { bundleService, shortId, type Bundle } from "./bundle.ts";
import { ErrorCode, MoltError, toMoltError } from "./errors.ts";
import type { Boot, Instance } from "./instance.ts";
import { Via, type Inventory } from "./inventory.ts";
import type { KernelLog } from "./log.ts";
import { grantedEnv } from "./permissions.ts";
import type { Router } from "./router.ts";
import type { Slot } from "./slot.ts";
import type { SnapshotStore } from "./snapshots.ts";
import { checkStateVersion } from "./swap.ts";

export interface SupervisorOptions {
  boot: Boot;
  router: Router;
  inventory: Inventory;
  snapshots: SnapshotStore;
  log: KernelLog;
  restart: { maxRestarts: number; windowMs: number };
  /** False once the runtime is stopping: nothing is restarted then. */
  running: () => boolean;
  onRestart?: (slot: Slot) => void;
}

/** A snapshot written: what `molt snapshot` reports for one service. */
export interface SnapshotWritten {
  service: string;
  version: string;
  stateVersion: number;
  bytes: number;
}

export class Supervisor {
  readonly #o: SupervisorOptions;
  /** Instances being brought back (after a death, or on request), so that a request waits for one rather than racing it. */
  readonly #restarting = new Map<Slot, Promise<unknown>>();

  constructor(options: SupervisorOptions) {
    this.#o = options;
  }

  /**
   * First start of a service: at the version the inventory says runs, from
   * its last snapshot; or, on a fresh dataDir, at the config's entry from init.
   */
  async launch(slot: Slot): Promise<void> {
    const { inventory, snapshots, log } = this.#o;
    const current = inventory.current(slot.name);
    let bundle: Bundle | undefined;
    if (current !== undefined) {
      try {
        bundle = snapshots.loadBundle(current.version, current.entry);
      } catch (err) {
        log.log("error", "cannot load the recorded version; starting from the config's entry", {
          service: slot.name,
          version: shortId(current.version),
          error: (err as Error).message,
        });
      }
    }
    bundle ??= await this.#bundleOnce(slot.spec.entry);
    const instance = await this.boot(slot, bundle);
    const fresh = await this.bringUp(slot, instance, bundle);
    if (current === undefined || current.version !== bundle.hash) {
      inventory.live(instance, {
        entry: bundle.entry,
        parent: current?.version ?? null,
        via: Via.START,
        ...(fresh ? {} : { message: "restored from snapshot" }),
      });
    }
    snapshots.saveBundle(bundle);
    log.log("info", "service started", {
      service: slot.name,
      version: shortId(instance.versionId),
      semver: instance.meta.semver,
      state: fresh ? "init" : "snapshot",
    });
  }

  /** Entries bundled at start: services that share an entry module share one build. */
  readonly #startBundles = new Map<string, Promise<Bundle>>();

  #bundleOnce(entry: string): Promise<Bundle> {
    let bundle = this.#startBundles.get(entry);
    if (bundle === undefined) {
      bundle = bundleService(entry);
      this.#startBundles.set(entry, bundle);
    }
    return bundle;
  }

  /** Boots an instance of `bundle` for `slot`: code loaded, no state yet, not behind the mailbox. */
  async boot(slot: Slot, bundle: Bundle): Promise<Instance> {
    const holder: { instance?: Instance } = {};
    const service = slot.isolation === slot.spec.isolation ? slot.spec : { ...slot.spec, isolation: slot.isolation };
    const instance = await this.#o.boot(
      { service, code: bundle.code, versionId: bundle.hash, env: grantedEnv(slot.spec.permissions) },
      this.#o.router.bridge(slot, (reason, advice) => {
        // Whichever instance it was (a swap's new one too), what it left
        // behind in this process decides where the service runs from now on.
        if (advice?.contain === true && slot.isolation !== "process") {
          slot.isolation = "process";
          this.#o.log.log("warn", "service moved to a cell of its own", { service: slot.name, code: reason.code });
        }
        // Only the instance behind the mailbox is restarted when it dies; a swap handles its own.
        if (holder.instance !== undefined && holder.instance === slot.instance) void this.#tracked(slot, this.#restart(slot, reason));
      }),
    );
    holder.instance = instance;
    return instance;
  }

  /** Gives a booted instance its state, starts it and puts it behind the mailbox. Returns true for fresh (init) state. */
  async bringUp(slot: Slot, instance: Instance, bundle: Bundle): Promise<boolean> {
    let fresh = true;
    try {
      const snapshot = this.#o.snapshots.read(slot.name);
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

  /**
   * Writes a dump as the service's snapshot, to boot `instance`'s version
   * from. `stateVersion` is the dump's own, which may be older than the
   * instance's: a swap's snapshot is the dump the new version restored from.
   */
  writeSnapshot(slot: Slot, instance: Instance, dump: Uint8Array, stateVersion: number = instance.meta.stateVersion): Promise<void> {
    return this.#o.snapshots.write({
      service: slot.name,
      version: instance.versionId,
      semver: instance.meta.semver,
      stateVersion,
      time: new Date().toISOString(),
      dump,
    });
  }

  /**
   * Dumps a live service between two of its messages and writes the dump as
   * its snapshot. A failure (the service down, its dump failing) rejects
   * this call only: no other service's snapshot depends on it.
   */
  async snapshot(slot: Slot): Promise<SnapshotWritten> {
    // Queued like a message, so it never runs in the middle of a handler; the
    // instance is looked up when its turn comes, as a message's is.
    const { instance, dump } = await slot.mailbox.push(async () => {
      const current = slot.instance;
      if (current === undefined || current.disposed) {
        const why = slot.failure === undefined ? "" : ` (${slot.failure.code}: ${slot.failure.message})`;
        throw new MoltError(ErrorCode.SERVICE_DOWN, `${slot.name} is down${why}: nothing to snapshot`, { service: slot.name, cause: slot.failure });
      }
      return { instance: current, dump: await current.dump() };
    });
    await this.writeSnapshot(slot, instance, dump);
    return { service: slot.name, version: instance.versionId, stateVersion: instance.meta.stateVersion, bytes: dump.byteLength };
  }

  /**
   * Brings a service back on purpose (`molt restart`), typically one left
   * down past its restart policy: at the version it ran, from its last
   * snapshot (or init), with its restart record cleared so that the policy
   * counts afresh. Resolves false, doing nothing, when it is up; waits for a
   * restart already under way first. Messages sent meanwhile wait for it,
   * as they do for an automatic restart; those sent while it was down have
   * already failed with ERR_SERVICE_DOWN.
   */
  async revive(slot: Slot): Promise<boolean> {
    for (let running = this.#restarting.get(slot); running !== undefined; running = this.#restarting.get(slot)) {
      await running.catch(() => undefined);
    }
    if (slot.instance !== undefined) return false;
    await this.#tracked(slot, this.#reviveNow(slot));
    return true;
  }

  async #reviveNow(slot: Slot): Promise<void> {
    const release = slot.mailbox.hold();
    try {
      slot.restarts.length = 0;
      await this.#bootAgain(slot, { message: "restarted on request" });
    } catch (err) {
      const e = toMoltError(err);
      this.#o.log.log("error", "restart on request failed", { service: slot.name, code: e.code, error: e.message });
      slot.detach(e);
      throw e;
    } finally {
      release();
    }
  }

  #tracked<T>(slot: Slot, run: Promise<T>): Promise<T> {
    this.#restarting.set(slot, run);
    const forget = (): void => {
      if (this.#restarting.get(slot) === run) this.#restarting.delete(slot);
    };
    run.then(forget, forget);
    return run;
  }

  /** Boots the version the slot ran again, from its last snapshot (or init), behind the mailbox, and records it in the inventory. */
  async #bootAgain(slot: Slot, why: { code?: string; message: string }): Promise<void> {
    const { inventory, log } = this.#o;
    const bundle = slot.bundle ?? (await this.#bundleOnce(slot.spec.entry));
    const instance = await this.boot(slot, bundle);
    const fresh = await this.bringUp(slot, instance, bundle);
    // The inventory records every crash and restart, beside the swaps.
    inventory.live(instance, {
      entry: bundle.entry,
      parent: bundle.hash,
      via: Via.RESTART,
      ...(why.code === undefined ? {} : { code: why.code }),
      message: `${why.message}; state from ${fresh ? "init" : "the last snapshot"}`,
    });
    inventory.save().catch((err: unknown) => log.log("error", "cannot write the inventory", { error: (err as Error).message }));
    log.log("info", "service restarted", { service: slot.name, version: shortId(bundle.hash), state: fresh ? "init" : "snapshot" });
  }

  async #restart(slot: Slot, reason: MoltError): Promise<void> {
    // Queued messages wait for the new instance.
    const release = slot.mailbox.hold();
    try {
      slot.detach(reason);
      if (this.#o.running()) await this.#replace(slot, reason);
    } finally {
      release();
    }
  }

  async #replace(slot: Slot, reason: MoltError): Promise<void> {
    const { log, restart } = this.#o;
    const now = Date.now();
    while (slot.restarts.length > 0 && (slot.restarts[0] ?? 0) < now - restart.windowMs) slot.restarts.shift();
    if (slot.restarts.length >= restart.maxRestarts) {
      slot.detach(
        new MoltError(ErrorCode.SERVICE_DOWN, `${slot.name} restarted ${restart.maxRestarts} times in ${restart.windowMs} ms; it stays down`, {
          service: slot.name,
          cause: reason,
        }),
      );
      log.log("error", "service down", { service: slot.name, code: reason.code, error: reason.message });
      return;
    }
    slot.restarts.push(now);
    this.#o.onRestart?.(slot);
    log.log("error", "instance died; restarting from its last snapshot", { service: slot.name, code: reason.code, error: reason.message });
    try {
      await this.#bootAgain(slot, { code: reason.code, message: `restarted after ${reason.code}: ${reason.message}` });
    } catch (err) {
      const e = toMoltError(err);
      log.log("error", "restart failed", { service: slot.name, code: e.code, error: e.message });
      slot.detach(e);
    }
  }
}
