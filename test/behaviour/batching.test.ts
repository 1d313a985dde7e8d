// Behaviour: batched crossings (issue 13, item 2). When many messages wait
// for one isolate they may cross into it together, its replies may cross
// back together, and the calls and sends a guest makes in one turn may leave
// together. None of that may change a guarantee. Every test here queues
// hundreds of messages to one service at once (a Promise.all of kernel
// calls, or a caller service that fires them all in one turn) with fast
// handlers, so that batches really form, and then checks one guarantee
// message by message: per-mailbox order, the concurrency limit, each
// message's own deadline, a swap that drains and loses nothing,
// ERR_MAILBOX_FULL, the size limits, the per-message metrics, probation's
// error count, and an instance that dies in the middle of a batch.
// Assertions are on values, codes and counts; nothing is timed.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Outcome as CallerOutcome, Fire, Shot } from "../fixtures/behaviour/batch-caller.ts";
import { restarts } from "../support/hostile.ts";
import { eventually, startKernel, type TestKernel } from "../support/kernel.ts";
import { sample } from "../support/prometheus.ts";

type Outcome = { value: unknown } | { code: string };

const range = (n: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i);

const codeOf = (err: unknown): string => {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : `uncoded: ${String(err)}`;
};

/** Each promise's value or error code, in the order given. */
async function outcomes(promises: Promise<unknown>[]): Promise<Outcome[]> {
  return (await Promise.allSettled(promises)).map((s) => (s.status === "fulfilled" ? { value: s.value } : { code: codeOf(s.reason) }));
}


const SINK = "./behaviour/batch-sink.ts";
const SINK_DECLARED = "./behaviour/batch-sink-declared.ts";
const CALLER = "./behaviour/batch-caller.ts";
const HOSTILE = "./behaviour/batch-hostile.ts";
const COUNTER = "./behaviour/batch-counter.ts";

describe("batched crossings keep every guarantee", () => {
  let t: TestKernel;
  beforeAll(async () => {
    t = await startKernel({
      services: {
        // A bound well above the floods, so that only the ERR_MAILBOX_FULL test ever meets one.
        order: { entry: SINK, queue: 5000 },
        one: { entry: SINK, bindings: { echo: "echo" }, concurrency: 1 },
        four: { entry: SINK, bindings: { echo: "echo" }, concurrency: 4 },
        declared: { entry: SINK_DECLARED, bindings: { echo: "echo" } },
        overridden: { entry: SINK_DECLARED, bindings: { echo: "echo" }, concurrency: 1 },
        echo: { entry: "./probe.ts", concurrency: 8 },
        caller: { entry: CALLER, bindings: { order: "order", one: "one", bounded: "bounded", small: "small", gate: "gate" } },
        // Its own maxMessageBytes bounds the replies it takes in.
        tight: { entry: CALLER, bindings: { wide: "wide" }, limits: { maxMessageBytes: 10_000 } },
        bounded: { entry: SINK, bindings: { gate: "gate" }, queue: 100 },
        gate: { entry: "./behaviour/batch-gate.ts", concurrency: 8 },
        small: { entry: SINK, limits: { maxMessageBytes: 10_000 } },
        wide: { entry: SINK },
        deadline: { entry: HOSTILE, limits: { timeoutMs: 300 } },
        deadline4: { entry: HOSTILE, concurrency: 4, limits: { timeoutMs: 300 } },
        hungry: { entry: HOSTILE, limits: { memoryMb: 32, timeoutMs: 10_000 } },
        wedged: { entry: HOSTILE, bindings: { echo: "echo" }, limits: { timeoutMs: 300 } },
        metered: { entry: SINK },
        counter: { entry: COUNTER },
      },
      restart: { maxRestarts: 20, windowMs: 60_000 },
    });
  });
  afterAll(() => t.kernel.stop());

  const fire = (caller: string, binding: string, shots: Shot[], options: Pick<Fire, "measure" | "after"> = {}): Promise<CallerOutcome[]> =>
    t.kernel.call(caller, "fire", { binding, shots, ...options }) as Promise<CallerOutcome[]>;

  describe("per-mailbox order", () => {
    it("handles 1,000 calls queued at once to a concurrency-1 service in exactly the order they were sent", async () => {
      const answers = await Promise.all(range(1000).map((i) => t.kernel.call("order", "append", i)));
      // append answers with the message's position: each was handled in its turn.
      expect(answers).toEqual(range(1000, 1));
      expect(await t.kernel.call("order", "take")).toEqual(range(1000));
    });

    it("handles 1,000 sends, and sends and calls interleaved, queued at once, in exactly the order they were sent", async () => {
      await Promise.all(range(1000).map((i) => t.kernel.send("order", "append", i)));
      expect(await t.kernel.call("order", "take")).toEqual(range(1000));
      const mixed = await outcomes(range(1000).map((i) => (i % 3 === 0 ? t.kernel.send("order", "append", i) : t.kernel.call("order", "append", i))));
      expect(mixed).toEqual(range(1000).map((i) => ({ value: i % 3 === 0 ? undefined : i + 1 })));
      expect(await t.kernel.call("order", "take")).toEqual(range(1000));
    });

    it("handles 1,000 calls and sends a service makes in one turn in exactly the order it made them", async () => {
      const shots: Shot[] = [...range(1000).map((i): Shot => ({ method: "append", payload: i, send: i % 2 === 0 })), { method: "take" }];
      const results = await fire("caller", "order", shots);
      expect(results.slice(0, 1000)).toEqual(range(1000).map((i) => ({ value: i % 2 === 0 ? "sent" : i + 1 })));
      // The take, made last in the same turn, was handled after every one of them.
      expect(results[1000]).toEqual({ value: range(1000) });
    });
  });

  describe("the concurrency limit", () => {
    /** 500 messages queued at once: napping handlers (a 0–2 ms timer) and relaying ones (an awaited ctx.call), a fifth of them sends. */
    const flood = (service: string): Promise<unknown>[] =>
      range(500).map((i) => {
        const deliver = i % 5 === 0 ? t.kernel.send.bind(t.kernel) : t.kernel.call.bind(t.kernel);
        return i % 2 === 0 ? deliver(service, "napping", { i, ms: i % 3 }) : deliver(service, "relaying", i);
      });

    it("never runs two handlers at once in a concurrency-1 service, across 500 queued calls and sends whose handlers await", async () => {
      const results = await outcomes(flood("one"));
      expect(results).toEqual(range(500).map((i) => ({ value: i % 5 === 0 ? undefined : i })));
      expect(await t.kernel.call("one", "stats")).toEqual({ max: 1, handled: 500, running: 0 });
      // One at a time, each handler started in the order its message was sent.
      expect(await t.kernel.call("one", "take")).toEqual(range(500));
    });

    it("never runs more than one handler at once in a concurrency-1 service when a caller fires 500 calls in one turn", async () => {
      await t.kernel.call("one", "take");
      const before = (await t.kernel.call("one", "stats")) as { handled: number };
      const shots = range(500).map((i): Shot => (i % 2 === 0 ? { method: "napping", payload: { i, ms: i % 3 } } : { method: "relaying", payload: i }));
      const results = await fire("caller", "one", shots);
      expect(results).toEqual(range(500).map((i) => ({ value: i })));
      expect(await t.kernel.call("one", "stats")).toEqual({ max: 1, handled: before.handled + 500, running: 0 });
      expect(await t.kernel.call("one", "take")).toEqual(range(500));
    });

    it("runs at most four handlers at once, and more than one, in a concurrency-4 service across 500 queued calls and sends", async () => {
      const results = await outcomes(flood("four"));
      expect(results).toEqual(range(500).map((i) => ({ value: i % 5 === 0 ? undefined : i })));
      // A send may be settled when it is handed over, before its handler ends: wait for the last ones.
      const stats = (await eventually(async () => {
        const s = (await t.kernel.call("four", "stats")) as { handled: number };
        expect(s.handled).toBe(500);
        return s;
      })) as { max: number; handled: number; running: number };
      expect(stats.max).toBeGreaterThan(1);
      expect(stats.max).toBeLessThanOrEqual(4);
      expect(((await t.kernel.call("four", "take")) as number[]).sort((a, b) => a - b)).toEqual(range(500));
    });

    it("takes the module's own `concurrency` when the config sets none, and the config's when it does", async () => {
      const stats = async (service: string): Promise<{ max: number }> => {
        await outcomes(flood(service));
        return (await eventually(async () => {
          const s = (await t.kernel.call(service, "stats")) as { handled: number; max: number };
          expect(s.handled).toBe(500);
          return s;
        })) as { max: number };
      };
      const declared = await stats("declared");
      expect(declared.max).toBeGreaterThan(1);
      expect(declared.max).toBeLessThanOrEqual(4);
      expect((await stats("overridden")).max).toBe(1);
    });
  });

  describe("each message's own deadline", () => {
    it("fails only the message that never settles and the one that spins past timeoutMs, with ERR_TIMEOUT; the 50 around them in a concurrency-1 service are answered", async () => {
      const method = (i: number): string => (i === 17 ? "forever" : i === 34 ? "spin" : "double");
      const results = await outcomes(range(52).map((i) => t.kernel.call("deadline", method(i), i)));
      expect(results).toEqual(
        range(52).map((i) => (method(i) === "double" ? { value: { n: i * 2, instance: expect.any(String) } } : { code: "ERR_TIMEOUT" })),
      );
    });

    it("fails only the messages that never settle in a concurrency-4 service; the others, queued behind them while they held every slot, are answered", async () => {
      // Four at once take all four slots until their deadline: everything sent after them waits that long, and must not fail for it.
      const method = (i: number): string => ((i >= 10 && i < 14) || i === 120 ? "forever" : "double");
      const results = await outcomes(range(200).map((i) => t.kernel.call("deadline4", method(i), i)));
      expect(results).toEqual(
        range(200).map((i) => (method(i) === "double" ? { value: { n: i * 2, instance: expect.any(String) } } : { code: "ERR_TIMEOUT" })),
      );
    });
  });

  describe("a swap", () => {
    it("drains batches like any in-flight message under a flood of 64 pipelined calls and sends: six swaps, every message handled once, none failed", async () => {
      const v1 = `${t.kernel.config.dir}/behaviour/batch-counter.ts`;
      const v2 = `${t.kernel.config.dir}/behaviour/batch-counter-v2.ts`;
      let going = true;
      const errors: string[] = [];
      // Per call loop, the counts its calls were answered with, in order.
      const answers: number[][] = range(56).map(() => []);
      let sent = 0;
      let delivered = 0;
      const callLoop = async (mine: number[]): Promise<void> => {
        while (going && errors.length < 100) {
          try {
            mine.push((await t.kernel.call("counter", "incr")) as number);
          } catch (err) {
            errors.push(codeOf(err));
          }
        }
      };
      const sendLoop = async (): Promise<void> => {
        while (going && errors.length < 100) {
          sent++;
          try {
            await t.kernel.send("counter", "incr");
            delivered++;
          } catch (err) {
            errors.push(codeOf(err));
          }
        }
      };
      const handled = (): number => answers.reduce((n, a) => n + a.length, 0) + delivered;
      /** Waits until 200 more messages were handled (the flood is running when the next swap begins), or one failed. */
      const more = async (): Promise<void> => {
        const target = handled() + 200;
        await eventually(() => expect(errors.length > 0 || handled() >= target).toBe(true), 20_000);
      };
      const loops = [...answers.map((mine) => callLoop(mine)), ...range(8).map(() => sendLoop())];
      const outcomes: string[] = [];
      try {
        for (const entry of [v2, v1, v2, v1, v2, v1]) {
          await more();
          outcomes.push((await t.kernel.swap("counter", entry)).outcome);
        }
        await more();
      } finally {
        going = false;
        await Promise.all(loops);
      }
      expect(outcomes).toEqual(range(6).map(() => "committed"));
      expect(errors).toEqual([]);
      expect(delivered).toBe(sent);
      const calls = answers.flat();
      // Every message sent was handled exactly once, with the state carried across each swap.
      expect(await t.kernel.call("counter", "get")).toBe(calls.length + sent);
      expect(new Set(calls).size).toBe(calls.length);
      expect(calls.every((n) => n >= 1 && n <= calls.length + sent)).toBe(true);
      // Each loop's calls were handled in the order it made them.
      for (const mine of answers) expect(mine.every((n, i) => i === 0 || n > (mine[i - 1] as number))).toBe(true);
      expect(await t.kernel.call("counter", "which")).toBe("v1");
    });
  });

  describe("the mailbox bound", () => {
    it("refuses exactly the calls past a queue of 100 with ERR_MAILBOX_FULL when 2,000 arrive at once, and answers every other", async () => {
      const pending = range(2000).map((i) => t.kernel.call("bounded", "append", i));
      // Read at once, before any of them ran: what the mailbox took in.
      const status = t.kernel.status().find((s) => s.name === "bounded");
      const results = await outcomes(pending);
      const accepted = results.findIndex((r) => "code" in r);
      expect(status?.queueDepth).toBe(100);
      expect(accepted).toBe((status?.queueDepth ?? 0) + (status?.inFlight ?? 0));
      expect(results.slice(0, accepted)).toEqual(range(accepted).map((i) => ({ value: i + 1 })));
      expect(results.slice(accepted)).toEqual(range(2000 - accepted).map(() => ({ code: "ERR_MAILBOX_FULL" })));
      // The refused ones never reached the service; the accepted ones did, in order.
      expect(await t.kernel.call("bounded", "take")).toEqual(range(accepted));
    });

    it("refuses exactly the calls past a queue of 100 among 2,000 a service fires in one turn, with ERR_MAILBOX_FULL, and answers every other", async () => {
      const signalled = (): Promise<unknown> => t.kernel.call("gate", "signalled");
      const before = await signalled();
      // The first message holds the service until the gate opens: nothing leaves the mailbox while the rest arrive.
      const shots: Shot[] = [{ method: "gated", payload: -1 }, ...range(2000).map((i): Shot => ({ method: "append", payload: i }))];
      const firing = fire("caller", "bounded", shots, { after: { binding: "gate", method: "signal" } });
      // The caller's signal, sent after its 2,000 calls, has arrived: every one of them has met the mailbox.
      await eventually(async () => expect(await signalled()).toBe((before as number) + 1));
      const status = t.kernel.status().find((s) => s.name === "bounded");
      await t.kernel.call("gate", "open");
      const results = await firing;
      await t.kernel.call("gate", "close");
      expect(results[0]).toEqual({ value: -1 });
      const rest = results.slice(1);
      const accepted = rest.findIndex((r) => "code" in r);
      expect(status?.queueDepth).toBe(100);
      expect(1 + accepted).toBe((status?.queueDepth ?? 0) + (status?.inFlight ?? 0));
      expect(rest.slice(0, accepted)).toEqual(range(accepted).map((i) => ({ value: i + 2 })));
      expect(rest.slice(accepted)).toEqual(range(2000 - accepted).map(() => ({ code: "ERR_MAILBOX_FULL" })));
      expect(await t.kernel.call("bounded", "take")).toEqual([-1, ...range(accepted)]);
    });
  });

  describe("the size limits", () => {
    const OVERSIZED = 150;
    const payload = (i: number): unknown => (i === OVERSIZED ? "x".repeat(20_000) : i);

    it("refuses only the one request past maxMessageBytes among 300 queued at once, with ERR_MESSAGE_TOO_LARGE", async () => {
      const results = await outcomes(range(300).map((i) => t.kernel.call("small", "append", payload(i))));
      expect(results).toEqual(range(300).map((i) => (i === OVERSIZED ? { code: "ERR_MESSAGE_TOO_LARGE" } : { value: i < OVERSIZED ? i + 1 : i })));
      expect(await t.kernel.call("small", "take")).toEqual(range(300).filter((i) => i !== OVERSIZED));
    });

    it("refuses only the one oversized call among 300 a service makes in one turn, and drops only the one oversized send among 300", async () => {
      const calls = await fire("caller", "small", range(300).map((i): Shot => ({ method: "append", payload: payload(i) })));
      expect(calls).toEqual(range(300).map((i) => (i === OVERSIZED ? { code: "ERR_MESSAGE_TOO_LARGE" } : { value: i < OVERSIZED ? i + 1 : i })));
      expect(await t.kernel.call("small", "take")).toEqual(range(300).filter((i) => i !== OVERSIZED));
      const sends = await fire("caller", "small", [...range(300).map((i): Shot => ({ method: "append", payload: payload(i), send: true })), { method: "take" }]);
      expect(sends[300]).toEqual({ value: range(300).filter((i) => i !== OVERSIZED) });
      expect(t.logs).toContainEqual(expect.objectContaining({ msg: "send failed", service: "caller", to: "small", code: "ERR_MESSAGE_TOO_LARGE" }));
    });

    it("refuses only the one reply past the caller's maxMessageBytes among 300 replies to calls made in one turn", async () => {
      const sizes = range(300).map((i) => (i === OVERSIZED ? 20_000 : 100));
      const results = await fire("tight", "wide", sizes.map((bytes): Shot => ({ method: "big", payload: bytes })), { measure: true });
      expect(results).toEqual(range(300).map((i) => (i === OVERSIZED ? { code: "ERR_MESSAGE_TOO_LARGE" } : { length: 100 })));
    });
  });

  describe("per-message metrics", () => {
    it("counts each of 300 queued calls on its own: 263 ok, 37 errors by code, 300 latencies", async () => {
      const fails = (i: number): boolean => i % 8 === 3 && i < 8 * 37;
      const results = await outcomes(range(300).map((i) => t.kernel.call("metered", "maybeFail", { i, fail: fails(i) })));
      expect(results).toEqual(range(300).map((i) => (fails(i) ? { code: "ERR_BATCH_FAIL" } : { value: i })));
      const text = await t.metrics.text();
      expect(sample(text, "molt_requests_total", { service: "metered", outcome: "ok" })).toBe(263);
      expect(sample(text, "molt_requests_total", { service: "metered", outcome: "error" })).toBe(37);
      expect(sample(text, "molt_errors_total", { service: "metered", code: "ERR_BATCH_FAIL" })).toBe(37);
      expect(sample(text, "molt_handler_duration_seconds_count", { service: "metered" })).toBe(300);
    });
  });

  describe("an instance that dies in the middle of a batch", () => {
    const instances = (results: Outcome[]): string[] => results.map((r) => ("value" in r ? (r.value as { instance: string }).instance : ""));

    it("fails the call that exhausted the memory (ERR_OOM), and with it only those whose replies had not left the dying instance; the calls queued after it are answered by the restarted instance", async () => {
      const before = restarts(t, "hungry");
      const results = await outcomes(range(200).map((i) => t.kernel.call("hungry", i === 50 ? "hoard" : "double", i)));
      expect(results[50]).toEqual({ code: "ERR_OOM" });
      expect(restarts(t, "hungry")).toBe(before + 1);
      // Before it: answered by the first instance, up to a tail whose replies were still inside it when it died.
      const lostFrom = results.slice(0, 50).findIndex((r) => "code" in r);
      const answeredBefore = lostFrom === -1 ? 50 : lostFrom;
      expect(results.slice(0, answeredBefore)).toEqual(range(answeredBefore).map((i) => ({ value: { n: i * 2, instance: expect.any(String) } })));
      expect(results.slice(answeredBefore, 50).every((r) => "code" in r && r.code === "ERR_OOM")).toBe(true);
      const ids = instances(results.slice(0, answeredBefore));
      expect(new Set(ids).size).toBeLessThanOrEqual(1);
      // After it: every call answered, all by one new instance.
      expect(results.slice(51)).toEqual(range(149).map((i) => ({ value: { n: (i + 51) * 2, instance: expect.any(String) } })));
      const after = instances(results.slice(51));
      expect(new Set(after).size).toBe(1);
      if (ids[0] !== undefined) expect(after[0]).not.toBe(ids[0]);
    });

    it("fails only the call that spun after an await (ERR_TIMEOUT): the answer's crossing carries the deadline, so the loop is stopped without a restart and every other call is answered by the same instance", async () => {
      const before = restarts(t, "wedged");
      const results = await outcomes(range(100).map((i) => t.kernel.call("wedged", i === 30 ? "spinAfterCall" : "double", i)));
      expect(results).toEqual(range(100).map((i) => (i === 30 ? { code: "ERR_TIMEOUT" } : { value: { n: i * 2, instance: expect.any(String) } })));
      expect(restarts(t, "wedged")).toBe(before);
      expect(new Set(instances(results).filter((id) => id !== "")).size).toBe(1);
    });
  });
});

describe("batched crossings keep probation's error count", () => {
  let t: TestKernel;
  beforeAll(async () => {
    t = await startKernel({
      services: { p36: { entry: COUNTER }, p37: { entry: COUNTER } },
      // Room for a loaded machine to see the new version and fail 37 checks inside the window.
      swap: { probationMs: 4000, probationMaxErrors: 36 },
    });
  });
  afterAll(() => t.kernel.stop());

  /** Swaps `service` to the faulty version and, once it serves, queues 300 checks at once of which `failing` fail. */
  async function swapAndFail(service: string, failing: number): Promise<{ outcome: string; code: string | undefined; results: Outcome[] }> {
    const swapping = t.kernel.swap(service, `${t.kernel.config.dir}/behaviour/batch-counter-faulty.ts`);
    const semver = (): string | null | undefined => t.kernel.status().find((s) => s.name === service)?.semver;
    await eventually(() => expect(semver()).toBe("2.0.1-faulty"));
    const fails = (i: number): boolean => i % 8 === 3 && i < 8 * failing;
    const results = await outcomes(range(300).map((i) => t.kernel.call(service, "check", { i, fail: fails(i) })));
    const report = await swapping;
    // Every check that was not meant to fail was answered, whichever version took it.
    expect(results.filter((r, i) => !fails(i) && !("value" in r && r.value === i))).toEqual([]);
    return { outcome: report.outcome, code: report.error?.code, results };
  }

  it("keeps a new version that fails 36 of a batch of 300 within probationMaxErrors: 36", async () => {
    const { outcome, code, results } = await swapAndFail("p36", 36);
    expect(results.filter((r) => "code" in r)).toEqual(range(36).map(() => ({ code: "ERR_BATCH_FAIL" })));
    expect({ outcome, code }).toEqual({ outcome: "committed", code: undefined });
    expect(await t.kernel.call("p36", "which")).toBe("v2");
  });

  it("rolls back with ERR_SWAP_PROBATION a new version that fails 37 of a batch of 300, one past probationMaxErrors", async () => {
    const { outcome, code, results } = await swapAndFail("p37", 37);
    expect(results.filter((r) => "code" in r)).toEqual(range(37).map(() => ({ code: "ERR_BATCH_FAIL" })));
    expect({ outcome, code }).toEqual({ outcome: "rolled-back", code: "ERR_SWAP_PROBATION" });
    expect(await t.kernel.call("p37", "which")).toBe("v1");
  });
});
