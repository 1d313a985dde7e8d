// The example service: a counter with a history, reachable by message
// (incr, get, reset) and over HTTP through the gateway:
//   POST /counter/incr   (optional body: a number)   → the new count
//   GET  /counter        → the count

import { defineService, type HttpRequest, type HttpResponse } from "molt/service";

type State = { count: number; history: number[] };

const HISTORY = 100;

function incr(state: State, by: number): number {
  state.count += by;
  state.history.push(by);
  if (state.history.length > HISTORY) state.history.splice(0, state.history.length - HISTORY);
  return state.count;
}

function text(status: number, body: string): HttpResponse {
  return { status, headers: { "content-type": "text/plain; charset=utf-8" }, body: `${body}\n` };
}

export default defineService<State>({
  version: "1.0.0",
  stateVersion: 1,
  // Also takes v2's state back (a rollback), migrating it down.
  restoresFrom: [1, 2],
  init: () => ({ count: 0, history: [] }),
  restore: (dumped: any, from: number) =>
    from === 2
      ? { count: dumped.count, history: (dumped.history as { by: number }[]).map((h) => h.by) }
      : (dumped as State),
  handlers: {
    incr: (state, by: number = 1) => {
      if (typeof by !== "number" || !Number.isFinite(by)) throw new TypeError("incr takes a finite number");
      return incr(state, by);
    },
    get: (state) => state.count,
    history: (state) => state.history,
    reset: (state) => {
      state.count = 0;
      state.history = [];
      return 0;
    },
    fetch: (state, req: HttpRequest) => {
      const path = new URL(req.url).pathname;
      if (req.method === "POST" && path === "/incr") {
        const raw = req.body === null ? "" : new TextDecoder().decode(req.body).trim();
        const by = raw === "" ? 1 : Number(raw);
        if (!Number.isFinite(by)) return text(400, `not a number: ${raw}`);
        return text(200, String(incr(state, by)));
      }
      if (req.method === "POST" && path === "/reset") {
        state.count = 0;
        state.history = [];
        return text(200, "0");
      }
      if (req.method === "GET" && (path === "/" || path === "/get")) return text(200, String(state.count));
      return text(404, `no ${req.method} ${path} on counter (try POST /incr or GET /)`);
    },
  },
});
