// The listening socket, driven with a dispatch function in place of a
// kernel: what a service is handed for each request (the listener's own
// origin, the body as exact bytes), how its answer is checked and framed,
// which failures become which statuses, and a close that lets requests in
// flight finish.

import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { HttpIngress, type Dispatch } from "../../core/http-ingress.ts";
import { MoltError } from "../../core/errors.ts";

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  json: any;
}

const open: HttpIngress[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((ingress) => ingress.close()));
});

async function listen(dispatch: Dispatch, limits: { maxBodyBytes?: number; maxReplyBytes?: number } = {}): Promise<HttpIngress> {
  const ingress = new HttpIngress(
    { port: 0, host: "127.0.0.1", service: "web", maxBodyBytes: limits.maxBodyBytes ?? 1000, maxReplyBytes: limits.maxReplyBytes ?? 10_000 },
    dispatch,
  );
  await ingress.listen();
  open.push(ingress);
  return ingress;
}

/** A service that always gives `answer`. */
const answering = (answer: unknown): Dispatch => async () => answer;

function send(ingress: HttpIngress, options: { method?: string; path?: string; headers?: Record<string, string>; body?: string; fresh?: boolean } = {}): Promise<Answer> {
  const { port } = new URL(ingress.url);
  return new Promise((resolve, reject) => {
    // A fresh connection, not one the agent keeps alive, when the test is about connecting.
    const agent = options.fresh === true ? { agent: false as const } : {};
    const req = httpRequest({ host: "127.0.0.1", port, method: options.method ?? "GET", path: options.path ?? "/", headers: options.headers ?? {}, ...agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        let json: unknown;
        try {
          json = JSON.parse(body);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json });
      });
    });
    req.on("error", reject);
    req.end(options.body);
  });
}

describe("what the service is handed", () => {
  it("calls the service's fetch with the method, a URL on the listener's origin, the headers and the body as exact bytes", async () => {
    const seen: unknown[] = [];
    const ingress = await listen(async (service, method, payload) => {
      seen.push({ service, method, payload });
      return { status: 200, body: "ok" };
    });
    await send(ingress, { method: "POST", path: "/a/b?x=1", headers: { "x-custom": "yes", "content-type": "text/plain" }, body: "hello" });
    await send(ingress, { path: "/empty" });
    const [post, get] = seen as { service: string; method: string; payload: { method: string; url: string; headers: Record<string, string>; body: Uint8Array | null } }[];
    expect(post).toMatchObject({ service: "web", method: "fetch", payload: { method: "POST", url: `${ingress.url}/a/b?x=1` } });
    expect(post?.payload.headers).toMatchObject({ "x-custom": "yes", "content-type": "text/plain" });
    const body = post?.payload.body as Uint8Array;
    expect(Buffer.from(body).toString()).toBe("hello");
    expect(body.byteOffset === 0 && body.byteLength === body.buffer.byteLength).toBe(true);
    expect(get?.payload).toMatchObject({ method: "GET", url: `${ingress.url}/empty`, body: null });
  });

  it("hands over no body for a request framed without one, and every byte of one sent with a length or chunked", async () => {
    const bodies: Record<string, string | null> = {};
    const ingress = await listen(async (_s, _m, payload) => {
      const { url, body } = payload as { url: string; body: Uint8Array | null };
      bodies[new URL(url).pathname] = body === null ? null : Buffer.from(body).toString();
      return { status: 200 };
    });
    const { port } = new URL(ingress.url);
    // Raw requests on one keep-alive connection, so the framing is exactly as written here.
    const raw =
      "POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n" +
      "GET /b HTTP/1.1\r\nhost: x\r\n\r\n" +
      "POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n" +
      "POST /d HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello" +
      "POST /e HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n" +
      "GET /f HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    const replies = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(port), "127.0.0.1", () => socket.end(raw));
      let text = "";
      socket.on("data", (d: Buffer) => (text += d.toString()));
      socket.on("end", () => resolve(text));
      socket.on("error", reject);
    });
    expect(replies.match(/HTTP\/1\.1 200/g)?.length).toBe(6);
    expect(bodies).toEqual({ "/a": null, "/b": null, "/c": "abcde", "/d": "hello", "/e": null, "/f": null });
  });

  it("never lets the request target or the Host header choose the URL's origin", async () => {
    const urls: string[] = [];
    const ingress = await listen(async (_s, _m, payload) => {
      urls.push((payload as { url: string }).url);
      return { status: 200 };
    });
    await send(ingress, { path: "//evil.example/x", headers: { host: "evil.example" } });
    await send(ingress, { path: "http://evil.example/y?z=1" });
    expect(urls).toEqual([`${ingress.url}//evil.example/x`, `${ingress.url}/y?z=1`]);
    expect(urls.every((url) => new URL(url).origin === ingress.url)).toBe(true);
  });
});

describe("the answer", () => {
  it("is framed by the ingress: its own content-length, the service's hop-by-hop headers dropped, its other headers kept", async () => {
    const ingress = await listen(
      answering({
        status: 201,
        headers: { "x-one": "1", "set-cookie": ["a=1", "b=2"], "content-length": "999", "transfer-encoding": "chunked", connection: "close" },
        body: "héllo",
      }),
    );
    const answer = await send(ingress);
    expect(answer.status).toBe(201);
    expect(answer.body).toBe("héllo");
    expect(answer.headers["content-length"]).toBe(String(Buffer.byteLength("héllo")));
    expect(answer.headers["transfer-encoding"]).toBeUndefined();
    expect(answer.headers.connection).toBe("keep-alive");
    expect(answer.headers["x-one"]).toBe("1");
    expect(answer.headers["set-cookie"]).toEqual(["a=1", "b=2"]);
  });

  it("carries binary bodies unchanged, gives HEAD the length a GET would have and no body, and 204 neither", async () => {
    const bytes = new Uint8Array([0, 1, 254, 255]);
    const binary = await listen(answering({ status: 200, body: bytes }));
    const got = await new Promise<Buffer>((resolve) => {
      httpRequest({ host: "127.0.0.1", port: new URL(binary.url).port, path: "/" }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve(Buffer.concat(chunks)));
      }).end();
    });
    expect([...got]).toEqual([0, 1, 254, 255]);
    const head = await send(await listen(answering({ status: 200, body: "twelve bytes" })), { method: "HEAD" });
    expect({ status: head.status, length: head.headers["content-length"], body: head.body }).toEqual({ status: 200, length: "12", body: "" });
    const empty = await send(await listen(answering({ status: 204 })));
    expect({ status: empty.status, length: empty.headers["content-length"], body: empty.body }).toEqual({ status: 204, length: undefined, body: "" });
  });

  it.each<[string, unknown]>([
    ["not an object", "ok"],
    ["no status", { body: "x" }],
    ["a 1xx status", { status: 101 }],
    ["a status past 599", { status: 600 }],
    ["a body that is neither text nor bytes", { status: 200, body: { a: 1 } }],
    ["a header name that is not a token", { status: 200, headers: { "bad name": "x" } }],
    ["a header value with CRLF", { status: 200, headers: { "x-a": "1\r\nset-cookie: evil=1" } }],
    ["headers that are an array", { status: 200, headers: ["x"] }],
  ])("is refused with 502 ERR_BAD_RESPONSE when it has %s, and nothing of it is written", async (_name, answer) => {
    const reply = await send(await listen(answering(answer)));
    expect(reply.status).toBe(502);
    expect(reply.json.error.code).toBe("ERR_BAD_RESPONSE");
    expect(reply.headers["set-cookie"]).toBeUndefined();
  });

  it("is refused with 502 ERR_MESSAGE_TOO_LARGE past the service's maxMessageBytes, headers counted", async () => {
    const fits = await send(await listen(answering({ status: 200, body: "x".repeat(90) }), { maxReplyBytes: 100 }));
    expect(fits.status).toBe(200);
    const over = await send(await listen(answering({ status: 200, headers: { "x-pad": "y".repeat(20) }, body: "x".repeat(90) }), { maxReplyBytes: 100 }));
    expect({ status: over.status, code: over.json.error.code }).toEqual({ status: 502, code: "ERR_MESSAGE_TOO_LARGE" });
  });
});

describe("failures", () => {
  it.each([
    ["ERR_MAILBOX_FULL", 503],
    ["ERR_TIMEOUT", 503],
    ["ERR_SERVICE_DOWN", 503],
    ["ERR_HANDLER", 500],
    ["ERR_NO_HANDLER", 500],
  ])("answers a service failing with %s with %i and the code as JSON", async (code, status) => {
    const reply = await send(
      await listen(async () => {
        throw new MoltError(code, "failed");
      }),
    );
    expect({ status: reply.status, type: reply.headers["content-type"], code: reply.json.error.code }).toEqual({ status, type: "application/json", code });
  });

  it("refuses a body past maxBodyBytes with 413 ERR_MESSAGE_TOO_LARGE, whether announced or streamed, without calling the service", async () => {
    let calls = 0;
    const ingress = await listen(
      async () => {
        calls++;
        return { status: 200 };
      },
      { maxBodyBytes: 10 },
    );
    const announced = await send(ingress, { method: "POST", body: "x".repeat(11) });
    const streamed = await send(ingress, { method: "POST", headers: { "transfer-encoding": "chunked" }, body: "x".repeat(11) });
    for (const reply of [announced, streamed]) expect({ status: reply.status, code: reply.json.error.code }).toEqual({ status: 413, code: "ERR_MESSAGE_TOO_LARGE" });
    expect(calls).toBe(0);
    expect((await send(ingress, { method: "POST", body: "x".repeat(10) })).status).toBe(200);
  });

  it("answers a request Node cannot parse with 400 ERR_BAD_MESSAGE rather than closing the socket in silence", async () => {
    const ingress = await listen(answering({ status: 200 }));
    const { port } = new URL(ingress.url);
    const raw = await new Promise<string>((resolve, reject) => {
      let data = "";
      const socket = connect(Number(port), "127.0.0.1", () => socket.write("GET / HTTP/1.1\r\nbad header line\r\n\r\n"));
      socket.on("data", (chunk) => (data += chunk.toString()));
      socket.on("end", () => resolve(data));
      socket.on("error", reject);
    });
    expect(raw).toMatch(/^HTTP\/1\.1 400 /);
    expect(JSON.parse(raw.slice(raw.indexOf("\r\n\r\n") + 4)).error.code).toBe("ERR_BAD_MESSAGE");
  });
});

describe("close", () => {
  it("stops taking connections and resolves once the requests in flight are answered", async () => {
    let release: () => void = () => undefined;
    let started: () => void = () => undefined;
    const inService = new Promise<void>((resolve) => (started = resolve));
    const ingress = await listen(async () => {
      started();
      await new Promise<void>((resolve) => (release = resolve));
      return { status: 200, body: "finished" };
    });
    const pending = send(ingress);
    await inService;
    let closed = false;
    const closing = ingress.close().then(() => (closed = true));
    open.splice(open.indexOf(ingress), 1);
    // The close cannot end while the request is in the service.
    await new Promise((resolve) => setImmediate(resolve));
    expect(closed).toBe(false);
    release();
    expect(await pending).toMatchObject({ status: 200, body: "finished" });
    await closing;
    await expect(send(ingress, { fresh: true })).rejects.toMatchObject({ code: "ECONNREFUSED" });
  });
});
