// Messages on their way into one instance's isolate, batched: every message
// handed over in one turn of the kernel's event loop crosses in one call, and
// replies come back the same way (guest/runtime.ts, deliverBatch). Crossing
// the isolate boundary costs tens of microseconds whatever it carries, so a
// service answering a stream of small messages one crossing each spends its
// time waiting on threads rather than running handlers.
//
// What one crossing per message gave for free is kept here by hand:
// - order: messages carry a sequence number, the guest starts them in that
//   order (and says which it started last, in `progress[0]`);
// - each message's deadline, from when its handler starts (the guest writes
//   down when each one starts): one sweep over the messages in flight every
//   tenth of the deadline (at most 250 ms), not a timer per message;
// - a batch cut short (a handler spinning past the synchronous deadline) or
//   an instance that died: what the guest had not started is taken back
//   (`progress[1]`, the epoch, tells the guest which messages are no longer
//   its to start) and handed to the kernel to deliver again, first;
// - handlers never interleave past `concurrency`: a message given up on at
//   its deadline keeps its place inside the instance until its handler
//   settles, since a handler still awaiting runs again when its await
//   resolves. One that keeps it past a second deadline while other messages
//   wait behind it has its instance replaced (`replace`).
// This file knows nothing of isolated-vm: the host gives it a way to send.

import { packBatch, readBatch } from "../protocol/batch.ts";
import type { DeliveryKind } from "../protocol/wire.ts";
import { ErrorCode, MoltError } from "./errors.ts";

/**
 * The guest's wire values (see guest/runtime.ts): a one-way message; a
 * message given up on; a turn of the isolate cut short (no message); a
 * message whose place the guest must let go of now.
 */
const KIND_SEND = 1;
const KIND_CANCEL = 2;
const KIND_INTERRUPTED = 3;
const KIND_RELEASE = 4;

/** Taken back from an instance before it started the message: deliver it again, to whichever instance is current. */
export const REDELIVER = ErrorCode.REDELIVER;

interface Pending {
  kind: DeliveryKind;
  request: Uint8Array;
  resolve: (reply: Uint8Array | undefined) => void;
  reject: (err: MoltError) => void;
  seq: number;
}

export interface DeliveriesOptions {
  service: string;
  timeoutMs: number;
  /** Shared with the guest: [0] last started sequence number, [1] epoch. */
  progress: Int32Array;
  /** Shared with the guest: when each message started (Date.now()), in a ring indexed by sequence number. */
  starts: { seqs: Int32Array; times: Float64Array };
  /** One crossing: a batch of [seq, kind, epoch, request] (protocol/batch.ts). Resolves once the guest has queued them. */
  send: (meta: Float64Array, bytes: Uint8Array) => Promise<void>;
  /** A message passed its deadline: the host checks the isolate is not stuck (see isolate-host's probe). */
  expired: () => void;
  /**
   * A handler given up on still holds its place past a second deadline while
   * other messages wait behind it: the host replaces the instance (disposes
   * it, calls close(reason), and the kernel restarts the service). Without
   * it, the guest is told to let go of the place, and the late handler may
   * then run beside the next message.
   */
  replace?: (reason: MoltError) => void;
  error: (code: string, message: string, cause?: unknown) => MoltError;
}

export class Deliveries {
  readonly #o: DeliveriesOptions;
  /** Sent, not yet answered, by sequence number (insertion order is sequence order). */
  readonly #inFlight = new Map<number, Pending>();
  /** Waiting for the next crossing; taken-back messages go first. */
  #again: Pending[] = [];
  #outbox: Pending[] = [];
  /**
   * Messages given up on (past their deadline) while the guest may still
   * count them as running: it is told, so that their place under
   * `concurrency` goes to the next message, as the mailbox's did when each
   * message was its own crossing.
   */
  #cancels: number[] = [];
  /**
   * Messages given up on whose handlers still hold their place inside the
   * instance (the guest says when they let go: a reply without bytes), and
   * when they will have held it for a second deadline.
   */
  readonly #fenced = new Map<number, number>();
  /** Places the guest must let go of (see `replace`). */
  #releases: number[] = [];
  /** A turn of the isolate was cut short since the last crossing (see interrupted()). */
  #interrupted = false;
  #seq = 0;
  /** Cross even with nothing to send: the guest then sends replies a cut-short turn left behind. */
  #nudge = false;
  /** Looks at every message in flight for its deadline, while there are any (see #sweep). */
  #sweeper: NodeJS.Timeout | undefined;
  #epoch = 0;
  #scheduled = false;
  /** A crossing in progress: the next waits for it, so that a batch cut short is sent again before anything after it. */
  #sending = false;
  #closed: MoltError | undefined;

  constructor(options: DeliveriesOptions) {
    this.#o = options;
  }

  get size(): number {
    return this.#inFlight.size + this.#again.length + this.#outbox.length;
  }

  deliver(kind: DeliveryKind, request: Uint8Array, again = false): Promise<Uint8Array | undefined> {
    if (this.#closed !== undefined) return Promise.reject(this.#closed);
    return new Promise((resolve, reject) => {
      const pending: Pending = { kind, request, resolve, reject, seq: -1 };
      (again ? this.#again : this.#outbox).push(pending);
      this.#schedule();
    });
  }

  /**
   * A turn of the isolate's code was cut short by its deadline (a loop after
   * an await, in a timer callback or in an answer's continuation). V8 drops
   * every continuation pending in the turn it stops, so handlers that were
   * running may never settle, and nothing tells which: the guest lets those
   * go of their places once they are given up on.
   */
  interrupted(): void {
    if (this.#closed !== undefined) return;
    this.#interrupted = true;
    this.#schedule();
  }

  /** Replies from the guest: a batch of [seq, reply] (protocol/batch.ts; no reply: a send, or a place let go of). */
  replies(meta: unknown, bytes: unknown): void {
    // Whatever the guest hands back is checked, not trusted: a service that
    // tampers with its own runtime must not make its caller fail to decode.
    const bad = (pending: Pending | undefined): void => {
      if (pending === undefined) return;
      this.#settle(pending);
      pending.reject(this.#o.error(ErrorCode.BAD_RESPONSE, `${this.#o.service} answered with something that is not a molt reply`));
    };
    let next = 0;
    const whole = readBatch(2, meta, bytes, (i, reply) => {
      next = i + 2;
      const seq = (meta as Float64Array)[i] as number;
      const pending = this.#inFlight.get(seq);
      if (pending === undefined) {
        // A handler given up on has settled: its place inside the instance is free.
        if (this.#fenced.size > 0) this.#fenced.delete(seq);
        return;
      }
      if (reply === undefined && pending.kind === "call") return bad(pending);
      this.#settle(pending);
      pending.resolve(pending.kind === "send" ? undefined : reply);
    });
    // The reply whose length did not fit is the one at fault.
    if (!whole && meta instanceof Float64Array) bad(this.#inFlight.get(meta[next] as number));
  }

  /**
   * The instance is gone: what it started fails with `reason`, what it had
   * not started is given back to be delivered again.
   */
  close(reason: MoltError): void {
    if (this.#closed !== undefined) return;
    this.#closed = reason;
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    this.#fenced.clear();
    const started = Atomics.load(this.#o.progress, 0);
    const back = new MoltError(REDELIVER, `${this.#o.service}'s instance ended before it started this message`);
    for (const pending of this.#inFlight.values()) {
      this.#settle(pending);
      pending.reject(pending.seq <= started ? reason : back);
    }
    for (const pending of [...this.#again, ...this.#outbox]) pending.reject(back);
    this.#again = [];
    this.#outbox = [];
  }

  #settle(pending: Pending): void {
    this.#inFlight.delete(pending.seq);
  }

  #schedule(): void {
    if (this.#scheduled || this.#sending) return;
    this.#scheduled = true;
    // After the microtasks of this turn (Node runs next-tick callbacks once
    // the microtask queue is empty): a mailbox hands its messages over
    // across several microtasks, and they should cross together.
    process.nextTick(() => {
      this.#scheduled = false;
      void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    if (this.#closed !== undefined) return;
    if (this.#again.length === 0 && this.#outbox.length === 0 && this.#cancels.length === 0 && this.#releases.length === 0 && !this.#interrupted && !this.#nudge) return;
    this.#nudge = false;
    const batch = this.#again.length === 0 ? this.#outbox : [...this.#again, ...this.#outbox];
    const cancels = this.#cancels;
    const releases = this.#releases;
    this.#again = [];
    this.#outbox = [];
    this.#cancels = [];
    this.#releases = [];
    // A batch of [seq, kind, epoch, request] (protocol/batch.ts). What is not
    // a message comes first, without a request: an interruption before the
    // cancels, so that the guest knows which of them it must let go of.
    const heads: number[] = [];
    const bodies: (Uint8Array | undefined)[] = [];
    if (this.#interrupted) {
      this.#interrupted = false;
      heads.push(0, KIND_INTERRUPTED, this.#epoch);
      bodies.push(undefined);
    }
    for (const seq of cancels) {
      heads.push(seq, KIND_CANCEL, this.#epoch);
      bodies.push(undefined);
    }
    for (const seq of releases) {
      heads.push(seq, KIND_RELEASE, this.#epoch);
      bodies.push(undefined);
    }
    for (const pending of batch) {
      pending.seq = ++this.#seq;
      heads.push(pending.seq, pending.kind === "send" ? KIND_SEND : 0, this.#epoch);
      bodies.push(pending.request);
      this.#inFlight.set(pending.seq, pending);
    }
    const [meta, bytes] = packBatch(4, heads, bodies);
    const { timeoutMs } = this.#o;
    this.#sweeper ??= setInterval(() => this.#sweep(), Math.max(5, Math.min(250, Math.ceil(timeoutMs / 10))));
    this.#sending = true;
    try {
      await this.#o.send(meta, bytes);
    } catch (err) {
      this.#cutShort(err, batch);
    } finally {
      this.#sending = false;
    }
    if (this.#again.length > 0 || this.#outbox.length > 0 || this.#cancels.length > 0 || this.#releases.length > 0 || this.#interrupted) this.#schedule();
  }

  /**
   * The crossing itself failed. A handler that spun past the synchronous
   * deadline stopped the whole batch: it fails with ERR_TIMEOUT, and the
   * messages after it, which the guest never started, are taken back and
   * sent again first. Anything else (the isolate died) is left to close().
   */
  #cutShort(err: unknown, batch: Pending[]): void {
    if (this.#closed !== undefined) return;
    if (!(err instanceof MoltError) || err.code !== ErrorCode.TIMEOUT) {
      // Not a deadline: the messages of this batch fail as the crossing did.
      const cause = err instanceof MoltError ? err : this.#o.error(ErrorCode.INTERNAL, `delivery to ${this.#o.service} failed: ${String(err)}`, err);
      for (const pending of batch) {
        if (!this.#inFlight.has(pending.seq)) continue;
        this.#settle(pending);
        pending.reject(cause);
      }
      return;
    }
    const started = Atomics.load(this.#o.progress, 0);
    this.#epoch++;
    Atomics.store(this.#o.progress, 1, this.#epoch);
    // The handler that spun will never settle, nor may others whose continuations the cut dropped.
    this.#interrupted = true;
    const back: Pending[] = [];
    for (const pending of this.#inFlight.values()) {
      if (pending.seq === started) {
        this.#settle(pending);
        this.#cancel(pending.seq);
        pending.reject(this.#o.error(ErrorCode.TIMEOUT, `message to ${this.#o.service} exceeded ${this.#o.timeoutMs} ms`, err));
      } else if (pending.seq > started) {
        this.#settle(pending);
        back.push(pending);
      }
    }
    this.#again = [...back, ...this.#again];
  }

  /** Gives up on a message the guest started: its caller is answered, its handler keeps its place until it settles. */
  #cancel(seq: number): void {
    this.#fenced.set(seq, Date.now() + this.#o.timeoutMs);
    this.#cancels.push(seq);
    this.#schedule();
  }

  /**
   * A message's deadline runs from when its handler starts, as it did when
   * the mailbox held it until then: one still waiting inside the instance
   * (behind others, under `concurrency`) is not yet running out of time; one
   * that started has its deadline from the start time the guest wrote down
   * (`starts`); one whose handler finished has its reply on the way.
   */
  #sweep(): void {
    if (this.#inFlight.size === 0 || this.#closed !== undefined) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
      return;
    }
    const { timeoutMs, progress, starts } = this.#o;
    const started = Atomics.load(progress, 0);
    const now = Date.now();
    const expired: Pending[] = [];
    let waiting = false;
    // In sequence order: the first one not started ends the sweep.
    for (const pending of this.#inFlight.values()) {
      if (pending.seq > started) {
        waiting = true;
        break;
      }
      const at = pending.seq % starts.seqs.length;
      const mark = starts.seqs[at];
      if (mark === -pending.seq) {
        // Finished; a turn cut short sends its reply with the next crossing.
        this.#nudge = true;
        this.#schedule();
        continue;
      }
      // An entry overwritten since means thousands of messages started after this one: it has run for long.
      if (mark === pending.seq && (starts.times[at] as number) + timeoutMs > now) continue;
      expired.push(pending);
    }
    for (const pending of expired) {
      this.#settle(pending);
      this.#cancel(pending.seq);
      this.#o.expired();
      pending.reject(this.#o.error(ErrorCode.TIMEOUT, `message to ${this.#o.service} exceeded ${timeoutMs} ms`));
    }
    if (waiting && this.#fenced.size > 0) this.#overdue(now);
  }

  /**
   * Messages wait inside the instance behind handlers given up on a deadline
   * ago that still hold their places. A handler that has awaited for twice
   * the service's budget (`limits.timeoutMs` covers awaited continuations
   * too) is taken for one that will not settle soon, if ever: the instance
   * is replaced, and what it had not started goes to the next one. While
   * nothing waits, a late handler costs nobody anything and is left to
   * finish.
   */
  #overdue(now: number): void {
    let late = false;
    for (const bound of this.#fenced.values()) if (bound <= now) late = true;
    if (!late) return;
    const { replace, service, timeoutMs } = this.#o;
    if (replace !== undefined) {
      this.#fenced.clear();
      replace(this.#o.error(ErrorCode.TIMEOUT, `a handler of ${service} kept its place past twice its deadline of ${timeoutMs} ms while messages waited; its instance is replaced`));
      return;
    }
    for (const [seq, bound] of this.#fenced) {
      if (bound > now) continue;
      this.#fenced.delete(seq);
      this.#releases.push(seq);
    }
    this.#schedule();
  }
}
