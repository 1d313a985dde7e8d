// Behaviour: a real runtime (`molt run <config>` in its own process), started
// from a config file and talked to over HTTP, as a user would. Errors are
// checked by the code in the JSON body, never by message text.

import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { FIXTURES, ROOT, startRuntime, writeConfig, type RunningRuntime } from "../support/runtime.ts";

const PROBE = join(FIXTURES, "behaviour", "probe.ts");
const PLAIN_TS = join(FIXTURES, "behaviour", "plain.ts");
const PLAIN_JS = join(FIXTURES, "behaviour", "plain.js");
const GATEWAY = join(ROOT, "services", "gateway", "index.ts");
const COUNTER = join(ROOT, "services", "counter", "index.ts");
const KV = join(ROOT, "services", "kv", "index.ts");

const MAX_BODY = 1024;

interface Answer {
  status: number;
  text: string;
  json: any;
}

async function get(base: string, path: string, init: RequestInit = {}): Promise<Answer> {
  const res = await fetch(new URL(path, base), init);
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json };
}

/** The error code of a molt error body, asserting the body has the documented shape. */
function errorCode(answer: Answer): string {
  expect(answer.json, `not a JSON error body: ${answer.text}`).toMatchObject({
    error: { code: expect.any(String), message: expect.any(String) },
  });
  return answer.json.error.code as string;
}

/** Polls until `path` answers 200 (a restarting service may need a moment), up to 5 s. */
function until200(base: string, path: string): Promise<Answer> {
  return vi.waitFor(
    async () => {
      const answer = await get(base, path);
      expect(answer.status, answer.text).toBe(200);
      return answer;
    },
    { timeout: 5000, interval: 100 },
  );
}

/** Waits until a line matching `pattern` appeared on the runtime's stdout (up to 10 s). */
async function waitForStdout(rt: RunningRuntime, pattern: RegExp): Promise<void> {
  await vi.waitFor(() => expect(rt.stdout(), "the expected line never appeared on stdout").toMatch(pattern), { timeout: 10_000, interval: 20 });
}

/** Sends raw bytes on a TCP socket and resolves with everything the server wrote back before closing. */
function rawExchange(base: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(bytes));
    let data = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => (data += chunk));
    socket.on("end", () => resolve(data));
    socket.on("error", (err) => (data === "" ? reject(err) : resolve(data)));
    socket.setTimeout(10_000, () => socket.destroy(new Error(`no answer; got so far: ${JSON.stringify(data)}`)));
  });
}

/** A request through node:http, to control the body exactly (chunked or with content-length). */
function rawRequest(base: string, path: string, body: Buffer, options: { chunked?: boolean } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(new URL(path, base), {
      method: "POST",
      headers: options.chunked === true ? { "transfer-encoding": "chunked" } : { "content-length": body.byteLength },
    });
    req.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => {
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, text, json });
      });
    });
    // The server may answer 413 and close before the whole body is written.
    req.on("error", reject);
    if (options.chunked === true) {
      for (let at = 0; at < body.byteLength; at += 256) req.write(body.subarray(at, at + 256));
      req.end();
    } else {
      req.end(body);
    }
  });
}

describe("a runtime behind the gateway", () => {
  let rt: RunningRuntime;
  let url: string;

  beforeAll(async () => {
    const config = writeConfig(`
export default {
  services: {
    gateway: {
      entry: ${JSON.stringify(GATEWAY)},
      // Requests to different services must not queue behind each other in the gateway.
      concurrency: 16,
      bindings: { counter: "counter", kv: "kv", probe: "probe", spinner: "spinner", plainTs: "plainTs", plainJs: "plainJs" },
      config: {
        routes: {
          "/counter": "counter",
          "/kv": "kv",
          "/probe": "probe",
          "/spinner": "spinner",
          "/plain-ts": "plainTs",
          "/plain-js": "plainJs",
        },
      },
    },
    counter: { entry: ${JSON.stringify(COUNTER)} },
    kv: { entry: ${JSON.stringify(KV)} },
    probe: { entry: ${JSON.stringify(PROBE)}, bindings: { kv: "kv", other: "pong" } },
    pong: { entry: ${JSON.stringify(PROBE)} },
    spinner: { entry: ${JSON.stringify(PROBE)}, bindings: { other: "pong" }, limits: { timeoutMs: 300 } },
    plainTs: { entry: ${JSON.stringify(PLAIN_TS)} },
    plainJs: { entry: ${JSON.stringify(PLAIN_JS)} },
  },
  http: { port: 0, service: "gateway", maxBodyBytes: ${MAX_BODY} },
};
`);
    rt = await startRuntime(config);
    url = rt.url;
  });

  afterAll(async () => {
    await rt?.stop();
  });

  describe("requests reach services through the gateway", () => {
    it("counts: POST /counter/incr twice, then GET /counter answers 2", async () => {
      expect((await get(url, "/counter")).text.trim()).toBe("0");
      const first = await get(url, "/counter/incr", { method: "POST" });
      expect(first.status).toBe(200);
      expect(first.text.trim()).toBe("1");
      const second = await get(url, "/counter/incr", { method: "POST" });
      expect(second.text.trim()).toBe("2");
      const now = await get(url, "/counter");
      expect(now.status).toBe(200);
      expect(now.text.trim()).toBe("2");
    });

    it("stores: kv PUT, GET, list, DELETE over HTTP", async () => {
      expect((await get(url, "/kv/colour", { method: "PUT", body: "teal" })).status).toBe(200);
      expect((await get(url, "/kv/shape", { method: "PUT", body: "round" })).status).toBe(200);
      expect((await get(url, "/kv/other", { method: "PUT", body: "x" })).status).toBe(200);

      const colour = await get(url, "/kv/colour");
      expect(colour.status).toBe(200);
      expect(colour.text).toBe("teal");

      const all = await get(url, "/kv/");
      expect(all.status).toBe(200);
      expect(all.json).toEqual([
        { key: "colour", value: "teal" },
        { key: "other", value: "x" },
        { key: "shape", value: "round" },
      ]);
      const prefixed = await get(url, "/kv/?prefix=sh");
      expect(prefixed.json).toEqual([{ key: "shape", value: "round" }]);

      expect((await get(url, "/kv/colour", { method: "DELETE" })).status).toBe(200);
      expect((await get(url, "/kv/colour")).status).toBe(404);
      expect((await get(url, "/kv/colour", { method: "DELETE" })).status).toBe(404);
      expect((await get(url, "/kv/")).json).toEqual([
        { key: "other", value: "x" },
        { key: "shape", value: "round" },
      ]);
    });

    it("answers 404 for a path no route covers", async () => {
      const answer = await get(url, "/no-such-route");
      expect(answer.status).toBe(404);
      expect(errorCode(answer)).toBe("ERR_NO_ROUTE");
    });
  });

  describe("service to service", () => {
    it("a service calls kv through its binding: set, then get", async () => {
      const answer = await get(url, "/probe/kv?key=from-probe&value=42");
      expect(answer.status).toBe(200);
      expect(answer.json).toEqual({ set: true, got: "42" });
      // The value is in the real kv service, as seen from outside.
      const direct = await get(url, "/kv/from-probe");
      expect(direct.status).toBe(200);
      expect(direct.text).toBe("42");
    });

    it("refuses an undeclared binding with ERR_NO_BINDING, and serves on", async () => {
      const escaped = await get(url, "/probe/nope");
      expect(escaped.status).toBe(500);
      expect(errorCode(escaped)).toBe("ERR_NO_BINDING");

      const caught = await get(url, "/probe/nope-caught");
      expect(caught.status).toBe(200);
      expect(caught.json).toEqual({ code: "ERR_NO_BINDING" });

      const next = await get(url, "/probe/ok");
      expect(next.status).toBe(200);
      expect(next.json).toMatchObject({ ok: true, service: "probe" });
    });
  });

  describe("a throwing handler", () => {
    it("answers 500 with the code the error carried, and serves on", async () => {
      const answer = await get(url, "/probe/throw-coded");
      expect(answer.status).toBe(500);
      expect(errorCode(answer)).toBe("ERR_SOMETHING");
      expect(answer.json.error.service).toBe("probe");

      const next = await get(url, "/probe/ok");
      expect(next.status).toBe(200);
    });

    it("answers 500 with ERR_HANDLER for a plain Error, and serves on", async () => {
      const answer = await get(url, "/probe/throw-plain");
      expect(answer.status).toBe(500);
      expect(errorCode(answer)).toBe("ERR_HANDLER");
      expect(answer.json.error.service).toBe("probe");

      const next = await get(url, "/probe/ok");
      expect(next.status).toBe(200);
    });
  });

  describe("an infinite loop in a handler", () => {
    it("synchronous: ends in 503 ERR_TIMEOUT and the same service answers the next call", async () => {
      const before = await get(url, "/spinner/ok");
      expect(before.status).toBe(200);

      const answer = await get(url, "/spinner/spin");
      expect(answer.status).toBe(503);
      expect(errorCode(answer)).toBe("ERR_TIMEOUT");

      const next = await until200(url, "/spinner/ok");
      expect(next.status).toBe(200);
      expect(next.json).toMatchObject({ ok: true, service: "spinner" });
    });

    it("after an awaited cross-service call: ends in 503 ERR_TIMEOUT and the same service answers again", async () => {
      const answer = await get(url, "/spinner/spin-after-call");
      expect(answer.status).toBe(503);
      expect(errorCode(answer)).toBe("ERR_TIMEOUT");

      // The wedged isolate is disposed and the instance restarted.
      const next = await until200(url, "/spinner/ok");
      expect(next.status).toBe(200);
      expect(next.json).toMatchObject({ ok: true, service: "spinner" });
      // The service it called is unharmed.
      expect((await get(url, "/probe/ok")).status).toBe(200);
    });

    it("a message queued behind the wedged call is answered by the restarted instance, not failed", async () => {
      const wedged = get(url, "/spinner/spin-after-call?announce=queued");
      // The spinner is now looping after its await; the next message waits in its mailbox.
      await waitForStdout(rt, /spin-started queued/);
      const queued = get(url, "/spinner/ok");
      const answer = await wedged;
      expect(answer.status).toBe(503);
      expect(errorCode(answer)).toBe("ERR_TIMEOUT");
      const next = await queued;
      expect(next.status, next.text).toBe(200);
      expect(next.json).toMatchObject({ ok: true, service: "spinner" });
    });

    it("the restarted service still loops into ERR_TIMEOUT, and recovers again", async () => {
      // Independent of how the test before left the service.
      expect((await until200(url, "/spinner/ok")).status).toBe(200);
      const answer = await get(url, "/spinner/spin-after-call");
      expect(answer.status).toBe(503);
      expect(errorCode(answer)).toBe("ERR_TIMEOUT");
      expect((await until200(url, "/spinner/ok")).status).toBe(200);
    });
  });

  describe("HTTP edge cases", () => {
    it("takes a body of exactly http.maxBodyBytes", async () => {
      const answer = await rawRequest(url, "/probe/size", Buffer.alloc(MAX_BODY, 0x61));
      expect(answer.status).toBe(200);
      expect(answer.json).toEqual({ bytes: MAX_BODY });
    });

    it("refuses a body over http.maxBodyBytes with 413 (content-length)", async () => {
      const answer = await rawRequest(url, "/probe/size", Buffer.alloc(MAX_BODY + 1, 0x61));
      expect(answer.status).toBe(413);
      expect(errorCode(answer)).toBe("ERR_MESSAGE_TOO_LARGE");
    });

    it("refuses a chunked body over http.maxBodyBytes with 413", async () => {
      const answer = await rawRequest(url, "/probe/size", Buffer.alloc(MAX_BODY * 2, 0x61), { chunked: true });
      expect(answer.status).toBe(413);
      expect(errorCode(answer)).toBe("ERR_MESSAGE_TOO_LARGE");
      expect((await get(url, "/probe/ok")).status).toBe(200);
    });

    it("answers a malformed request with 400, and serves on", async () => {
      const reply = await rawExchange(url, "GARBAGE\r\n\r\n");
      expect(reply).toMatch(/^HTTP\/1\.1 400 /);
      const body = reply.slice(reply.indexOf("\r\n\r\n") + 4);
      expect(JSON.parse(body)).toMatchObject({ error: { code: "ERR_BAD_MESSAGE" } });

      const next = await get(url, "/probe/ok");
      expect(next.status).toBe(200);
    });

    it("answers a request with oversized headers with 431, and serves on", async () => {
      const reply = await rawExchange(url, `GET /probe/ok HTTP/1.1\r\nhost: x\r\nx-big: ${"a".repeat(64 * 1024)}\r\n\r\n`);
      expect(reply).toMatch(/^HTTP\/1\.1 431 /);
      expect((await get(url, "/probe/ok")).status).toBe(200);
    });

    it("passes a binary (Uint8Array) response body through unchanged", async () => {
      const res = await fetch(`${url}/probe/bytes`);
      expect(res.status).toBe(200);
      expect([...new Uint8Array(await res.arrayBuffer())]).toEqual([0, 1, 2, 253, 254, 255]);
    });

    it.each(["bad-shape", "bad-status", "bad-body", "bad-header", "not-an-object"])(
      "answers 502 ERR_BAD_RESPONSE when the service answers with an invalid response (%s)",
      async (path) => {
        const answer = await get(url, `/probe/${path}`);
        expect(answer.status).toBe(502);
        expect(errorCode(answer)).toBe("ERR_BAD_RESPONSE");
        expect((await get(url, "/probe/ok")).status).toBe(200);
      },
    );
  });

  describe("isolation", () => {
    it("a service reaches no process, require or Buffer, whichever way it tries", async () => {
      const answer = await get(url, "/probe/isolation");
      expect(answer.status).toBe(200);
      const none = { process: "undefined", require: "undefined", Buffer: "undefined" };
      expect(answer.json).toEqual({
        typeofProcess: "undefined",
        typeofRequire: "undefined",
        typeofBuffer: "undefined",
        typeofMoltInstall: "undefined",
        thisConstructor: "undefined",
        globalConstructor: "undefined",
        ctxConstructor: "undefined",
        ctxCallConstructor: "undefined",
        stateConstructor: "undefined",
        requestConstructor: "undefined",
        headersConstructor: "undefined",
        hostErrorConstructor: "undefined",
        bindingErrorConstructor: "undefined",
        functionGlobal: none,
        newFunctionThis: none,
        globalThis: none,
      });
    });
  });

  describe("services written only from the contract (a plain default-exported object, no import)", () => {
    it("works as a TypeScript file", async () => {
      const first = await get(url, "/plain-ts/hi");
      expect(first.status).toBe(200);
      expect(first.json).toEqual({ greeting: "hello from plain.ts", path: "/hi", greeted: 1 });
      expect((await get(url, "/plain-ts/again")).json).toMatchObject({ greeted: 2 });
    });

    it("works as a JavaScript file", async () => {
      const first = await get(url, "/plain-js/hi");
      expect(first.status).toBe(200);
      expect(first.json).toEqual({ greeting: "hello from plain.js", path: "/hi", greeted: 1 });
      expect((await get(url, "/plain-js/again")).json).toMatchObject({ greeted: 2 });
    });
  });
});

describe("a config outside the repo, with entries relative to it", () => {
  let rt: RunningRuntime;

  beforeAll(async () => {
    // The documented config shape with defineConfig from "molt", and a service
    // importing "molt/service", both in a temporary folder far from the repo.
    const config = writeConfig(`import { defineConfig } from "molt";
export default defineConfig({
  services: {
    hello: { entry: "./services/hello.ts", config: { greeting: "hi" } },
  },
  http: { port: 0, service: "hello" },
});
`);
    mkdirSync(join(dirname(config), "services"));
    writeFileSync(
      join(dirname(config), "services", "hello.ts"),
      `import { defineService } from "molt/service";
import { shout } from "./shout.ts";
export default defineService<{ n: number }, { greeting: string }>({
  init: () => ({ n: 0 }),
  handlers: {
    fetch: (state, _req, ctx) => ({ status: 200, body: shout(ctx.config.greeting) + " " + ++state.n }),
  },
});
`,
    );
    writeFileSync(join(dirname(config), "services", "shout.ts"), `export const shout = (s: string): string => s.toUpperCase();\n`);
    rt = await startRuntime(config);
  });

  afterAll(async () => {
    await rt?.stop();
  });

  it("bundles the service with its relative import and serves it", async () => {
    expect(await get(rt.url, "/")).toMatchObject({ status: 200, text: "HI 1" });
    expect(await get(rt.url, "/")).toMatchObject({ status: 200, text: "HI 2" });
  });
});

describe("a flooded mailbox", () => {
  let rt: RunningRuntime;

  beforeAll(async () => {
    // The slow service answers HTTP itself, so its own mailbox (bound 5) takes the flood.
    const config = writeConfig(`
export default {
  services: {
    slow: { entry: ${JSON.stringify(PROBE)}, queue: 5 },
  },
  http: { port: 0, service: "slow" },
};
`);
    rt = await startRuntime(config);
  });

  afterAll(async () => {
    await rt?.stop();
  });

  it("refuses the excess with 503 ERR_MAILBOX_FULL, answers the rest, and serves on", async () => {
    const answers = await Promise.all(Array.from({ length: 100 }, () => get(rt.url, "/slow?ms=50")));
    const ok = answers.filter((a) => a.status === 200);
    const full = answers.filter((a) => a.status === 503);
    const other = answers.filter((a) => a.status !== 200 && a.status !== 503);
    expect(other.map((a) => `${a.status} ${a.text}`)).toEqual([]);
    expect(ok.length).toBeGreaterThan(0);
    expect(full.length).toBeGreaterThan(0);
    for (const a of ok) expect(a.json).toEqual({ slept: 50 });
    for (const a of full) expect(errorCode(a)).toBe("ERR_MAILBOX_FULL");

    const after = await get(rt.url, "/ok");
    expect(after.status).toBe(200);
    expect(after.json).toMatchObject({ ok: true, service: "slow" });
  });
});
