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
    return this.#queue.isPaused;
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

  /** Stops starting new deliveries; queued ones stay queued. */
  pause(): void {
    this.#queue.pause();
  }

  /** Resolves when no delivery is running (queued ones may remain while paused). */
  async drained(): Promise<void> {
    await this.#queue.onPendingZero();
  }

  resume(): void {
    this.#queue.start();
  }

  /** Refuses new messages and resolves once everything queued has run. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#queue.start();
    await this.#queue.onIdle();
  }
}
