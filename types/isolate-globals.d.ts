// The globals a molt service has inside its V8 isolate, and no others: what
// the guest runtime installs (guest/globals.ts, guest/web/) on top of
// ECMAScript. sdk/tsconfig.service.json type-checks service code against
// this file with no Node types, so that `Buffer`, `process`, `require` and
// `node:*` imports fail in the editor and in `tsc`, not at the first request.
// There is no DOM either: no `window`, `document`, `Request`, streams or
// WebAssembly. Keep it in step with guest/globals.ts.
//
// It lives outside the folders the repository's own tsconfig.json checks:
// host code runs in Node and sees Node's globals, which these would clash with.

/** console: each line goes to the runtime's log, bounded per service. */
interface Console {
  log(...data: unknown[]): void;
  info(...data: unknown[]): void;
  debug(...data: unknown[]): void;
  trace(...data: unknown[]): void;
  warn(...data: unknown[]): void;
  error(...data: unknown[]): void;
}
declare var console: Console;

/** Timers run by the host; past `limits.timers` pending, setTimeout throws ERR_LIMIT. A timer id is a number. */
declare function setTimeout<A extends unknown[]>(callback: (...args: A) => unknown, ms?: number, ...args: A): number;
declare function setInterval<A extends unknown[]>(callback: (...args: A) => unknown, ms?: number, ...args: A): number;
declare function clearTimeout(id: number | undefined): void;
declare function clearInterval(id: number | undefined): void;
declare function queueMicrotask(callback: () => void): void;

/** A deep copy through msgpack: Maps, Sets, Dates, binary data and cycles survive; functions throw ERR_UNENCODABLE. */
declare function structuredClone<T>(value: T): T;

declare function atob(data: string): string;
declare function btoa(data: string): string;

/** Randomness from the host's CSPRNG. There is no `crypto.subtle`. */
interface Crypto {
  getRandomValues<T extends ArrayBufferView | null>(array: T): T;
  randomUUID(): `${string}-${string}-${string}-${string}-${string}`;
}
declare var crypto: Crypto;

interface Performance {
  readonly timeOrigin: number;
  now(): number;
}
declare var performance: Performance;

interface TextEncoderEncodeIntoResult {
  read: number;
  written: number;
}
declare class TextEncoder {
  readonly encoding: "utf-8";
  encode(input?: string): Uint8Array;
  encodeInto(source: string, destination: Uint8Array): TextEncoderEncodeIntoResult;
}

interface TextDecoderOptions {
  fatal?: boolean;
  ignoreBOM?: boolean;
}
interface TextDecodeOptions {
  stream?: boolean;
}
/** UTF-8 only. */
declare class TextDecoder {
  constructor(label?: "utf-8" | "utf8" | "unicode-1-1-utf-8", options?: TextDecoderOptions);
  readonly encoding: "utf-8";
  readonly fatal: boolean;
  readonly ignoreBOM: boolean;
  decode(input?: ArrayBuffer | SharedArrayBuffer | ArrayBufferView, options?: TextDecodeOptions): string;
}

declare class URLSearchParams {
  constructor(init?: string | Iterable<Iterable<string>> | Record<string, string> | URLSearchParams);
  readonly size: number;
  append(name: string, value: string): void;
  delete(name: string, value?: string): void;
  get(name: string): string | null;
  getAll(name: string): string[];
  has(name: string, value?: string): boolean;
  set(name: string, value: string): void;
  sort(): void;
  forEach(callback: (value: string, name: string, params: URLSearchParams) => void, thisArg?: unknown): void;
  keys(): IterableIterator<string>;
  values(): IterableIterator<string>;
  entries(): IterableIterator<[string, string]>;
  [Symbol.iterator](): IterableIterator<[string, string]>;
  toString(): string;
}

declare class URL {
  constructor(url: string | URL, base?: string | URL);
  static canParse(url: string | URL, base?: string | URL): boolean;
  static parse(url: string | URL, base?: string | URL): URL | null;
  hash: string;
  host: string;
  hostname: string;
  href: string;
  readonly origin: string;
  password: string;
  pathname: string;
  port: string;
  protocol: string;
  search: string;
  readonly searchParams: URLSearchParams;
  username: string;
  toString(): string;
  toJSON(): string;
}

type HeadersInit = Headers | Iterable<Iterable<string>> | Record<string, string>;

declare class Headers {
  constructor(init?: HeadersInit);
  append(name: string, value: string): void;
  delete(name: string): void;
  get(name: string): string | null;
  getSetCookie(): string[];
  has(name: string): boolean;
  set(name: string, value: string): void;
  forEach(callback: (value: string, name: string, headers: Headers) => void, thisArg?: unknown): void;
  keys(): IterableIterator<string>;
  values(): IterableIterator<string>;
  entries(): IterableIterator<[string, string]>;
  [Symbol.iterator](): IterableIterator<[string, string]>;
}

/** What a body may be; there are no streams in an isolate, bodies are whole. */
type BodyInit = string | ArrayBuffer | ArrayBufferView | URLSearchParams;

interface ResponseInit {
  status?: number;
  statusText?: string;
  headers?: HeadersInit;
}

declare class Response {
  constructor(body?: BodyInit | null, init?: ResponseInit | null);
  static error(): Response;
  static json(data: unknown, init?: ResponseInit | null): Response;
  static redirect(url: string | URL, status?: number): Response;
  readonly type: "default" | "error";
  readonly url: string;
  readonly redirected: boolean;
  readonly status: number;
  readonly ok: boolean;
  readonly statusText: string;
  readonly headers: Headers;
  readonly bodyUsed: boolean;
  arrayBuffer(): Promise<ArrayBuffer>;
  bytes(): Promise<Uint8Array>;
  text(): Promise<string>;
  json(): Promise<unknown>;
  clone(): Response;
}

/** The fields of a RequestInit that fetch passes on. */
interface RequestInit {
  method?: string;
  headers?: HeadersInit;
  body?: BodyInit | null;
  redirect?: "follow" | "error" | "manual";
}

/** Only to hosts the service's `permissions.net` grants; any other fails with ERR_PERMISSION. There is no Request class: pass a URL and an init. */
declare function fetch(input: string | URL | (RequestInit & { url: string }), init?: RequestInit): Promise<Response>;
