// What a service may reach outside the runtime, Deno-style: `permissions.net`
// lists the hosts `fetch` may contact, `permissions.env` the environment
// variables `ctx.env.get` may read. Anything not granted fails with
// ERR_PERMISSION. The check runs on the host, where a service cannot alter it.

import { REPLY_OK, WIRE_VERSION, errorReplyEnvelope, type FetchReply, type RedirectMode } from "../protocol/wire.ts";
import type { ResolvedPermissions } from "./config.ts";
import { ErrorCode, MoltError } from "./errors.ts";
import { decode, encode } from "./wire.ts";

const MAX_REDIRECTS = 5;
/**
 * Bounds on one fetch request. Its envelope is decoded from a service's
 * bytes, so everything in it is hostile, and Node's fetch is not built for
 * that: tens of thousands of headers keep it busy in one synchronous run.
 */
export const FETCH_LIMITS = { headers: 256, headerBytes: 64 * 1024, urlBytes: 16 * 1024, maxMessageBytes: 4 * 1024 * 1024 } as const;

// RFC 9110 "token": the characters allowed in header names and methods.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// What no header value may contain: line breaks, NUL, and anything above U+00FF.
const BAD_VALUE = /[\0\r\n]|[^\0-\xff]/;
const FORBIDDEN_METHODS = new Set(["CONNECT", "TRACE", "TRACK"]);
// Methods the Fetch Standard uppercases; others are sent as written.
const NORMALIZED_METHODS = new Set(["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"]);
const REDIRECT_MODES: ReadonlySet<string> = new Set<RedirectMode>(["follow", "error", "manual"]);
const REDIRECT_STATUS = new Set([301, 302, 303, 307, 308]);
// The Fetch Standard removes these when a redirect changes the method to GET.
const BODY_HEADERS = ["content-type", "content-length", "content-encoding", "content-language", "content-location"];
// …and Authorization when a redirect leaves the origin; Node's fetch also drops these two.
const CREDENTIAL_HEADERS = ["authorization", "cookie", "proxy-authorization"];

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

/** A request as the host makes it: checked, its header names lowercased. */
interface CheckedRequest {
  url: URL;
  method: string;
  headers: Map<string, string>;
  body: Uint8Array | null;
  redirect: RedirectMode;
}

/**
 * Performs a service's fetch: the request envelope in, a reply envelope out.
 * Redirects are followed by hand so that every hop is checked against the
 * grant, not only the first, and so that credentials never follow a
 * redirect to another origin. Nothing thrown escapes: every failure is an
 * error reply with a code (ERR_BAD_MESSAGE for a malformed request,
 * ERR_MESSAGE_TOO_LARGE past `maxMessageBytes`, ERR_PERMISSION, ERR_FETCH).
 */
export async function permittedFetch(
  service: string,
  net: readonly string[],
  requestBytes: Uint8Array,
  timeoutMs: number,
  maxMessageBytes: number = FETCH_LIMITS.maxMessageBytes,
): Promise<Uint8Array> {
  try {
    if (requestBytes.byteLength > maxMessageBytes) {
      throw new MoltError(ErrorCode.MESSAGE_TOO_LARGE, `fetch request of ${requestBytes.byteLength} bytes exceeds ${service}'s maxMessageBytes (${maxMessageBytes})`, {
        service,
      });
    }
    const request = checkRequest(requestBytes, service);
    const { headers } = request;
    let { url, method, body } = request;
    for (let hop = 0; ; hop++) {
      if (!netAllows(net, url)) {
        throw new MoltError(ErrorCode.PERMISSION, `${service} may not fetch ${url.host}: not in permissions.net`, { service });
      }
      let res: Response;
      try {
        res = await fetch(url, {
          method,
          headers: [...headers],
          body: body === null || method === "GET" || method === "HEAD" ? null : body,
          redirect: "manual",
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (cause) {
        throw new MoltError(ErrorCode.FETCH, `fetch ${url.href} failed: ${(cause as Error).message}`, { service, cause });
      }
      const location = res.headers.get("location");
      if (REDIRECT_STATUS.has(res.status) && location !== null && request.redirect !== "manual") {
        await res.body?.cancel();
        if (request.redirect === "error") {
          throw new MoltError(ErrorCode.FETCH, `fetch ${url.href} was redirected, and its redirect mode is "error"`, { service });
        }
        if (hop >= MAX_REDIRECTS) throw new MoltError(ErrorCode.FETCH, `fetch ${request.url.href}: too many redirects`, { service });
        const next = parseUrl(location, url, service);
        if (next.origin !== url.origin) for (const name of CREDENTIAL_HEADERS) headers.delete(name);
        if (res.status === 303 ? method !== "GET" && method !== "HEAD" : (res.status === 301 || res.status === 302) && method === "POST") {
          method = "GET";
          body = null;
          for (const name of BODY_HEADERS) headers.delete(name);
        }
        url = next;
        continue;
      }
      const reply: FetchReply = {
        status: res.status,
        statusText: res.statusText,
        headers: [...res.headers],
        body: new Uint8Array(await res.arrayBuffer()),
        url: url.href,
        redirected: hop > 0,
      };
      return encode([WIRE_VERSION, REPLY_OK, reply]);
    }
  } catch (err) {
    const error = err instanceof MoltError ? err : new MoltError(ErrorCode.FETCH, `fetch failed: ${(err as Error)?.message}`, { service, cause: err });
    return encode(errorReplyEnvelope(error.toJSON()));
  }
}

/** Reads a request envelope whose every field is the service's to choose, or fails with ERR_BAD_MESSAGE. */
function checkRequest(bytes: Uint8Array, service: string): CheckedRequest {
  const malformed = (why: string): MoltError => new MoltError(ErrorCode.BAD_MESSAGE, `malformed fetch request: ${why}`, { service });
  let decoded: unknown;
  try {
    decoded = decode(bytes);
  } catch {
    throw malformed("undecodable");
  }
  if (!Array.isArray(decoded) || decoded[0] !== WIRE_VERSION || !isRecord(decoded[1])) throw malformed("not a fetch envelope");
  const { url: rawUrl, method: rawMethod = "GET", headers: rawHeaders = {}, body = null, redirect = "follow" } = decoded[1];

  if (typeof rawUrl !== "string" || rawUrl.length > FETCH_LIMITS.urlBytes) throw malformed(`the URL must be a string of at most ${FETCH_LIMITS.urlBytes} characters`);
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    throw malformed(`invalid URL ${JSON.stringify(rawUrl.slice(0, 200))}`);
  }

  if (typeof rawMethod !== "string" || rawMethod.length > 64 || !TOKEN.test(rawMethod)) throw malformed("the method must be an HTTP token");
  const upper = rawMethod.toUpperCase();
  if (FORBIDDEN_METHODS.has(upper)) throw malformed(`method ${upper} is not allowed`);
  const method = NORMALIZED_METHODS.has(upper) ? upper : rawMethod;

  if (!isRecord(rawHeaders)) throw malformed("headers must be a record of strings");
  const names = Object.keys(rawHeaders);
  if (names.length > FETCH_LIMITS.headers) throw malformed(`${names.length} headers, more than ${FETCH_LIMITS.headers}`);
  const headers = new Map<string, string>();
  let headerBytes = 0;
  for (const name of names) {
    const value = rawHeaders[name];
    if (!TOKEN.test(name)) throw malformed(`invalid header name ${JSON.stringify(name.slice(0, 200))}`);
    if (typeof value !== "string" || BAD_VALUE.test(value)) throw malformed(`invalid value for header ${name.slice(0, 200)}`);
    headerBytes += name.length + value.length + 4;
    if (headerBytes > FETCH_LIMITS.headerBytes) throw malformed(`headers past ${FETCH_LIMITS.headerBytes} bytes`);
    const lower = name.toLowerCase();
    const before = headers.get(lower);
    headers.set(lower, before === undefined ? value : `${before}, ${value}`);
  }

  if (body !== null && !(body instanceof Uint8Array)) throw malformed("the body must be bytes or null");
  if (typeof redirect !== "string" || !REDIRECT_MODES.has(redirect)) throw malformed('redirect must be "follow", "error" or "manual"');
  return { url, method, headers, body, redirect: redirect as RedirectMode };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

function parseUrl(raw: string, base: URL, service: string): URL {
  try {
    return new URL(raw, base);
  } catch (cause) {
    throw new MoltError(ErrorCode.FETCH, `invalid redirect location: ${raw.slice(0, 200)}`, { service, cause });
  }
}
