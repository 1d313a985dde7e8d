// A small HTTP load generator for the behaviour suites: N concurrent clients,
// each in a loop (one request at a time, keep-alive) against a loopback URL
// until stopped. It counts every request sent and answered, successes,
// failures by status or error code, and collects latencies. Bounded both in
// time and in count, so a forgotten generator cannot run away.

import { Agent, request as httpRequest } from "node:http";

export interface LoadRequest {
  method?: string;
  /** Appended to the base URL, e.g. "/counter". */
  path?: string;
  body?: string;
}

export interface LoadResponse {
  client: number;
  seq: number;
  request: LoadRequest;
  status: number;
  body: string;
}

export interface LoadFailure {
  client: number;
  seq: number;
  request: LoadRequest;
  /** The HTTP status of an answer that was not ok, or undefined for a transport error. */
  status?: number;
  /** The error code: from a JSON error body ({ error: { code } }), or the socket error (ECONNREFUSED…). */
  code: string;
  message: string;
  /** When the failure happened, ms since the generator started. */
  atMs: number;
}

export interface LoadOptions {
  /** Base URL; must be loopback (127.0.0.1, ::1 or localhost). */
  url: string;
  /** Concurrent clients, each with one request outstanding at a time. */
  clients: number;
  /** The request each client sends next; default POST to the base URL. */
  next?: (client: number, seq: number) => LoadRequest;
  /** Whether an answer counts as a success; default: status 200. */
  ok?: (response: LoadResponse) => boolean;
  /** Called for every answer counted as a success (e.g. to record what was written). */
  onOk?: (response: LoadResponse) => void;
  /** Hard bound: the generator stops on its own after this long. Default 60 s. */
  maxDurationMs?: number;
  /** Hard bound: no more than this many requests in all. Default 200 000. */
  maxRequests?: number;
  /** A request unanswered after this long is a failure (code ETIMEDOUT). Default 15 s. */
  requestTimeoutMs?: number;
  /** Optional pause between a client's requests. Default 0. */
  thinkMs?: number;
  /** Reuse connections (default true); false opens a fresh connection per request. */
  keepAlive?: boolean;
}

export interface LoadResult {
  sent: number;
  answered: number;
  /** Sent but neither answered nor failed: must be 0 once stopped. */
  lost: number;
  ok: number;
  failed: LoadFailure[];
  /** Failures counted by `status code` or transport code. */
  failuresByKind: Record<string, number>;
  /** Successes by method, e.g. { POST: 1234, GET: 12 }. */
  okByMethod: Record<string, number>;
  /** Latency of every answered request, in ms, in completion order. */
  latencies: number[];
  durationMs: number;
  /** Why it stopped: "stopped", "time" or "count". */
  stoppedBy: "stopped" | "time" | "count";
}

interface Waiter {
  predicate: () => boolean;
  resolve: () => void;
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);

export class LoadGenerator {
  readonly #options: Required<Omit<LoadOptions, "onOk">> & Pick<LoadOptions, "onOk">;
  readonly #base: URL;
  readonly #agent: Agent;
  #running = false;
  #stoppedBy: LoadResult["stoppedBy"] = "stopped";
  #startedAt = 0;
  #endedAt = 0;
  #loops: Promise<void>[] = [];
  #boundTimer: NodeJS.Timeout | undefined;
  #sent = 0;
  #answered = 0;
  #ok = 0;
  readonly #failed: LoadFailure[] = [];
  readonly #okByMethod: Record<string, number> = {};
  readonly #latencies: number[] = [];
  readonly #waiters: Waiter[] = [];

  constructor(options: LoadOptions) {
    this.#base = new URL(options.url);
    if (this.#base.protocol !== "http:" || !LOOPBACK.has(this.#base.hostname)) {
      throw new Error(`the load generator only targets loopback http URLs, not ${options.url}`);
    }
    if (!Number.isInteger(options.clients) || options.clients < 1 || options.clients > 256) {
      throw new Error("clients must be an integer from 1 to 256");
    }
    this.#options = {
      next: () => ({ method: "POST" }),
      ok: (r) => r.status === 200,
      maxDurationMs: 60_000,
      maxRequests: 200_000,
      requestTimeoutMs: 15_000,
      thinkMs: 0,
      keepAlive: true,
      ...options,
    };
    this.#agent = new Agent({ keepAlive: this.#options.keepAlive, maxSockets: options.clients });
  }

  /** Starts every client; returns this for chaining. */
  start(): this {
    if (this.#running) return this;
    this.#running = true;
    this.#startedAt = performance.now();
    this.#boundTimer = setTimeout(() => this.#halt("time"), this.#options.maxDurationMs);
    this.#boundTimer.unref();
    this.#loops = Array.from({ length: this.#options.clients }, (_, client) => this.#loop(client));
    return this;
  }

  /** Live counters, while running. */
  get sent(): number {
    return this.#sent;
  }
  get ok(): number {
    return this.#ok;
  }
  get failedCount(): number {
    return this.#failed.length;
  }
  get running(): boolean {
    return this.#running;
  }

  /** Resolves once `n` more successes than now have been counted (or the generator stopped). */
  async moreOk(n: number): Promise<void> {
    const target = this.#ok + n;
    await this.until(() => this.#ok >= target);
  }

  /** Resolves once the predicate holds after an answer, or the generator has stopped. */
  until(predicate: () => boolean): Promise<void> {
    if (predicate() || !this.#running) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ predicate, resolve }));
  }

  /** Stops sending, waits for every outstanding request to be answered or fail, and returns the tally. */
  async stop(): Promise<LoadResult> {
    this.#halt("stopped");
    await Promise.all(this.#loops);
    this.#agent.destroy();
    return this.result();
  }

  result(): LoadResult {
    const failuresByKind: Record<string, number> = {};
    for (const f of this.#failed) {
      const kind = f.status === undefined ? f.code : `${f.status} ${f.code}`;
      failuresByKind[kind] = (failuresByKind[kind] ?? 0) + 1;
    }
    return {
      sent: this.#sent,
      answered: this.#answered,
      lost: this.#sent - this.#answered - this.#failed.filter((f) => f.status === undefined).length,
      ok: this.#ok,
      failed: [...this.#failed],
      failuresByKind,
      okByMethod: { ...this.#okByMethod },
      latencies: [...this.#latencies],
      durationMs: (this.#running ? performance.now() : this.#endedAt) - this.#startedAt,
      stoppedBy: this.#stoppedBy,
    };
  }

  #halt(why: LoadResult["stoppedBy"]): void {
    if (!this.#running) return;
    this.#running = false;
    this.#stoppedBy = why;
    this.#endedAt = performance.now();
    clearTimeout(this.#boundTimer);
    for (const w of this.#waiters.splice(0)) w.resolve();
  }

  #notify(): void {
    for (let i = this.#waiters.length - 1; i >= 0; i--) {
      const w = this.#waiters[i] as Waiter;
      if (w.predicate()) {
        this.#waiters.splice(i, 1);
        w.resolve();
      }
    }
  }

  async #loop(client: number): Promise<void> {
    for (let seq = 0; this.#running; seq++) {
      if (this.#sent >= this.#options.maxRequests) {
        this.#halt("count");
        break;
      }
      const request = this.#options.next(client, seq);
      this.#sent++;
      const t0 = performance.now();
      const outcome = await this.#send(request);
      const latency = performance.now() - t0;
      if (!outcome.transport) {
        this.#answered++;
        this.#latencies.push(latency);
        const response: LoadResponse = { client, seq, request, status: outcome.status, body: outcome.body };
        if (this.#options.ok(response)) {
          this.#ok++;
          const method = request.method ?? "POST";
          this.#okByMethod[method] = (this.#okByMethod[method] ?? 0) + 1;
          this.#options.onOk?.(response);
        } else {
          this.#failed.push({ client, seq, request, status: outcome.status, code: errorCode(outcome.body), message: outcome.body.slice(0, 300), atMs: t0 - this.#startedAt });
        }
      } else {
        this.#failed.push({ client, seq, request, code: outcome.code, message: outcome.message, atMs: t0 - this.#startedAt });
      }
      this.#notify();
      if (this.#options.thinkMs > 0 && this.#running) await new Promise((r) => setTimeout(r, this.#options.thinkMs));
    }
  }

  #send(request: LoadRequest): Promise<{ transport: false; status: number; body: string } | { transport: true; code: string; message: string }> {
    const url = new URL((this.#base.pathname.replace(/\/$/, "") + (request.path ?? "")) || "/", this.#base);
    return new Promise((resolve) => {
      let settled = false;
      const settle = (value: Parameters<typeof resolve>[0]): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(value);
      };
      const body = request.body === undefined ? undefined : Buffer.from(request.body);
      const req = httpRequest(
        url,
        {
          method: request.method ?? "POST",
          agent: this.#agent,
          headers: {
            ...(body === undefined ? { "content-length": 0 } : { "content-length": body.byteLength, "content-type": "text/plain" }),
            ...(this.#options.keepAlive ? {} : { connection: "close" }),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => settle({ transport: false, status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
          res.on("error", (err: NodeJS.ErrnoException) => settle({ transport: true, code: err.code ?? "ERESPONSE", message: err.message }));
        },
      );
      const timer = setTimeout(() => {
        settle({ transport: true, code: "ETIMEDOUT", message: `no answer in ${this.#options.requestTimeoutMs} ms` });
        req.destroy();
      }, this.#options.requestTimeoutMs);
      req.on("error", (err: NodeJS.ErrnoException) => settle({ transport: true, code: err.code ?? "EREQUEST", message: err.message }));
      req.end(body);
    });
  }
}

/** Starts a load generator; stop it with `await load.stop()`. */
export function startLoad(options: LoadOptions): LoadGenerator {
  return new LoadGenerator(options).start();
}

function errorCode(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown } };
    if (typeof parsed.error?.code === "string") return parsed.error.code;
  } catch {
    // not JSON
  }
  return "-";
}

/** Median, p99 and max of a list of numbers (ms), for printing. */
export function summarize(values: readonly number[]): { n: number; median: number; p99: number; max: number } {
  if (values.length === 0) return { n: 0, median: NaN, p99: NaN, max: NaN };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
  return { n: sorted.length, median: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1] as number };
}
