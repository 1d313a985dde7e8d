// The HTTP gateway: routes each request by path prefix to a binding's `fetch`
// handler, with the prefix stripped from the URL. The route table is its
// config: { routes: { "/counter": "counter", "/kv": "kv" } } (prefix → binding).
// An answer the ingress could not write fails here, as ERR_BAD_RESPONSE
// naming the binding that gave it (see response.ts).

import { defineService, type HttpRequest, type HttpResponse } from "molt/service";
import { responseProblem } from "./response.ts";

type Config = { routes?: Record<string, string> };
type State = { routes: [prefix: string, binding: string][] };

function json(status: number, value: unknown): HttpResponse {
  return { status, headers: { "content-type": "application/json" }, body: JSON.stringify(value) };
}

/** Longest prefix first, so "/api/v2" wins over "/api". */
function table(config: Config | undefined): State["routes"] {
  const routes = Object.entries(config?.routes ?? {}).map(
    ([prefix, binding]): [string, string] => [prefix === "/" ? "" : prefix.replace(/\/+$/, ""), binding],
  );
  return routes.sort((a, b) => b[0].length - a[0].length);
}

export default defineService<State, Config>({
  version: "1.0.0",
  stateVersion: 1,
  // Its handlers only read the route table: many requests may wait on their
  // services at once, so one slow service does not hold up the others.
  concurrency: 64,
  init: (ctx) => ({ routes: table(ctx.config) }),
  // The route table always comes from the current config, also after a restore.
  start: (state, ctx) => {
    state.routes = table(ctx.config);
  },
  handlers: {
    fetch: async (state, req: HttpRequest, ctx) => {
      const url = new URL(req.url);
      const route = state.routes.find(
        ([prefix]) => url.pathname === prefix || url.pathname.startsWith(`${prefix}/`) || prefix === "",
      );
      if (route === undefined) {
        return json(404, { error: { code: "ERR_NO_ROUTE", message: `no route for ${url.pathname}` } });
      }
      const [prefix, binding] = route;
      url.pathname = url.pathname.slice(prefix.length) || "/";
      const answer = await ctx.call<HttpResponse>(binding, "fetch", { ...req, url: url.href });
      const problem = responseProblem(answer);
      if (problem !== undefined) {
        throw Object.assign(new Error(`${binding} (route ${prefix || "/"}) answered ${problem}`), { code: "ERR_BAD_RESPONSE" });
      }
      return answer;
    },
    routes: (state) => Object.fromEntries(state.routes.map(([prefix, binding]) => [prefix || "/", binding])),
  },
});
