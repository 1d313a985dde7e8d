// Hostile services, fetch: a service granted the network sends requests
// built to break Node's fetch (tens of thousands of headers, with
// isolated-vm's options poisoned on Object.prototype or not, bodies past its
// maxMessageBytes), and credentials toward redirects. The host refuses the
// request with a code before anything is sent, keeps fetching for everyone
// else, never lets credentials follow a redirect to another origin, and
// honours the redirect modes.
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectHealthy, underLoad } from "../support/hostile.ts";
import { startKernel, type TestKernel } from "../support/kernel.ts";

/** A local server that answers `/ok`, redirects on `/redirect?to=…&status=…`, and echoes request headers as JSON on `/headers`. */
class Origin {
  readonly server: Server;
  readonly seen: { path: string; headers: IncomingHttpHeaders }[] = [];
  base = "";

  constructor() {
    this.server = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      this.seen.push({ path: url.pathname, headers: req.headers });
      req.resume();
      if (url.pathname === "/redirect") {
        res.writeHead(Number(url.searchParams.get("status") ?? 302), { location: url.searchParams.get("to") ?? "/ok" }).end("moved");
      } else if (url.pathname === "/headers") {
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(req.headers));
      } else {
        res.writeHead(200).end("ok");
      }
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.base = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe("hostile services: fetch", () => {
  let t: TestKernel;
  const a = new Origin();
  const b = new Origin();
  const net = { permissions: { net: ["127.0.0.1"] } };

  beforeAll(async () => {
    await Promise.all([a.listen(), b.listen()]);
    t = await startKernel({
      services: {
        // Before the fix, the guest's own Headers took seconds over 20,000 headers: the deadline leaves room for that.
        fetcher: { entry: "./hostile/fetch-hostile.ts", limits: { timeoutMs: 20_000 }, ...net },
        neighbour: { entry: "./hostile/fetch-hostile.ts", ...net },
        healthy: { entry: "./probe.ts" },
      },
    });
  });
  afterAll(async () => {
    await t?.kernel.stop();
    await Promise.all([a.close(), b.close()]);
  });

  const hits = (origin: Origin, path: string): number => origin.seen.filter((s) => s.path === path).length;

  // The issue's reproduction: with Object.prototype.timeout set, isolated-vm
  // gave the host's fetch function a 1 ms deadline and stopped Node's fetch
  // in the middle of its work (the guest got an uncoded "Script execution
  // timed out"; the reporter's runtime died of an assertion inside it).
  it("fetches with 20,000 headers and Object.prototype.timeout = 1: ERR_BAD_MESSAGE, nothing is sent; a large POST so poisoned goes through; fetch keeps working for it and its neighbours", async () => {
    const load = await underLoad(t, async () => ({
      poisoned: await t.kernel.call("fetcher", "manyHeaders", { url: `${a.base}/many`, count: 20_000, poison: true }),
      poisonedPost: await t.kernel.call("fetcher", "post", { url: `${a.base}/post`, bytes: 3_000_000, poison: true }),
      plain: await t.kernel.call("fetcher", "manyHeaders", { url: `${a.base}/many`, count: 20_000, poison: false }),
      again: await t.kernel.call("fetcher", "get", `${a.base}/ok`),
      neighbour: await t.kernel.call("neighbour", "get", `${a.base}/ok`),
    }));
    expect(load.value).toMatchObject({
      poisoned: { code: "ERR_BAD_MESSAGE" },
      poisonedPost: { status: 200, text: "ok" },
      plain: { code: "ERR_BAD_MESSAGE" },
      again: { status: 200, text: "ok" },
      neighbour: { status: 200, text: "ok" },
    });
    expect(hits(a, "/many")).toBe(0);
    expectHealthy(load);
  });

  it("fetches with 300 headers, past the cap of 256: ERR_BAD_MESSAGE, nothing is sent", async () => {
    const load = await underLoad(t, () => t.kernel.call("fetcher", "manyHeaders", { url: `${a.base}/cap`, count: 300, poison: false }));
    expect(load.value).toEqual({ code: "ERR_BAD_MESSAGE" });
    expect(hits(a, "/cap")).toBe(0);
    expect(await t.kernel.call("fetcher", "manyHeaders", { url: `${a.base}/under-cap`, count: 200, poison: false })).toMatchObject({ status: 200 });
    expectHealthy(load);
  });

  it("posts a body past its maxMessageBytes: ERR_MESSAGE_TOO_LARGE, nothing is sent", async () => {
    const load = await underLoad(t, () => t.kernel.call("fetcher", "post", { url: `${a.base}/large`, bytes: 5 * 1024 * 1024 }));
    expect(load.value).toEqual({ code: "ERR_MESSAGE_TOO_LARGE" });
    expect(hits(a, "/large")).toBe(0);
    expect(await t.kernel.call("fetcher", "post", { url: `${a.base}/small`, bytes: 1024 })).toMatchObject({ status: 200 });
    expectHealthy(load);
  });

  it("follows a redirect to another origin without its Authorization, Cookie and Proxy-Authorization headers, and keeps them within its origin", async () => {
    const load = await underLoad(t, async () => ({
      across: await t.kernel.call("fetcher", "withCredentials", { url: `${a.base}/redirect?to=${encodeURIComponent(`${b.base}/headers`)}` }),
      within: await t.kernel.call("fetcher", "withCredentials", { url: `${a.base}/redirect?status=307&to=/headers` }),
    }));
    const { across, within } = load.value as Record<string, { status: number; text: string; redirected: boolean; url: string }>;
    const sent = (reply: { text: string } | undefined): unknown[] => {
      const headers = JSON.parse(reply?.text ?? "{}") as Record<string, string>;
      return [headers.authorization, headers.cookie, headers["proxy-authorization"], headers["x-kept"]];
    };
    expect(sent(across)).toEqual([undefined, undefined, undefined, "yes"]);
    expect(sent(within)).toEqual(["Bearer secret", "session=secret", "Basic secret", "yes"]);
    expect(across).toMatchObject({ status: 200, redirected: true, url: `${b.base}/headers` });
    expect(within).toMatchObject({ status: 200, redirected: true, url: `${a.base}/headers` });
    expectHealthy(load);
  });

  it('honours redirect: "error" (ERR_FETCH) and "manual" (the 3xx response as it is, not followed)', async () => {
    const to = encodeURIComponent(`${b.base}/target`);
    const load = await underLoad(t, async () => ({
      error: await t.kernel.call("fetcher", "withCredentials", { url: `${a.base}/redirect?to=${to}`, redirect: "error" }),
      manual: await t.kernel.call("fetcher", "withCredentials", { url: `${a.base}/redirect?status=301&to=${to}`, redirect: "manual" }),
    }));
    expect(load.value).toEqual({
      error: { code: "ERR_FETCH" },
      manual: { status: 301, location: `${b.base}/target`, text: "moved", redirected: false, url: `${a.base}/redirect?status=301&to=${to}` },
    });
    expect(hits(b, "/target")).toBe(0);
    expectHealthy(load);
  });
});
