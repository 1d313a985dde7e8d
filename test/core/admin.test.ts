// The admin API's guards, driven directly: the token file, the Host and
// Origin checks (with a configured host and a forwarded port), and the
// bundler's allowed roots. The behaviour suite
// (test/behaviour/admin-hardening.test.ts) covers the same through `molt run`.

import { execFileSync } from "node:child_process";
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminServer, adminToken, checkToken, tokenPath } from "../../core/admin.ts";
import { bundleService } from "../../core/bundle.ts";
import { startKernel, type TestKernel } from "../support/kernel.ts";

const fresh = (): string => mkdtempSync(join(tmpdir(), "molt-admin-unit-"));

function codeOf(run: () => unknown): string | undefined {
  try {
    run();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

async function rejectionCode(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe("adminToken", () => {
  it("creates a 64-hex token, mode 0600, and reads the same one back", () => {
    const dir = fresh();
    const token = adminToken(dir);
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    expect(statSync(tokenPath(dir)).mode & 0o777).toBe(0o600);
    expect(adminToken(dir)).toBe(token);
  });

  it("accepts 64+ hex characters or 43+ base64/base64url characters, with a trailing newline", () => {
    for (const token of ["0123456789abcdef".repeat(4), "0123456789ABCDEF".repeat(5), "mZ3q8T_x1kVb-7rLwP0sYc2NfHa9JdUe4GiOtR6yKlQ", "mZ3q8T+x1kVb/7rLwP0sYc2NfHa9JdUe4GiOtR6yKlQ="]) {
      const dir = fresh();
      writeFileSync(tokenPath(dir), `${token}\n`, { mode: 0o600 });
      expect(adminToken(dir)).toBe(token);
    }
  });

  it("refuses with ERR_CONFIG a token that cannot hold 32 bytes of entropy", () => {
    const refused = [
      "",
      " \n\t ",
      "secret",
      "0123456789abcdef".repeat(3), // 48 hex characters: 24 bytes
      "0123456789abcdef".repeat(3).slice(0, 43), // 43 characters, but all hex
      "mZ3q8T_x1kVb-7rLwP0sYc2NfHa9JdUe4GiOtR6yKl", // 42 base64url characters
      "0".repeat(64),
      "ab".repeat(40),
      "0123456789abcdef".repeat(2) + " " + "0123456789abcdef".repeat(2), // whitespace inside
      "é".repeat(64),
    ];
    for (const token of refused) expect(codeOf(() => checkToken(token, "admin.token")), JSON.stringify(token)).toBe("ERR_CONFIG");
  });

  it("does not follow a symlinked token file, nor read a FIFO or a folder", () => {
    const dir = fresh();
    writeFileSync(join(dir, "real.token"), "0123456789abcdef".repeat(4), { mode: 0o600 });
    symlinkSync(join(dir, "real.token"), tokenPath(dir));
    expect(codeOf(() => adminToken(dir))).toBe("ERR_CONFIG");
    // A symlink to nowhere is not replaced by a new token either: it is refused the same way.
    const dangling = fresh();
    symlinkSync(join(dangling, "nowhere"), tokenPath(dangling));
    expect(codeOf(() => adminToken(dangling))).toBe("ERR_CONFIG");
    expect(lstatSync(tokenPath(dangling)).isSymbolicLink()).toBe(true);

    const fifo = fresh();
    execFileSync("mkfifo", [tokenPath(fifo)]);
    expect(codeOf(() => adminToken(fifo))).toBe("ERR_CONFIG");
    const folder = fresh();
    mkdirSync(tokenPath(folder));
    expect(codeOf(() => adminToken(folder))).toBe("ERR_CONFIG");
  });

  it("makes a token file that others could read private again", () => {
    const dir = fresh();
    writeFileSync(tokenPath(dir), "0123456789abcdef".repeat(4));
    chmodSync(tokenPath(dir), 0o644);
    adminToken(dir);
    expect(statSync(tokenPath(dir)).mode & 0o777).toBe(0o600);
  });
});

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
    server = new AdminServer(t.kernel, { port: 0, host: "127.0.0.1", token, allowedRoots: [t.kernel.config.dir] });
    port = (await server.listen()).port;
  });

  afterAll(async () => {
    await server?.close();
    await t?.kernel.stop();
  });

  it("refuses to be built with an empty token", () => {
    expect(codeOf(() => new AdminServer(t.kernel, { port: 0, host: "127.0.0.1", token: "", allowedRoots: [] }))).toBe("ERR_CONFIG");
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

describe("bundleService with allowedRoots", () => {
  let root: string;
  let outside: string;

  beforeAll(() => {
    const dir = fresh();
    root = join(dir, "root");
    outside = join(dir, "outside");
    mkdirSync(join(root, "lib"), { recursive: true });
    mkdirSync(outside);
    writeFileSync(join(outside, "secret.ts"), "export const secret = 'from outside';\n");
    writeFileSync(join(root, "lib", "inside.ts"), "export const inside = 'from inside';\n");
    writeFileSync(join(root, "good.ts"), 'import { defineService } from "molt/service";\nimport { inside } from "./lib/inside.ts";\nexport default defineService({ version: "1.0.0", stateVersion: 1, init: () => ({}), handlers: { get: () => inside } });\n');
    writeFileSync(join(root, "imports-outside.ts"), `import { secret } from ${JSON.stringify(join(outside, "secret.ts"))};\nexport default { version: "1", stateVersion: 1, init: () => ({}), handlers: { get: () => secret } };\n`);
    symlinkSync(join(outside, "secret.ts"), join(root, "lib", "linked.ts"));
    writeFileSync(join(root, "imports-link.ts"), 'import { secret } from "./lib/linked.ts";\nexport default { version: "1", stateVersion: 1, init: () => ({}), handlers: { get: () => secret } };\n');
    writeFileSync(join(root, "data.json"), '{ "a": 1 }\n');
    writeFileSync(join(root, "imports-json.ts"), 'import data from "./data.json";\nexport default { version: "1", stateVersion: 1, init: () => ({}), handlers: { get: () => data } };\n');
  });

  it("bundles code whose every file is inside the roots (molt's own SDK included) to the same bytes as without the check", async () => {
    for (const entry of ["good.ts", "imports-json.ts"]) {
      const confined = await bundleService(join(root, entry), { allowedRoots: [root] });
      const plain = await bundleService(join(root, entry));
      expect(confined.hash).toBe(plain.hash);
    }
  });

  it("allows packages from a node_modules folder of the root or of its ancestors (a monorepo hoists them), and nothing else beside the root", async () => {
    const mono = fresh();
    const app = join(mono, "app");
    mkdirSync(join(mono, "node_modules", "leftpad"), { recursive: true });
    mkdirSync(join(mono, "other"), { recursive: true });
    mkdirSync(app);
    writeFileSync(join(mono, "node_modules", "leftpad", "package.json"), '{ "name": "leftpad", "main": "index.js" }\n');
    writeFileSync(join(mono, "node_modules", "leftpad", "index.js"), "module.exports = (s, n) => String(s).padStart(n);\n");
    writeFileSync(join(mono, "other", "x.js"), "export const x = 1;\n");
    writeFileSync(join(app, "uses-package.ts"), 'import pad from "leftpad";\nexport default { handlers: { pad: (_s: unknown, n: number) => pad("x", n) } };\n');
    writeFileSync(join(app, "uses-sibling.ts"), 'import { x } from "../other/x.js";\nexport default { handlers: { x: () => x } };\n');
    expect(await rejectionCode(bundleService(join(app, "uses-package.ts"), { allowedRoots: [app] }))).toBeUndefined();
    expect(await rejectionCode(bundleService(join(app, "uses-sibling.ts"), { allowedRoots: [app] }))).toBe("ERR_PERMISSION");
  });

  it("refuses with ERR_PERMISSION an import outside the roots, directly or through a symlink", async () => {
    for (const entry of ["imports-outside.ts", "imports-link.ts"]) {
      expect(await rejectionCode(bundleService(join(root, entry), { allowedRoots: [root] })), entry).toBe("ERR_PERMISSION");
      // Without roots (a fleet rollout, a start) nothing is checked.
      expect(await rejectionCode(bundleService(join(root, entry)))).toBeUndefined();
    }
    // A root given through a symlink is its real folder.
    const linkedRoot = join(fresh(), "linked-root");
    symlinkSync(root, linkedRoot);
    expect(await rejectionCode(bundleService(join(linkedRoot, "good.ts"), { allowedRoots: [linkedRoot] }))).toBeUndefined();
    expect(await rejectionCode(bundleService(join(linkedRoot, "imports-link.ts"), { allowedRoots: [linkedRoot] }))).toBe("ERR_PERMISSION");
  });

  it("still reports code that does not compile as ERR_BUNDLE", async () => {
    writeFileSync(join(root, "broken.ts"), "export default {\n");
    expect(await rejectionCode(bundleService(join(root, "broken.ts"), { allowedRoots: [root] }))).toBe("ERR_BUNDLE");
    expect(await rejectionCode(bundleService(join(root, "missing.ts"), { allowedRoots: [root] }))).toBe("ERR_BUNDLE");
  });
});
