// The key-value store, version 1.1: the same store and the same state as
// index.ts (stateVersion 1), plus `HEAD /kv/<key>`, which says whether a key
// exists (200 or 404) without sending its value.
//   get(key) · set({ key, value }) · delete(key) · list({ prefix? }) · size()
//   GET · HEAD · PUT · DELETE /kv/<key> · GET /kv/?prefix=<p>

import { defineService, type HttpRequest } from "molt/service";
import v1 from "./index.ts";

type State = { data: Map<string, unknown> };

export default defineService<State>({
  ...v1,
  version: "1.1.0",
  handlers: {
    ...v1.handlers,
    fetch: (state, req: HttpRequest, ctx) => {
      if (req.method === "HEAD") {
        const key = decodeURIComponent(new URL(req.url).pathname.slice(1));
        return { status: key !== "" && state.data.has(key) ? 200 : 404 };
      }
      return v1.handlers.fetch?.(state, req, ctx);
    },
  },
});
