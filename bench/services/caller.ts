// The caller of bench:calls: measures round trips to its `peer` binding from
// inside its isolate, and drives pipelined load at it.
type Ctx = { call(binding: string, method: string, payload?: unknown): Promise<unknown> };

export default {
  version: "1.0.0",
  handlers: {
    /** n sequential round trips, each timed; also the cost of the clock itself. */
    latency: async (_s: unknown, n: number, ctx: Ctx) => {
      const clock: number[] = [];
      for (let i = 0; i < 200; i++) {
        const a = performance.now();
        clock.push(performance.now() - a);
      }
      const samples: number[] = [];
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await ctx.call("peer", "echo", i);
        samples.push(performance.now() - t0);
      }
      clock.sort((a, b) => a - b);
      return { samples, clockMs: clock[clock.length >> 1] };
    },
    /** n calls with `window` in flight at a time; resolves with the elapsed ms. */
    flood: async (_s: unknown, { n, window }: { n: number; window: number }, ctx: Ctx) => {
      const t0 = performance.now();
      let next = 0;
      const lane = async (): Promise<void> => {
        while (next < n) {
          next++;
          await ctx.call("peer", "echo", next);
        }
      };
      await Promise.all(Array.from({ length: window }, lane));
      return performance.now() - t0;
    },
  },
};
