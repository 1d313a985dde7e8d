// Behaviour: what a web page, a careless operator or a local user can do to
// a runtime through its admin port and its dataDir (issue 12, items 4, 9,
// 11, 12, 13, 15, 16). A real runtime is started as a user starts it and
// spoken to over HTTP with node:http, which lets a test set Host and
// Origin as a browser or an attacker would (fetch forbids setting Host).

import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, relative as relativePath } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { ERROR_CODE_PATTERN } from "../../core/errors.ts";
import type { ServiceStatus, VersionRecord } from "../../protocol/admin.ts";
import { FIXTURES, killLeftovers, ROOT, runCli, runUntilExit, startRuntime, type RunningRuntime } from "../support/runtime.ts";

const V1 = join(FIXTURES, "behaviour", "admin-counter.ts");
/** Version 2, and also the code outside the allowed root that links and re-exports try to reach. */
const V2_OUTSIDE = join(FIXTURES, "behaviour", "admin-counter-v2.ts");
const FRAGILE = join(FIXTURES, "behaviour", "admin-fragile.ts");
const DUMP_FAILS = join(FIXTURES, "behaviour", "admin-dump-fails.ts");

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  body: any;
}

/**
 * One HTTP request with exactly the headers given: `host: null` sends no
 * Host header at all. `stream: true` resolves once the head has arrived and
 * then closes the connection (for server-sent events).
 */
function send(
  base: string,
  path: string,
  init: { method?: string; headers?: Record<string, string>; host?: string | null; body?: string; stream?: boolean } = {},
): Promise<Answer> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...init.headers };
    if (init.host !== undefined && init.host !== null) headers.host = init.host;
    const req = httpRequest(
      { hostname: url.hostname, port: url.port, path, method: init.method ?? "GET", headers, setHost: init.host === undefined },
      (res) => {
        const answer = (text: string): Answer => {
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            // Not JSON (NDJSON, events, the dashboard): the text is the body.
          }
          return { status: res.statusCode ?? 0, headers: res.headers, text, body };
        };
        if (init.stream === true && res.statusCode === 200) {
          resolve(answer(""));
          res.destroy();
          return;
        }
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (text += chunk));
        res.on("end", () => resolve(answer(text)));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(init.body);
  });
}

/** Every file and folder under `dir` whose mode lets another user in. */
function looseModes(dir: string): string[] {
  const loose: string[] = [];
  const walk = (path: string): void => {
    const stat = statSync(path);
    if ((stat.mode & 0o077) !== 0) loose.push(`${path} ${(stat.mode & 0o777).toString(8)}`);
    if (stat.isDirectory()) for (const name of readdirSync(path)) walk(join(path, name));
  };
  walk(dir);
  return loose;
}

afterEach(killLeftovers);

describe("the admin token", () => {
  /** A config with an admin port whose dataDir holds `token` as admin.token (or a symlink to it). */
  function configWithToken(token: string, options: { symlink?: boolean } = {}): string {
    const dir = mkdtempSync(join(tmpdir(), "molt-admin-token-"));
    const dataDir = join(dir, "data");
    mkdirSync(dataDir, { recursive: true });
    if (options.symlink === true) {
      writeFileSync(join(dir, "elsewhere.token"), token, { mode: 0o600 });
      symlinkSync(join(dir, "elsewhere.token"), join(dataDir, "admin.token"));
    } else {
      writeFileSync(join(dataDir, "admin.token"), token, { mode: 0o600 });
    }
    const config = join(dir, "molt.config.ts");
    const body = { services: { counter: { entry: V1 } }, http: { port: 0, service: "counter" }, admin: { port: 0 }, dataDir };
    writeFileSync(config, `export default ${JSON.stringify(body)};\n`);
    return config;
  }

  const good = "0123456789abcdef".repeat(4);
  for (const [name, token, symlink] of [
    ["empty", "", false],
    ["whitespace only", "  \n\t\n", false],
    ["too short (16 bytes of hex)", "0123456789abcdef0123456789abcdef\n", false],
    ["not random (64 zeros)", `${"0".repeat(64)}\n`, false],
    ["a symlink to a good token", `${good}\n`, true],
  ] as const) {
    it(`refuses to start with ERR_CONFIG when admin.token is ${name}`, async () => {
      const result = await runUntilExit(["run", configWithToken(token, { symlink })]);
      expect(result.killed, `still running; stdout:\n${result.stdout}`).toBe(false);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain("ERR_CONFIG");
    }, 30_000);
  }
});

describe("the admin API of a running runtime", () => {
  let dir: string;
  let allowed: string;
  let dataDir: string;
  let configPath: string;
  let rt: RunningRuntime;
  let admin: string;
  let port: string;
  /** A user-chosen base64url token (43 characters, 32 bytes): accepted, and the CLI uses it. */
  const token = "mZ3q8T_x1kVb-7rLwP0sYc2NfHa9JdUe4GiOtR6yKlQ";
  const json = { "content-type": "application/json", authorization: `Bearer ${token}` };

  const cli = (...args: string[]): ReturnType<typeof runCli> => runCli([...args, "--config", configPath]);

  async function history(service = "counter"): Promise<VersionRecord[]> {
    const res = await send(admin, `/v1/services/${service}/history`);
    expect(res.status, res.text).toBe(200);
    return (res.body as { records: VersionRecord[] }).records;
  }

  async function status(service: string): Promise<ServiceStatus | undefined> {
    const res = await send(admin, "/v1/status");
    return (res.body as { services: ServiceStatus[] }).services.find((s) => s.name === service);
  }

  const counter = async (): Promise<string> => (await fetch(`${rt.url}/counter`)).text();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "molt-admin-"));
    allowed = join(dir, "allowed");
    mkdirSync(allowed);
    dataDir = join(dir, "data");
    // As an older molt left it: readable by every local user.
    mkdirSync(join(dataDir, "bundles"), { recursive: true });
    for (const folder of [dataDir, join(dataDir, "bundles")]) chmodSync(folder, 0o755);
    writeFileSync(join(dataDir, "admin.token"), `${token}\n`, { mode: 0o600 });
    configPath = join(dir, "molt.config.ts");
    const config = {
      services: {
        gateway: {
          entry: join(ROOT, "services/gateway/index.ts"),
          bindings: { counter: "counter", fragile: "fragile" },
          config: { routes: { "/counter": "counter", "/fragile": "fragile" } },
        },
        counter: { entry: V1 },
        fragile: { entry: FRAGILE, limits: { memoryMb: 16 } },
        dumpfails: { entry: DUMP_FAILS },
      },
      http: { port: 0, service: "gateway" },
      admin: { port: 0, allowedRoots: [allowed] },
      dataDir,
      // A service that dies once stays down: the case `molt restart` is for.
      restart: { maxRestarts: 0, windowMs: 60_000 },
    };
    writeFileSync(configPath, `export default ${JSON.stringify(config, null, 2)};\n`);
    rt = await startRuntime(configPath);
    admin = rt.adminUrl ?? expect.fail("no admin listener");
    port = new URL(admin).port;
    // Some counting, so that a swap that keeps or drops state can be told apart.
    for (let i = 0; i < 3; i++) await fetch(`${rt.url}/counter`, { method: "POST" });
  }, 60_000);

  afterAll(async () => {
    await rt?.stop();
  });

  it("answers only requests whose Host names this machine: a DNS-rebinding page reads nothing (421 ERR_PERMISSION)", async () => {
    const routes: [string, string, Record<string, string>?, string?][] = [
      ["GET", "/"],
      ["GET", "/style.css"],
      ["GET", "/metrics"],
      ["GET", "/v1/events"],
      ["GET", "/v1/status"],
      ["GET", "/v1/services/counter/history"],
      ["POST", "/v1/snapshot", json, JSON.stringify({ service: "counter" })],
    ];
    for (const host of ["evil.example", `evil.example:${port}`, `127.0.0.1.evil.example:${port}`, `localhost.evil.example`, "127.0.0.2", null]) {
      for (const [method, path, headers, body] of routes) {
        const res = await send(admin, path, { method, host, ...(headers === undefined ? {} : { headers }), ...(body === undefined ? {} : { body }) });
        expect(res.status, `${method} ${path} Host ${host}`).toBe(421);
        expect(res.body.error.code).toBe("ERR_PERMISSION");
      }
    }
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, "LOCALHOST", "127.0.0.1"]) {
      expect((await send(admin, "/v1/status", { host })).status, host).toBe(200);
      const events = await send(admin, "/v1/events", { host, stream: true });
      expect(events.status, host).toBe(200);
      expect(events.headers["content-type"]).toBe("text/event-stream");
    }
  });

  it("takes writes only as application/json (415 ERR_BAD_REQUEST) from the admin port's own origin (403 ERR_PERMISSION), and changes nothing otherwise", async () => {
    const before = await history();
    const v2 = join(allowed, "v2-from-a-page.ts");
    writeFileSync(v2, readFileSync(V2_OUTSIDE));
    const swap = JSON.stringify({ entry: v2 });
    // A form or a "simple" cross-origin fetch can send these without a preflight.
    for (const type of ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", undefined]) {
      const headers: Record<string, string> = { authorization: `Bearer ${token}`, ...(type === undefined ? {} : { "content-type": type }) };
      const res = await send(admin, "/v1/services/counter/swap", { method: "POST", headers, body: swap });
      expect(res.status, String(type)).toBe(415);
      expect(res.body.error.code).toBe("ERR_BAD_REQUEST");
    }
    for (const origin of ["http://evil.example", "null", `http://127.0.0.1:${Number(port) + 1}`, `https://127.0.0.1:${port}`, `http://evil.example:${port}`]) {
      const res = await send(admin, "/v1/services/counter/swap", { method: "POST", headers: { ...json, origin }, body: swap });
      expect(res.status, origin).toBe(403);
      expect(res.body.error.code).toBe("ERR_PERMISSION");
    }
    expect(await history()).toEqual(before);
    expect(await counter()).toBe("v1 3");

    // The page served by this port, as a browser sends its writes: accepted.
    for (const origin of [`http://127.0.0.1:${port}`, `http://localhost:${port}`]) {
      const res = await send(admin, "/v1/snapshot", {
        method: "POST",
        headers: { ...json, "content-type": "application/json; charset=utf-8", origin },
        body: JSON.stringify({ service: "counter" }),
      });
      expect(res.status, `${origin}: ${res.text}`).toBe(200);
    }
  });

  it("looks services up by own name only: __proto__ is no service (404), a malformed escape is ERR_BAD_REQUEST (400)", async () => {
    for (const name of ["__proto__", "constructor", "hasOwnProperty", "toString", "__proto__%2F..%2Fcounter"]) {
      const res = await send(admin, `/v1/services/${name}/history`);
      expect(res.status, name).toBe(404);
      expect(res.body.error.code).toBe("ERR_NO_SERVICE");
      for (const action of ["swap", "rollback", "restart"]) {
        const write = await send(admin, `/v1/services/${name}/${action}`, { method: "POST", headers: json, body: JSON.stringify({ entry: V1 }) });
        expect(write.status, `${name} ${action}`).toBe(404);
        expect(write.body.error.code).toBe("ERR_NO_SERVICE");
      }
    }
    for (const name of ["%E0%A4%A", "%", "%zz", "counter%"]) {
      const res = await send(admin, `/v1/services/${name}/history`);
      expect(res.status, name).toBe(400);
      expect(res.body.error.code).toBe("ERR_BAD_REQUEST");
      const write = await send(admin, `/v1/services/${name}/swap`, { method: "POST", headers: json, body: JSON.stringify({ entry: V1 }) });
      expect(write.status, name).toBe(400);
      expect(write.body.error.code).toBe("ERR_BAD_REQUEST");
    }
    const out = await cli("history", "__proto__");
    expect(out.code).toBe(1);
    expect(out.stderr).toContain("ERR_NO_SERVICE");
    // The command line's own tables too: "__proto__" is no command to print the help of.
    const help = await runCli(["__proto__", "--help"]);
    expect(help.code).toBe(1);
    expect(help.stdout).toMatch(/Usage: molt <command>/);
    expect(help.stderr).toBe("");
  }, 30_000);

  it("swaps only code whose every file is inside admin.allowedRoots by real path (403 ERR_PERMISSION), before anything changes", async () => {
    const before = await history();
    const link = join(allowed, "link.ts");
    symlinkSync(V2_OUTSIDE, link);
    const reexport = join(allowed, "reexport.ts");
    writeFileSync(reexport, `export { default } from ${JSON.stringify(V2_OUTSIDE)};\n`);
    const linkedFolder = join(allowed, "linked-folder");
    symlinkSync(join(FIXTURES, "behaviour"), linkedFolder);
    const relative = join(allowed, "relative.ts");
    writeFileSync(relative, `export { default } from ${JSON.stringify(`./${relativePath(dirname(relative), V2_OUTSIDE)}`)};\n`);

    for (const entry of [link, reexport, join(linkedFolder, "admin-counter-v2.ts"), relative]) {
      const res = await send(admin, "/v1/services/counter/swap", { method: "POST", headers: json, body: JSON.stringify({ entry }) });
      expect(res.status, `${entry}: ${res.text}`).toBe(403);
      expect(res.body.error.code).toBe("ERR_PERMISSION");
    }
    const out = await cli("swap", "counter", link);
    expect(out.code).toBe(1);
    expect(out.stderr).toContain("ERR_PERMISSION");
    expect(await history()).toEqual(before);
    expect(await counter()).toBe("v1 3");

    // A copy inside the root goes live; it imports molt/service, which is molt's own and always allowed.
    const inside = join(allowed, "v2.ts");
    writeFileSync(inside, readFileSync(V2_OUTSIDE));
    const swapped = await cli("swap", "counter", inside);
    expect(swapped.code, `${swapped.stdout}\n${swapped.stderr}`).toBe(0);
    expect(swapped.stdout).toMatch(/committed/);
    expect(await counter()).toBe("v2 3");
  }, 60_000);

  it("keeps dataDir private: folders 0700 (also ones an older molt made 0755), files 0600", async () => {
    // Something in every kind of file: a snapshot, bundles, the inventory, the token, admin.json.
    const snap = await cli("snapshot", "counter");
    expect(snap.code, snap.stderr).toBe(0);
    for (const name of ["admin.token", "admin.json", join("snapshots", "counter.msgpack")]) expect(statSync(join(dataDir, name)).isFile()).toBe(true);
    expect(readdirSync(join(dataDir, "bundles")).length).toBeGreaterThan(0);
    expect(readdirSync(dataDir).some((name) => name.startsWith("inventory."))).toBe(true);
    expect(looseModes(dataDir)).toEqual([]);
  }, 30_000);

  it("`molt restart <service>` brings back a service its supervisor gave up on; a running one is left as it is", async () => {
    expect((await fetch(`${rt.url}/fragile`)).status).toBe(200);
    await fetch(`${rt.url}/fragile/die`);
    await vi.waitFor(async () => expect((await status("fragile"))?.state).toBe("down"), { timeout: 5000, interval: 25 });
    expect((await fetch(`${rt.url}/fragile`)).status).toBeGreaterThanOrEqual(500);

    // Behind the token like every write.
    const anonymous = await send(admin, "/v1/services/fragile/restart", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error.code).toBe("ERR_UNAUTHORIZED");

    const out = await cli("restart", "fragile");
    expect(out.code, `${out.stdout}\n${out.stderr}`).toBe(0);
    expect(out.stdout).toMatch(/restarted/);
    expect((await status("fragile"))?.state).toBe("running");
    const res = await fetch(`${rt.url}/fragile`);
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/^alive \d+$/);

    const running = await send(admin, "/v1/services/counter/restart", { method: "POST", headers: json, body: "{}" });
    expect(running.status, running.text).toBe(200);
    expect(running.body.result).toMatchObject({ service: "counter", restarted: false });
    expect(running.body.result.version).toBe((await status("counter"))?.version);
    expect(await counter()).toBe("v2 3");
    const again = await cli("restart", "counter");
    expect(again.code, again.stderr).toBe(0);

    const unknown = await cli("restart", "no-such-service");
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("ERR_NO_SERVICE");
    const help = await runCli(["restart", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Usage: molt restart <service>/);
  }, 30_000);

  it("`molt swap --fresh-state` starts the new version from init and the report says the state was dropped", async () => {
    const v1 = join(allowed, "v1.ts");
    writeFileSync(v1, readFileSync(V1));
    const bad = await send(admin, "/v1/services/counter/swap", { method: "POST", headers: json, body: JSON.stringify({ entry: v1, freshState: "yes" }) });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("ERR_BAD_MESSAGE");
    expect(await counter()).toBe("v2 3");

    const help = await runCli(["swap", "--help"]);
    expect(help.stdout).toMatch(/--fresh-state/);

    const out = await cli("swap", "counter", v1, "--fresh-state", "--json");
    expect(out.code, `${out.stdout}\n${out.stderr}`).toBe(0);
    const report = JSON.parse(out.stdout) as { outcome: string; freshState?: boolean };
    expect(report).toMatchObject({ outcome: "committed", freshState: true });
    expect(await counter()).toBe("v1 0");
  }, 30_000);

  it("`molt snapshot` writes every service it can, prints each one that failed, and exits 1", async () => {
    const res = await send(admin, "/v1/snapshot", { method: "POST", headers: json, body: "{}" });
    expect(res.status, res.text).toBe(200);
    const results = res.body.result as { service: string; bytes?: number; error?: { code: string } }[];
    const failed = results.filter((r) => r.error !== undefined);
    expect(failed.map((r) => r.service)).toEqual(["dumpfails"]);
    expect(failed[0]?.error?.code).toMatch(ERROR_CODE_PATTERN);
    expect(results.filter((r) => r.error === undefined).map((r) => r.service).sort()).toEqual(["counter", "fragile", "gateway"]);

    const out = await cli("snapshot");
    expect(out.code).toBe(1);
    expect(out.stdout).toMatch(/snapshot counter/);
    expect(out.stderr).toMatch(/ERR_[A-Z0-9_]+: snapshot of dumpfails failed/);
    const one = await cli("snapshot", "counter");
    expect(one.code, one.stderr).toBe(0);
  }, 30_000);
});
