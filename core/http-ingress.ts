// The kernel owns the listening socket; one service answers every request.
// The socket outlives every instance of that service, so the port stays open
// while the service is swapped. Routing by path is the gateway service's
// business, not the kernel's.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { ErrorCode, MoltError, toMoltError } from "./errors.ts";

export interface IngressOptions {
  port: number;
  host: string;
  service: string;
  maxBodyBytes: number;
}

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

export class HttpIngress {
  readonly #options: IngressOptions;
  readonly #dispatch: Dispatch;
  readonly #server: Server;
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
      const body = JSON.stringify({ error: { code: ErrorCode.BAD_MESSAGE, message: `malformed request: ${err.code ?? err.message}` } });
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
    return this.#server.address() as AddressInfo;
  }

  get url(): string {
    const address = this.#server.address() as AddressInfo;
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    return `http://${host}:${address.port}`;
  }

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
    try {
      const body = await this.#readBody(req, res);
      if (body === undefined) return;
      let url: URL;
      try {
        url = new URL(req.url ?? "/", `http://${req.headers.host ?? `${this.#options.host}:${this.#options.port}`}`);
      } catch {
        return this.#fail(res, 400, new MoltError(ErrorCode.BAD_MESSAGE, "malformed request URL"));
      }
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(req.headers)) {
        if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(", ") : value;
      }
      let result: unknown;
      try {
        result = await this.#dispatch(this.#options.service, "fetch", {
          method: req.method ?? "GET",
          url: url.href,
          headers,
          body: body.byteLength === 0 ? null : body,
        });
      } catch (err) {
        const e = toMoltError(err);
        return this.#fail(res, UNAVAILABLE.has(e.code) ? 503 : 500, e);
      }
      this.#respond(res, result);
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
    if (Number(req.headers["content-length"] ?? 0) > max) return tooLarge();
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

  #respond(res: ServerResponse, result: unknown): void {
    const r = result as { status?: unknown; headers?: unknown; body?: unknown } | null;
    const status = r?.status;
    const body = r?.body;
    const headers = r?.headers ?? {};
    if (
      typeof status !== "number" ||
      !Number.isInteger(status) ||
      status < 100 ||
      status > 599 ||
      typeof headers !== "object" ||
      headers === null ||
      !(body === undefined || body === null || typeof body === "string" || body instanceof Uint8Array)
    ) {
      return this.#fail(
        res,
        500,
        new MoltError(ErrorCode.BAD_RESPONSE, `${this.#options.service} answered with no valid { status, headers?, body? }`, {
          service: this.#options.service,
        }),
      );
    }
    try {
      for (const [name, value] of Object.entries(headers as Record<string, unknown>)) {
        res.setHeader(name, Array.isArray(value) ? value.map(String) : String(value));
      }
      res.writeHead(status);
    } catch (err) {
      res.removeHeader("content-type");
      return this.#fail(res, 500, new MoltError(ErrorCode.BAD_RESPONSE, `invalid response header: ${(err as Error).message}`));
    }
    res.end(body ?? undefined);
  }

  #fail(res: ServerResponse, status: number, err: MoltError, close = false): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = JSON.stringify({ error: err.toJSON() });
    res.writeHead(status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
      ...(close ? { connection: "close" } : {}),
    });
    res.end(body);
  }
}
