// The kernel-side queue in front of a service. It outlives instances: a
// swap pauses it and points it at another instance, it is never emptied.
// Each queued job looks up its target when it runs, not when it is queued,
// so messages waiting during a pause go to whichever instance is current at
// resume.

import PQueue from "p-queue";
import { ErrorCode, MoltError } from "./errors.ts";

export type Deliver<T> = () => Promise<T>;

export class Mailbox {
  readonly service: string;
  readonly bound: number;
  readonly #queue: PQueue;
  #closed = false;
  /** Independent reasons to hold deliveries (a swap, a restart, a stalled instance): paused while any is held. */
  readonly #holds = new Set<object>();
  #paused: (() => void) | undefined;

  constructor(service: string, options: { concurrency: number; bound: number }) {
    this.service = service;
    this.bound = options.bound;
    this.#queue = new PQueue({ concurrency: options.concurrency });
  }

  /** Messages waiting, not counting those running. */
  get depth(): number {
    return this.#queue.size;
  }

  /** Messages running now. */
  get inFlight(): number {
    return this.#queue.pending;
  }

  get paused(): boolean {
    return this.#holds.size > 0;
  }

  /**
   * Queues a delivery. Past the bound the message is refused at once with
   * ERR_MAILBOX_FULL: back-pressure the sender can see, not unbounded memory.
   */
  push<T>(deliver: Deliver<T>): Promise<T> {
    if (this.#closed) {
      return Promise.reject(new MoltError(ErrorCode.STOPPING, `${this.service} is stopping`, { service: this.service }));
    }
    if (this.#queue.size >= this.bound) {
      return Promise.reject(
        new MoltError(ErrorCode.MAILBOX_FULL, `mailbox of ${this.service} is full (${this.bound} waiting)`, {
          service: this.service,
        }),
      );
    }
    return this.#queue.add(deliver);
  }

  /**
   * Holds deliveries until the returned function is called; queued messages
   * stay queued. Holds are independent: the mailbox runs again only when
   * every hold is released, so a restart and a swap cannot release each
   * other's pause.
   */
  hold(): () => void {
    const token = {};
    this.#holds.add(token);
    this.#queue.pause();
    return () => {
      if (!this.#holds.delete(token)) return;
      if (this.#holds.size === 0) this.#queue.start();
    };
  }

  /** Stops starting new deliveries (the swap's and start-up's hold); queued ones stay queued. */
  pause(): void {
    this.#paused ??= this.hold();
  }

  /** Resolves when no delivery is running (queued ones may remain while paused). */
  async drained(): Promise<void> {
    await this.#queue.onPendingZero();
  }

  /** Releases what pause() held. */
  resume(): void {
    const release = this.#paused;
    this.#paused = undefined;
    release?.();
  }

  /** Refuses new messages and resolves once everything queued has run. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#holds.clear();
    this.#paused = undefined;
    this.#queue.start();
    await this.#queue.onIdle();
  }
}
