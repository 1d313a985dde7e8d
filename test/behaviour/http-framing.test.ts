// Behaviour: the HTTP ingress owns the framing of every response and the
// origin of every request URL, whatever the service answers and whatever
// request target a client sends. A real runtime (`molt run <config>`) is
// talked to over raw TCP, so the test controls the request bytes exactly and
// sees the response bytes exactly, on keep-alive connections as a browser or
// a proxy would use them.

import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FIXTURES, startRuntime, writeConfig, type RunningRuntime } from "../support/runtime.ts";

const SERVICE = join(FIXTURES, "behaviour", "framing-service.ts");
const MIB = 1024 * 1024;
/** How long a read waits for the server before the test fails with what it got so far. */
const READ_DEADLINE_MS = 5000;

interface RawResponse {
  status: number;
  /** Header names lower-cased, in the order they came. */
  headers: [string, string][];
  body: Buffer;
}

/**
 * One keep-alive TCP connection, read the way an HTTP/1.1 client reads it:
 * each response is framed by its own headers, interim (1xx) responses are
 * skipped, and any byte the framing does not account for is left for the next
 * response, where a desynced connection shows up as garbage.
 */
class RawConnection {
  readonly #socket: Socket;
  #buffer = Buffer.alloc(0);
  #ended = false;
  #wake: (() => void) | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      this.#wake?.();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#wake?.();
    });
    socket.on("error", () => undefined);
  }

  static open(base: string): Promise<RawConnection> {
    const { hostname, port } = new URL(base);
    return new Promise((resolve, reject) => {
      const socket = connect(Number(port), hostname, () => resolve(new RawConnection(socket)));
      socket.once("error", reject);
    });
  }

  get closed(): boolean {
    return this.#ended;
  }

  send(bytes: string | Buffer): void {
    this.#socket.write(bytes);
  }

  /** Sends a request with `host` set to the listener's own address unless the test gives another. */
  request(method: string, target: string, options: { host?: string; json?: unknown } = {}): void {
    const body = options.json === undefined ? "" : JSON.stringify(options.json);
    const head = [`${method} ${target} HTTP/1.1`, `host: ${options.host ?? "localhost"}`];
    if (body !== "") head.push("content-type: application/json", `content-length: ${Buffer.byteLength(body)}`);
    this.send(`${head.join("\r\n")}\r\n\r\n${body}`);
  }

  /** Reads one final response (to a HEAD request: without a body); fails if none is whole within the deadline. */
  async response(options: { head?: boolean } = {}): Promise<RawResponse> {
    const deadline = Date.now() + READ_DEADLINE_MS;
    for (;;) {
      const head = await this.#until(deadline, () => {
        const end = this.#buffer.indexOf("\r\n\r\n");
        return end === -1 ? undefined : end;
      });
      const lines = this.#buffer.subarray(0, head).toString("latin1").split("\r\n");
      this.#buffer = this.#buffer.subarray(head + 4);
      const statusLine = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0] ?? "");
      if (statusLine?.[1] === undefined) throw new Error(`not a status line (a desynced connection?): ${JSON.stringify(lines[0])}`);
      const status = Number(statusLine[1]);
      const headers = lines.slice(1).map((line): [string, string] => {
        const colon = line.indexOf(":");
        return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
      });
      // An interim response: a client waits for the final one after it.
      if (status >= 100 && status < 200) continue;
      const bodiless = options.head === true || status === 204 || status === 304;
      return { status, headers, body: bodiless ? Buffer.alloc(0) : await this.#body(headers, deadline) };
    }
  }

  close(): void {
    this.#socket.destroy();
  }

  async #body(headers: [string, string][], deadline: number): Promise<Buffer> {
    const te = header(headers, "transfer-encoding");
    const length = header(headers, "content-length");
    if (te?.toLowerCase() === "chunked") {
      const chunks: Buffer[] = [];
      for (;;) {
        const lineEnd = await this.#until(deadline, () => {
          const at = this.#buffer.indexOf("\r\n");
          return at === -1 ? undefined : at;
        });
        const size = Number.parseInt(this.#buffer.subarray(0, lineEnd).toString("latin1"), 16);
        if (Number.isNaN(size)) throw new Error(`bad chunk size line: ${JSON.stringify(this.#buffer.subarray(0, lineEnd).toString("latin1"))}`);
        await this.#until(deadline, () => (this.#buffer.byteLength >= lineEnd + 2 + size + 2 ? true : undefined));
        chunks.push(this.#buffer.subarray(lineEnd + 2, lineEnd + 2 + size));
        this.#buffer = this.#buffer.subarray(lineEnd + 2 + size + 2);
        if (size === 0) return Buffer.concat(chunks);
      }
    }
    if (te === undefined && length !== undefined) {
      const n = Number(length);
      await this.#until(deadline, () => (this.#buffer.byteLength >= n ? true : undefined));
      const body = this.#buffer.subarray(0, n);
      this.#buffer = this.#buffer.subarray(n);
      return body;
    }
    // No framing a client can use: the body runs until the server closes.
    await this.#until(deadline, () => (this.#ended ? true : undefined));
    const body = this.#buffer;
    this.#buffer = Buffer.alloc(0);
    return body;
  }

  /** Waits until `ready` returns a value, the connection ends, or the deadline passes. */
  async #until<T>(deadline: number, ready: () => T | undefined): Promise<T> {
    for (;;) {
      const value = ready();
      if (value !== undefined) return value;
      const left = deadline - Date.now();
      if (this.#ended || left <= 0) {
        throw new Error(`${this.#ended ? "connection closed" : "no whole answer in time"}; unread: ${JSON.stringify(this.#buffer.toString("latin1").slice(0, 300))}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }
}

function header(headers: [string, string][], name: string): string | undefined {
  return headers.find(([n]) => n === name)?.[1];
}

function errorCode(response: RawResponse): unknown {
  const text = response.body.toString("utf8");
  try {
    return (JSON.parse(text) as { error?: { code?: unknown } }).error?.code;
  } catch {
    return `not a JSON error body: ${text.slice(0, 200)}`;
  }
}

describe("the HTTP ingress in front of a service that answers anything", () => {
  let rt: RunningRuntime;
  const open: RawConnection[] = [];

  /** A fresh keep-alive connection, closed after the test file. */
  async function connection(): Promise<RawConnection> {
    const c = await RawConnection.open(rt.url);
    open.push(c);
    return c;
  }

  /** Asks the service for exactly this response, on `c`, and reads what the client gets. */
  async function answer(c: RawConnection, wanted: unknown): Promise<RawResponse> {
    c.request("POST", "/", { json: wanted });
    return c.response();
  }

  /** The connection still carries a whole, correct exchange after whatever came before. */
  async function expectUsable(c: RawConnection): Promise<void> {
    const next = await answer(c, { status: 200, headers: { "content-type": "text/plain" }, body: "still in sync" });
    expect(next.status).toBe(200);
    expect(next.body.toString()).toBe("still in sync");
  }

  beforeAll(async () => {
    // The service answers HTTP itself, with the default limits (maxMessageBytes 4 MiB).
    rt = await startRuntime(
      writeConfig(`
export default {
  services: { framing: { entry: ${JSON.stringify(SERVICE)} } },
  http: { port: 0, service: "framing" },
};
`),
    );
  });

  afterAll(async () => {
    for (const c of open) c.close();
    await rt?.stop();
  });

  describe("response framing is the ingress's, not the service's", () => {
    it("keeps a keep-alive connection in sync when the service claims content-length: 2 for an 11-byte body", async () => {
      const c = await connection();
      const first = await answer(c, { status: 200, headers: { "content-length": "2" }, body: "hello world" });
      expect(first.status).toBe(200);
      expect(first.body.toString()).toBe("hello world");
      expect(header(first.headers, "content-length")).toBe("11");

      const second = await answer(c, { status: 201, headers: { "content-type": "text/plain" }, body: "second answer" });
      expect(second.status).toBe(201);
      expect(second.body.toString()).toBe("second answer");
      expect(c.closed).toBe(false);
    });

    it("drops every hop-by-hop header a service sets, whatever its case, and keeps the others", async () => {
      const c = await connection();
      const hopByHop = {
        "Content-Length": "999",
        "Transfer-Encoding": "gzip",
        Connection: "from-service",
        "Keep-Alive": "from-service",
        Upgrade: "from-service",
        Trailer: "from-service",
        TE: "from-service",
        "Proxy-Connection": "from-service",
      };
      const response = await answer(c, {
        status: 200,
        headers: { ...hopByHop, "content-type": "text/plain", "x-kept": "yes", "set-cookie": ["a=1", "b=2"], "x-number": 7, "x-flag": true },
        body: "body",
      });
      expect(response.status).toBe(200);
      expect(response.body.toString()).toBe("body");
      expect(response.headers.filter(([, value]) => value === "from-service")).toEqual([]);
      expect(header(response.headers, "transfer-encoding")).toBeUndefined();
      expect(header(response.headers, "content-length")).toBe("4");
      expect(header(response.headers, "x-kept")).toBe("yes");
      expect(header(response.headers, "x-flag")).toBe("true");
      expect(header(response.headers, "x-number")).toBe("7");
      expect(response.headers.filter(([name]) => name === "set-cookie").map(([, value]) => value)).toEqual(["a=1", "b=2"]);
      await expectUsable(c);
    });

    it("frames answers that carry no body (204, 304, HEAD) so the connection stays in sync", async () => {
      const c = await connection();
      for (const status of [204, 304]) {
        const response = await answer(c, { status, headers: { "content-length": "5" }, body: "ghost" });
        expect(response.status).toBe(status);
        expect(header(response.headers, "content-length")).toBeUndefined();
        await expectUsable(c);
      }
      c.request("HEAD", "/head-request");
      const head = await c.response({ head: true });
      expect(head.status).toBe(200);
      // The length of the body the service answered, and no body after it.
      const answered = JSON.stringify({ method: "HEAD", url: `${new URL(rt.url).origin}/head-request`, host: "localhost" });
      expect(header(head.headers, "content-length")).toBe(String(Buffer.byteLength(answered)));
      await expectUsable(c);
    });

    it.each<[string, unknown]>([
      ["100 Continue", 100],
      ["101 Switching Protocols", 101],
      ["199", 199],
      ["0", 0],
      ["600", 600],
      ["a fraction", 200.5],
      ["a string", "200"],
      ["null", null],
    ])("answers 502 ERR_BAD_RESPONSE for status %s, and the connection serves on", async (_name, status) => {
      const c = await connection();
      const response = await answer(c, { status, body: "x" });
      expect(response.status).toBe(502);
      expect(errorCode(response)).toBe("ERR_BAD_RESPONSE");
      await expectUsable(c);
    });

    it.each<[string, unknown]>([
      ["a name with a space", { "bad name": "x" }],
      ["a name with CRLF", { "x\r\ninjected": "y" }],
      ["an empty name", { "": "x" }],
      ["a value with CRLF", { "x-crlf": "a\r\nset-cookie: evil=1" }],
      ["a value with a lone LF", { "x-lf": "a\nb" }],
      ["a value with NUL", { "x-nul": "a\u0000b" }],
      ["a value outside latin-1", { "x-wide": "\u20ac" }],
      ["an object value", { "x-object": { a: 1 } }],
      ["a bad value inside an array", { "set-cookie": ["a=1", "b\n=2"] }],
      ["headers that are not an object", "content-length: 2"],
    ])("answers 502 ERR_BAD_RESPONSE for %s, and the connection serves on", async (_name, headers) => {
      const c = await connection();
      const response = await answer(c, { status: 200, headers, body: "x" });
      expect(response.status).toBe(502);
      expect(errorCode(response)).toBe("ERR_BAD_RESPONSE");
      await expectUsable(c);
    });

    it("answers 502 ERR_MESSAGE_TOO_LARGE for a 5 MiB body past the service's 4 MiB maxMessageBytes, and serves on", async () => {
      const c = await connection();
      const big = await answer(c, { status: 200, bodyBytes: 5 * MIB });
      expect(big.status).toBe(502);
      expect(errorCode(big)).toBe("ERR_MESSAGE_TOO_LARGE");
      await expectUsable(c);

      const fits = await answer(c, { status: 200, bodyBytes: 3 * MIB });
      expect(fits.status).toBe(200);
      expect(fits.body.byteLength).toBe(3 * MIB);
    });
  });

  describe("the request URL's origin is the listener's", () => {
    const seen = async (target: string, host?: string): Promise<{ url: string; host: string | null }> => {
      const c = await connection();
      c.request("GET", target, host === undefined ? {} : { host });
      const response = await c.response();
      expect(response.status, response.body.toString()).toBe(200);
      return JSON.parse(response.body.toString()) as { url: string; host: string | null };
    };

    it("a request target starting with // stays a path", async () => {
      const { url } = await seen("//evil.example/echo?x=1");
      expect(new URL(url).origin).toBe(new URL(rt.url).origin);
      expect(new URL(url).pathname).toBe("//evil.example/echo");
      expect(new URL(url).search).toBe("?x=1");
    });

    it("an absolute-form request target gives its path and query, never its origin", async () => {
      const { url } = await seen("http://evil.example/echo?x=1", "evil.example");
      expect(url).toBe(`${new URL(rt.url).origin}/echo?x=1`);
    });

    it("the Host header reaches the service as a header and does not change the URL's origin", async () => {
      const { url, host } = await seen("/echo", "evil.example:8443");
      expect(url).toBe(`${new URL(rt.url).origin}/echo`);
      expect(host).toBe("evil.example:8443");
    });

    it("an ordinary request gets the listener's origin with its raw path and query", async () => {
      const res = await fetch(`${rt.url}/a/b%20c?q=1&r=%2F`);
      expect(await res.json()).toMatchObject({ method: "GET", url: `${new URL(rt.url).origin}/a/b%20c?q=1&r=%2F` });
    });

    it("refuses a request target that is neither a path nor an http URL with 400 ERR_BAD_MESSAGE", async () => {
      const c = await connection();
      c.send("OPTIONS * HTTP/1.1\r\nhost: localhost\r\n\r\n");
      const response = await c.response();
      expect(response.status).toBe(400);
      expect(errorCode(response)).toBe("ERR_BAD_MESSAGE");
    });
  });
});
