// The service bench:containment makes V8 give up on: `grow` fills a Map
// without end, the cache that never evicts. Its hash table's backing store
// outgrows the heap limit, and V8 declares the heap lost instead of failing
// the allocation, so the kernel quarantines the isolate and brings the
// service back in a cell. `ping` is how the bench sees it answer again.
export default {
  version: "1.0.0",
  handlers: {
    ping: () => "pong",
    grow: () => {
      const m = new Map<number, number>();
      for (let i = 0; ; i++) m.set(i, i);
    },
  },
};
