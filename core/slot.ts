// A service's place in the kernel: its resolved config, its mailbox (which
// outlives instances), the instance currently behind the mailbox, and the
// record of how that instance came to be there.

import { replyIsError, type DeliveryKind } from "../protocol/wire.ts";
import type { Bundle } from "./bundle.ts";
import type { ResolvedService } from "./config.ts";
import { ErrorCode, MoltError } from "./errors.ts";
import type { Instance } from "./instance.ts";
import { REDELIVER } from "./deliveries.ts";
import { Mailbox } from "./mailbox.ts";
import type { Metrics } from "./metrics.ts";
import { decodeReply } from "./wire.ts";

interface ErrorWatch {
  max: number;
  count: number;
  last: MoltError | undefined;
  resolve: (failed: { count: number; last: MoltError } | undefined) => void;
}

export class Slot {
  readonly name: string;
  readonly spec: ResolvedService;
  readonly mailbox: Mailbox;
  bundle: Bundle | undefined;
  /** The bundle before the last attach: where a failed probation goes back to. */
  previousBundle: Bundle | undefined;
  #instance: Instance | undefined;
  #watch: ErrorWatch | undefined;
  /** Why the service is down, when it is. */
  failure: MoltError | undefined;
  startedAt = 0;
  /** Latencies (ms) and errors since the live view last looked; kept only while someone watches (see live.ts). */
  window: { latencies: number[]; errors: number } | undefined;
  /** Size of the last dump taken, to judge whether a swap's rehearsal is worth it. */
  lastDumpBytes: number | undefined;
  readonly restarts: number[] = [];
  /** Deliveries waiting for the next instance (see #next). */
  readonly #waiting: ((instance: Instance | undefined) => void)[] = [];
  /**
   * Where the service's next instance runs: its config's choice, until an
   * instance dies in a way that leaves something behind in the kernel's
   * process; from then on, in a cell of its own.
   */
  isolation: ResolvedService["isolation"];

  readonly #metrics: Metrics | undefined;
  readonly #ok: { inc(): void } | undefined;
  readonly #error: { inc(): void } | undefined;
  readonly #latency: { observe(v: number): void } | undefined;

  constructor(spec: ResolvedService, metrics?: Metrics) {
    this.name = spec.name;
    this.spec = spec;
    this.isolation = spec.isolation;
    this.#metrics = metrics;
    // Label children bound once: the hot path increments, it does not hash labels.
    this.#ok = metrics?.requests.labels(spec.name, "ok");
    this.#error = metrics?.requests.labels(spec.name, "error");
    this.#latency = metrics?.latency.labels(spec.name);
    this.mailbox = new Mailbox(spec.name, { concurrency: spec.concurrency, bound: spec.queue });
    // Nothing is delivered until the first instance is live.
    this.mailbox.pause();
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
    this.startedAt = Date.now();
    // Without a `concurrency` in the config, the module's own declaration counts (1 if it makes none).
    if (!this.spec.concurrencySet) this.mailbox.setConcurrency(instance.meta.concurrency ?? 1);
    for (const wake of this.#waiting.splice(0)) wake(instance);
  }

  detach(reason: MoltError): void {
    this.#instance = undefined;
    this.failure = reason;
    // Down for good (not on its way back): nobody should wait for the next instance.
    if (reason.code === ErrorCode.SERVICE_DOWN || reason.code === ErrorCode.STOPPING) for (const wake of this.#waiting.splice(0)) wake(undefined);
  }

  /**
   * The instance after `previous`: the current one if it is another, or the
   * next one attached; undefined when the service is down for good.
   */
  #next(previous: Instance): Promise<Instance | undefined> {
    const current = this.#instance;
    if (current !== undefined && current !== previous && !current.disposed) return Promise.resolve(current);
    if (current === undefined && this.failure !== undefined && (this.failure.code === ErrorCode.SERVICE_DOWN || this.failure.code === ErrorCode.STOPPING)) {
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
    return this.mailbox.push(() => {
      const instance = this.#instance;
      if (instance === undefined || instance.disposed) {
        throw (
          this.failure ??
          new MoltError(ErrorCode.SERVICE_DOWN, `${this.name} has no live instance`, { service: this.name })
        );
      }
      if (this.#watch === undefined && this.#metrics === undefined) return this.#deliverTo(instance, kind, request);
      return this.#observed(instance, kind, request);
    });
  }

  /**
   * Counts this service's own failures (errors it raised, timeouts, crashes)
   * for `ms`; resolves early with the count once it passes `max`, or with
   * undefined when the window ends. Used for a new version's probation.
   */
  watchErrors(ms: number, max: number): Promise<{ count: number; last: MoltError } | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(undefined), ms);
      const finish = (failed: { count: number; last: MoltError } | undefined): void => {
        clearTimeout(timer);
        this.#watch = undefined;
        resolve(failed);
      };
      this.#watch = { max, count: 0, last: undefined, resolve: finish };
    });
  }

  /** Delivers and accounts: latency, outcome, error codes, and errors counted against a version on probation. */
  async #observed(instance: Instance, kind: DeliveryKind, request: Uint8Array): Promise<Uint8Array | undefined> {
    const t0 = performance.now();
    let reply: Uint8Array | undefined;
    try {
      reply = await this.#deliverTo(instance, kind, request);
    } catch (err) {
      this.#account(t0, err instanceof MoltError ? err : new MoltError(ErrorCode.INTERNAL, String(err)));
      throw err;
    }
    let failure: MoltError | undefined;
    if (reply !== undefined && replyIsError(reply)) {
      try {
        decodeReply(reply);
      } catch (err) {
        failure = err instanceof MoltError ? err : new MoltError(ErrorCode.BAD_MESSAGE, String(err));
      }
    }
    this.#account(t0, failure);
    return reply;
  }

  #account(t0: number, failure: MoltError | undefined): void {
    const ms = performance.now() - t0;
    this.#latency?.observe(ms / 1000);
    if (this.window !== undefined) {
      this.window.latencies.push(ms);
      if (failure !== undefined) this.window.errors++;
    }
    if (failure === undefined) {
      this.#ok?.inc();
      return;
    }
    this.#error?.inc();
    this.#metrics?.errors.inc({ service: this.name, code: failure.code });
    // Errors passed on from a callee are the callee's failures, not this version's.
    if (failure.service === undefined || failure.service === this.name) this.#failed(failure);
  }

  #failed(err: MoltError): void {
    const watch = this.#watch;
    if (watch === undefined) return;
    watch.count++;
    watch.last = err;
    if (watch.count > watch.max) watch.resolve({ count: watch.count, last: err });
  }
}
