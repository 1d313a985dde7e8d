// The HTTP gateway, version 1.1: the same routing as index.ts (by path
// prefix to a binding's `fetch`, prefix stripped, longest prefix first), and
// every answer says which gateway produced it in an `x-molt-gateway` header,
// so a client can see a swap of the gateway land. Same state as 1.0
// (stateVersion 1): it swaps both ways without a migration.

import { defineService, type HttpRequest, type HttpResponse } from "molt/service";

type Config = { routes?: Record<string, string> };
type State = { routes: [prefix: string, binding: string][] };

const VERSION = "1.1.0";

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

function stamped(res: HttpResponse): HttpResponse {
  return { ...res, headers: { ...res.headers, "x-molt-gateway": VERSION } };
}

export default defineService<State, Config>({
  version: VERSION,
  stateVersion: 1,
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
        return stamped(json(404, { error: { code: "ERR_NO_ROUTE", message: `no route for ${url.pathname}` } }));
      }
      const [prefix, binding] = route;
      url.pathname = url.pathname.slice(prefix.length) || "/";
      return stamped(await ctx.call<HttpResponse>(binding, "fetch", { ...req, url: url.href }));
    },
    routes: (state) => Object.fromEntries(state.routes.map(([prefix, binding]) => [prefix || "/", binding])),
  },
});
