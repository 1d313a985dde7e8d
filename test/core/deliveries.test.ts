// Messages on their way into one instance, with a guest played by the test:
// it writes in the shared arrays which message it started and when, and
// answers as the guest runtime would. What is checked is what the kernel
// tells the guest about messages past their deadline, and when it asks for
// the instance to be replaced.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Deliveries, REDELIVER } from "../../core/deliveries.ts";
import { ErrorCode, MoltError } from "../../core/errors.ts";
import { packBatch } from "../../protocol/batch.ts";

const TIMEOUT_MS = 100;
/** The batch's entry kinds, as guest/runtime.ts reads them. */
const Kind = { CALL: 0, CANCEL: 2, INTERRUPTED: 3, RELEASE: 4 } as const;

interface Guest {
  deliveries: Deliveries;
  /** Every crossing: [seq, kind] per entry. */
  crossings: [number, number][][];
  replaced: MoltError[];
  start(seq: number): void;
  /** The guest's reply to `seq`; no bytes: a place let go of. */
  reply(seq: number, bytes?: Uint8Array): void;
  /** Makes the next crossing fail as one cut short by the deadline. */
  cutNext(): void;
}

function guest(options: { replace: boolean }): Guest {
  const progress = new Int32Array(new SharedArrayBuffer(8));
  const starts = { seqs: new Int32Array(new SharedArrayBuffer(64 * 4)), times: new Float64Array(new SharedArrayBuffer(64 * 8)) };
  const crossings: [number, number][][] = [];
  const replaced: MoltError[] = [];
  let cut = false;
  const deliveries: Deliveries = new Deliveries({
    service: "s",
    timeoutMs: TIMEOUT_MS,
    progress,
    starts,
    send: (meta) => {
      const entries: [number, number][] = [];
      for (let i = 0; i < meta.length; i += 4) entries.push([meta[i] as number, meta[i + 1] as number]);
      crossings.push(entries);
      if (!cut) return Promise.resolve();
      cut = false;
      return Promise.reject(new MoltError(ErrorCode.TIMEOUT, "cut short"));
    },
    expired: () => undefined,
    ...(options.replace
      ? {
          replace: (reason: MoltError) => {
            replaced.push(reason);
            deliveries.close(reason);
          },
        }
      : {}),
    error: (code, message) => new MoltError(code, message),
  });
  return {
    deliveries,
    crossings,
    replaced,
    start: (seq) => {
      starts.seqs[seq % 64] = seq;
      starts.times[seq % 64] = Date.now();
      Atomics.store(progress, 0, seq);
    },
    reply: (seq, bytes) => deliveries.replies(...packBatch(2, [seq], [bytes])),
    cutNext: () => {
      cut = true;
    },
  };
}

/** Lets the deliveries cross: they are sent on the next tick, after this turn's microtasks. */
async function crossed(): Promise<void> {
  for (let i = 0; i < 4; i++) await new Promise<void>((resolve) => process.nextTick(resolve));
}

const outcome = (promise: Promise<unknown>): Promise<unknown> => promise.then((value) => ({ value }), (err: MoltError) => ({ code: err.code }));

describe("Deliveries: messages past their deadline", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "setTimeout", "clearTimeout", "Date"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("replaces the instance when a handler given up on still holds its place a deadline later while a message waits behind it; the waiting message is given back", async () => {
    const g = guest({ replace: true });
    const first = outcome(g.deliveries.deliver("call", new Uint8Array([1])));
    await crossed();
    g.start(1);
    vi.advanceTimersByTime(TIMEOUT_MS + 20);
    expect(await first).toEqual({ code: ErrorCode.TIMEOUT });
    const second = outcome(g.deliveries.deliver("call", new Uint8Array([2])));
    await crossed();
    expect(g.crossings.flat()).toEqual([
      [1, Kind.CALL],
      [1, Kind.CANCEL],
      [2, Kind.CALL],
    ]);
    vi.advanceTimersByTime(TIMEOUT_MS / 2);
    expect(g.replaced).toEqual([]);
    vi.advanceTimersByTime(TIMEOUT_MS);
    expect(g.replaced.map((r) => r.code)).toEqual([ErrorCode.TIMEOUT]);
    expect(await second).toEqual({ code: REDELIVER });
  });

  it("leaves a late handler to finish while nothing waits behind it, and forgets it once the guest says its place is free", async () => {
    const g = guest({ replace: true });
    void outcome(g.deliveries.deliver("call", new Uint8Array([1])));
    await crossed();
    g.start(1);
    vi.advanceTimersByTime(TIMEOUT_MS * 5);
    expect(g.replaced).toEqual([]);
    // The late handler settles: the guest sends a reply without bytes.
    g.reply(1);
    const second = outcome(g.deliveries.deliver("call", new Uint8Array([2])));
    await crossed();
    vi.advanceTimersByTime(TIMEOUT_MS * 5);
    expect(g.replaced).toEqual([]);
    g.start(2);
    g.reply(2, new Uint8Array([9]));
    expect(await second).toEqual({ value: new Uint8Array([9]) });
  });

  it("without a way to replace the instance, tells the guest to let go of the place a deadline later", async () => {
    const g = guest({ replace: false });
    void outcome(g.deliveries.deliver("call", new Uint8Array([1])));
    await crossed();
    g.start(1);
    vi.advanceTimersByTime(TIMEOUT_MS + 20);
    void outcome(g.deliveries.deliver("call", new Uint8Array([2])));
    await crossed();
    vi.advanceTimersByTime(TIMEOUT_MS + 20);
    await crossed();
    expect(g.crossings.at(-1)).toEqual([[1, Kind.RELEASE]]);
  });

  it("tells the guest that a turn was cut short before the cancel of the message that spun, and sends what it had not started again", async () => {
    const g = guest({ replace: true });
    g.cutNext();
    const spun = outcome(g.deliveries.deliver("call", new Uint8Array([1])));
    void outcome(g.deliveries.deliver("call", new Uint8Array([2])));
    g.start(1);
    await crossed();
    expect(await spun).toEqual({ code: ErrorCode.TIMEOUT });
    await crossed();
    expect(g.crossings).toEqual([
      [
        [1, Kind.CALL],
        [2, Kind.CALL],
      ],
      [
        [0, Kind.INTERRUPTED],
        [1, Kind.CANCEL],
        [3, Kind.CALL],
      ],
    ]);
  });

  it("passes on an interruption the host reports (a timer's turn cut short) in the next crossing", async () => {
    const g = guest({ replace: true });
    g.deliveries.interrupted();
    await crossed();
    expect(g.crossings).toEqual([[[0, Kind.INTERRUPTED]]]);
  });
});
