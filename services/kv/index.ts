// The key-value store: the canonical stateful service. Its entries live in
// ctx.storage (store.ts), so an acknowledged write survives a crash of the
// runtime and a swap never moves them. Values are any msgpack-able value by
// message, text over HTTP:
//   get(key) · set({ key, value }) · delete(key) · list({ prefix? }) · size()
//   GET /kv/<key> · PUT /kv/<key> (body) · DELETE /kv/<key> · GET /kv/?prefix=<p>
// A key storage refuses (too long) fails with ERR_BAD_KEY, over HTTP as 400.

import { defineService, type HttpRequest, type HttpResponse, type ServiceContext } from "molt/service";
import { entries, read, remove, write, type State } from "./store.ts";

/** In the order kv has always listed: by UTF-16 code units (storage's own order is by UTF-8 bytes, and old heap entries come unsorted). */
async function list(state: State, ctx: ServiceContext, prefix: string): Promise<{ key: string; value: unknown }[]> {
  return [...(await entries(state, ctx.storage, prefix))]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, value]) => ({ key, value }));
}

function respond(status: number, body: string, type = "text/plain; charset=utf-8"): HttpResponse {
  return { status, headers: { "content-type": type }, body };
}

/** A refusal shaped as the HTTP ingress shapes its own errors. */
function badRequest(code: string, message: string): HttpResponse {
  return respond(400, JSON.stringify({ error: { code, message } }), "application/json");
}

async function serveHttp(state: State, req: HttpRequest, ctx: ServiceContext): Promise<HttpResponse> {
  const url = new URL(req.url);
  let key: string;
  try {
    key = decodeURIComponent(url.pathname.slice(1));
  } catch {
    return badRequest("ERR_BAD_REQUEST", "the key is not valid percent-encoded UTF-8");
  }
  if (key === "") {
    if (req.method !== "GET") return respond(405, "use GET / to list keys\n");
    return respond(200, JSON.stringify(await list(state, ctx, url.searchParams.get("prefix") ?? "")), "application/json");
  }
  try {
    switch (req.method) {
      case "GET": {
        const value = await read(state, ctx.storage, key);
        if (value === undefined) return respond(404, `no key ${key}\n`);
        return typeof value === "string" ? respond(200, value) : respond(200, JSON.stringify(value), "application/json");
      }
      case "PUT":
      case "POST":
        await write(ctx.storage, key, req.body === null ? "" : new TextDecoder().decode(req.body));
        return respond(200, "OK\n");
      case "DELETE":
        return (await remove(state, ctx.storage, key)) ? respond(200, "deleted\n") : respond(404, `no key ${key}\n`);
      default:
        return respond(405, `${req.method} is not supported on a key\n`);
    }
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === "ERR_BAD_KEY") return badRequest(code, (err as Error).message);
    throw err;
  }
}

export default defineService<State>({
  version: "2.0.0",
  // 2: the entries are in storage; state holds only what a stateVersion 1 kv kept in its heap.
  stateVersion: 2,
  restoresFrom: [1, 2],
  init: () => ({ legacy: new Map() }),
  // A stateVersion 1 kv's entries stay in the heap as `legacy` (store.ts): restore only reads storage.
  restore: (dumped: any, from: number): State => (from === 1 ? { legacy: dumped.data } : dumped),
  handlers: {
    get: async (state, key: string, ctx) => (await read(state, ctx.storage, key)) ?? null,
    set: async (_state, { key, value }: { key: string; value: unknown }, ctx) => {
      await write(ctx.storage, key, value);
      return true;
    },
    delete: (state, key: string, ctx) => remove(state, ctx.storage, key),
    list: (state, options: { prefix?: string } | undefined, ctx) => list(state, ctx, options?.prefix ?? ""),
    // Counts by listing every entry: fine for a store of thousands of keys, slow at millions.
    size: async (state, _payload: unknown, ctx) => (await entries(state, ctx.storage, "")).size,
    fetch: serveHttp,
  },
});
