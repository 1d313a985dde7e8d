// A service's place in the kernel: its resolved config, its mailbox (which
// outlives instances), the instance currently behind the mailbox, and the
// record of how that instance came to be there.

import { replyFailure, type DeliveryKind, type ReplyFailure } from "../protocol/wire.ts";
import type { Bundle } from "./bundle.ts";
import type { ResolvedService } from "./config.ts";
import { ErrorCode, MoltError } from "./errors.ts";
import type { Instance } from "./instance.ts";
import { REDELIVER } from "./deliveries.ts";
import { Mailbox } from "./mailbox.ts";
import type { Shadow } from "./shadow.ts";
import type { ServiceStore } from "./storage.ts";

/**
 * The log of a slot built without one: the kernel's default (pino on
 * stderr), made once for every such slot.
 */

/**
 * Told of every message a service answered or failed: its time from
 * delivery to reply (queueing excluded) and, for a failure, its code and
 * the service at fault. Metrics, the live view and probation subscribe.
 */
export type DeliveryObserver = (ms: number, failure: ReplyFailure | undefined, request: Uint8Array, reply: Uint8Array | undefined, instance: Instance) => void;

export class Slot {
  readonly name: string;
  readonly spec: ResolvedService;
  readonly mailbox: Mailbox;
  bundle: Bundle | undefined;
  /** The bundle before the last attach: where a failed probation goes back to. */
  previousBundle: Bundle | undefined;
  #instance: Instance | undefined;
  /** Why the service is down, when it is. */
  failure: MoltError | undefined;
  startedAt = 0;
  readonly restarts: number[] = [];
  readonly #observers = new Set<DeliveryObserver>();
  /** Down with no replacement on its way (see detach). */
  #down = false;
  /**
   * The instance a transfer is moving state out of: its death is the
   * transfer's to handle (it has, or has not yet, the state), not the
   * supervisor's, so that the two never both attach an instance.
   */
  transferring: Instance | undefined;
  /** Holds the mailbox until the first instance is attached. */
  #unborn: (() => void) | undefined;
  /** Deliveries waiting for the next instance (see #next). */
  readonly #waiting: ((instance: Instance | undefined) => void)[] = [];
  /**
   * Where the service's next instance runs: its config's choice, until an
   * instance dies in a way that leaves something behind in the kernel's
   * process; from then on, in a cell of its own.
   */
  isolation: ResolvedService["isolation"];
  /**
   * The service's durable store, when the runtime has storage: every reply
   * waits until the writes committed before it are on disk (the output
   * gate), so no caller sees what a crash could take back.
   */
  store: ServiceStore | undefined;
  /** Shadow traffic under way in a swap (shadow.ts): the router asks it how the two versions' effects are handled. */
  shadow: Shadow | undefined;

  constructor(spec: ResolvedService) {
    this.name = spec.name;
    this.spec = spec;
    this.isolation = spec.isolation;
    this.mailbox = new Mailbox(spec.name, { concurrency: spec.concurrency, bound: spec.queue });
    // Nothing is delivered until the first instance is live.
    this.#unborn = this.mailbox.hold();
  }

  get instance(): Instance | undefined {
    return this.#instance;
  }

  /** Points the mailbox at a new instance. Queued messages will go to it. */
  attach(instance: Instance, bundle: Bundle): void {
    if (this.bundle !== bundle) {
      this.previousBundle = this.bundle;
      this.bundle = bundle;
    }
    this.#instance = instance;
    this.failure = undefined;
    this.#down = false;
    this.startedAt = Date.now();
    // Without a `concurrency` in the config, the module's own declaration counts (1 if it makes none).
    if (!this.spec.concurrencySet) this.mailbox.setConcurrency(instance.meta.concurrency ?? 1);
    for (const wake of this.#waiting.splice(0)) wake(instance);
    this.#unborn?.();
    this.#unborn = undefined;
  }

  /**
   * Takes the instance away. `final`: no replacement follows (the restart
   * policy gave up, a restart failed, the runtime is stopping), so messages
   * waiting for the next instance fail now instead of waiting for good.
   */
  detach(reason: MoltError, final = false): void {
    this.#instance = undefined;
    this.failure = reason;
    this.#down = final;
    if (final) for (const wake of this.#waiting.splice(0)) wake(undefined);
  }

  /** Whether the service is down with no replacement on its way. */
  get down(): boolean {
    return this.#down;
  }

  /**
   * The instance after `previous`: the current one if it is another, or the
   * next one attached; undefined when the service is down for good.
   */
  #next(previous: Instance): Promise<Instance | undefined> {
    const current = this.#instance;
    if (current !== undefined && current !== previous && !current.disposed) return Promise.resolve(current);
    if (current === undefined && this.#down) {
      return Promise.resolve(undefined);
    }
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  /**
   * Delivers to `instance`; a message it gave back unstarted (it ended
   * first) goes to the next instance, ahead of the messages queued since.
   */
  async #deliverTo(instance: Instance, kind: DeliveryKind, request: Uint8Array, again = false): Promise<Uint8Array | undefined> {
    try {
      return await instance.deliver(kind, request, again ? { again } : undefined);
    } catch (err) {
      if (!(err instanceof MoltError) || err.code !== REDELIVER) throw err;
      const next = await this.#next(instance);
      if (next === undefined) throw this.failure ?? new MoltError(ErrorCode.SERVICE_DOWN, `${this.name} has no live instance`, { service: this.name });
      return this.#deliverTo(next, kind, request, true);
    }
  }

  /**
   * Queues one message. Size is checked against this service's
   * maxMessageBytes before anything is queued, so an oversized message costs
   * the receiver nothing.
   */
  deliver(kind: DeliveryKind, request: Uint8Array): Promise<Uint8Array | undefined> {
    const max = this.spec.limits.maxMessageBytes;
    if (request.byteLength > max) {
      return Promise.reject(
        new MoltError(ErrorCode.MESSAGE_TOO_LARGE, `message of ${request.byteLength} bytes exceeds ${this.name}'s maxMessageBytes (${max})`, {
          service: this.name,
        }),
      );
    }
    const job = this.mailbox.push(() => {
      const instance = this.#instance;
      if (instance === undefined || instance.disposed) {
        throw (
          this.failure ??
          new MoltError(ErrorCode.SERVICE_DOWN, `${this.name} has no live instance`, { service: this.name })
        );
      }
      return this.#observers.size === 0 ? this.#deliverTo(instance, kind, request) : this.#observed(instance, kind, request);
    });
    // The output gate: the reply waits until the writes committed before it
    // are on disk, outside the mailbox, so the next message runs meanwhile
    // and its writes share the same group commit.
    return this.store === undefined ? job : job.then((reply) => this.#durable(reply));
  }

  #durable(reply: Uint8Array | undefined): Uint8Array | undefined | Promise<Uint8Array | undefined> {
    const durable = this.store?.durable();
    return durable === undefined ? reply : durable.then(() => reply);
  }

  /** Tells `observer` of every message from now on, until the returned function is called. */
  observe(observer: DeliveryObserver): () => void {
    this.#observers.add(observer);
    return () => this.#observers.delete(observer);
  }

  /** Delivers and tells the observers; only a reply's header is read here. */
  async #observed(instance: Instance, kind: DeliveryKind, request: Uint8Array): Promise<Uint8Array | undefined> {
    const t0 = performance.now();
    let reply: Uint8Array | undefined;
    try {
      reply = await this.#deliverTo(instance, kind, request);
    } catch (err) {
      const failure = err instanceof MoltError ? { code: err.code, service: err.service ?? null } : { code: ErrorCode.INTERNAL, service: this.name };
      this.#tell(t0, failure, request, undefined, instance);
      throw err;
    }
    this.#tell(t0, reply === undefined ? undefined : replyFailure(reply), request, reply, instance);
    return reply;
  }

  #tell(t0: number, failure: ReplyFailure | undefined, request: Uint8Array, reply: Uint8Array | undefined, instance: Instance): void {
    const ms = performance.now() - t0;
    for (const observer of this.#observers) observer(ms, failure, request, reply, instance);
  }
}
