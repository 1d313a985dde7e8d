// The calls, sends and fetches one instance makes, batched both ways: what
// its code sends in one turn arrives here in one crossing (guest/host.ts),
// and the answers that come in during one turn of the kernel's event loop go
// back in one crossing. Answers are arguments of a call into the isolate, so
// one that does not fit there fails as ERR_OOM inside that isolate, never as
// an abort of the process.
// This file knows nothing of isolated-vm: the host gives it a way to send.

import { ErrorCode, MoltError } from "./errors.ts";
import type { InstanceBridge } from "./instance.ts";

/** The guest's kinds (guest/host.ts). */
const OUT_CALL = 0;
const OUT_SEND = 1;
const OUT_FETCH = 2;

export interface GuestCallsOptions {
  bridge: InstanceBridge;
  /** One crossing into the isolate: [id, length] per answer (-1: did not fit), the bytes end to end. */
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

  /** What the guest sent: [id, kind, length] per message, a target per message, the bytes end to end. Hostile data. */
  out(meta: unknown, targets: unknown, bytes: unknown): void {
    if (this.#closed || !(meta instanceof Float64Array) || !Array.isArray(targets) || !(bytes instanceof Uint8Array)) return;
    const { bridge } = this.#o;
    let at = 0;
    for (let i = 0, n = 0; i + 2 < meta.length; i += 3, n++) {
      const id = meta[i] as number;
      const kind = meta[i + 1] as number;
      const length = meta[i + 2] as number;
      if (!Number.isInteger(length) || length < 0 || at + length > bytes.length) return;
      const request = bytes.subarray(at, at + length);
      at += length;
      const target = targets[n];
      if (kind === OUT_SEND) {
        bridge.send(String(target), request);
      } else if (kind === OUT_CALL) {
        void bridge.call(String(target), request).then((reply) => this.#answer(id, reply));
      } else if (kind === OUT_FETCH) {
        void bridge.fetch(request).then((reply) => this.#answer(id, reply));
      }
    }
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
      await this.#o.send(...pack(ids, answers));
    } catch (err) {
      // The answers did not fit (or the isolate is gone): each call learns
      // it from a few bytes instead, inside the isolate.
      if (this.#closed || (err instanceof MoltError && err.code !== ErrorCode.OOM)) return;
      await this.#o.send(...pack(ids, answers.map(() => undefined))).catch(() => undefined);
    }
  }
}

function pack(ids: number[], answers: (Uint8Array | undefined)[]): [Float64Array, Uint8Array] {
  const meta = new Float64Array(ids.length * 2);
  let total = 0;
  for (const answer of answers) total += answer?.byteLength ?? 0;
  const bytes = new Uint8Array(total);
  let at = 0;
  for (let i = 0; i < ids.length; i++) {
    const answer = answers[i];
    meta[i * 2] = ids[i] as number;
    meta[i * 2 + 1] = answer === undefined ? -1 : answer.byteLength;
    if (answer !== undefined) {
      bytes.set(answer, at);
      at += answer.byteLength;
    }
  }
  return [meta, bytes];
}
