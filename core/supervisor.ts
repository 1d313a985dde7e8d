// Supervision: bringing instances of a service up and keeping them up. An
// instance boots at a version, takes its state (the last snapshot if its
// code can restore it, else init), starts, and goes behind the mailbox. One
// that dies on its own is replaced the same way under the restart policy
// (at most `maxRestarts` in `windowMs`, as OTP supervisors count), its
// queued messages kept; past the policy the service stays down.

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

export class Supervisor {
  readonly #o: SupervisorOptions;

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
    const instance = await this.#o.boot(
      { service: slot.spec, code: bundle.code, versionId: bundle.hash, env: grantedEnv(slot.spec.permissions) },
      // Only the instance behind the mailbox is restarted when it dies; a swap handles its own.
      this.#o.router.bridge(slot, (reason) => {
        if (holder.instance !== undefined && holder.instance === slot.instance) void this.#restart(slot, reason);
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
      const bundle = slot.bundle as Bundle;
      const instance = await this.boot(slot, bundle);
      const fresh = await this.bringUp(slot, instance, bundle);
      // The inventory records every crash and restart, beside the swaps.
      const { inventory } = this.#o;
      inventory.live(instance, {
        entry: bundle.entry,
        parent: bundle.hash,
        via: Via.RESTART,
        code: reason.code,
        message: `restarted after ${reason.code}: ${reason.message}; state from ${fresh ? "init" : "the last snapshot"}`,
      });
      inventory.save().catch((err: unknown) => log.log("error", "cannot write the inventory", { error: (err as Error).message }));
      log.log("info", "service restarted", { service: slot.name, version: shortId(bundle.hash), state: fresh ? "init" : "snapshot" });
    } catch (err) {
      const e = toMoltError(err);
      log.log("error", "restart failed", { service: slot.name, code: e.code, error: e.message });
      slot.detach(e);
    }
  }
}
