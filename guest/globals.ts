// The web globals a service sees inside its isolate (DESIGN.md lists them).
// V8 alone has none of them; the ones that need the outside world (time,
// randomness, timers, fetch, console) go through the host, the rest are
// plain ECMAScript from ./web.

import { Packr } from "msgpackr";
import { PACK_OPTIONS, REPLY_OK, WIRE_VERSION, wireErrorOf, type FetchReply, type FetchRequest } from "../protocol/wire.ts";
import { ErrorCode, fromWire, MoltError } from "./errors.ts";
import type { Host, LogLevel } from "./host.ts";
import { formatArgs } from "./inspect.ts";
import {
  atob,
  btoa,
  Headers,
  normalizeFetchInit,
  Response,
  TextDecoder,
  TextEncoder,
  URL,
  URLSearchParams,
} from "./web/index.ts";

type TimerEntry = { fn: (...args: unknown[]) => unknown; args: unknown[]; repeat: boolean };

export interface Globals {
  /** Runs the callback of a timer the host reports as due. */
  fireTimer(id: number): void;
  /** Forgets every timer: an instance going quiet must not wake again. */
  clearTimers(): void;
}

// Captured before any service code runs: a service that replaces it cannot change the bytes its fetches send.
const bytesSlice = Uint8Array.prototype.slice;

/**
 * The longest console line that leaves the isolate (the kernel cuts at the
 * same length, core/router.ts): cut here, so that a service logging lines of
 * megabytes does not make the host copy them before cutting.
 */
const MAX_LINE_CHARS = 16 * 1024;

function clipLine(text: string): string {
  if (text.length <= MAX_LINE_CHARS) return text;
  // Never split a surrogate pair: half of one is not a character.
  const code = text.charCodeAt(MAX_LINE_CHARS - 1);
  const end = code >= 0xd800 && code <= 0xdbff ? MAX_LINE_CHARS - 1 : MAX_LINE_CHARS;
  return `${text.slice(0, end)}… [${text.length - end} more characters cut]`;
}

export function installGlobals(host: Host, onUncaught: (where: string, err: unknown) => void, limits: { timers: number }): Globals {
  const g = globalThis as Record<string, unknown>;
  const define = (name: string, value: unknown): void => {
    Object.defineProperty(g, name, { value, writable: true, configurable: true, enumerable: false });
  };

  const log = (level: LogLevel) => (...args: unknown[]): void => host.log(level, clipLine(formatArgs(args)));
  define("console", {
    log: log("info"),
    info: log("info"),
    debug: log("debug"),
    trace: log("debug"),
    warn: log("warn"),
    error: log("error"),
  });

  // Timers: the isolate has no event loop, so the host keeps a Node timer per
  // id and calls back into the isolate when one is due.
  const timers = new Map<number, TimerEntry>();
  let nextTimer = 1;
  const setTimer = (repeat: boolean) => (fn: unknown, ms?: unknown, ...args: unknown[]): number => {
    if (typeof fn !== "function") throw new TypeError("timer callback must be a function");
    // Each pending timer costs host memory outside this isolate's heap limit.
    if (timers.size >= limits.timers) {
      throw new MoltError(ErrorCode.LIMIT, `too many pending timers: limits.timers is ${limits.timers}`);
    }
    const id = nextTimer++;
    const delay = Math.max(0, Number(ms) || 0);
    timers.set(id, { fn: fn as TimerEntry["fn"], args, repeat });
    host.setTimer(id, delay, repeat);
    return id;
  };
  const clearTimer = (id: unknown): void => {
    if (typeof id === "number" && timers.delete(id)) host.clearTimer(id);
  };
  define("setTimeout", setTimer(false));
  define("setInterval", setTimer(true));
  define("clearTimeout", clearTimer);
  define("clearInterval", clearTimer);
  define("queueMicrotask", (fn: () => void): void => {
    Promise.resolve()
      .then(fn)
      .catch((err: unknown) => onUncaught("queueMicrotask", err));
  });

  define("TextEncoder", TextEncoder);
  define("TextDecoder", TextDecoder);
  define("atob", atob);
  define("btoa", btoa);
  define("URL", URL);
  define("URLSearchParams", URLSearchParams);
  define("Headers", Headers);
  define("Response", Response);
  // WebAssembly memory lives outside the heap isolated-vm limits: a 32 MB
  // service could fill gigabytes of the kernel's process with it. Services
  // get ECMAScript and the web globals above, not WebAssembly.
  delete g.WebAssembly;

  // Randomness comes from the host's CSPRNG in blocks, so that most calls do
  // not cross the isolate boundary.
  let pool: Uint8Array = new Uint8Array(0);
  let poolAt = 0;
  const randomBytes = (n: number): Uint8Array => {
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      if (poolAt >= pool.length) {
        pool = host.random(Math.max(4096, n - filled));
        poolAt = 0;
      }
      const take = Math.min(n - filled, pool.length - poolAt);
      out.set(pool.subarray(poolAt, poolAt + take), filled);
      pool.fill(0, poolAt, poolAt + take);
      poolAt += take;
      filled += take;
    }
    return out;
  };
  define("crypto", {
    getRandomValues<T extends ArrayBufferView | null>(array: T): T {
      if (!ArrayBuffer.isView(array) || array instanceof Float32Array || array instanceof Float64Array) {
        throw new TypeError("crypto.getRandomValues needs an integer typed array");
      }
      if (array.byteLength > 65536) throw new RangeError("crypto.getRandomValues is limited to 65536 bytes");
      new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(randomBytes(array.byteLength));
      return array;
    },
    randomUUID(): string {
      const b = randomBytes(16);
      b[6] = ((b[6] ?? 0) & 0x0f) | 0x40;
      b[8] = ((b[8] ?? 0) & 0x3f) | 0x80;
      const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
    },
  });

  const timeOrigin = Date.now();
  define("performance", { timeOrigin, now: (): number => host.now() });

  const cloner = new Packr({ ...PACK_OPTIONS, writeFunction: cannotClone });
  define("structuredClone", (value: unknown): unknown => cloner.unpack(cloner.pack(value)));

  // fetch goes through the host, which checks the service's `permissions.net`
  // and fails with ERR_PERMISSION for any host not granted.
  const codec = new Packr({ ...PACK_OPTIONS });
  define("fetch", async (input: unknown, init?: unknown): Promise<Response> => {
    const request: FetchRequest = normalizeFetchInit(input as never, init as never);
    const reply = codec.unpack(await host.fetch(Reflect.apply(bytesSlice, codec.pack([WIRE_VERSION, request]), []) as Uint8Array)) as [number, number, unknown];
    if (reply[1] !== REPLY_OK) throw fromWire(wireErrorOf(reply) as never);
    const res = reply[2] as FetchReply;
    const response = new Response(res.body.byteLength === 0 ? null : res.body, {
      status: res.status,
      statusText: res.statusText,
      headers: res.headers,
    });
    Object.defineProperty(response, "url", { value: res.url });
    Object.defineProperty(response, "redirected", { value: res.redirected === true });
    return response;
  });

  return {
    fireTimer(id: number): void {
      const entry = timers.get(id);
      if (entry === undefined) return;
      if (!entry.repeat) timers.delete(id);
      try {
        const result = entry.fn(...entry.args);
        if (result instanceof Promise) result.catch((err: unknown) => onUncaught("timer", err));
      } catch (err) {
        onUncaught("timer", err);
      }
    },
    clearTimers(): void {
      for (const id of timers.keys()) host.clearTimer(id);
      timers.clear();
    },
  };
}

function cannotClone(): never {
  throw new MoltError(ErrorCode.UNENCODABLE, "a function cannot be cloned or sent");
}
