// The calls, sends and fetches one instance makes, batched both ways: what
// its code sends in one turn arrives here in one crossing (guest/host.ts),
// and the answers that come in during one turn of the kernel's event loop go
// back in one crossing. Answers are arguments of a call into the isolate, so
// one that does not fit there fails as ERR_OOM inside that isolate, never as
// an abort of the process.
// A call waits for its answer at most the caller's own deadline, as OTP's
// gen_server:call does: a callee that never gets to the message (a service
// calling itself at concurrency 1, a cycle of calls) answers the caller
// ERR_TIMEOUT instead of holding it, and the handler that made the call
// settles and frees its place.
// This file knows nothing of isolated-vm: the host gives it a way to send.

import { packBatch, readBatch } from "../protocol/batch.ts";
import { ErrorCode, MoltError } from "./errors.ts";
import type { InstanceBridge } from "./instance.ts";
import { encodeErrorReply } from "./wire.ts";

/** The guest's kinds (guest/host.ts). */
const OUT_CALL = 0;
const OUT_SEND = 1;
const OUT_FETCH = 2;
/** Not an answer (guest/host.ts numbers calls from 1): the id that tells the guest a crossing of answers was cut short (guest/runtime.ts). */
const ANSWER_INTERRUPTED = 0;

export interface GuestCallsOptions {
  bridge: InstanceBridge;
  /** One crossing into the isolate: a batch of [id, answer] (protocol/batch.ts; no answer: it did not fit). */
  send: (meta: Float64Array, bytes: Uint8Array) => Promise<void>;
  /** How long a call waits for its answer: the calling service's own `limits.timeoutMs`. */
  timeoutMs: number;
  /** Whose calls these are, for the error a call past its deadline gets. */
  service: string;
}

export class GuestCalls {
  readonly #o: GuestCallsOptions;
  #ids: number[] = [];
  #answers: Uint8Array[] = [];
  #scheduled = false;
  #closed = false;
  /** Calls waiting for their answer: id → when they are answered ERR_TIMEOUT instead. */
  readonly #waiting = new Map<number, number>();
  #sweep: NodeJS.Timeout | undefined;

  constructor(options: GuestCallsOptions) {
    this.#o = options;
  }

  /** What the guest sent: a batch of [id, kind, request] (protocol/batch.ts), and a target per message. Hostile data. */
  out(meta: unknown, targets: unknown, bytes: unknown): void {
    if (this.#closed || !Array.isArray(targets)) return;
    const { bridge } = this.#o;
    readBatch(3, meta, bytes, (i, request) => {
      const head = meta as Float64Array;
      const id = head[i] as number;
      const kind = head[i + 1];
      const target = String(targets[i / 3]);
      if (request === undefined) return;
      if (kind === OUT_SEND) bridge.send(target, request);
      else if (kind === OUT_CALL) {
        this.#waiting.set(id, performance.now() + this.#o.timeoutMs);
        this.#sweep ??= setInterval(() => this.#expire(), Math.min(250, Math.max(1, this.#o.timeoutMs / 10))).unref();
        void bridge.call(target, request).then((reply) => {
          // Answered already, with ERR_TIMEOUT: the late answer has no one to go to.
          if (this.#waiting.delete(id)) this.#answer(id, reply);
        });
      }
      else if (kind === OUT_FETCH) void bridge.fetch(request).then((reply) => this.#answer(id, reply));
    });
  }

  /** The instance is gone: answers still on their way have nowhere to go. */
  close(): void {
    this.#closed = true;
    this.#ids = [];
    this.#answers = [];
    this.#waiting.clear();
    clearInterval(this.#sweep);
    this.#sweep = undefined;
  }

  /** Answers ERR_TIMEOUT to every call past its deadline; stops sweeping once none waits. */
  #expire(): void {
    const now = performance.now();
    for (const [id, deadline] of this.#waiting) {
      if (deadline > now) continue;
      this.#waiting.delete(id);
      const { service, timeoutMs } = this.#o;
      this.#answer(id, encodeErrorReply(new MoltError(ErrorCode.TIMEOUT, `no answer within ${service}'s deadline (${timeoutMs} ms)`, { service })));
    }
    if (this.#waiting.size === 0) {
      clearInterval(this.#sweep);
      this.#sweep = undefined;
    }
  }

  #answer(id: number, reply: Uint8Array): void {
    if (this.#closed) return;
    this.#ids.push(id);
    this.#answers.push(reply);
    if (this.#scheduled) return;
    this.#scheduled = true;
    process.nextTick(() => void this.#flush());
  }

  async #flush(): Promise<void> {
    this.#scheduled = false;
    const ids = this.#ids;
    const answers = this.#answers;
    this.#ids = [];
    this.#answers = [];
    if (this.#closed || ids.length === 0) return;
    try {
      // A batch of [id, answer] (protocol/batch.ts).
      await this.#o.send(...packBatch(2, ids, answers));
    } catch (err) {
      if (this.#closed) return;
      // A continuation the answers woke spun past the deadline and was cut
      // short, dropping every other continuation pending with it: the guest
      // must know, or handlers that will never settle keep their places.
      if (err instanceof MoltError && err.code === ErrorCode.TIMEOUT) {
        await this.#o.send(...packBatch(2, [ANSWER_INTERRUPTED], [undefined])).catch(() => undefined);
        return;
      }
      // The answers did not fit (or the isolate is gone): each call learns
      // it from a few bytes instead, inside the isolate.
      if (err instanceof MoltError && err.code !== ErrorCode.OOM) return;
      await this.#o.send(...packBatch(2, ids, answers.map(() => undefined))).catch(() => undefined);
    }
  }
}
