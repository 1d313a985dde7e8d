// The key-value store, version 1.1: the same store and the same state as
// index.ts (stateVersion 1), plus `HEAD /kv/<key>`, which says whether a key
// exists (200 or 404) without sending its value.
//   get(key) · set({ key, value }) · delete(key) · list({ prefix? }) · size()
//   GET · HEAD · PUT · DELETE /kv/<key> · GET /kv/?prefix=<p>

import { defineService, type HttpRequest, type HttpResponse } from "molt/service";

type State = { data: Map<string, unknown> };

function checkKey(key: unknown): string {
  if (typeof key !== "string" || key === "") throw Object.assign(new TypeError("a key is a non-empty string"), { code: "ERR_BAD_KEY" });
  return key;
}

function list(state: State, prefix: string): { key: string; value: unknown }[] {
  return [...state.data]
    .filter(([key]) => key.startsWith(prefix))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, value]) => ({ key, value }));
}

function respond(status: number, body: string, type = "text/plain; charset=utf-8"): HttpResponse {
  return { status, headers: { "content-type": type }, body };
}

export default defineService<State>({
  version: "1.1.0",
  stateVersion: 1,
  init: () => ({ data: new Map() }),
  handlers: {
    get: (state, key: string) => state.data.get(checkKey(key)) ?? null,
    set: (state, { key, value }: { key: string; value: unknown }) => {
      state.data.set(checkKey(key), value);
      return true;
    },
    delete: (state, key: string) => state.data.delete(checkKey(key)),
    list: (state, options: { prefix?: string } | undefined) => list(state, options?.prefix ?? ""),
    size: (state) => state.data.size,
    fetch: (state, req: HttpRequest) => {
      const url = new URL(req.url);
      const key = decodeURIComponent(url.pathname.slice(1));
      if (key === "") {
        if (req.method !== "GET") return respond(405, "use GET / to list keys\n");
        return respond(200, JSON.stringify(list(state, url.searchParams.get("prefix") ?? "")), "application/json");
      }
      switch (req.method) {
        case "GET": {
          if (!state.data.has(key)) return respond(404, `no key ${key}\n`);
          const value = state.data.get(key);
          return typeof value === "string"
            ? respond(200, value)
            : respond(200, JSON.stringify(value), "application/json");
        }
        case "HEAD":
          return { status: state.data.has(key) ? 200 : 404 };
        case "PUT":
        case "POST":
          state.data.set(key, req.body === null ? "" : new TextDecoder().decode(req.body));
          return respond(200, "OK\n");
        case "DELETE":
          return state.data.delete(key) ? respond(200, "deleted\n") : respond(404, `no key ${key}\n`);
        default:
          return respond(405, `${req.method} is not supported on a key\n`);
      }
    },
  },
});
