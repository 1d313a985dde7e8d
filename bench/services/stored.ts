// The service of bench:storage: a small in-heap state (a counter) beside
// whatever it keeps in ctx.storage. Its two versions (this file and
// stored-v2.ts) differ in semver only, so a swap between them measures
// molt's mechanics, not a migration.
import { defineService } from "molt/service";

/** The value of a throughput put: about 100 bytes once encoded. */
const VALUE = "v".repeat(96);

/** The i-th of `count` keys in a scattered order, so that reads do not walk the tree in key order. */
const scattered = (i: number, count: number): number => (i * 7919) % count;

const key = (prefix: string, i: number): string => `${prefix}${String(i).padStart(8, "0")}`;

export default defineService({
  version: "1.0.0",
  stateVersion: 1,
  init: () => ({ count: 0 }),
  handlers: {
    /** Writes `count` keys of about 100 bytes each, in one commit. */
    seed: async (_state, { prefix, count }: { prefix: string; count: number }, ctx) => {
      const entries: Record<string, unknown> = {};
      for (let i = 0; i < count; i++) entries[key(prefix, i)] = { i, text: VALUE.slice(0, 80) };
      await ctx.storage.put(entries);
      return count;
    },
    /**
     * Reads each of `count` keys once, each get timed on its own (ms), and
     * the whole pass timed as one block; also what reading the clock
     * costs, since every performance.now() in an isolate is a crossing to
     * the host.
     */
    gets: async (_state, { prefix, count }: { prefix: string; count: number }, ctx) => {
      const clock: number[] = [];
      for (let i = 0; i < 500; i++) {
        const a = performance.now();
        clock.push(performance.now() - a);
      }
      const samples: number[] = new Array<number>(count);
      const t0 = performance.now();
      for (let i = 0; i < count; i++) {
        const a = performance.now();
        const value = await ctx.storage.get(key(prefix, scattered(i, count)));
        samples[i] = performance.now() - a;
        if (value === undefined) throw new Error(`key ${scattered(i, count)} is missing`);
      }
      const elapsed = performance.now() - t0;
      return { samples, clock, elapsed };
    },
    /** The same reads, untimed one by one: the pass's time over `count` is a get's mean cost with no clock inside it. */
    getsBlock: async (_state, { prefix, count }: { prefix: string; count: number }, ctx) => {
      const t0 = performance.now();
      for (let i = 0; i < count; i++) await ctx.storage.get(key(prefix, scattered(i, count)));
      return performance.now() - t0;
    },
    /** One put of about 100 bytes: its reply leaves once the write is on disk. */
    put: async (_state, k: string, ctx) => {
      await ctx.storage.put(k, VALUE);
      return true;
    },
    /** The baseline of `put`: the same message, no write. */
    nop: () => true,
    /** Stores `count` values of `bytes` bytes each from key number `start`, in one commit. */
    fill: async (_state, { start, count, bytes }: { start: number; count: number; bytes: number }, ctx) => {
      const entries: Record<string, Uint8Array> = {};
      for (let i = 0; i < count; i++) entries[key("blob/", start + i)] = new Uint8Array(bytes).fill((start + i) & 0xff);
      await ctx.storage.put(entries);
      return count;
    },
    /** The swap rows' load: one in-heap increment and one stored read. */
    incr: async (state, _payload, ctx) => {
      await ctx.storage.get("meta");
      return ++state.count;
    },
    count: (state) => state.count,
    setMeta: async (_state, value: unknown, ctx) => {
      await ctx.storage.put("meta", value);
      return true;
    },
  },
});
