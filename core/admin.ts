// The admin API: how the CLI (and operators' tools) talk to a running
// runtime. It listens on 127.0.0.1 unless configured otherwise. Reads are
// open to whoever can reach the port; write calls need the bearer token the
// runtime keeps in dataDir (mode 0600), compared in constant time. Every
// body and answer below is typed once, in protocol/admin.ts, for this
// server and for everyone who talks to it.
//
//   GET  /                                  the dashboard (dashboard/, served by dashboard.ts)
//   GET  /metrics                           Prometheus text format, every metric named molt_*
//   GET  /v1/events                         server-sent events: a tick a second, each swap as it ends
//   GET  /v1/status                         every service, its version and queue
//   GET  /v1/services/:name/history         the inventory of one service
//   POST /v1/services/:name/swap            { entry, freshState?, verify? } → NDJSON progress, then the report
//   POST /v1/services/:name/rollback        { to?, freshState? }   → NDJSON progress, then the report
//   POST /v1/services/:name/restart         {}                     → { result: { service, version, restarted } }
//   POST /v1/snapshot                       { service? }           → what was written, and what failed, per service
//   GET  /v1/kernel/history                 the kernel's own chain: every runtime on this dataDir
//   POST /v1/kernel/upgrade                 {}                     → NDJSON progress, then the report
//
// A web page in the operator's browser can reach 127.0.0.1 too, so every
// request is checked before it is routed:
// - the Host header must name this machine's loopback (127.0.0.1, localhost,
//   [::1]) or the configured admin.host, any port, or the answer is 421
//   ERR_PERMISSION: a DNS-rebinding page (Host: evil.example) reads nothing;
// - a write whose Origin header is present must come from the admin port's
//   own origin (403 ERR_PERMISSION otherwise);
// - a write needs the token (401 ERR_UNAUTHORIZED), which is never empty;
// - and Content-Type: application/json (415 ERR_BAD_REQUEST otherwise),
//   which a page cannot send cross-origin without a CORS preflight that
//   this server never grants.

import { timingSafeEqual } from "node:crypto";
import { realpathSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { isAbsolute, resolve } from "node:path";
import { AdminPath, NDJSON } from "../protocol/admin.ts";
import type * as Api from "../protocol/admin.ts";
import { isInside, realRoot } from "./bundle.ts";
import { isDashboardPath, serveDashboard } from "./dashboard.ts";
import { ErrorCode, MoltError, toMoltError } from "./errors.ts";
import type { Kernel } from "./kernel.ts";
import type { KernelChain } from "./kernel-chain.ts";
import { kernelIdentity } from "./kernel-version.ts";
import type { LiveEvent } from "./live.ts";
import type { Phase, SwapReport } from "./swap.ts";

export { adminToken, checkToken, readAdminToken, tokenPath } from "./admin-token.ts";

const MAX_BODY = 64 * 1024;
/** The host names that always mean this machine's loopback, as a Host header or URL spells them. */
const LOOPBACK_NAMES = ["127.0.0.1", "localhost", "[::1]"];

export interface AdminOptions {
  port: number;
  host: string;
  token: string;
  /** Folders a swap's entry, and every file its bundle reads, must be inside (by real path). */
  allowedRoots: string[];
}

/**
 * What the admin API may do to the runtime, and nothing more: the kernel's
 * operations it serves, the metrics' text and the live view.
 */
export interface AdminRuntime extends Pick<Kernel, "status" | "history" | "has" | "swap" | "rollback" | "restart" | "snapshot"> {
  metrics: { text(): Promise<string>; readonly contentType: string };
  live: { peek(): LiveEvent; subscribe(listener: (event: LiveEvent) => void): () => void };
  /** The runtime itself, as `molt status` shows it. */
  kernelInfo(): Api.KernelInfo;
  kernelHistory(): { records: Api.KernelRecord[]; corrupt: number };
  /**
   * Replaces this runtime with one started from the molt code on disk,
   * calling `onPhase` as each phase ends. Only a runtime a keeper started
   * has it: absent, an upgrade is ERR_KERNEL_UPGRADE_UNAVAILABLE.
   */
  upgrade?: (onPhase: (phase: Api.KernelUpgradePhase, ms: number) => void) => Promise<Api.KernelUpgradeReport>;
}

/**
 * The kernel's own side, from the composition root: its chain, and the
 * keeper's upgrade when a keeper started this runtime. Without a chain
 * (`molt dev`, tests) the runtime is shown as started with this process and
 * its history is empty.
 */
export interface KernelSide {
  chain?: Pick<KernelChain, "info" | "list">;
  upgrade?: AdminRuntime["upgrade"];
}

/** The admin API's view of a kernel and its watchers: each operation bound, nothing else reachable. */
export function adminRuntime(kernel: Kernel, metrics: AdminRuntime["metrics"], live: AdminRuntime["live"], side: KernelSide = {}): AdminRuntime {
  const { chain, upgrade } = side;
  const startedAt = new Date(Date.now() - process.uptime() * 1000).toISOString();
  return {
    kernelInfo: () => chain?.info() ?? { ...kernelIdentity(), pid: process.pid, startedAt, upgrades: 0, restarts: 0 },
    kernelHistory: () => chain?.list() ?? { records: [], corrupt: 0 },
    ...(upgrade === undefined ? {} : { upgrade }),
    status: () => kernel.status(),
    history: (service) => kernel.history(service),
    has: (service) => kernel.has(service),
    swap: (service, entry, options) => kernel.swap(service, entry, options),
    rollback: (service, to, options) => kernel.rollback(service, to, options),
    restart: (service) => kernel.restart(service),
    snapshot: (service) => kernel.snapshot(service),
    metrics,
    live,
  };
}

export class AdminServer {
  readonly #kernel: AdminRuntime;
  readonly #options: AdminOptions;
  readonly #server: Server;
  readonly #token: Buffer;
  /** Host names (lower case, IPv6 in brackets) this server answers to. */
  readonly #hosts: Set<string>;
  /** The upgrade in progress, settled once its answer has been handed to the socket: close() waits for it. */
  #upgrading: Promise<void> | undefined;

  constructor(kernel: AdminRuntime, options: AdminOptions) {
    // An empty token compared equal to an empty Authorization: it must never get this far.
    if (options.token === "") throw new MoltError(ErrorCode.CONFIG, "the admin token is empty");
    this.#kernel = kernel;
    this.#options = options;
    this.#token = Buffer.from(options.token);
    const configured = options.host.toLowerCase();
    this.#hosts = new Set([...LOOPBACK_NAMES, configured.includes(":") ? `[${configured}]` : configured]);
    // Node would answer a request without Host with a bare 400 itself; the check below answers it with a code.
    this.#server = createServer({ requireHostHeader: false }, (req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        if (res.headersSent) res.end();
        else send<Api.ErrorBody>(res, 500, { error: toMoltError(err).toJSON() });
      });
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
    if (this.#adopted !== undefined) return this.#adopted;
    const a = this.#server.address() as AddressInfo;
    return `http://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}`;
  }

  #adopted: string | undefined;

  /** Serves connections another process (the keeper) accepts at `url`, instead of listening. */
  adopt(url: string): void {
    this.#adopted = url;
  }

  /** A connection accepted elsewhere (paused), served from here on. */
  accept(socket: Socket): void {
    this.#server.emit("connection", socket);
    socket.resume();
  }

  /**
   * Stops listening at once, then drops every connection, once an upgrade's
   * answer (if one is running) has been written: the old runtime closes this
   * server during its handover, and whoever asked for the upgrade must still
   * read the report. So the upgrade hook may call close(), but must not wait
   * for it: close() waits for the hook's answer.
   */
  async close(): Promise<void> {
    const closed = new Promise<void>((r) => this.#server.close(() => r()));
    await this.#upgrading;
    this.#server.closeAllConnections();
    await closed;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const host = this.#host(req.headers.host);
    if (host === undefined) {
      return fail(res, 421, ErrorCode.PERMISSION, "the admin API answers only to Host 127.0.0.1, localhost, [::1] or admin.host");
    }
    // The raw target, not a URL parsed against a base: "//x/metrics" must not become "/metrics".
    const target = req.url ?? "/";
    if (!target.startsWith("/")) return fail(res, 400, ErrorCode.BAD_REQUEST, "the request target must be a path");
    const query = target.indexOf("?");
    const pathname = query < 0 ? target : target.slice(0, query);
    const parts = pathname.split("/").filter((part) => part !== "");
    const method = req.method ?? "GET";

    if (method === "GET" && pathname === "/metrics") {
      const body = await this.#kernel.metrics.text();
      res.writeHead(200, { "content-type": this.#kernel.metrics.contentType });
      res.end(body);
      return;
    }
    if (method === "GET" && pathname === "/v1/events") return this.#events(req, res);
    if (method === "GET" && isDashboardPath(pathname)) return serveDashboard(pathname, res);
    if (method === "GET" && pathname === "/v1/status") {
      return send<Api.StatusBody>(res, 200, { kernel: this.#kernel.kernelInfo(), services: this.#kernel.status() });
    }
    if (method === "GET" && pathname === AdminPath.kernelHistory) {
      const { records, corrupt } = this.#kernel.kernelHistory();
      return send<Api.KernelHistoryBody>(res, 200, { kernel: records, corrupt });
    }
    if (method === "GET" && parts.length === 4 && parts[0] === "v1" && parts[1] === "services" && parts[3] === "history") {
      const service = this.#service(res, parts[2]);
      if (service === undefined) return;
      return send<Api.HistoryBody>(res, 200, { service, records: [...this.#kernel.history(service)] });
    }
    if (method !== "POST") return fail(res, 404, ErrorCode.ADMIN, `no ${method} ${pathname}`);
    if (!this.#sameOrigin(req.headers.origin, host.port)) {
      return fail(res, 403, ErrorCode.PERMISSION, "write calls are accepted only from the admin port's own origin");
    }
    if (!this.#authorized(req)) return fail(res, 401, ErrorCode.UNAUTHORIZED, "write calls need the bearer token from dataDir/admin.token");
    if (!isJson(req.headers["content-type"])) return fail(res, 415, ErrorCode.BAD_REQUEST, "write calls need Content-Type: application/json");

    const body = await readJson(req);
    if (body instanceof MoltError) return fail(res, 400, body.code, body.message);

    if (pathname === AdminPath.kernelUpgrade) return this.#upgrade(res);
    if (pathname === "/v1/snapshot") {
      const service = own(body, "service");
      if (service !== undefined && typeof service !== "string") return fail(res, 400, ErrorCode.BAD_MESSAGE, "service must be a string");
      return this.#run<Api.SnapshotResult[]>(res, () => this.#kernel.snapshot(service));
    }
    if (parts.length === 4 && parts[0] === "v1" && parts[1] === "services" && ["swap", "rollback", "restart"].includes(parts[3] as string)) {
      const service = this.#service(res, parts[2]);
      if (service === undefined) return;
      if (parts[3] === "swap") return this.#swap(res, service, body);
      if (parts[3] === "restart") return this.#run<Api.RestartResult>(res, () => this.#kernel.restart(service));
      const to = own(body, "to");
      if (to !== undefined && typeof to !== "string") return fail(res, 400, ErrorCode.BAD_MESSAGE, "to must be a version id");
      const freshState = own(body, "freshState");
      if (freshState !== undefined && typeof freshState !== "boolean") return fail(res, 400, ErrorCode.BAD_MESSAGE, "freshState must be true or false");
      return this.#progress(res, (onPhase) => this.#kernel.rollback(service, to, { onPhase, ...(freshState === true ? { freshState } : {}) }));
    }
    return fail(res, 404, ErrorCode.ADMIN, `no ${method} ${pathname}`);
  }

  async #swap(res: ServerResponse, service: string, body: Record<string, unknown>): Promise<void> {
    const entry = own(body, "entry");
    if (typeof entry !== "string" || !isAbsolute(entry)) return fail(res, 400, ErrorCode.BAD_MESSAGE, "entry must be an absolute path");
    const freshState = own(body, "freshState");
    if (freshState !== undefined && typeof freshState !== "boolean") return fail(res, 400, ErrorCode.BAD_MESSAGE, "freshState must be true or false");
    const verify = own(body, "verify");
    if (verify !== undefined && typeof verify !== "boolean") return fail(res, 400, ErrorCode.BAD_MESSAGE, "verify must be true or false");
    const shadow = own(body, "shadow");
    if (shadow !== undefined && !(Number.isSafeInteger(shadow) && (shadow as number) >= 0)) return fail(res, 400, ErrorCode.BAD_MESSAGE, "shadow must be a whole number of messages");
    const maxDivergence = own(body, "maxDivergence");
    if (maxDivergence !== undefined && !(Number.isSafeInteger(maxDivergence) && (maxDivergence as number) >= 0)) {
      return fail(res, 400, ErrorCode.BAD_MESSAGE, "maxDivergence must be a whole number");
    }
    const expectChange = own(body, "expectChange");
    if (expectChange !== undefined && !(Array.isArray(expectChange) && expectChange.length <= 1000 && expectChange.every((m) => typeof m === "string" && m.length <= 256))) {
      return fail(res, 400, ErrorCode.BAD_MESSAGE, "expectChange must be a list of method names");
    }
    if (!this.#allowed(entry)) {
      return fail(res, 403, ErrorCode.PERMISSION, `${entry} is outside admin.allowedRoots (${this.#options.allowedRoots.join(", ")}): add its folder there in the config to swap from it`);
    }
    // Every file the bundle reads must be inside the roots too (an import, a
    // re-export, a symlink on the way): the kernel bundles with that check,
    // before anything changes, and refuses with ERR_PERMISSION.
    const allowedRoots = this.#options.allowedRoots;
    return this.#progress(res, (onPhase, onShadow) =>
      this.#kernel.swap(service, entry, {
        onPhase,
        onShadow,
        allowedRoots,
        ...(freshState === true ? { freshState } : {}),
        ...(verify === undefined ? {} : { verify }),
        ...(shadow === undefined ? {} : { shadow: shadow as number }),
        ...(maxDivergence === undefined ? {} : { maxDivergence: maxDivergence as number }),
        ...(expectChange === undefined ? {} : { expectChange: expectChange as string[] }),
      }),
    );
  }

  /** Server-sent events: a `tick` a second with every service's rate, errors and p99, and a `swap` as each ends. */
  #events(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    const write = (event: Api.LiveEvent): boolean => res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
    write(this.#kernel.live.peek());
    const unsubscribe = this.#kernel.live.subscribe(write);
    req.on("close", unsubscribe);
  }

  /** The Host header split into a name this server answers to and its port ("" when absent); undefined for any other. */
  #host(header: string | undefined): { name: string; port: string } | undefined {
    if (header === undefined) return undefined;
    const match = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(header.toLowerCase());
    if (match === null) return undefined;
    const name = match[1] as string;
    return this.#hosts.has(name) ? { name, port: match[2] ?? "" } : undefined;
  }

  /**
   * True without an Origin (the CLI, curl), or when it is this server as
   * the browser reached it: http, a host name it answers to, and its
   * listening port or the port the Host header names (a forwarded port).
   */
  #sameOrigin(origin: string | undefined, hostPort: string): boolean {
    if (origin === undefined) return true;
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      return false;
    }
    if (url.protocol !== "http:" || url.origin !== origin.toLowerCase() || !this.#hosts.has(url.hostname)) return false;
    // The port clients reach: this server's own, or the keeper's when it accepts for this one (adopt()).
    const listening = new URL(this.url).port;
    return url.port === listening || url.port === hostPort;
  }

  #authorized(req: IncomingMessage): boolean {
    const header = req.headers.authorization ?? "";
    const given = Buffer.from(header.startsWith("Bearer ") ? header.slice(7).trim() : "");
    // Compare in constant time; a length mismatch is compared against itself so it costs the same.
    const equal = timingSafeEqual(given.length === this.#token.length ? given : this.#token, this.#token);
    return equal && given.length === this.#token.length && given.length > 0;
  }

  /**
   * The entry must be inside a root by its real path: a symlink inside a
   * root that points outside is outside. An entry that does not exist is
   * judged by its path as written (its bundle will fail; nothing is read).
   */
  #allowed(entry: string): boolean {
    const roots = this.#options.allowedRoots.map(realRoot);
    let real: string;
    try {
      real = realpathSync(entry);
    } catch {
      return isInside(resolve(entry), [...roots, ...this.#options.allowedRoots.map((root) => resolve(root))]);
    }
    return isInside(real, roots);
  }

  /** The service named by a path segment, or undefined once the answer (400 or 404) is sent. */
  #service(res: ServerResponse, segment: string | undefined): string | undefined {
    let service: string;
    try {
      service = decodeURIComponent(segment ?? "");
    } catch {
      fail(res, 400, ErrorCode.BAD_REQUEST, "the service name in the path is not valid percent-encoding");
      return undefined;
    }
    // kernel.has looks in a Map: "__proto__" or "constructor" is no service.
    if (!this.#kernel.has(service)) {
      fail(res, 404, ErrorCode.NO_SERVICE, `no service named "${service}"`);
      return undefined;
    }
    return service;
  }

  /** An operation answered as `{ result }`, its result checked against the contract's type. */
  async #run<T>(res: ServerResponse, op: () => Promise<T>): Promise<void> {
    try {
      send<{ result: T }>(res, 200, { result: await op() });
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
  #progress(
    res: ServerResponse,
    op: (onPhase: (phase: Phase, ms: number) => void, onShadow: (messages: number, of: number, divergences: number) => void) => Promise<SwapReport>,
  ): Promise<void> {
    return stream(res, async (emit) => {
      const report = await op(
        (phase, ms) => emit({ event: "phase", phase, ms }),
        // A line every tenth of the shadow, not every message.
        (messages, of, divergences) => {
          if (messages !== of && messages % Math.max(1, Math.floor(of / 10)) !== 0) return;
          emit({ event: "shadow", messages, of, divergences });
        },
      );
      return { event: "report", report };
    });
  }

  /**
   * A kernel upgrade, streamed as a swap is. One at a time: the keeper
   * replaces this whole process, and a second upgrade would race the first.
   */
  async #upgrade(res: ServerResponse): Promise<void> {
    const upgrade = this.#kernel.upgrade;
    if (upgrade === undefined) {
      return fail(res, statusFor(ErrorCode.KERNEL_UPGRADE_UNAVAILABLE), ErrorCode.KERNEL_UPGRADE_UNAVAILABLE, "this runtime was not started by a keeper (molt run starts one; molt dev does not)");
    }
    if (this.#upgrading !== undefined) return fail(res, statusFor(ErrorCode.KERNEL_UPGRADE_BUSY), ErrorCode.KERNEL_UPGRADE_BUSY, "an upgrade of this runtime is already running");
    // This process may be gone once the answer is written: a client that pools connections must not send its next request here.
    res.setHeader("connection", "close");
    const answered = new Promise<void>((resolvePromise) => res.once("close", resolvePromise));
    this.#upgrading = answered;
    try {
      await stream(res, async (emit) => ({ event: "report", report: await upgrade((phase, ms) => emit({ event: "phase", phase, ms })) }));
    } finally {
      // The answer is written; close() may drop the connection once the client has it or has gone.
      await answered;
      this.#upgrading = undefined;
    }
  }
}

/** Any line of a streamed answer: a swap's or a rollback's, or a kernel upgrade's. */
type Progress = Api.SwapProgress | Api.KernelUpgradeProgress;

/**
 * An operation answered as NDJSON: the lines it emits as it goes, then its
 * last line (the report), or an error line once it has begun. One that fails
 * before its first line is an ordinary JSON error.
 */
async function stream(res: ServerResponse, op: (emit: (line: Progress) => void) => Promise<Progress>): Promise<void> {
  let started = false;
  const start = (): void => {
    if (started) return;
    started = true;
    res.writeHead(200, { "content-type": NDJSON });
  };
  try {
    const emit = (line: Progress): void => {
      start();
      res.write(ndjson(line));
    };
    const last = await op(emit);
    start();
    res.end(ndjson(last));
  } catch (err) {
    const e = toMoltError(err);
    if (started) res.end(ndjson({ event: "error", error: e.toJSON() }));
    else fail(res, statusFor(e.code), e.code, e.message);
  }
}

function statusFor(code: string): number {
  switch (code) {
    case ErrorCode.SWAP_BUSY:
    case ErrorCode.KERNEL_UPGRADE_BUSY:
    case ErrorCode.STOPPING:
      return 409;
    case ErrorCode.KERNEL_UPGRADE_UNAVAILABLE:
      return 501;
    case ErrorCode.NO_VERSION:
    case ErrorCode.NO_SERVICE:
      return 404;
    case ErrorCode.PERMISSION:
      return 403;
    case ErrorCode.SWAP_COMPILE:
      return 422;
    default:
      return 500;
  }
}

/** True for `application/json`, with or without parameters (charset). */
function isJson(contentType: string | undefined): boolean {
  return (contentType ?? "").split(";")[0]?.trim().toLowerCase() === "application/json";
}

/** A body field, only if the body itself has it: never one inherited from Object.prototype. */
function own(body: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(body, key) ? body[key] : undefined;
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

/** One line of a streamed answer (protocol/admin.ts). */
function ndjson(line: Progress): string {
  return `${JSON.stringify(line)}\n`;
}

/** A JSON answer; the caller names its type from the contract, so what the kernel hands over is checked against it. */
function send<T>(res: ServerResponse, status: number, value: T): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

function fail(res: ServerResponse, status: number, code: string, message: string): void {
  send<Api.ErrorBody>(res, status, { error: { code, message } });
}
