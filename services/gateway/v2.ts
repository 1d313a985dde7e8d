// The HTTP gateway, version 1.1: the same routing as index.ts (by path
// prefix to a binding's `fetch`, prefix stripped, longest prefix first), and
// every answer says which gateway produced it in an `x-molt-gateway` header,
// so a client can see a swap of the gateway land. Same state as 1.0
// (stateVersion 1): it swaps both ways without a migration.

import { defineService, type HttpResponse } from "molt/service";
import v1 from "./index.ts";

const VERSION = "1.1.0";

export default defineService({
  ...v1,
  version: VERSION,
  handlers: {
    ...v1.handlers,
    fetch: async (state, req, ctx) => {
      const res = (await v1.handlers.fetch?.(state, req, ctx)) as HttpResponse;
      return { ...res, headers: { ...res.headers, "x-molt-gateway": VERSION } };
    },
  },
});
