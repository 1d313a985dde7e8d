// The benchmark's stateful service: a counter plus `items`, records of about
// 32 bytes each that make the state as big as the scenario asks. Its two
// versions (this file and stateful-v2.ts) differ in semver only, so the swap
// measures molt's mechanics rather than a migration's cost.
export default {
  version: "1.0.0",
  stateVersion: 1,
  init: () => ({ count: 0, items: [] as { id: number; name: string; value: number }[] }),
  handlers: {
    incr: (state: { count: number }) => ++state.count,
    get: (state: { count: number }) => state.count,
    fill: (state: { items: unknown[] }, bytes: number) => {
      state.items = Array.from({ length: Math.max(1, Math.floor(bytes / 32)) }, (_, i) => ({ id: i, name: "item", value: i * 3 }));
      return state.items.length;
    },
    fetch: (state: { count: number; items: unknown[] }, req: { method: string; url: string }) => {
      const url = new URL(req.url);
      if (url.pathname === "/fill") {
        const n = Number(url.searchParams.get("bytes"));
        state.items = Array.from({ length: Math.max(1, Math.floor(n / 32)) }, (_, i) => ({ id: i, name: "item", value: i * 3 }));
        return { status: 200, body: String(state.items.length) };
      }
      if (req.method === "POST") state.count++;
      return { status: 200, body: String(state.count) };
    },
  },
};
