// The example counter, version 2: its history records when each increment
// happened (stateVersion 2). It migrates v1's state up on a swap; v1 migrates
// it back down on a rollback.
//   POST /counter/incr · GET /counter · GET /counter/history

import { defineService, type HttpRequest, type HttpResponse } from "molt/service";

type Entry = { by: number; at: string };
type State = { count: number; history: Entry[] };

const HISTORY = 100;

function incr(state: State, by: number): number {
  state.count += by;
  state.history.push({ by, at: new Date().toISOString() });
  if (state.history.length > HISTORY) state.history.splice(0, state.history.length - HISTORY);
  return state.count;
}

function text(status: number, body: string, type = "text/plain; charset=utf-8"): HttpResponse {
  return { status, headers: { "content-type": type }, body: `${body}\n` };
}

export default defineService<State>({
  version: "2.0.0",
  stateVersion: 2,
  restoresFrom: [1, 2],
  init: () => ({ count: 0, history: [] }),
  restore: (dumped: any, from: number) =>
    from === 1
      ? { count: dumped.count, history: (dumped.history as number[]).map((by) => ({ by, at: "before v2" })) }
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
      if (req.method === "GET" && path === "/history") return text(200, JSON.stringify(state.history), "application/json");
      if (req.method === "GET" && (path === "/" || path === "/get")) return text(200, String(state.count));
      return text(404, `no ${req.method} ${path} on counter v2 (try POST /incr, GET /, GET /history)`);
    },
  },
});
