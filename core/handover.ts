// Handing every service over to another runtime (a kernel upgrade): the
// runtime's own transfer, for all services at once. The old runtime goes
// quiet as a whole (nothing new enters from outside, everything running or
// queued finishes, calls between services included), then holds every
// mailbox and dumps every service with its `stop`. The states leave the
// process; until the new runtime has taken them, this one can still go back
// to serving as it was (`resume`): every instance started again, every
// mailbox released.

import { ErrorCode, MoltError, toMoltError } from "./errors.ts";
import type { Instance } from "./instance.ts";
import type { Slot } from "./slot.ts";
import type { State } from "./transfer.ts";

/** A service's state as it leaves one runtime for the next. */
export interface HandedState {
  service: string;
  version: string;
  stateVersion: number;
  dump: Uint8Array;
}

/** Hands a service whose instance cannot start again to the supervisor, with the state it dumped. */
type Lost = (slot: Slot, reason: MoltError, state: State | undefined) => void;

interface Held {
  slot: Slot;
  release: () => void;
  instance: Instance | undefined;
  state?: State;
}

export class HandOut {
  readonly #held: Held[];
  readonly states: HandedState[];
  readonly drainMs: number;
  readonly dumpMs: number;

  private constructor(held: Held[], states: HandedState[], drainMs: number, dumpMs: number) {
    this.#held = held;
    this.states = states;
    this.drainMs = drainMs;
    this.dumpMs = dumpMs;
  }

  /**
   * Waits until no service has a message queued or running, then holds
   * every mailbox and dumps every service (running `stop`). Whoever feeds
   * the runtime from outside (HTTP, the fleet) must have stopped first.
   * Rejects with ERR_KERNEL_UPGRADE_DRAIN past `deadlineMs`, or
   * ERR_KERNEL_UPGRADE_DUMP when a service cannot dump; either way every
   * service serves again as before.
   */
  static async begin(slots: readonly Slot[], deadlineMs: number, lost: Lost): Promise<HandOut> {
    const started = performance.now();
    const deadline = started + deadlineMs;
    let held: Held[] = [];
    // A timer inside a service may queue a message between "idle" and the
    // hold: then the hold is let go, and the wait goes on.
    for (;;) {
      await quiet(slots, deadline);
      held = slots.map((slot) => ({ slot, release: slot.mailbox.hold(), instance: slot.instance }));
      if (held.every(({ slot }) => slot.mailbox.depth === 0 && slot.mailbox.inFlight === 0)) break;
      for (const h of held) h.release();
      if (performance.now() > deadline) throw new MoltError(ErrorCode.KERNEL_UPGRADE_DRAIN, `services were still busy after ${deadlineMs} ms`);
    }
    const drained = performance.now();
    const states: HandedState[] = [];
    // Every dump settles before anything is decided: one that fails must not leave another stopped and unseen.
    const dumped = await Promise.allSettled(
      held.map(async (h) => {
        const instance = h.instance;
        if (instance === undefined) return;
        // From here on, the instance dying is this hand-out's to handle, not the supervisor's.
        h.slot.transferring = instance;
        const dump = await instance.dump({ stop: true, timeoutMs: Math.max(1, Math.floor(deadline - performance.now())) });
        h.state = { dump, stateVersion: instance.meta.stateVersion };
        states.push({ service: h.slot.name, version: instance.versionId, stateVersion: instance.meta.stateVersion, dump });
      }),
    );
    const failed = dumped.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed !== undefined) {
      const e = toMoltError(failed.reason);
      await new HandOut(held, states, 0, 0).resume(lost);
      throw new MoltError(ErrorCode.KERNEL_UPGRADE_DUMP, `a service could not dump its state: ${e.message}`, { cause: e, ...(e.service === undefined ? {} : { service: e.service }) });
    }
    return new HandOut(held, states, drained - started, performance.now() - drained);
  }

  /**
   * The new runtime did not take over: every service stopped for the dump
   * starts again and its mailbox is released. One that cannot start is
   * `lost` (replaced by the supervisor from the state it dumped).
   */
  async resume(lost: Lost): Promise<void> {
    await Promise.all(
      this.#held.map(async (h) => {
        const { slot, instance } = h;
        slot.transferring = undefined;
        if (instance !== undefined && h.state !== undefined && slot.instance === instance) {
          try {
            if (instance.disposed) throw new MoltError(ErrorCode.SERVICE_DOWN, `${slot.name}'s instance ended during the hand-out`);
            await instance.start();
          } catch (err) {
            const e = toMoltError(err);
            instance.dispose();
            lost(slot, new MoltError(e.code, `${slot.name} could not start again after a refused kernel upgrade: ${e.message}`, { service: slot.name, cause: e }), h.state);
          }
        }
        h.release();
      }),
    );
  }

  /** The new runtime serves: the instances here are disposed and the mailboxes stay held for good. */
  retire(): void {
    for (const { slot, instance } of this.#held) {
      slot.transferring = undefined;
      instance?.dispose();
    }
  }
}

/** Resolves once no service has a message queued or running; rejects past `deadline`. */
async function quiet(slots: readonly Slot[], deadline: number): Promise<void> {
  while (slots.some((slot) => slot.mailbox.depth > 0 || slot.mailbox.inFlight > 0)) {
    if (performance.now() > deadline) throw new MoltError(ErrorCode.KERNEL_UPGRADE_DRAIN, "services were still busy at the hand-out's deadline");
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}
