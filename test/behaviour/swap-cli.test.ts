// Behaviour: the swap commands as a user runs them — `molt swap`, `molt
// rollback`, `molt history`, `molt status` against a real `molt run` — the
// inventory surviving a restart, and the admin API's guard rails. Checked by
// exit status, error codes and recorded fields, never by timing.

import { readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServiceStatus, VersionRecord } from "../../protocol/admin.ts";
import { FIXTURES, ROOT, runCli, startRuntime, writeConfig, type RunningRuntime } from "../support/runtime.ts";

const SWAP = join(FIXTURES, "swap");
const V1 = join(SWAP, "counter-v1.ts");
const V2 = join(SWAP, "counter-v2.ts");
const V3 = join(SWAP, "counter-v3.ts");

const short = (id: string): string => id.slice(0, 12);

describe("molt swap, rollback, history and status", () => {
  let configPath: string;
  let dir: string;
  let dataDir: string;
  let rt: RunningRuntime;
  const runtimes: RunningRuntime[] = [];
  const cli = (...args: string[]) => runCli([...args, "--config", configPath]);

  async function start(): Promise<RunningRuntime> {
    const started = await startRuntime(configPath);
    runtimes.push(started);
    return started;
  }

  async function post(times: number): Promise<number> {
    let last = NaN;
    for (let i = 0; i < times; i++) {
      const res = await fetch(`${rt.url}/counter`, { method: "POST" });
      expect(res.status).toBe(200);
      last = Number(await res.text());
    }
    return last;
  }

  async function count(): Promise<number> {
    const res = await fetch(`${rt.url}/counter`);
    expect(res.status).toBe(200);
    return Number(await res.text());
  }

  async function history(): Promise<VersionRecord[]> {
    const out = await cli("history", "counter", "--json");
    expect(out.code, out.stderr).toBe(0);
    const parsed = JSON.parse(out.stdout) as { service: string; records: VersionRecord[] };
    expect(parsed.service).toBe("counter");
    return parsed.records;
  }

  async function status(): Promise<ServiceStatus[]> {
    const out = await cli("status", "--json");
    expect(out.code, out.stderr).toBe(0);
    return (JSON.parse(out.stdout) as { services: ServiceStatus[] }).services;
  }

  const token = (): string => readFileSync(join(dataDir, "admin.token"), "utf8").trim();

  async function admin(path: string, init: { body?: string; auth?: string | null } = {}): Promise<{ status: number; body: any }> {
    const auth = init.auth === undefined ? `Bearer ${token()}` : init.auth;
    const res = await fetch(`${rt.adminUrl}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(auth === null ? {} : { authorization: auth }) },
      body: init.body ?? "{}",
    });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // NDJSON or plain text: leave as is
    }
    return { status: res.status, body };
  }

  beforeAll(async () => {
    configPath = writeConfig("export default {};\n");
    dir = dirname(configPath);
    dataDir = join(dir, "data");
    const config = {
      services: {
        gateway: { entry: join(ROOT, "services/gateway/index.ts"), bindings: { counter: "counter" }, config: { routes: { "/counter": "counter" } } },
        counter: { entry: V1, bindings: { slow: "slow" } },
        slow: { entry: join(FIXTURES, "probe.ts") },
      },
      http: { port: 0, service: "gateway" },
      admin: { port: 0, allowedRoots: [ROOT, dir] },
      dataDir,
      swap: { drainTimeoutMs: 2000 },
    };
    writeFileSync(configPath, `export default ${JSON.stringify(config, null, 2)};\n`);
    rt = await start();
  });

  afterAll(async () => {
    await Promise.all(runtimes.map((r) => r.stop()));
  });

  let chain: VersionRecord[] = [];
  let lastCount = 0;

  it("swaps v1 → v2 → v3 and rolls back, printing each outcome and blackout; history shows the chain with parents", async () => {
    expect(await post(3)).toBe(3);

    const toV2 = await cli("swap", "counter", V2);
    expect(toV2.code, toV2.stderr).toBe(0);
    expect(toV2.stdout).toMatch(/committed/);
    expect(toV2.stdout).toMatch(/blackout [\d.]+ ms/);
    const v2id = /version ([0-9a-f]{64})/.exec(toV2.stdout)?.[1];
    expect(v2id).toBeDefined();
    console.log(`[cli] v1 → v2: ${/blackout [\d.]+ ms/.exec(toV2.stdout)?.[0]}`);
    expect(await post(2)).toBe(5);

    const toV3 = await cli("swap", "counter", V3);
    expect(toV3.code, toV3.stderr).toBe(0);
    expect(toV3.stdout).toMatch(/committed/);
    const v3id = /version ([0-9a-f]{64})/.exec(toV3.stdout)?.[1];
    console.log(`[cli] v2 → v3: ${/blackout [\d.]+ ms/.exec(toV3.stdout)?.[0]}`);
    expect(await post(1)).toBe(6);

    const back = await cli("rollback", "counter");
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).toMatch(/committed/);
    expect(/version ([0-9a-f]{64})/.exec(back.stdout)?.[1]).toBe(v2id);
    console.log(`[cli] rollback v3 → v2: ${/blackout [\d.]+ ms/.exec(back.stdout)?.[0]}`);
    lastCount = await post(1);
    expect(lastCount).toBe(7);

    chain = await history();
    expect(chain.map((r) => [r.seq, r.semver, r.stateVersion, r.via, r.outcome])).toEqual([
      [1, "1.0.0", 1, "start", "live"],
      [2, "2.0.0", 2, "swap", "live"],
      [3, "3.0.0", 2, "swap", "live"],
      [4, "2.0.0", 2, "rollback", "live"],
    ]);
    expect(chain[0]?.parent).toBeNull();
    // Each record's parent is the version that was live before it.
    for (let i = 1; i < chain.length; i++) expect(chain[i]?.parent).toBe(chain[i - 1]?.version);
    expect(chain[1]?.version).toBe(v2id);
    expect(chain[2]?.version).toBe(v3id);
    expect(chain[3]?.version).toBe(v2id);
    for (const r of chain) expect(r.version).toMatch(/^[0-9a-f]{64}$/);
    // Only the last one is running; the others were replaced; swaps carry their blackout.
    expect(chain.slice(0, 3).every((r) => r.replacedAt !== null)).toBe(true);
    expect(chain[3]?.replacedAt).toBeNull();
    expect(chain.slice(1).every((r) => typeof r.blackoutMs === "number")).toBe(true);

    // The human table shows the same chain: version, parent, via and outcome per row.
    const human = await cli("history", "counter");
    expect(human.code, human.stderr).toBe(0);
    const rows = human.stdout.split("\n").slice(1).filter((l) => l.trim() !== "");
    expect(rows).toHaveLength(4);
    chain.forEach((r, i) => {
      const cells = (rows[i] as string).split(/\s+/);
      expect(cells[0]).toBe(String(r.seq));
      expect(cells[1]).toBe(short(r.version));
      expect(cells[2]).toBe(r.semver);
      expect(cells).toContain(r.parent === null ? "-" : short(r.parent));
      expect(cells).toContain(r.via);
      expect(cells).toContain(r.outcome === "live" ? "committed" : r.outcome);
    });

    const counter = (await status()).find((s) => s.name === "counter");
    expect(counter).toMatchObject({ state: "running", version: v2id, semver: "2.0.0", stateVersion: 2 });
  }, 90_000);

  it("prints `unchanged` and exits 0 when asked to swap to the version already running", async () => {
    const out = await cli("swap", "counter", V2);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toMatch(/unchanged/);
    expect(await history()).toEqual(chain);
    expect(await count()).toBe(lastCount);
  }, 30_000);

  it("`molt rollback --to <unknown>` exits non-zero with ERR_NO_VERSION and changes nothing", async () => {
    const out = await cli("rollback", "counter", "--to", "ffffffffffff");
    expect(out.code).not.toBe(0);
    expect(out.code).not.toBeNull();
    expect(out.stderr).toContain("ERR_NO_VERSION");
    expect(await history()).toEqual(chain);
  }, 30_000);

  it("refuses write calls without the token (401), with a malformed body (400), and for an entry outside allowedRoots (403)", async () => {
    // The token file is private to its owner.
    expect(statSync(join(dataDir, "admin.token")).mode & 0o777).toBe(0o600);

    for (const path of ["/v1/services/counter/swap", "/v1/services/counter/rollback", "/v1/snapshot"]) {
      const missing = await admin(path, { auth: null, body: JSON.stringify({ entry: V3 }) });
      expect(missing.status, path).toBe(401);
      expect(missing.body.error.code).toBe("ERR_UNAUTHORIZED");
      const wrong = await admin(path, { auth: `Bearer ${"0".repeat(64)}`, body: JSON.stringify({ entry: V3 }) });
      expect(wrong.status, path).toBe(401);
      expect(wrong.body.error.code).toBe("ERR_UNAUTHORIZED");
    }
    const notBearer = await admin("/v1/services/counter/swap", { auth: token(), body: JSON.stringify({ entry: V3 }) });
    expect(notBearer.status).toBe(401);

    const malformed = await admin("/v1/services/counter/swap", { body: "{ entry: " });
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.code).toBe("ERR_BAD_MESSAGE");
    const notAnObject = await admin("/v1/services/counter/swap", { body: "[1, 2]" });
    expect(notAnObject.status).toBe(400);

    for (const entry of [join(tmpdir(), "elsewhere", "counter.ts"), `${dir}-evil/counter.ts`, join(dir, "..", "counter.ts"), "/etc/hosts"]) {
      const outside = await admin("/v1/services/counter/swap", { body: JSON.stringify({ entry }) });
      expect(outside.status, entry).toBe(403);
      expect(outside.body.error.code).toBe("ERR_PERMISSION");
    }
    // The CLI says the same.
    const cliOutside = await cli("swap", "counter", "/etc/hosts");
    expect(cliOutside.code).not.toBe(0);
    expect(cliOutside.stderr).toContain("ERR_PERMISSION");

    // Reads need no token; nothing changed.
    const res = await fetch(`${rt.adminUrl}/v1/status`);
    expect(res.status).toBe(200);
    expect(await history()).toEqual(chain);
    expect(await count()).toBe(lastCount);
  }, 60_000);

  it("after a stop (SIGTERM, exit 0) and a start on the same dataDir: the same history, the rolled-back version, the last count", async () => {
    expect(await rt.stop()).toBe(0);
    rt = await start();
    expect(await history()).toEqual(chain);
    const counter = (await status()).find((s) => s.name === "counter");
    expect(counter).toMatchObject({ state: "running", version: chain[3]?.version, semver: "2.0.0", stateVersion: 2 });
    expect(await count()).toBe(lastCount);
    // And it keeps counting from there.
    expect(await post(1)).toBe(lastCount + 1);
  }, 60_000);
});
