// The admin API's guards, driven directly: the Host and Origin checks (with
// a configured host and a forwarded port), the token and the content type.
// The token file is in admin-token.test.ts and the bundler's allowed roots in
// bundle.test.ts; the behaviour suite (test/behaviour/admin-hardening.test.ts)
// covers the same through `molt run`.

import { mkdtempSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { AdminServer, adminRuntime, type AdminRuntime } from "../../core/admin.ts";
import { ErrorCode, MoltError } from "../../core/errors.ts";
import { KernelChain } from "../../core/kernel-chain.ts";
import { kernelIdentity } from "../../core/kernel-version.ts";
import {
  AdminPath,
  NDJSON,
  type ErrorBody,
  type KernelHistoryBody,
  type KernelUpgradeProgress,
  type KernelUpgradeReport,
  type StatusBody,
} from "../../protocol/admin.ts";
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

describe("AdminServer: the kernel's own routes", () => {
  let t: TestKernel;
  const servers: AdminServer[] = [];
  const token = "fedcba9876543210".repeat(4);
  const write = { authorization: `Bearer ${token}`, "content-type": "application/json" };

  beforeAll(async () => {
    t = await startKernel({ services: { probe: { entry: "./probe.ts" } } });
  });
  afterAll(async () => {
    for (const server of servers) await server.close();
    await t?.kernel.stop();
  });

  /** An admin API over the test's kernel with the kernel side given (a chain, an upgrade hook), and its base URL. */
  async function serve(runtime: Partial<AdminRuntime> = {}): Promise<{ server: AdminServer; base: string }> {
    const server = new AdminServer({ ...t.admin, ...runtime }, { port: 0, host: "127.0.0.1", token, allowedRoots: [] });
    servers.push(server);
    return { server, base: `http://127.0.0.1:${(await server.listen()).port}` };
  }

  const upgrade = (base: string, headers: Record<string, string> = write): Promise<Response> =>
    fetch(`${base}${AdminPath.kernelUpgrade}`, { method: "POST", headers, body: "{}" });

  async function lines(res: Response): Promise<KernelUpgradeProgress[]> {
    expect(res.headers.get("content-type")).toBe(NDJSON);
    return (await res.text())
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as KernelUpgradeProgress);
  }

  const report: KernelUpgradeReport = {
    from: { version: "a".repeat(64), semver: "0.1.0", pid: 100 },
    to: { version: "b".repeat(64), semver: "0.1.0", pid: 200 },
    blackoutMs: 7,
    phases: [
      { name: "boot", ms: 80 },
      { name: "drain", ms: 1 },
    ],
    services: 1,
  };

  it("shows the runtime under `kernel` in the status: this process, without a keeper's chain or before it records this runtime", async () => {
    const { base } = await serve();
    const body = (await (await fetch(`${base}${AdminPath.status}`)).json()) as StatusBody;
    const thisProcess = { ...kernelIdentity(), pid: process.pid, startedAt: expect.any(String) as string, upgrades: 0, restarts: 0 };
    expect(body.kernel).toEqual(thisProcess);
    expect(body.services.map((s) => s.name)).toEqual(["probe"]);
    expect(await (await fetch(`${base}${AdminPath.kernelHistory}`)).json()).toEqual({ kernel: [], corrupt: 0 });

    const unrecorded = await serve(adminRuntime(t.kernel, t.metrics, t.live, { chain: new KernelChain(mkdtempSync(join(tmpdir(), "molt-admin-chain-"))) }));
    expect(((await (await fetch(`${unrecorded.base}${AdminPath.status}`)).json()) as StatusBody).kernel).toEqual(thisProcess);
  });

  it("shows the chain's runtime in the status, and the chain as the kernel's history", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "molt-admin-chain-"));
    await new KernelChain(dataDir, { pid: 100 }).started({ via: "start" });
    const chain = new KernelChain(dataDir);
    await chain.started({ via: "restart", blackoutMs: 250 });
    const { base } = await serve(adminRuntime(t.kernel, t.metrics, t.live, { chain }));
    const status = (await (await fetch(`${base}${AdminPath.status}`)).json()) as StatusBody;
    expect(status.kernel).toEqual(chain.info());
    expect(status.kernel).toMatchObject({ pid: process.pid, upgrades: 0, restarts: 1 });
    const history = (await (await fetch(`${base}${AdminPath.kernelHistory}`)).json()) as KernelHistoryBody;
    expect(history).toEqual({ kernel: chain.list().records, corrupt: 0 });
    expect(history.kernel.map((r) => [r.pid, r.via, r.outcome])).toEqual([
      [100, "start", "crashed"],
      [process.pid, "restart", "live"],
    ]);
  });

  it("refuses an upgrade with ERR_KERNEL_UPGRADE_UNAVAILABLE when no keeper started the runtime", async () => {
    const { base } = await serve();
    const res = await upgrade(base);
    expect(res.status).toBe(501);
    expect(((await res.json()) as ErrorBody).error.code).toBe("ERR_KERNEL_UPGRADE_UNAVAILABLE");
  });

  it("guards an upgrade as it guards a swap: the token, its own origin, JSON", async () => {
    let asked = 0;
    const { base } = await serve({ upgrade: async () => (asked++, report) });
    expect((await upgrade(base, { "content-type": "application/json" })).status).toBe(401);
    expect((await upgrade(base, { ...write, authorization: "Bearer wrong" })).status).toBe(401);
    expect((await upgrade(base, { ...write, origin: "http://evil.example" })).status).toBe(403);
    expect((await upgrade(base, { ...write, "content-type": "text/plain" })).status).toBe(415);
    expect(asked).toBe(0);
  });

  it("streams each phase as it ends, then the report, as a swap does", async () => {
    const { base } = await serve({
      upgrade: async (onPhase) => {
        onPhase("boot", 80);
        onPhase("drain", 1);
        return report;
      },
    });
    expect(await lines(await upgrade(base))).toEqual([
      { event: "phase", phase: "boot", ms: 80 },
      { event: "phase", phase: "drain", ms: 1 },
      { event: "report", report },
    ]);
  });

  it("ends the stream with the phase's code when the upgrade fails after it began, and answers a plain error before", async () => {
    const failing = await serve({
      upgrade: async (onPhase) => {
        onPhase("boot", 80);
        throw new MoltError(ErrorCode.KERNEL_UPGRADE_RESTORE, "a service's restore threw");
      },
    });
    const streamed = await lines(await upgrade(failing.base));
    expect(streamed.at(-1)).toMatchObject({ event: "error", error: { code: "ERR_KERNEL_UPGRADE_RESTORE" } });

    const early = await serve({
      upgrade: async () => {
        throw new MoltError(ErrorCode.KERNEL_UPGRADE_BOOT, "the new runtime did not boot");
      },
    });
    const res = await upgrade(early.base);
    expect(res.status).toBe(500);
    expect(((await res.json()) as ErrorBody).error.code).toBe("ERR_KERNEL_UPGRADE_BOOT");
  });

  it("runs one upgrade at a time: a second one while the first runs is ERR_KERNEL_UPGRADE_BUSY", async () => {
    let finish: (value: KernelUpgradeReport) => void = () => undefined;
    let began = false;
    const { base } = await serve({
      upgrade: (onPhase) => {
        began = true;
        onPhase("boot", 1);
        return new Promise((resolvePromise) => (finish = resolvePromise));
      },
    });
    const first = upgrade(base);
    await vi.waitFor(() => expect(began).toBe(true));
    const second = await upgrade(base);
    expect(second.status).toBe(409);
    expect(((await second.json()) as ErrorBody).error.code).toBe("ERR_KERNEL_UPGRADE_BUSY");
    finish(report);
    expect((await lines(await first)).at(-1)).toEqual({ event: "report", report });
    // Once it has answered, the next upgrade may run.
    began = false;
    const third = upgrade(base);
    await vi.waitFor(() => expect(began).toBe(true));
    finish(report);
    expect((await lines(await third)).at(-1)).toEqual({ event: "report", report });
  });

  it("lets the upgrade close the server during its handover and still delivers the report", async () => {
    let server: AdminServer | undefined;
    let closed = false;
    const served = await serve({
      upgrade: async (onPhase) => {
        onPhase("sockets", 2);
        // The old runtime stops listening as the new one takes the sockets; it does not wait for the close.
        void server?.close().then(() => (closed = true));
        return report;
      },
    });
    server = served.server;
    expect((await lines(await upgrade(served.base))).at(-1)).toEqual({ event: "report", report });
    await vi.waitFor(() => expect(closed).toBe(true));
    await expect(fetch(`${served.base}${AdminPath.status}`)).rejects.toThrow();
  });
});
