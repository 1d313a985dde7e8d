// What a service may reach outside the runtime, Deno-style: `permissions.net`
// lists the hosts `fetch` may contact, `permissions.env` the environment
// variables `ctx.env.get` may read. Anything not granted fails with
// ERR_PERMISSION. The check runs on the host, where a service cannot alter it.

import { REPLY_ERROR, REPLY_OK, WIRE_VERSION } from "../protocol/wire.ts";
import type { ResolvedPermissions } from "./config.ts";
import { ErrorCode, MoltError, toMoltError } from "./errors.ts";
import { decode, encode } from "./wire.ts";

const MAX_REDIRECTS = 5;

/** The environment values a service is granted, read once when its instance boots. */
export function grantedEnv(permissions: ResolvedPermissions, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const granted: Record<string, string> = {};
  for (const name of permissions.env) {
    const value = env[name];
    if (value !== undefined) granted[name] = value;
  }
  return granted;
}

/** Whether `url` is reachable under `net`: "host" grants every port, "host:port" one port. */
export function netAllows(net: readonly string[], url: URL): boolean {
  if (url.protocol !== "http:" && url.protocol !== "https:") return false;
  const host = url.hostname.toLowerCase();
  const port = url.port !== "" ? url.port : url.protocol === "https:" ? "443" : "80";
  return net.some((grant) => {
    const g = grant.toLowerCase();
    const colon = g.lastIndexOf(":");
    const bracketed = g.startsWith("[");
    const hasPort = colon > 0 && (!bracketed || g.lastIndexOf("]") < colon);
    const grantHost = hasPort ? g.slice(0, colon) : g;
    return grantHost === host && (!hasPort || g.slice(colon + 1) === port);
  });
}

interface FetchRequest {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: Uint8Array | null;
  redirect?: string;
}

/**
 * Performs a service's fetch: the request envelope in, a reply envelope out.
 * Redirects are followed by hand so that every hop is checked against the
 * grant, not only the first.
 */
export async function permittedFetch(service: string, net: readonly string[], requestBytes: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
  try {
    const decoded = decode(requestBytes) as [number, FetchRequest];
    if (!Array.isArray(decoded) || decoded[0] !== WIRE_VERSION || typeof decoded[1]?.url !== "string") {
      throw new MoltError(ErrorCode.BAD_MESSAGE, "malformed fetch request", { service });
    }
    const request = decoded[1];
    let url = parseUrl(request.url, service);
    let method = request.method;
    let body = request.body;
    for (let hop = 0; ; hop++) {
      if (!netAllows(net, url)) {
        throw new MoltError(ErrorCode.PERMISSION, `${service} may not fetch ${url.host}: not in permissions.net`, { service });
      }
      let res: Response;
      try {
        res = await fetch(url, {
          method,
          headers: request.headers,
          body: body === null || method === "GET" || method === "HEAD" ? null : body,
          redirect: "manual",
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (cause) {
        throw new MoltError(ErrorCode.FETCH, `fetch ${url.href} failed: ${(cause as Error).message}`, { service, cause });
      }
      const location = res.headers.get("location");
      if (res.status >= 300 && res.status < 400 && location !== null && request.redirect !== "manual") {
        if (hop >= MAX_REDIRECTS) throw new MoltError(ErrorCode.FETCH, `fetch ${request.url}: too many redirects`, { service });
        await res.body?.cancel();
        url = new URL(location, url);
        if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === "POST")) {
          method = "GET";
          body = null;
        }
        continue;
      }
      return encode([
        WIRE_VERSION,
        REPLY_OK,
        {
          status: res.status,
          statusText: res.statusText,
          headers: [...res.headers],
          body: new Uint8Array(await res.arrayBuffer()),
          url: url.href,
        },
      ]);
    }
  } catch (err) {
    return encode([WIRE_VERSION, REPLY_ERROR, toMoltError(err, ErrorCode.FETCH).toJSON()]);
  }
}

function parseUrl(raw: string, service: string): URL {
  try {
    return new URL(raw);
  } catch (cause) {
    throw new MoltError(ErrorCode.FETCH, `invalid URL: ${raw}`, { service, cause });
  }
}
