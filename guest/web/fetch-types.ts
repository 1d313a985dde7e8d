// Headers and Response for a bare V8 isolate, plus the argument handling of
// fetch(input, init). The network itself is the host's business: a guest's
// fetch turns its arguments into plain data with normalizeFetchInit, and the
// host's reply into a Response. There are no streams in the isolate, so
// bodies are whole byte arrays and Response has no `body` stream.

import { TextDecoder, TextEncoder, toBytes } from "./encoding.ts";
import { URL } from "./url.ts";

/** Anything `new Headers(init)` accepts. */
export type HeadersInit = Headers | Iterable<Iterable<string>> | Record<string, string>;

/** URLSearchParams as body: ours, or any object that reports itself as one. */
interface SearchParamsLike {
  toString(): string;
}

/** The body types this runtime supports; anything else is sent as String(body). */
export type BodyInit = string | ArrayBuffer | ArrayBufferView | SearchParamsLike;

export interface ResponseInit {
  status?: number | undefined;
  statusText?: string | undefined;
  headers?: HeadersInit | undefined;
}

/** The fields of a RequestInit that a guest's fetch passes on. */
export interface RequestInitLike {
  method?: string | undefined;
  headers?: HeadersInit | undefined;
  body?: BodyInit | null | undefined;
  redirect?: RedirectMode | undefined;
}

/** How a fetch treats a redirect: follow it, fail, or hand back the 3xx response as it is. */
export type RedirectMode = "follow" | "error" | "manual";
const REDIRECT_MODES: ReadonlySet<string> = new Set<RedirectMode>(["follow", "error", "manual"]);

/** A Request-like first argument to fetch: anything with a string `url`. */
export interface RequestLike extends RequestInitLike {
  url: string;
}

export type RequestInfoLike = string | URL | RequestLike | { href: string };

/** fetch's arguments reduced to what the host needs to make the request. */
export interface NormalizedFetchInit {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: Uint8Array | null;
  redirect: RedirectMode;
}

// RFC 9110 "token": the characters allowed in header names and methods.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Leading and trailing "HTTP whitespace", which header values shed.
const HTTP_WHITESPACE_EDGES = /^[\t\n\r ]+|[\t\n\r ]+$/g;
// Characters no header value may contain, even after trimming.
const FORBIDDEN_IN_VALUE = /[\0\n\r]/;
// Anything above U+00FF cannot be a byte of a ByteString.
const NON_BYTE = /[^\0-\xff]/;

function toByteString(value: unknown, what: string): string {
  const s = String(value);
  if (NON_BYTE.test(s)) throw new TypeError(`${what}: ${JSON.stringify(s)} has characters outside the Latin-1 range`);
  return s;
}

function headerName(name: unknown, method: string): string {
  const s = toByteString(name, `Headers.${method}`);
  if (!TOKEN.test(s)) throw new TypeError(`Headers.${method}: ${JSON.stringify(s)} is an invalid header name`);
  return s.toLowerCase();
}

function headerValue(value: unknown, method: string): string {
  const s = toByteString(value, `Headers.${method}`).replace(HTTP_WHITESPACE_EDGES, "");
  if (FORBIDDEN_IN_VALUE.test(s)) throw new TypeError(`Headers.${method}: ${JSON.stringify(s)} is an invalid header value`);
  return s;
}

function isObject(value: unknown): value is object {
  return (typeof value === "object" && value !== null) || typeof value === "function";
}

function tagOf(value: unknown): string {
  return Object.prototype.toString.call(value);
}

/** HTTP headers: case-insensitive names, repeated names combined with ", ". */
export class Headers {
  // Names are stored lowercased, in insertion order; repeats stay separate
  // so that Set-Cookie, which must never be combined, survives intact.
  #list: Array<[string, string]> = [];

  constructor(init?: HeadersInit) {
    if (init === undefined) return;
    if (!isObject(init)) {
      throw new TypeError("Headers constructor: init must be a sequence of pairs or a record");
    }
    if (init instanceof Headers) {
      this.#list = init.#list.map(([n, v]): [string, string] => [n, v]);
      return;
    }
    const iterator = (init as { [Symbol.iterator]?: unknown })[Symbol.iterator];
    if (iterator !== undefined && iterator !== null) {
      if (typeof iterator !== "function") throw new TypeError("Headers constructor: init is not iterable");
      for (const pair of init as Iterable<Iterable<string>>) {
        if (!isObject(pair)) throw new TypeError("Headers constructor: each header must be a [name, value] pair");
        const items = Array.from(pair as Iterable<string>);
        if (items.length !== 2) {
          throw new TypeError(`Headers constructor: expected name/value pair to be length 2, found ${items.length}`);
        }
        this.append(items[0] as string, items[1] as string);
      }
      return;
    }
    const record = init as Record<string, string>;
    for (const key of Object.keys(record)) this.append(key, record[key] as string);
  }

  append(name: string, value: string): void {
    this.#list.push([headerName(name, "append"), headerValue(value, "append")]);
  }

  delete(name: string): void {
    const n = headerName(name, "delete");
    this.#list = this.#list.filter(([k]) => k !== n);
  }

  get(name: string): string | null {
    const n = headerName(name, "get");
    let out: string | null = null;
    for (const [k, v] of this.#list) {
      if (k === n) out = out === null ? v : `${out}, ${v}`;
    }
    return out;
  }

  /** Every Set-Cookie value on its own, since they cannot be combined. */
  getSetCookie(): string[] {
    return this.#list.filter(([k]) => k === "set-cookie").map(([, v]) => v);
  }

  has(name: string): boolean {
    const n = headerName(name, "has");
    return this.#list.some(([k]) => k === n);
  }

  set(name: string, value: string): void {
    const n = headerName(name, "set");
    const v = headerValue(value, "set");
    const at = this.#list.findIndex(([k]) => k === n);
    if (at < 0) {
      this.#list.push([n, v]);
      return;
    }
    this.#list[at] = [n, v];
    this.#list = this.#list.filter(([k], i) => k !== n || i <= at);
  }

  forEach(callback: (value: string, name: string, headers: Headers) => void, thisArg?: unknown): void {
    if (typeof callback !== "function") throw new TypeError("Headers.forEach: callback must be a function");
    for (const [name, value] of this.#sortedAndCombined()) callback.call(thisArg, value, name, this);
  }

  *entries(): IterableIterator<[string, string]> {
    yield* this.#sortedAndCombined();
  }

  *keys(): IterableIterator<string> {
    for (const [name] of this.#sortedAndCombined()) yield name;
  }

  *values(): IterableIterator<string> {
    for (const [, value] of this.#sortedAndCombined()) yield value;
  }

  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }

  get [Symbol.toStringTag](): string {
    return "Headers";
  }

  /**
   * The Fetch Standard's "sort and combine": what iteration shows. One pass
   * groups the values by name, so that a request with many headers costs
   * n log n, not a scan of the list per name.
   */
  #sortedAndCombined(): Array<[string, string]> {
    const byName = new Map<string, string[]>();
    for (const [name, value] of this.#list) {
      const values = byName.get(name);
      if (values === undefined) byName.set(name, [value]);
      else values.push(value);
    }
    const out: Array<[string, string]> = [];
    for (const name of [...byName.keys()].sort()) {
      const values = byName.get(name) as string[];
      if (name === "set-cookie") {
        for (const value of values) out.push([name, value]);
      } else {
        out.push([name, values.join(", ")]);
      }
    }
    return out;
  }
}

/** A body as bytes, and the Content-Type its type implies, if any. */
interface ExtractedBody {
  bytes: Uint8Array;
  contentType: string | null;
}

const encoder = new TextEncoder();

/**
 * The Fetch Standard's "extract a body" for the types an isolate has.
 * Byte sources are copied, so later changes by the caller do not leak in.
 */
function extractBody(body: BodyInit | null | undefined): ExtractedBody | null {
  if (body === null || body === undefined) return null;
  if (typeof body === "string") return { bytes: encoder.encode(body), contentType: "text/plain;charset=UTF-8" };
  const tag = tagOf(body);
  if (ArrayBuffer.isView(body) || tag === "[object ArrayBuffer]" || tag === "[object SharedArrayBuffer]") {
    return { bytes: toBytes(body as ArrayBuffer | ArrayBufferView).slice(), contentType: null };
  }
  if (tag === "[object URLSearchParams]") {
    return { bytes: encoder.encode(String(body)), contentType: "application/x-www-form-urlencoded;charset=UTF-8" };
  }
  // Other objects go through the union's string branch, as in browsers.
  return { bytes: encoder.encode(String(body)), contentType: "text/plain;charset=UTF-8" };
}

// Statuses whose responses never have a body.
const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);
const REDIRECT_STATUS = new Set([301, 302, 303, 307, 308]);

/** WebIDL's `unsigned short` conversion, which truncates rather than rejects. */
function toUnsignedShort(value: unknown): number {
  const n = Number(value);
  if (!Number.isFinite(n)) return 0;
  const t = Math.trunc(n) % 65536;
  return t < 0 ? t + 65536 : t;
}

/** An HTTP response with its whole body in memory. */
export class Response {
  #status = 200;
  #statusText = "";
  #headers: Headers;
  #body: Uint8Array | null = null;
  #bodyUsed = false;
  #type: "default" | "error" = "default";
  #url = "";

  constructor(body: BodyInit | null = null, options?: ResponseInit | null) {
    // WebIDL reads a missing or null init dictionary as an empty one.
    const init = options ?? {};
    if (init.status !== undefined) {
      const status = toUnsignedShort(init.status);
      if (status < 200 || status > 599) {
        throw new RangeError(`Response constructor: status must be in the range of 200 to 599, got ${status}`);
      }
      this.#status = status;
    }
    if (init.statusText !== undefined) {
      const text = toByteString(init.statusText, "Response constructor");
      if (/[\r\n]/.test(text)) throw new TypeError("Response constructor: invalid statusText");
      this.#statusText = text;
    }
    this.#headers = new Headers(init.headers);
    const extracted = extractBody(body);
    if (extracted !== null) {
      if (NULL_BODY_STATUS.has(this.#status)) {
        throw new TypeError(`Response constructor: a response with status ${this.#status} cannot have a body`);
      }
      this.#body = extracted.bytes;
      if (extracted.contentType !== null && !this.#headers.has("content-type")) {
        this.#headers.append("content-type", extracted.contentType);
      }
    }
  }

  /** A network error, as fetch reports one: status 0, type "error". */
  static error(): Response {
    const r = new Response();
    r.#status = 0;
    r.#type = "error";
    return r;
  }

  /** A response whose body is `data` as JSON. */
  static json(data: unknown, init?: ResponseInit | null): Response {
    const text = JSON.stringify(data);
    if (text === undefined) throw new TypeError("Response.json: data is not JSON serializable");
    const r = new Response(null, init);
    if (NULL_BODY_STATUS.has(r.#status)) {
      throw new TypeError(`Response.json: a response with status ${r.#status} cannot have a body`);
    }
    r.#body = encoder.encode(text);
    if (!r.#headers.has("content-type")) r.#headers.append("content-type", "application/json");
    return r;
  }

  /** A redirect to `url`, which must parse as an absolute URL. */
  static redirect(url: string | URL, status = 302): Response {
    let location: string;
    try {
      location = new URL(String(url)).href;
    } catch {
      throw new TypeError(`Response.redirect: invalid URL ${JSON.stringify(String(url))}`);
    }
    if (!REDIRECT_STATUS.has(status)) throw new RangeError(`Response.redirect: invalid status ${status}`);
    const r = new Response(null, { status });
    r.#headers.set("location", location);
    return r;
  }

  get type(): "default" | "error" {
    return this.#type;
  }

  get url(): string {
    return this.#url;
  }

  get redirected(): boolean {
    return false;
  }

  get status(): number {
    return this.#status;
  }

  get ok(): boolean {
    return this.#status >= 200 && this.#status <= 299;
  }

  get statusText(): string {
    return this.#statusText;
  }

  get headers(): Headers {
    return this.#headers;
  }

  get bodyUsed(): boolean {
    return this.#bodyUsed;
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    const bytes = this.#consume("arrayBuffer");
    // The copy is exactly the body's length, never a larger backing store.
    return bytes.slice().buffer as ArrayBuffer;
  }

  async bytes(): Promise<Uint8Array> {
    return this.#consume("bytes").slice();
  }

  async text(): Promise<string> {
    // The Fetch Standard's "UTF-8 decode": replacement characters for bad
    // input, and a leading byte order mark dropped.
    return new TextDecoder().decode(this.#consume("text"));
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text()) as unknown;
  }

  clone(): Response {
    if (this.#bodyUsed) throw new TypeError("Response.clone: body has already been consumed");
    const r = new Response(null, { headers: this.#headers });
    r.#status = this.#status;
    r.#statusText = this.#statusText;
    r.#type = this.#type;
    r.#body = this.#body === null ? null : this.#body.slice();
    // `url` is read through the property, since the runtime may define it
    // on the instance after construction.
    r.#url = this.url;
    return r;
  }

  get [Symbol.toStringTag](): string {
    return "Response";
  }

  /** Takes the body for reading; a body can be read once, a null body always. */
  #consume(method: string): Uint8Array {
    if (this.#body === null) return new Uint8Array(0);
    if (this.#bodyUsed) throw new TypeError(`Response.${method}: body has already been read`);
    this.#bodyUsed = true;
    return this.#body;
  }
}

// Methods the Fetch Standard uppercases when given in any case; others are
// sent exactly as written, since HTTP methods are case-sensitive.
const NORMALIZED_METHODS = new Set(["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"]);
const FORBIDDEN_METHODS = new Set(["CONNECT", "TRACE", "TRACK"]);

function normalizeMethod(method: unknown): string {
  const m = String(method);
  if (!TOKEN.test(m)) throw new TypeError(`fetch: ${JSON.stringify(m)} is not a valid HTTP method`);
  const upper = m.toUpperCase();
  if (FORBIDDEN_METHODS.has(upper)) throw new TypeError(`fetch: ${JSON.stringify(m)} HTTP method is unsupported`);
  return NORMALIZED_METHODS.has(upper) ? upper : m;
}

/**
 * Reduces fetch's (input, init) to a URL, method, header record and body
 * bytes, applying the checks the Fetch Standard makes when it builds a
 * Request: the URL must be absolute and carry no credentials, the method a
 * token and not CONNECT/TRACE/TRACK, GET and HEAD may not have a body, and
 * the redirect mode one of "follow", "error" and "manual". Header names come
 * back lowercased, repeated headers combined with ", ".
 */
export function normalizeFetchInit(input: RequestInfoLike, options?: RequestInitLike | null): NormalizedFetchInit {
  // WebIDL reads a missing or null init dictionary as an empty one.
  const init = options ?? {};
  let href: string;
  let base: RequestInitLike = {};
  if (typeof input === "string") {
    href = input;
  } else if (input instanceof URL || tagOf(input) === "[object URL]") {
    href = String(input);
  } else if (isObject(input) && typeof (input as RequestLike).url === "string") {
    base = input as RequestLike;
    href = (input as RequestLike).url;
  } else if (isObject(input) && typeof (input as { href?: unknown }).href === "string") {
    // A URL object from another realm, or a URL-like record.
    href = (input as { href: string }).href;
  } else {
    href = String(input);
  }

  let parsed: URL;
  try {
    parsed = new URL(href);
  } catch {
    throw new TypeError(`fetch: failed to parse URL from ${href}`);
  }
  if (parsed.username !== "" || parsed.password !== "") {
    throw new TypeError(`fetch: the URL ${href} includes credentials`);
  }

  const method = normalizeMethod(init.method ?? base.method ?? "GET");
  const headers = new Headers(init.headers ?? base.headers);
  const extracted = extractBody(init.body !== undefined ? init.body : base.body);
  if (extracted !== null && (method === "GET" || method === "HEAD")) {
    throw new TypeError("fetch: a request with GET or HEAD method cannot have a body");
  }
  if (extracted !== null && extracted.contentType !== null && !headers.has("content-type")) {
    headers.set("content-type", extracted.contentType);
  }

  const redirect = String(init.redirect ?? base.redirect ?? "follow");
  if (!REDIRECT_MODES.has(redirect)) throw new TypeError(`fetch: ${JSON.stringify(redirect)} is not a valid redirect mode`);

  const record: Record<string, string> = {};
  for (const [name, value] of headers) {
    // Iteration keeps each Set-Cookie apart; a request sends them combined like any other header.
    const combined = Object.hasOwn(record, name) ? `${record[name] as string}, ${value}` : value;
    // defineProperty, because a header may be named "__proto__".
    Object.defineProperty(record, name, { value: combined, enumerable: true, writable: true, configurable: true });
  }
  return {
    url: parsed.href,
    method,
    headers: record,
    body: extracted === null ? null : extracted.bytes,
    redirect: redirect as RedirectMode,
  };
}
