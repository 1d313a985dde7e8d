import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FETCH_LIMITS, grantedEnv, netAllows, permittedFetch } from "../../core/permissions.ts";
import { decodeReply, encode } from "../../core/wire.ts";

describe("permissions", () => {
  it("grants fetch by host, or by host and port", () => {
    const net = ["api.example.com:443", "127.0.0.1:8080", "open.example"];
    expect(netAllows(net, new URL("https://api.example.com/x"))).toBe(true);
    expect(netAllows(net, new URL("http://api.example.com/x"))).toBe(false);
    expect(netAllows(net, new URL("https://API.EXAMPLE.COM:443/"))).toBe(true);
    expect(netAllows(net, new URL("http://127.0.0.1:8080/"))).toBe(true);
    expect(netAllows(net, new URL("http://127.0.0.1:8081/"))).toBe(false);
    expect(netAllows(net, new URL("http://open.example:1234/"))).toBe(true);
    expect(netAllows(net, new URL("https://evil.example/"))).toBe(false);
    expect(netAllows(net, new URL("https://api.example.com.evil.example/"))).toBe(false);
    expect(netAllows(["[::1]:80"], new URL("http://[::1]/"))).toBe(true);
    expect(netAllows(net, new URL("file:///etc/passwd"))).toBe(false);
  });

  it("hands over only the granted environment variables that are set", () => {
    expect(grantedEnv({ net: [], env: ["A", "MISSING"], stdout: false }, { A: "1", B: "2" })).toEqual({ A: "1" });
  });
});

interface Seen {
  method: string | undefined;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** What permittedFetch answers, as a value or as the code of its error. */
async function fetchAs(envelope: unknown, options: { net?: string[]; maxMessageBytes?: number } = {}): Promise<unknown> {
  const bytes = envelope instanceof Uint8Array ? envelope : encode(envelope);
  const reply = await permittedFetch("svc", options.net ?? ["127.0.0.1"], bytes, 5000, options.maxMessageBytes);
  try {
    return decodeReply(reply);
  } catch (err) {
    return { code: (err as { code: string }).code };
  }
}

// The request envelope is decoded from a service's bytes, and a service can
// tamper with the runtime that builds it: every field is checked on the host.
describe("permittedFetch", () => {
  const seen: Seen[] = [];
  let server: Server;
  let other: Server;
  let base = "";
  let otherBase = "";

  const listen = async (s: Server): Promise<string> => {
    await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(s.address() as { port: number }).port}`;
  };
  const handler = (req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://x");
      seen.push({ method: req.method, path: url.pathname, headers: req.headers, body: Buffer.concat(chunks).toString() });
      const to = url.searchParams.get("to");
      if (to !== null) res.writeHead(Number(url.searchParams.get("status") ?? 302), { location: to }).end();
      else res.writeHead(200, { "x-answer": "yes" }).end("ok");
    });
  };
  beforeAll(async () => {
    server = createServer(handler);
    other = createServer(handler);
    base = await listen(server);
    otherBase = await listen(other);
  });
  afterAll(async () => {
    await Promise.all([server, other].map((s) => new Promise((resolve) => s.close(resolve))));
  });

  const request = (fields: Record<string, unknown>): unknown[] => [1, { url: `${base}/x`, method: "GET", headers: {}, body: null, ...fields }];

  it("makes a well-formed request: names lowercased, repeats combined, the standard methods uppercased", async () => {
    const reply = await fetchAs(request({ method: "delete", headers: { "X-One": "1", "x-one": "2" }, url: `${base}/ok` }));
    expect(reply).toMatchObject({ status: 200, url: `${base}/ok`, redirected: false, headers: expect.arrayContaining([["x-answer", "yes"]]) });
    expect(seen.at(-1)).toMatchObject({ method: "DELETE", path: "/ok", headers: { "x-one": "1, 2" } });
  });

  it("refuses malformed envelopes with ERR_BAD_MESSAGE and sends nothing", async () => {
    const before = seen.length;
    const many = Object.fromEntries(Array.from({ length: FETCH_LIMITS.headers + 1 }, (_, i) => [`x-${i}`, "v"]));
    const big = { a: "v".repeat(FETCH_LIMITS.headerBytes) };
    const cases: unknown[] = [
      Uint8Array.of(0xc1),
      "not an envelope",
      [2, { url: `${base}/x` }],
      [1, "url"],
      [1, [`${base}/x`]],
      [1, null],
      request({ url: 42 }),
      request({ url: "not a url" }),
      request({ url: `${base}/${"x".repeat(FETCH_LIMITS.urlBytes)}` }),
      request({ method: 42 }),
      request({ method: "GET\r\nX-Injected: 1" }),
      request({ method: "CONNECT" }),
      request({ method: "trace" }),
      request({ method: "x".repeat(100) }),
      request({ headers: [["a", "b"]] }),
      request({ headers: new Map([["a", "b"]]) }),
      request({ headers: "a: b" }),
      request({ headers: { a: 1 } }),
      request({ headers: { a: null } }),
      request({ headers: { a: Uint8Array.of(1) } }),
      request({ headers: { a: { toString: "x" } } }),
      request({ headers: { a: ["x", "y"] } }),
      request({ headers: { "a b": "x" } }),
      request({ headers: { "a\0": "x" } }),
      request({ headers: { a: "x\r\nInjected: 1" } }),
      request({ headers: { a: "\u2713" } }),
      request({ headers: many }),
      request({ headers: big }),
      request({ method: "POST", body: "text" }),
      request({ method: "POST", body: 42 }),
      request({ method: "POST", body: [1, 2] }),
      request({ redirect: "bogus" }),
      request({ redirect: 1 }),
    ];
    for (const envelope of cases) expect(await fetchAs(envelope), JSON.stringify(envelope)?.slice(0, 120)).toEqual({ code: "ERR_BAD_MESSAGE" });
    expect(seen.length).toBe(before);
  });

  it("refuses a request past maxMessageBytes with ERR_MESSAGE_TOO_LARGE, and one to a host not granted with ERR_PERMISSION", async () => {
    const before = seen.length;
    expect(await fetchAs(request({ method: "POST", body: new Uint8Array(2048) }), { maxMessageBytes: 1024 })).toEqual({ code: "ERR_MESSAGE_TOO_LARGE" });
    expect(await fetchAs(request({}), { net: ["example.com"] })).toEqual({ code: "ERR_PERMISSION" });
    expect(seen.length).toBe(before);
  });

  it("turns what Node's fetch refuses into ERR_FETCH", async () => {
    expect(await fetchAs(request({ headers: { "transfer-encoding": "chunked" }, method: "POST", body: Uint8Array.of(1) }))).toEqual({ code: "ERR_FETCH" });
    expect(await fetchAs(request({ headers: { upgrade: "websocket" } }))).toEqual({ code: "ERR_FETCH" });
  });

  it("drops credentials for good once a redirect leaves the origin, and body headers when a redirect turns a POST into a GET", async () => {
    const back = `${base}/back`;
    const away = `${otherBase}/away?to=${encodeURIComponent(back)}`;
    const reply = await fetchAs(
      request({
        url: `${base}/start?status=303&to=${encodeURIComponent(away)}`,
        method: "POST",
        body: Uint8Array.of(104, 105),
        headers: { Authorization: "Bearer t", cookie: "c=1", "proxy-authorization": "p", "content-type": "text/plain", "x-kept": "k" },
      }),
    );
    expect(reply).toMatchObject({ status: 200, url: back, redirected: true });
    const [start, awayHop, backHop] = seen.slice(-3);
    expect(start).toMatchObject({ method: "POST", path: "/start", body: "hi", headers: { authorization: "Bearer t", "content-type": "text/plain" } });
    for (const hop of [awayHop, backHop]) {
      expect(hop?.method).toBe("GET");
      expect(hop?.body).toBe("");
      expect(hop?.headers["x-kept"]).toBe("k");
      expect([hop?.headers.authorization, hop?.headers.cookie, hop?.headers["proxy-authorization"], hop?.headers["content-type"]]).toEqual([
        undefined,
        undefined,
        undefined,
        undefined,
      ]);
    }
  });

  it('keeps a 307\'s method and body, answers a redirect with ERR_FETCH in mode "error", and hands back the 3xx in mode "manual"', async () => {
    const to = encodeURIComponent(`${base}/kept`);
    expect(await fetchAs(request({ url: `${base}/r?status=307&to=${to}`, method: "PUT", body: Uint8Array.of(104) }))).toMatchObject({ status: 200 });
    expect(seen.at(-1)).toMatchObject({ method: "PUT", path: "/kept", body: "h" });
    const before = seen.length;
    expect(await fetchAs(request({ url: `${base}/r?to=${to}`, redirect: "error" }))).toEqual({ code: "ERR_FETCH" });
    const manual = await fetchAs(request({ url: `${base}/r?status=308&to=${to}`, redirect: "manual" }));
    expect(manual).toMatchObject({ status: 308, redirected: false, headers: expect.arrayContaining([["location", `${base}/kept`]]) });
    expect(seen.slice(before).map((s) => s.path)).toEqual(["/r", "/r"]);
  });
});
