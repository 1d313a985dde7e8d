// The admin API's guards, driven directly: the Host and Origin checks (with
// a configured host and a forwarded port), the token and the content type.
// The token file is in admin-token.test.ts and the bundler's allowed roots in
// bundle.test.ts; the behaviour suite (test/behaviour/admin-hardening.test.ts)
// covers the same through `molt run`.

import { request as httpRequest } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminServer } from "../../core/admin.ts";
import { codeOf } from "../support/codes.ts";
import { startKernel, type TestKernel } from "../support/kernel.ts";


/** One request with exactly these headers (Host included, or none with host: null). */
function send(port: number, path: string, init: { method?: string; headers?: Record<string, string>; host?: string | null; body?: string } = {}): Promise<{ status: number; code: string | undefined }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...init.headers };
    if (typeof init.host === "string") headers.host = init.host;
    const req = httpRequest({ hostname: "127.0.0.1", port, path, method: init.method ?? "GET", headers, setHost: init.host === undefined }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => {
        let code: string | undefined;
        try {
          code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
        } catch {
          code = undefined;
        }
        resolve({ status: res.statusCode ?? 0, code });
      });
    });
    req.on("error", reject);
    req.end(init.body);
  });
}

describe("AdminServer", () => {
  let t: TestKernel;
  let server: AdminServer;
  let port: number;
  const token = "0123456789abcdef".repeat(4);
  const write = { authorization: `Bearer ${token}`, "content-type": "application/json" };

  beforeAll(async () => {
    t = await startKernel({ services: { probe: { entry: "./probe.ts" } } });
    server = new AdminServer(t.admin, { port: 0, host: "127.0.0.1", token, allowedRoots: [t.kernel.config.dir] });
    port = (await server.listen()).port;
  });

  afterAll(async () => {
    await server?.close();
    await t?.kernel.stop();
  });

  it("refuses to be built with an empty token", () => {
    expect(codeOf(() => new AdminServer(t.admin, { port: 0, host: "127.0.0.1", token: "", allowedRoots: [] }))).toBe("ERR_CONFIG");
  });

  it("answers only Hosts that name this machine, with a coded 421", async () => {
    for (const host of [`127.0.0.1:${port}`, "127.0.0.1", `localhost:${port}`, "LocalHost", `[::1]:${port}`, "[::1]", "localhost:1"]) {
      expect((await send(port, "/v1/status", { host })).status, host).toBe(200);
    }
    for (const host of ["evil.example", `evil.example:${port}`, "127.0.0.1:http", "127.0.0.1:", "::1", "[::2]", "localhost.", "127.0.0.1@evil.example", null]) {
      const res = await send(port, "/v1/status", { host });
      expect(res, String(host)).toEqual({ status: 421, code: "ERR_PERMISSION" });
    }
  });

  it("takes a write from its own origin, also through a forwarded port, and from no origin at all", async () => {
    const snapshot = { method: "POST", headers: write, body: JSON.stringify({ service: "probe" }) };
    expect((await send(port, "/v1/snapshot", snapshot)).status).toBe(200);
    for (const origin of [`http://127.0.0.1:${port}`, `http://localhost:${port}`, `http://[::1]:${port}`]) {
      expect((await send(port, "/v1/snapshot", { ...snapshot, headers: { ...write, origin } })).status, origin).toBe(200);
    }
    // The browser reached the port as localhost:9000 (ssh -L 9000:127.0.0.1:<port>): Host and Origin agree.
    expect((await send(port, "/v1/snapshot", { ...snapshot, host: "localhost:9000", headers: { ...write, origin: "http://localhost:9000" } })).status).toBe(200);
    for (const origin of ["http://localhost:9000", "http://evil.example", "null", "", `http://127.0.0.1:${port}/path`, `file://`]) {
      const res = await send(port, "/v1/snapshot", { ...snapshot, headers: { ...write, origin } });
      expect(res, origin).toEqual({ status: 403, code: "ERR_PERMISSION" });
    }
  });

  it("checks the token before the body, and the content type before anything is done", async () => {
    const body = JSON.stringify({ service: "probe" });
    expect(await send(port, "/v1/snapshot", { method: "POST", headers: { "content-type": "application/json" }, body })).toEqual({ status: 401, code: "ERR_UNAUTHORIZED" });
    expect(await send(port, "/v1/snapshot", { method: "POST", headers: { ...write, authorization: "Bearer " }, body })).toEqual({ status: 401, code: "ERR_UNAUTHORIZED" });
    expect(await send(port, "/v1/snapshot", { method: "POST", headers: { ...write, "content-type": "text/json" }, body })).toEqual({ status: 415, code: "ERR_BAD_REQUEST" });
    expect((await send(port, "/v1/snapshot", { method: "POST", headers: { ...write, "content-type": "Application/JSON ; charset=utf-8" }, body })).status).toBe(200);
  });

  it("routes by the raw path: a target that is not a path is ERR_BAD_REQUEST, and body fields are the body's own", async () => {
    expect(await send(port, "//evil.example/v1/status")).toEqual({ status: 404, code: "ERR_ADMIN" });
    expect(await send(port, "http://evil.example/v1/status")).toEqual({ status: 400, code: "ERR_BAD_REQUEST" });
    // JSON.parse makes "__proto__" an own key, never the prototype: no entry was given.
    const res = await send(port, "/v1/services/probe/swap", { method: "POST", headers: write, body: '{"__proto__": {"entry": "/etc/hosts"}}' });
    expect(res).toEqual({ status: 400, code: "ERR_BAD_MESSAGE" });
  });
});
