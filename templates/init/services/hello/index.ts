// The hello service, version 1: counts the greetings it gave.
//   curl localhost:8090/?name=ada   → hello, ada (#1)
//   curl localhost:8090/count       → 1
// Its state survives a swap: `molt swap hello ./services/hello/v2.ts`.

import { defineService, type HttpRequest, type HttpResponse } from "molt/service";

type State = { greeted: number };

function text(status: number, body: string): HttpResponse {
  return { status, headers: { "content-type": "text/plain; charset=utf-8" }, body: `${body}\n` };
}

export default defineService<State>({
  version: "1.0.0",
  stateVersion: 1,
  // Also takes v2's state back on a rollback, migrating it down.
  restoresFrom: [1, 2],
  init: () => ({ greeted: 0 }),
  restore: (dumped: any, from: number) => (from === 2 ? { greeted: dumped.greeted } : (dumped as State)),
  handlers: {
    fetch: (state, req: HttpRequest) => {
      const url = new URL(req.url);
      if (url.pathname === "/count") return text(200, String(state.greeted));
      state.greeted++;
      return text(200, `hello, ${url.searchParams.get("name") ?? "world"} (#${state.greeted})`);
    },
  },
});
