// The kernel-side queue in front of a service. It outlives instances: a
// transfer holds it and points it at another instance, it is never emptied.
// Each queued job looks up its target when it runs, not when it is queued,
// so messages waiting during a pause go to whichever instance is current at
// resume.

import PQueue from "p-queue";
import { ErrorCode, MoltError } from "./errors.ts";

export type Deliver<T> = () => Promise<T>;

/**
 * How many messages beyond `concurrency` a mailbox hands to its instance at
 * once, at most. The instance runs them in order, `concurrency` at a time,
 * and takes them in one crossing (see deliveries.ts): more in hand, fewer
 * crossings. A message handed over early waits inside the instance instead
 * of here, and its deadline runs meanwhile, so the window opens only while
 * messages are answered fast and closes as soon as they are not.
 */
const MAX_WINDOW = 128;
/** Answers slower than this (queueing inside the instance included) close the window. */
const FAST_MS = 2;

export class Mailbox {
  readonly service: string;
  readonly bound: number;
  readonly #queue: PQueue;
  #closed = false;
  /** Independent reasons to hold deliveries (a swap, a restart, a stalled instance): paused while any is held. */
  readonly #holds = new Set<object>();
  #concurrency: number;
  /** Extra messages in hand beyond `concurrency` (see MAX_WINDOW). */
  #window = 1;

  constructor(service: string, options: { concurrency: number; bound: number }) {
    this.service = service;
    this.bound = options.bound;
    this.#concurrency = options.concurrency;
    this.#queue = new PQueue({ concurrency: options.concurrency });
  }

  /** Messages waiting, not counting those running (those handed over beyond `concurrency` wait inside the instance). */
  get depth(): number {
    return this.#queue.size + Math.max(0, this.#queue.pending - this.#concurrency);
  }

  /** Messages running now. */
  get inFlight(): number {
    return Math.min(this.#queue.pending, this.#concurrency);
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
    if (this.depth >= this.bound) {
      return Promise.reject(
        new MoltError(ErrorCode.MAILBOX_FULL, `mailbox of ${this.service} is full (${this.bound} waiting)`, {
          service: this.service,
        }),
      );
    }
    return this.#queue.add(async () => {
      const t0 = performance.now();
      try {
        return await deliver();
      } finally {
        this.#adapt(performance.now() - t0);
      }
    });
  }

  /** Changes how many handlers run at once (a module's own declaration, once its code is loaded). */
  setConcurrency(concurrency: number): void {
    if (concurrency === this.#concurrency) return;
    this.#concurrency = concurrency;
    this.#queue.concurrency = concurrency + this.#window - 1;
  }

  #adapt(ms: number): void {
    const window = ms < FAST_MS ? Math.min(this.#window * 2, MAX_WINDOW) : Math.max(1, this.#window >> 1);
    if (window === this.#window) return;
    this.#window = window;
    this.#queue.concurrency = this.#concurrency + window - 1;
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

  /** Resolves when no delivery is running (queued ones may remain while paused). */
  async drained(): Promise<void> {
    await this.#queue.onPendingZero();
  }

  /** Refuses new messages and resolves once everything queued has run. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#holds.clear();
    this.#queue.start();
    await this.#queue.onIdle();
  }
}
