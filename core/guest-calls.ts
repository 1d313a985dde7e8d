// The calls, sends and fetches one instance makes, batched both ways: what
// its code sends in one turn arrives here in one crossing (guest/host.ts),
// and the answers that come in during one turn of the kernel's event loop go
// back in one crossing. Answers are arguments of a call into the isolate, so
// one that does not fit there fails as ERR_OOM inside that isolate, never as
// an abort of the process.
// This file knows nothing of isolated-vm: the host gives it a way to send.

import { packBatch, readBatch } from "../protocol/batch.ts";
import { ErrorCode, MoltError } from "./errors.ts";
import type { InstanceBridge } from "./instance.ts";

/** The guest's kinds (guest/host.ts). */
const OUT_CALL = 0;
const OUT_SEND = 1;
const OUT_FETCH = 2;

export interface GuestCallsOptions {
  bridge: InstanceBridge;
  /** One crossing into the isolate: a batch of [id, answer] (protocol/batch.ts; no answer: it did not fit). */
  send: (meta: Float64Array, bytes: Uint8Array) => Promise<void>;
}

export class GuestCalls {
  readonly #o: GuestCallsOptions;
  #ids: number[] = [];
  #answers: Uint8Array[] = [];
  #scheduled = false;
  #closed = false;

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
      else if (kind === OUT_CALL) void bridge.call(target, request).then((reply) => this.#answer(id, reply));
      else if (kind === OUT_FETCH) void bridge.fetch(request).then((reply) => this.#answer(id, reply));
    });
  }

  /** The instance is gone: answers still on their way have nowhere to go. */
  close(): void {
    this.#closed = true;
    this.#ids = [];
    this.#answers = [];
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
      // The answers did not fit (or the isolate is gone): each call learns
      // it from a few bytes instead, inside the isolate.
      if (this.#closed || (err instanceof MoltError && err.code !== ErrorCode.OOM)) return;
      await this.#o.send(...packBatch(2, ids, answers.map(() => undefined))).catch(() => undefined);
    }
  }
}
