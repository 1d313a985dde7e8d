// A runtime's end of the keeper's IPC channel (keeper/protocol.ts): asks the
// keeper for its listeners and takes the connections it hands over, waits to
// be activated (with the states of the runtime before it, on an upgrade),
// and plays the old runtime's part in an upgrade: go quiet, hand the states
// out, and either serve again (the new runtime failed) or forward what is
// still on its connections to the new one until they close.

import type { Socket } from "node:net";
import type { ErrorJson, FromRuntime, HandedState, ListenerName, ListenerSpec, ToRuntime, UpgradePhase, Via } from "../keeper/protocol.ts";
import { KEEPER_ENV } from "../keeper/protocol.ts";
import type { KernelSettings } from "../keeper/protocol.ts";
import { ErrorCode, MoltError, toMoltError } from "../core/errors.ts";
import { quarantinedIsolates } from "../core/isolate-host.ts";

type Message = ToRuntime;

/** The activation the keeper asked for: how this runtime came to be, and the states handed to it, if any. */
export interface Activation {
  via: Via;
  states: HandedState[];
  /** When nothing was served any more (epoch ms), for the blackout; null for a start. */
  since: number | null;
}

/** What the old runtime does during an upgrade, given by the composition root. */
export interface HandOutSteps {
  /** Stop taking work from outside (HTTP, the fleet), drain, dump: the states to hand out. */
  handOut(onPhase: (phase: UpgradePhase, ms: number) => void): Promise<HandedState[]>;
  /** The new runtime failed: serve again as before. */
  resume(): Promise<void>;
  /** The new runtime serves: forward what remains, then exit. */
  retire(forward: (service: string, method: string, payload: unknown) => Promise<unknown>): void;
}

export class KeeperLink {
  readonly #waiters = new Set<(m: Message) => boolean>();
  readonly #accept = new Map<ListenerName, (socket: Socket) => void>();
  #serve: ((service: string, method: string, payload: unknown) => Promise<unknown>) | undefined;
  readonly #forwards = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  #forwardIds = 0;
  #steps: HandOutSteps | undefined;

  /** The link when a keeper started this process, else undefined (`molt dev`, tests). */
  static open(): KeeperLink | undefined {
    if (process.env[KEEPER_ENV] !== "1" || process.send === undefined) return undefined;
    return new KeeperLink();
  }

  private constructor() {
    // The keeper gone (even by SIGKILL): its sockets are gone, and so is the reason to run.
    // After a quarantine a normal exit waits forever on isolated-vm's parked thread (see cli/run.ts, leave): kill instead.
    process.on("disconnect", () => (quarantinedIsolates() === 0 ? process.exit(1) : process.kill(process.pid, "SIGKILL")));
    process.on("message", (message: Message, handle?: Socket) => this.#receive(message, handle));
  }

  #send(message: Exclude<FromRuntime, { exitCode: number }>): void {
    process.send?.(message);
  }

  #receive(message: Message, handle: Socket | undefined): void {
    if (typeof message !== "object" || message === null) return;
    if (message.t === "conn") {
      const accept = this.#accept.get(message.listener);
      if (accept === undefined || handle === undefined) handle?.destroy();
      else accept(handle);
      return;
    }
    if (message.t === "forward") {
      void this.#answer(message);
      return;
    }
    if (message.t === "forwarded") {
      const waiting = this.#forwards.get(message.id);
      this.#forwards.delete(message.id);
      if (waiting === undefined) return;
      if (message.ok) waiting.resolve(message.value);
      else waiting.reject(wireError(message.value));
      return;
    }
    for (const waiter of [...this.#waiters]) if (waiter(message)) this.#waiters.delete(waiter);
  }

  /** The next message of one of the kinds `types`; the waiter goes once it has matched. */
  #next<T extends Message["t"]>(...types: T[]): Promise<Extract<Message, { t: T }>> {
    return new Promise((resolve) => {
      this.#waiters.add((m) => {
        if (!(types as string[]).includes(m.t)) return false;
        resolve(m as Extract<Message, { t: T }>);
        return true;
      });
    });
  }

  /**
   * Asks the keeper for the listeners (bound once, held across runtimes):
   * resolves with each one's URL, or rejects as a listen would, with the
   * errno code (EADDRINUSE…) for the caller to explain.
   */
  async listen(listeners: ListenerSpec[], kernel: KernelSettings): Promise<Map<ListenerName, string>> {
    const answer = this.#next("listening", "listen-failed");
    this.#send({ t: "hello", listeners, kernel });
    const got = await answer;
    if (got.t === "listen-failed") {
      const err = Object.assign(new Error(got.message), { code: got.code });
      throw Object.assign(err, { listener: got.name });
    }
    return new Map(got.listeners.map((l) => [l.name, l.url]));
  }

  /** Connections the keeper hands over on `listener` go to `accept`. */
  onConnection(listener: ListenerName, accept: (socket: Socket) => void): void {
    this.#accept.set(listener, accept);
  }

  /** Says every service is booted, and waits for the keeper's word to take state and serve. */
  async prepared(): Promise<Activation> {
    const activation = this.#next("activate");
    this.#send({ t: "prepared" });
    const { via, states, since } = await activation;
    return { via, states: states ?? [], since };
  }

  /** Serving: the keeper hands connections over from now on, and forwarded requests go to `serve`. */
  ready(restoreMs: number, kernel: { version: string; semver: string }, serve: (service: string, method: string, payload: unknown) => Promise<unknown>): void {
    this.#serve = serve;
    this.#send({ t: "ready", restoreMs, kernel });
  }

  /** Activation failed: the keeper gives the old runtime back its services. */
  activateFailed(err: unknown): Promise<void> {
    const e = toMoltError(err);
    return new Promise((resolve) => {
      if (process.send === undefined) return resolve();
      process.send({ t: "activate-failed", error: { code: e.code, message: e.message } } satisfies FromRuntime, () => resolve());
    });
  }

  async #answer(message: Extract<Message, { t: "forward" }>): Promise<void> {
    const serve = this.#serve;
    try {
      if (serve === undefined) throw new MoltError(ErrorCode.STOPPING, "this runtime does not serve yet");
      const value = await serve(message.service, message.method, message.payload);
      this.#send({ t: "forwarded", id: message.id, ok: true, value });
    } catch (err) {
      const e = toMoltError(err);
      this.#send({ t: "forwarded", id: message.id, ok: false, value: e.toJSON() });
    }
  }

  /** A request the old runtime still holds, answered by the new one through the keeper. */
  forward(service: string, method: string, payload: unknown): Promise<unknown> {
    const id = ++this.#forwardIds;
    return new Promise((resolve, reject) => {
      this.#forwards.set(id, { resolve, reject });
      this.#send({ t: "forward", id, service, method, payload });
    });
  }

  /**
   * The old runtime's part of an upgrade (behind `molt upgrade`): asks the
   * keeper, which boots the new runtime, then says when to hand out. Phases
   * are reported as they end. Resolves with the new runtime's pid; rejects
   * with ERR_KERNEL_UPGRADE_<PHASE> once this runtime serves again.
   */
  async upgrade(steps: HandOutSteps, onPhase: (phase: UpgradePhase, ms: number) => void): Promise<{ pid: number; kernel: { version: string; semver: string }; blackoutMs: number }> {
    if (this.#steps !== undefined) throw new MoltError(ErrorCode.KERNEL_UPGRADE_BUSY, "an upgrade is already under way");
    this.#steps = steps;
    const phases = (m: Message): boolean => {
      if (m.t === "phase") onPhase(m.phase, m.ms);
      return false;
    };
    this.#waiters.add(phases);
    let heldAt: number | undefined;
    const outcome = this.#next("handed", "resume");
    // The keeper may end the upgrade before it ever asks for the hand-out (the new runtime did not boot).
    let handOut: Promise<void> | undefined;
    const onHandOut = (m: Message): boolean => {
      if (m.t !== "hand-out") return false;
      heldAt = performance.now();
      handOut = steps.handOut(onPhase).then(
        // Bytes travel as the structured clone copies them.
        (states) => this.#send({ t: "states", states }),
        (err: unknown) => {
          const e = toMoltError(err);
          this.#send({ t: "hand-out-failed", phase: phaseOf(e.code), error: { code: e.code, message: e.message } });
        },
      );
      return true;
    };
    this.#waiters.add(onHandOut);
    this.#send({ t: "upgrade" });
    try {
      const end = await outcome;
      // The blackout ends when the keeper says the new runtime serves, not once this one has cleaned up.
      const blackoutMs = heldAt === undefined ? 0 : performance.now() - heldAt;
      await handOut;
      if (end.t === "resume") {
        if (heldAt !== undefined) await steps.resume();
        throw new MoltError(end.error.code, `${end.phase}: ${end.error.message}`);
      }
      for (const { phase, ms } of end.phases) onPhase(phase, ms);
      steps.retire((service, method, payload) => this.forward(service, method, payload));
      return { pid: end.pid, kernel: end.kernel, blackoutMs };
    } finally {
      this.#waiters.delete(phases);
      this.#waiters.delete(onHandOut);
      this.#steps = undefined;
    }
  }
}

function phaseOf(code: string): UpgradePhase {
  const phase = code.startsWith("ERR_KERNEL_UPGRADE_") ? code.slice("ERR_KERNEL_UPGRADE_".length).toLowerCase() : "dump";
  return (["boot", "drain", "dump", "handover", "restore", "sockets"] as const).find((p) => p === phase) ?? "dump";
}

function wireError(value: unknown): MoltError {
  const v = (typeof value === "object" && value !== null ? value : {}) as Partial<ErrorJson> & { service?: unknown };
  return new MoltError(typeof v.code === "string" ? v.code : ErrorCode.INTERNAL, typeof v.message === "string" ? v.message : "forwarded request failed", {
    ...(typeof v.service === "string" ? { service: v.service } : {}),
  });
}
