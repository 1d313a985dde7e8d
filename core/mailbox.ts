// The kernel-side queue in front of a service. It outlives instances: a
// transfer holds it and points it at another instance, it is never emptied.
// Each queued job looks up its target when it runs, not when it is queued,
// so messages waiting during a pause go to whichever instance is current at
// resume.
//
// Every message passes here, so the queue is written for that: one array
// with a moving head, one promise per message (its caller's), and the next
// job started from the completion of the last, with no events or wrapper
// functions in between (bench/README.md, "The call path").

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
/** A head this far into the array, and past half of it, is cut off (the array is not emptied while messages keep coming). */
const COMPACT_AT = 1024;

interface Job {
  deliver: Deliver<unknown>;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

export class Mailbox {
  readonly service: string;
  readonly bound: number;
  /** Waiting jobs: those from `#head` on. */
  #jobs: (Job | undefined)[] = [];
  #head = 0;
  /** Jobs handed over and not yet settled. */
  #running = 0;
  #closed = false;
  /** Independent reasons to hold deliveries (a swap, a restart, a stalled instance): paused while any is held. */
  readonly #holds = new Set<object>();
  #concurrency: number;
  /** Extra messages in hand beyond `concurrency` (see MAX_WINDOW). */
  #window = 1;
  /** Waiting for no job to be running (drained) or, once closed, for nothing to be left at all. */
  #whenDrained: (() => void)[] = [];
  #whenIdle: (() => void)[] = [];

  constructor(service: string, options: { concurrency: number; bound: number }) {
    this.service = service;
    this.bound = options.bound;
    this.#concurrency = options.concurrency;
  }

  /** Messages waiting, not counting those running (those handed over beyond `concurrency` wait inside the instance). */
  get depth(): number {
    return this.#jobs.length - this.#head + Math.max(0, this.#running - this.#concurrency);
  }

  /** Messages running now. */
  get inFlight(): number {
    return Math.min(this.#running, this.#concurrency);
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
    return new Promise<T>((resolve, reject) => {
      this.#jobs.push({ deliver, resolve: resolve as (value: unknown) => void, reject });
      this.#pump();
    });
  }

  /** Changes how many handlers run at once (a module's own declaration, once its code is loaded). */
  setConcurrency(concurrency: number): void {
    if (concurrency === this.#concurrency) return;
    this.#concurrency = concurrency;
    this.#pump();
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
    return () => {
      if (!this.#holds.delete(token)) return;
      if (this.#holds.size === 0) this.#pump();
    };
  }

  /** Resolves when no delivery is running (queued ones may remain while paused). */
  drained(): Promise<void> {
    if (this.#running === 0) return Promise.resolve();
    return new Promise((resolve) => this.#whenDrained.push(resolve));
  }

  /** Refuses new messages and resolves once everything queued has run. */
  close(): Promise<void> {
    this.#closed = true;
    this.#holds.clear();
    this.#pump();
    if (this.#running === 0 && this.#head === this.#jobs.length) return Promise.resolve();
    return new Promise((resolve) => this.#whenIdle.push(resolve));
  }

  /** Starts waiting jobs while nothing holds the mailbox and the window has room. */
  #pump(): void {
    const limit = this.#concurrency + this.#window - 1;
    while (this.#holds.size === 0 && this.#running < limit && this.#head < this.#jobs.length) {
      const job = this.#jobs[this.#head] as Job;
      this.#jobs[this.#head++] = undefined;
      if (this.#head === this.#jobs.length) {
        this.#jobs = [];
        this.#head = 0;
      } else if (this.#head >= COMPACT_AT && this.#head * 2 >= this.#jobs.length) {
        this.#jobs = this.#jobs.slice(this.#head);
        this.#head = 0;
      }
      this.#start(job);
    }
  }

  #start(job: Job): void {
    this.#running++;
    const t0 = performance.now();
    let delivery: Promise<unknown>;
    try {
      // A native promise passes as it is; anything else is adopted once, so that one job settles once.
      delivery = Promise.resolve(job.deliver());
    } catch (err) {
      delivery = Promise.reject(err);
    }
    delivery.then(
      (value) => {
        job.resolve(value);
        this.#settled(t0);
      },
      (err: unknown) => {
        job.reject(err);
        this.#settled(t0);
      },
    );
  }

  #settled(t0: number): void {
    this.#running--;
    this.#adapt(performance.now() - t0);
    this.#pump();
    if (this.#running === 0) {
      for (const wake of this.#whenDrained.splice(0)) wake();
      if (this.#head === this.#jobs.length) for (const wake of this.#whenIdle.splice(0)) wake();
    }
  }

  #adapt(ms: number): void {
    this.#window = ms < FAST_MS ? Math.min(this.#window * 2, MAX_WINDOW) : Math.max(1, this.#window >> 1);
  }
}
