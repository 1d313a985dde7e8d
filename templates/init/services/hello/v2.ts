// The hello service, version 2: it also remembers who it greeted last, so
// its state has a new shape (stateVersion 2). `restore` migrates v1's state
// up when this version is swapped in; v1's own `restore` takes it back down
// on `molt rollback hello`.
//   curl localhost:8090/?name=ada   → hello again, ada (#2; last: world)

import { defineService, type HttpRequest, type HttpResponse } from "molt/service";

type State = { greeted: number; last: string | null };

function text(status: number, body: string): HttpResponse {
  return { status, headers: { "content-type": "text/plain; charset=utf-8" }, body: `${body}\n` };
}

export default defineService<State>({
  version: "2.0.0",
  stateVersion: 2,
  restoresFrom: [1, 2],
  init: () => ({ greeted: 0, last: null }),
  restore: (dumped: any, from: number) => (from === 1 ? { greeted: dumped.greeted, last: null } : (dumped as State)),
  handlers: {
    fetch: (state, req: HttpRequest) => {
      const url = new URL(req.url);
      if (url.pathname === "/count") return text(200, String(state.greeted));
      const name = url.searchParams.get("name") ?? "world";
      state.greeted++;
      const last = state.last ?? "nobody";
      state.last = name;
      return text(200, `hello again, ${name} (#${state.greeted}; last: ${last})`);
    },
  },
});
