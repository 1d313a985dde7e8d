// The key-value store, version 2.1: the same store and the same state as
// index.ts (stateVersion 2), plus `HEAD /kv/<key>`, which says whether a key
// exists (200 or 404) without sending its value.
//   get(key) · set({ key, value }) · delete(key) · list({ prefix? }) · size()
//   GET · HEAD · PUT · DELETE /kv/<key> · GET /kv/?prefix=<p>

import { defineService, type HttpRequest, type HttpResponse } from "molt/service";
import kv from "./index.ts";
import type { State } from "./store.ts";

export default defineService<State>({
  ...kv,
  version: "2.1.0",
  handlers: {
    ...kv.handlers,
    fetch: async (state, req: HttpRequest, ctx) => {
      if (req.method === "HEAD") {
        if (new URL(req.url).pathname === "/") return { status: 404 };
        // A GET's status without its body: 200, 404, or 400 for a key that cannot be stored.
        const { status } = (await kv.handlers.fetch?.(state, { ...req, method: "GET" }, ctx)) as HttpResponse;
        return { status };
      }
      return kv.handlers.fetch?.(state, req, ctx);
    },
  },
});
