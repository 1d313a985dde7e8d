// The admin API: how the CLI (and operators' tools) talk to a running
// runtime. It listens on 127.0.0.1 unless configured otherwise. Reads are
// open to whoever can reach the port; write calls need the bearer token the
// runtime keeps in dataDir (mode 0600), compared in constant time.
//
//   GET  /                                  the dashboard (dashboard/, served by dashboard.ts)
//   GET  /metrics                           Prometheus text format, every metric named molt_*
//   GET  /v1/events                         server-sent events: a tick a second, each swap as it ends
//   GET  /v1/status                         every service, its version and queue
//   GET  /v1/services/:name/history         the inventory of one service
//   POST /v1/services/:name/swap            { entry }         → NDJSON progress, then the report
//   POST /v1/services/:name/rollback        { to? }           → NDJSON progress, then the report
//   POST /v1/snapshot                       { service? }      → what was written

import { randomBytes, timingSafeEqual } from "node:crypto";
import { chmodSync, existsSync, readFileSync, statSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { isAbsolute, join, relative, resolve } from "node:path";
import { isDashboardPath, serveDashboard } from "./dashboard.ts";
import { writeAtomic } from "./disk.ts";
import { ErrorCode, MoltError, toMoltError } from "./errors.ts";
import type { Kernel } from "./kernel.ts";
import type { Phase, SwapReport } from "./swap.ts";

const MAX_BODY = 64 * 1024;

/** The admin token of a dataDir, created on first use with mode 0600. */
export function adminToken(dataDir: string): string {
  const path = tokenPath(dataDir);
  if (existsSync(path)) {
    if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
    return readFileSync(path, "utf8").trim();
  }
  const token = randomBytes(32).toString("hex");
  writeAtomic(path, `${token}\n`, { mode: 0o600 });
  return token;
}

export function tokenPath(dataDir: string): string {
  return join(dataDir, "admin.token");
}

export interface AdminOptions {
  port: number;
  host: string;
  token: string;
  /** Folders a swap's entry must be inside. */
  allowedRoots: string[];
}

export class AdminServer {
  readonly #kernel: Kernel;
  readonly #options: AdminOptions;
  readonly #server: Server;
  readonly #token: Buffer;

  constructor(kernel: Kernel, options: AdminOptions) {
    this.#kernel = kernel;
    this.#options = options;
    this.#token = Buffer.from(options.token);
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => send(res, 500, { error: toMoltError(err).toJSON() }));
    });
  }

  async listen(): Promise<AddressInfo> {
    await new Promise<void>((resolvePromise, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(this.#options.port, this.#options.host, () => {
        this.#server.off("error", reject);
        resolvePromise();
      });
    });
    return this.#server.address() as AddressInfo;
  }

  get url(): string {
    const a = this.#server.address() as AddressInfo;
    return `http://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}`;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((r) => this.#server.close(() => r()));
    this.#server.closeAllConnections();
    await closed;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://admin");
    const parts = url.pathname.split("/").filter(Boolean);
    const method = req.method ?? "GET";

    if (method === "GET" && url.pathname === "/metrics") {
      const body = await this.#kernel.metrics.text();
      res.writeHead(200, { "content-type": this.#kernel.metrics.registry.contentType });
      res.end(body);
      return;
    }
    if (method === "GET" && url.pathname === "/v1/events") return this.#events(req, res);
    if (method === "GET" && isDashboardPath(url.pathname)) return serveDashboard(url.pathname, res);
    if (method === "GET" && url.pathname === "/v1/status") {
      return send(res, 200, { services: this.#kernel.status() });
    }
    if (method === "GET" && parts.length === 4 && parts[0] === "v1" && parts[1] === "services" && parts[3] === "history") {
      const service = decodeURIComponent(parts[2] as string);
      if (this.#kernel.config.services[service] === undefined) return fail(res, 404, ErrorCode.NO_SERVICE, `no service named "${service}"`);
      return send(res, 200, { service, records: this.#kernel.inventory.history(service) });
    }
    if (method !== "POST") return fail(res, 404, ErrorCode.ADMIN, `no ${method} ${url.pathname}`);
    if (!this.#authorized(req)) return fail(res, 401, ErrorCode.UNAUTHORIZED, "write calls need the bearer token from dataDir/admin.token");

    const body = await readJson(req);
    if (body instanceof MoltError) return fail(res, 400, body.code, body.message);

    if (url.pathname === "/v1/snapshot") {
      const service = body.service;
      if (service !== undefined && typeof service !== "string") return fail(res, 400, ErrorCode.BAD_MESSAGE, "service must be a string");
      return this.#run(res, () => this.#kernel.snapshot(service));
    }
    if (parts.length === 4 && parts[0] === "v1" && parts[1] === "services" && (parts[3] === "swap" || parts[3] === "rollback")) {
      const service = decodeURIComponent(parts[2] as string);
      if (this.#kernel.config.services[service] === undefined) return fail(res, 404, ErrorCode.NO_SERVICE, `no service named "${service}"`);
      if (parts[3] === "swap") {
        const entry = body.entry;
        if (typeof entry !== "string" || !isAbsolute(entry)) return fail(res, 400, ErrorCode.BAD_MESSAGE, "entry must be an absolute path");
        if (!this.#allowed(entry)) {
          return fail(res, 403, ErrorCode.PERMISSION, `${entry} is outside the allowed source roots (${this.#options.allowedRoots.join(", ")})`);
        }
        return this.#progress(res, (onPhase) => this.#kernel.swap(service, entry, { onPhase }));
      }
      const to = body.to;
      if (to !== undefined && typeof to !== "string") return fail(res, 400, ErrorCode.BAD_MESSAGE, "to must be a version id");
      return this.#progress(res, (onPhase) => this.#kernel.rollback(service, to, { onPhase }));
    }
    return fail(res, 404, ErrorCode.ADMIN, `no ${method} ${url.pathname}`);
  }

  /** Server-sent events: a `tick` a second with every service's rate, errors and p99, and a `swap` as each ends. */
  #events(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    res.write(`event: tick\ndata: ${JSON.stringify(this.#kernel.live.peek())}\n\n`);
    const unsubscribe = this.#kernel.live.subscribe((event) => res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`));
    req.on("close", unsubscribe);
  }

  #authorized(req: IncomingMessage): boolean {
    const header = req.headers.authorization ?? "";
    const given = Buffer.from(header.startsWith("Bearer ") ? header.slice(7).trim() : "");
    // Compare in constant time; a length mismatch is compared against itself so it costs the same.
    const equal = timingSafeEqual(given.length === this.#token.length ? given : this.#token, this.#token);
    return equal && given.length === this.#token.length;
  }

  #allowed(entry: string): boolean {
    const path = resolve(entry);
    return this.#options.allowedRoots.some((root) => {
      const rel = relative(resolve(root), path);
      return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel);
    });
  }

  async #run(res: ServerResponse, op: () => Promise<unknown>): Promise<void> {
    try {
      send(res, 200, { result: await op() });
    } catch (err) {
      const e = toMoltError(err);
      fail(res, statusFor(e.code), e.code, e.message);
    }
  }

  /**
   * Swap and rollback answer as NDJSON: one line per phase as it ends, then
   * the report, so the CLI can show progress live. A swap that cannot begin
   * (busy, unknown version, bad code) is an ordinary JSON error instead.
   */
  async #progress(res: ServerResponse, op: (onPhase: (phase: Phase, ms: number) => void) => Promise<SwapReport>): Promise<void> {
    let started = false;
    const start = (): void => {
      if (started) return;
      started = true;
      res.writeHead(200, { "content-type": "application/x-ndjson" });
    };
    try {
      const report = await op((phase, ms) => {
        start();
        res.write(`${JSON.stringify({ event: "phase", phase, ms })}\n`);
      });
      start();
      res.end(`${JSON.stringify({ event: "report", report })}\n`);
    } catch (err) {
      const e = toMoltError(err);
      if (started) res.end(`${JSON.stringify({ event: "error", error: e.toJSON() })}\n`);
      else fail(res, statusFor(e.code), e.code, e.message);
    }
  }
}

function statusFor(code: string): number {
  switch (code) {
    case ErrorCode.SWAP_BUSY:
    case ErrorCode.STOPPING:
      return 409;
    case ErrorCode.NO_VERSION:
    case ErrorCode.NO_SERVICE:
      return 404;
    case ErrorCode.SWAP_COMPILE:
      return 422;
    default:
      return 500;
  }
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown> | MoltError> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.byteLength;
    if (size > MAX_BODY) return new MoltError(ErrorCode.BAD_MESSAGE, `request body over ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8").trim();
  if (text === "") return {};
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      return new MoltError(ErrorCode.BAD_MESSAGE, "the body must be a JSON object");
    }
    return value as Record<string, unknown>;
  } catch {
    return new MoltError(ErrorCode.BAD_MESSAGE, "the body is not valid JSON");
  }
}

function send(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

function fail(res: ServerResponse, status: number, code: string, message: string): void {
  send(res, status, { error: { code, message } });
}
