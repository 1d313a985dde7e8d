// The kernel owns the listening socket; one service answers every request.
// The socket outlives every instance of that service, so the port stays open
// while the service is swapped. Routing by path is the gateway service's
// business, not the kernel's.
//
// The ingress also owns everything that belongs to the connection rather than
// to the answer: the framing of each response (its content-length, its
// transfer coding, whether the connection stays open) and the origin of each
// request URL. A service's answer is hostile data like any other message, so
// it is checked whole before a byte of it is written: one service must never
// be able to desync a client's keep-alive connection, make Node throw in the
// middle of a response, or make a client wait for an answer that never comes.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { AddressInfo } from "node:net";
import type { WireError } from "../protocol/wire.ts";
import { ErrorCode, MoltError, toMoltError } from "./errors.ts";

export interface IngressOptions {
  port: number;
  host: string;
  service: string;
  maxBodyBytes: number;
  /** The answering service's `limits.maxMessageBytes`: an answer past it is refused with 502. */
  maxReplyBytes: number;
  /**
   * What an error body tells the client (`http.exposeErrors`). "code", the
   * default: the code, a generic message for the status and the service, so
   * nothing of a service's internals (its error text, its version) reaches
   * a stranger; the operator reads the rest in the kernel's log. "full": the
   * error as the kernel holds it.
   */
  exposeErrors?: ExposeErrors;
}

export type ExposeErrors = "code" | "full";

/** What a client is told under `exposeErrors: "code"`, by status: what happened, not why. */
const GENERIC_MESSAGES: ReadonlyMap<number, string> = new Map([
  [400, "the request is malformed"],
  [413, "the request body is too large"],
  [431, "the request headers are too large"],
  [500, "the service failed to answer the request"],
  [502, "the service's answer could not be sent"],
  [503, "the service is unavailable; try again later"],
]);

/** The host-side call the ingress makes: the service's `fetch` handler with one request. */
export type Dispatch = (service: string, method: string, payload: unknown) => Promise<unknown>;

/** Error codes that mean "not now" rather than "broken": the client may retry. */
const UNAVAILABLE: ReadonlySet<string> = new Set([
  ErrorCode.MAILBOX_FULL,
  ErrorCode.TIMEOUT,
  ErrorCode.SERVICE_DOWN,
  ErrorCode.SERVICE_CRASHED,
  ErrorCode.OOM,
  ErrorCode.STOPPING,
]);

/**
 * Headers that describe one connection, not the answer: the ingress frames
 * every response itself, so a service's copies are dropped, never forwarded.
 */
const HOP_BY_HOP: ReadonlySet<string> = new Set([
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "upgrade",
  "trailer",
  "te",
  "proxy-connection",
]);

/** An HTTP token (RFC 9110, 5.6.2): what a header name must be. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * A field value as Node writes it (RFC 9110, 5.5, latin-1 included): never a
 * CR, LF, NUL or other ASCII control character, nor a character latin-1 cannot hold.
 */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** The body of a request that has none (never written to: the ingress hands it over as null). */
const EMPTY_BODY = new Uint8Array(0);

/** A service's answer after every check: safe to write as it is. */
interface CheckedResponse {
  status: number;
  /** Each header's lines, hop-by-hop headers left out. */
  headers: [string, string[]][];
  body: string | Uint8Array | undefined;
  bodyBytes: number;
  /** The answer's size as molt counts it against maxMessageBytes: header names, values and body. */
  bytes: number;
}

export class HttpIngress {
  readonly #options: IngressOptions;
  readonly #dispatch: Dispatch;
  readonly #server: Server;
  /** This listener's own origin, known once it listens: the origin of every request URL. */
  #origin = "";
  #inFlight = 0;
  #idle: (() => void) | undefined;

  constructor(options: IngressOptions, dispatch: Dispatch) {
    this.#options = options;
    this.#dispatch = dispatch;
    this.#server = createServer((req, res) => void this.#handle(req, res));
    // Requests Node cannot parse get a 400 instead of a silently closed socket.
    this.#server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
      if (!socket.writable) return;
      const status = err.code === "HPE_HEADER_OVERFLOW" ? 431 : 400;
      const body = JSON.stringify({ error: this.#errorBody(status, new MoltError(ErrorCode.BAD_MESSAGE, `malformed request: ${err.code ?? err.message}`)) });
      socket.end(
        `HTTP/1.1 ${status} ${status === 431 ? "Request Header Fields Too Large" : "Bad Request"}\r\n` +
          `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    });
  }

  async listen(): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(this.#options.port, this.#options.host, () => {
        this.#server.off("error", reject);
        resolve();
      });
    });
    const address = this.#server.address() as AddressInfo;
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    this.#origin = `http://${host}:${address.port}`;
    return address;
  }

  /** The listener's origin, as the ready line prints it and as every request URL starts. */
  get url(): string {
    return this.#origin;
  }

  /**
   * Serves connections accepted by another process (the keeper, which
   * listens at `origin`) instead of listening: each one is handed to `accept`.
   */
  adopt(origin: string): void {
    this.#origin = origin;
  }

  /**
   * A connection accepted elsewhere (paused, as the keeper accepts them),
   * served from here on. Node tracks only the connections of a server that
   * listens, so these are counted here.
   */
  accept(socket: Socket): void {
    this.#adopted.add(socket);
    socket.once("close", () => this.#adopted.delete(socket));
    this.#server.emit("connection", socket);
    socket.resume();
  }

  readonly #adopted = new Set<Socket>();

  /**
   * From now on every answer closes its connection, so clients open their
   * next one to whoever serves next (a kernel upgrade's new runtime); a
   * connection with no request under way closes when its keep-alive timeout
   * passes, as Node closes any idle one. Resolves when no connection is
   * left, or after `lingerMs` (then the rest are dropped).
   */
  async closing(lingerMs: number): Promise<void> {
    this.#closing = true;
    const until = Date.now() + lingerMs;
    while (this.#adopted.size > 0 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 20));
    for (const socket of this.#adopted) socket.destroy();
  }

  #closing = false;

  /** Stops accepting connections and resolves when every request in flight has been answered. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeIdleConnections();
    if (this.#inFlight > 0) await new Promise<void>((resolve) => (this.#idle = resolve));
    this.#server.closeAllConnections();
    await closed;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.#inFlight++;
    if (this.#closing) res.setHeader("connection", "close");
    try {
      const body = await this.#readBody(req, res);
      if (body === undefined) return;
      const url = this.#requestUrl(req.url ?? "");
      if (url === undefined) {
        return this.#fail(res, 400, new MoltError(ErrorCode.BAD_MESSAGE, "the request target is neither a path nor an http URL"));
      }
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(req.headers)) {
        if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(", ") : value;
      }
      let result: unknown;
      try {
        result = await this.#dispatch(this.#options.service, "fetch", {
          method: req.method ?? "GET",
          url,
          headers,
          body: body.byteLength === 0 ? null : body,
        });
      } catch (err) {
        const e = toMoltError(err);
        return this.#fail(res, statusOf(e.code), e);
      }
      this.#respond(res, result, req.method === "HEAD");
    } finally {
      this.#inFlight--;
      if (this.#inFlight === 0) this.#idle?.();
    }
  }

  /** Reads the body up to maxBodyBytes; answers 413 and returns undefined past it. */
  async #readBody(req: IncomingMessage, res: ServerResponse): Promise<Uint8Array | undefined> {
    const max = this.#options.maxBodyBytes;
    const tooLarge = (): undefined => {
      this.#fail(res, 413, new MoltError(ErrorCode.MESSAGE_TOO_LARGE, `request body exceeds ${max} bytes`), true);
      return undefined;
    };
    const length = req.headers["content-length"];
    if (Number(length ?? 0) > max) return tooLarge();
    // With neither a length nor a transfer coding, or a length of 0, a
    // request has no body (RFC 9112, 6.3), and Node's parser frames it so:
    // most requests (a GET, a POST that sends nothing) need no async
    // iterator, with its promises and listeners, to read nothing.
    if (req.headers["transfer-encoding"] === undefined && (length === undefined || Number(length) === 0)) return EMPTY_BODY;
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of req as AsyncIterable<Buffer>) {
        size += chunk.byteLength;
        if (size > max) return tooLarge();
        chunks.push(chunk);
      }
    } catch {
      // The client went away mid-body: nobody is left to answer.
      return undefined;
    }
    // An exact-size copy: isolated-vm would otherwise copy a pooled Buffer's whole slab.
    const body = new Uint8Array(size);
    let at = 0;
    for (const chunk of chunks) {
      body.set(chunk, at);
      at += chunk.byteLength;
    }
    return body;
  }

  /**
   * The URL the service sees: this listener's origin, then the path and query
   * of the request target. Neither the target nor the Host header can choose
   * the origin: a target such as `//evil.example/x` stays a path, and one in
   * absolute form (`http://evil.example/x`) gives only its path and query.
   * The Host header still reaches the service, as a header.
   */
  #requestUrl(target: string): string | undefined {
    try {
      // Concatenated, never resolved against a base: resolving would read a
      // leading `//` as the start of another origin.
      if (target.startsWith("/")) return new URL(this.#origin + target).href;
      const absolute = new URL(target);
      if (absolute.protocol !== "http:" && absolute.protocol !== "https:") return undefined;
      return new URL(this.#origin + absolute.pathname + absolute.search).href;
    } catch {
      // An authority (CONNECT) or `*` (OPTIONS) target: molt is neither a proxy nor a server-wide responder.
      return undefined;
    }
  }

  #respond(res: ServerResponse, result: unknown, head: boolean): void {
    const service = this.#options.service;
    const checked = checkResponse(result);
    if (typeof checked === "string") {
      return this.#fail(res, 502, new MoltError(ErrorCode.BAD_RESPONSE, `${service} answered ${checked}`, { service }));
    }
    const max = this.#options.maxReplyBytes;
    if (checked.bytes > max) {
      return this.#fail(
        res,
        502,
        new MoltError(ErrorCode.MESSAGE_TOO_LARGE, `${service}'s answer of ${checked.bytes} bytes exceeds its maxMessageBytes (${max})`, { service }),
      );
    }
    const { status, headers, body, bodyBytes } = checked;
    try {
      for (const [name, value] of headers) res.setHeader(name, value);
      // 204 and 304 carry no body and no length; a HEAD answer carries the
      // length a GET would have had, and Node writes no body for it.
      if (status !== 204 && status !== 304) {
        res.setHeader("content-length", bodyBytes);
      }
      res.writeHead(status);
    } catch (err) {
      // Every value was checked above, so this is Node refusing something the
      // checks missed: nothing has been written yet, and none of it is kept.
      for (const name of res.getHeaderNames()) res.removeHeader(name);
      return this.#fail(res, 502, new MoltError(ErrorCode.BAD_RESPONSE, `invalid response header: ${(err as Error).message}`, { service }));
    }
    res.end(head ? undefined : body);
  }

  /** An error as the client sees it: whole, or (the default) only its code, the service, and a message that says nothing of why. */
  #errorBody(status: number, err: MoltError): WireError {
    if (this.#options.exposeErrors === "full") return err.toJSON();
    return {
      code: err.code,
      message: GENERIC_MESSAGES.get(status) ?? "the request failed",
      ...(err.service === undefined ? {} : { service: err.service }),
    };
  }

  #fail(res: ServerResponse, status: number, err: MoltError, close = false): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = JSON.stringify({ error: this.#errorBody(status, err) });
    res.writeHead(status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
      ...(close ? { connection: "close" } : {}),
    });
    res.end(body);
  }
}

/**
 * The status of an error from the answering service: 503 for "not now",
 * 502 for an answer that could not be sent (a gateway refusing what the
 * service behind it answered fails with ERR_BAD_RESPONSE), 500 otherwise.
 */
function statusOf(code: string): number {
  if (UNAVAILABLE.has(code)) return 503;
  if (code === ErrorCode.BAD_RESPONSE) return 502;
  // The service's storage is at its limits.storageMb: WebDAV's "Insufficient Storage".
  if (code === ErrorCode.STORAGE_FULL) return 507;
  return 500;
}

/**
 * Checks a service's answer before any of it is written: the shape
 * `{ status, headers?, body? }`, a final status (200–599: a 1xx would leave
 * the client waiting for the answer after it), header names that are tokens,
 * values a header can carry. Hop-by-hop headers are dropped. Returns the
 * answer to write, or why it cannot be written.
 */
function checkResponse(result: unknown): CheckedResponse | string {
  if (typeof result !== "object" || result === null) return "with no { status, headers?, body? } object";
  const { status, body } = result as { status?: unknown; body?: unknown };
  const headers = (result as { headers?: unknown }).headers ?? {};
  if (typeof status !== "number" || !Number.isInteger(status) || status < 200 || status > 599) {
    return "with no status from 200 to 599";
  }
  if (!(body === undefined || body === null || typeof body === "string" || body instanceof Uint8Array)) {
    return "with a body that is neither a string nor a Uint8Array";
  }
  if (typeof headers !== "object" || headers === null || Array.isArray(headers)) return "with headers that are not an object";
  const bodyBytes = body === undefined || body === null ? 0 : typeof body === "string" ? Buffer.byteLength(body) : body.byteLength;
  const checked: [string, string[]][] = [];
  let bytes = bodyBytes;
  for (const [name, value] of Object.entries(headers as Record<string, unknown>)) {
    if (!TOKEN.test(name)) return "with a header name that is not an HTTP token";
    // An array is one header line per value (set-cookie); anything else is one line.
    const lines: string[] = [];
    for (const item of Array.isArray(value) ? (value as unknown[]) : [value]) {
      const line = headerValue(item);
      if (line === undefined) return `with an invalid value for header ${name}`;
      lines.push(line);
      bytes += name.length + line.length;
    }
    if (!HOP_BY_HOP.has(name.toLowerCase())) checked.push([name, lines]);
  }
  return { status, headers: checked, body: body ?? undefined, bodyBytes, bytes };
}

/** A header value as written, or undefined if it cannot be one: a string or finite number with only field-value characters. */
function headerValue(value: unknown): string | undefined {
  // Strings, finite numbers and booleans are written as text, as Node's own setHeader does.
  const text =
    typeof value === "string" ? value : (typeof value === "number" && Number.isFinite(value)) || typeof value === "boolean" ? String(value) : undefined;
  return text !== undefined && FIELD_VALUE.test(text) ? text : undefined;
}
