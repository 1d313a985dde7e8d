// Supervision: bringing instances of a service up and keeping them up. An
// instance boots at a version, takes its state (the last snapshot if its
// code can restore it, else init), starts, and goes behind the mailbox. One
// that dies on its own is replaced the same way under the restart policy
// (at most `maxRestarts` in `windowMs`, as OTP supervisors count), its
// queued messages kept; past the policy the service stays down, and its
// messages fail with ERR_SERVICE_DOWN, until an operator brings it back
// (`revive`, behind `molt restart`).

import { bundleService, shortId, type Bundle } from "./bundle.ts";
import { ErrorCode, MoltError, toMoltError } from "./errors.ts";
import type { Boot, Instance } from "./instance.ts";
import { Via, type Inventory } from "./inventory.ts";
import type { KernelLog } from "./log.ts";
import { grantedEnv } from "./permissions.ts";
import type { Router } from "./router.ts";
import type { Slot } from "./slot.ts";
import type { SnapshotStore } from "./snapshots.ts";
import { checkStateVersion } from "./swap-prepare.ts";
import type { State } from "./transfer.ts";

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

/** A service booted by `prepare`: its code loaded, no state, not behind the mailbox. */
export interface Prepared {
  bundle: Bundle;
  instance: Instance;
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
    await this.goLive(slot, await this.prepare(slot));
  }

  /**
   * The first half of a launch, which writes nothing: the version the
   * inventory says runs, bundled and booted, with no state yet. A runtime
   * that takes over from another (an upgrade, a standby) prepares before
   * the blackout and goes live inside it.
   */
  async prepare(slot: Slot): Promise<Prepared> {
    const { inventory, log } = this.#o;
    const current = inventory.current(slot.name);
    let bundle: Bundle | undefined;
    if (current !== undefined) {
      try {
        bundle = this.#o.snapshots.loadBundle(current.version, current.entry);
      } catch (err) {
        log.log("error", "cannot load the recorded version; starting from the config's entry", {
          service: slot.name,
          version: shortId(current.version),
          error: (err as Error).message,
        });
      }
    }
    bundle ??= await this.#bundleOnce(slot.spec.entry);
    return { bundle, instance: await this.boot(slot, bundle) };
  }

  /**
   * The second half: the prepared instance takes `state` (else the last
   * snapshot, else init), starts and goes behind the mailbox. An instance
   * prepared at a version the inventory no longer says runs (it changed
   * since: a standby prepared long ago), or one that died meanwhile, is
   * prepared again first.
   */
  async goLive(slot: Slot, prepared: Prepared, state?: State & { version?: string }): Promise<void> {
    const { inventory, snapshots, log } = this.#o;
    const current = inventory.current(slot.name);
    const wanted = state?.version ?? current?.version;
    let { bundle, instance } = prepared;
    if (instance.disposed || (wanted !== undefined && wanted !== bundle.hash)) {
      instance.dispose();
      ({ bundle, instance } = await this.prepare(slot));
    }
    const fresh = await this.bringUp(slot, instance, bundle, state);
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
      state: state !== undefined ? "handed over" : fresh ? "init" : "snapshot",
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
        // An instance a transfer is moving state out of is the transfer's to replace (transfer.ts).
        if (holder.instance !== undefined && holder.instance === slot.instance && holder.instance !== slot.transferring) {
          void this.#tracked(slot, this.#restart(slot, reason));
        }
      }, () => holder.instance),
    );
    holder.instance = instance;
    return instance;
  }

  /**
   * Gives a booted instance its state (`state` when given, else the last
   * snapshot if its code can take it, else init), starts it and puts it
   * behind the mailbox. Returns true for fresh (init) state. The mailbox
   * runs again when whoever holds it lets go, never because of this.
   */
  async bringUp(slot: Slot, instance: Instance, bundle: Bundle, state?: State): Promise<boolean> {
    let fresh = true;
    try {
      const from = state ?? this.#o.snapshots.read(slot.name);
      if (from !== undefined && checkStateVersion(instance, from.stateVersion) === undefined) {
        await instance.restore(from.dump, from.stateVersion);
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
    return fresh;
  }

  /**
   * An instance stopped behind the mailbox that cannot start again (a
   * transfer's `from`, disposed by it): replaced like one that died, from
   * `state` when the transfer had dumped it, so nothing it held is lost.
   */
  lost(slot: Slot, reason: MoltError, state: State | undefined): void {
    // Written first: if the replacement fails too, `molt restart` resumes from this state, not an older one.
    const instance = slot.instance;
    if (state !== undefined && instance !== undefined) {
      this.#o.snapshots
        .keep(slot, instance, state.dump, state.stateVersion)
        .catch((err: unknown) => this.#o.log.log("error", "cannot write the state of a lost instance", { service: slot.name, error: String(err) }));
    }
    void this.#tracked(slot, this.#restart(slot, reason, state));
  }

  /** Resolves once no restart of the service is under way (for probation, which judges the version, not one instance). */
  async settled(slot: Slot): Promise<void> {
    for (let running = this.#restarting.get(slot); running !== undefined; running = this.#restarting.get(slot)) {
      await running.catch(() => undefined);
    }
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
      slot.detach(e, true);
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

  /** Boots the version the slot ran again, from `state` or its last snapshot (or init), behind the mailbox, and records it in the inventory. */
  async #bootAgain(slot: Slot, why: { code?: string; message: string }, state?: State): Promise<void> {
    const { inventory, log } = this.#o;
    const bundle = slot.bundle ?? (await this.#bundleOnce(slot.spec.entry));
    const instance = await this.boot(slot, bundle);
    const fresh = await this.bringUp(slot, instance, bundle, state);
    // The inventory records every crash and restart, beside the swaps.
    inventory.live(instance, {
      entry: bundle.entry,
      parent: bundle.hash,
      via: Via.RESTART,
      ...(why.code === undefined ? {} : { code: why.code }),
      message: `${why.message}; state from ${fresh ? "init" : state !== undefined ? "its own last dump" : "the last snapshot"}`,
    });
    inventory.save().catch((err: unknown) => log.log("error", "cannot write the inventory", { error: (err as Error).message }));
    log.log("info", "service restarted", { service: slot.name, version: shortId(bundle.hash), state: fresh ? "init" : "snapshot" });
  }

  async #restart(slot: Slot, reason: MoltError, state?: State): Promise<void> {
    // Queued messages wait for the new instance.
    const release = slot.mailbox.hold();
    try {
      // While stopping nothing is restarted: messages waiting for a next instance fail now.
      slot.detach(reason, !this.#o.running());
      if (this.#o.running()) await this.#replace(slot, reason, state);
    } finally {
      release();
    }
  }

  async #replace(slot: Slot, reason: MoltError, state?: State): Promise<void> {
    const { log, restart } = this.#o;
    const now = Date.now();
    while (slot.restarts.length > 0 && (slot.restarts[0] ?? 0) < now - restart.windowMs) slot.restarts.shift();
    if (slot.restarts.length >= restart.maxRestarts) {
      slot.detach(
        new MoltError(ErrorCode.SERVICE_DOWN, `${slot.name} restarted ${restart.maxRestarts} times in ${restart.windowMs} ms; it stays down`, {
          service: slot.name,
          cause: reason,
        }),
        true,
      );
      log.log("error", "service down", { service: slot.name, code: reason.code, error: reason.message });
      return;
    }
    slot.restarts.push(now);
    this.#o.onRestart?.(slot);
    log.log("error", "instance died; restarting from its last snapshot", { service: slot.name, code: reason.code, error: reason.message });
    try {
      await this.#bootAgain(slot, { code: reason.code, message: `restarted after ${reason.code}: ${reason.message}` }, state);
    } catch (err) {
      const e = toMoltError(err);
      log.log("error", "restart failed", { service: slot.name, code: e.code, error: e.message });
      slot.detach(e, true);
    }
  }
}
