// Behaviour: `molt bench swap` against a real runtime, as a user runs it.
// The counter is swapped back and forth between two versions 20 times
// while autocannon POSTs to it through the gateway; a version whose
// restore fails is counted as a rollback and the benchmark goes on (or
// stops, with --stop-on-failure); code that does not compile, or a service
// that does not exist, stops it before its first swap; Ctrl-C stops it,
// prints what it has, and says which version the service was left on.

import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { BenchResult } from "../../cli/bench-result.ts";
import type { HistoryBody, StatusBody } from "../../protocol/admin.ts";
import { FIXTURES, ROOT, runCli, startRuntime, writeConfig, type RunningRuntime } from "../support/runtime.ts";

const V1 = join(FIXTURES, "swap", "counter-v1.ts");
const V2 = join(FIXTURES, "swap", "counter-v2.ts");
const RESTORE_FAILS = join(FIXTURES, "swap", "restore-throws.ts");
const SYNTAX_ERROR = join(FIXTURES, "swap", "syntax-error.ts");

describe("molt bench swap", () => {
  let rt: RunningRuntime;
  let configPath: string;

  beforeAll(async () => {
    configPath = writeConfig("export default {};\n");
    const dir = dirname(configPath);
    // One service per test, each starting on v1, so no test depends on where another left its service.
    const counters = ["counter", "flaky", "stopper", "broken", "interrupted"];
    const config = {
      services: {
        gateway: {
          entry: join(ROOT, "services", "gateway", "index.ts"),
          bindings: Object.fromEntries(counters.map((c) => [c, c])),
          config: { routes: Object.fromEntries(counters.map((c) => [`/${c}`, c])) },
        },
        ...Object.fromEntries(counters.map((c) => [c, { entry: V1 }])),
      },
      http: { port: 0, service: "gateway" },
      admin: { port: 0, allowedRoots: [ROOT, dir] },
      dataDir: join(dir, "data"),
    };
    writeFileSync(configPath, `export default ${JSON.stringify(config, null, 2)};\n`);
    rt = await startRuntime(configPath);
  });

  afterAll(async () => {
    await rt?.stop();
  });

  const bench = (service: string, a: string, b: string, ...options: string[]) =>
    runCli(["bench", "swap", service, a, b, "--config", configPath, ...options]);
  const parse = (stdout: string): BenchResult => JSON.parse(stdout) as BenchResult;
  const history = async (service: string) => ((await (await fetch(`${rt.adminUrl}/v1/services/${service}/history`)).json()) as HistoryBody).records;
  const running = async (service: string) =>
    ((await (await fetch(`${rt.adminUrl}/v1/status`)).json()) as StatusBody).services.find((s) => s.name === service)?.version;

  it("swaps a service 20 times under load: every swap committed, no request failed, every figure measured", async () => {
    const { code, stdout, stderr } = await bench(
      "counter", V1, V2,
      "--swaps", "20", "--load", `${rt.url}/counter`, "--method", "POST", "--connections", "4", "--duration-between", "50", "--json",
    );
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const r = parse(stdout);
    expect(r).toMatchObject({ service: "counter", swaps: 20, committed: 20, failed_swaps: 0, failures: [], stopped: null });
    expect(r.requests).toMatchObject({ failed: 0, failed_by_status: {} });
    expect(r.requests?.ok).toBeGreaterThan(0);
    const figures = {
      blackout: r.blackout_ms,
      ...r.phases_ms,
      steady: r.latency_ms?.steady,
      during_swap: r.latency_ms?.during_swap,
    };
    expect(Object.keys(r.phases_ms).sort()).toEqual(["commit", "cutover", "dump", "prepare", "quiesce", "restore"]);
    for (const [name, s] of Object.entries(figures)) {
      for (const key of ["p50", "p99", "max"] as const) expect({ name, key, value: s?.[key] }).toEqual({ name, key, value: expect.any(Number) });
      expect({ name, positive: [s?.p50, s?.p99, s?.max].every((v) => (v ?? 0) > 0) }).toEqual({ name, positive: true });
    }
    // The runtime agrees: 20 swaps in the inventory (after the version it started at), and the state survived them:
    // every answered POST was counted (a POST in flight when the load stopped may have been counted but not answered).
    expect((await history("counter")).filter((rec) => rec.via === "swap" && rec.outcome === "live")).toHaveLength(20);
    const count = Number(await (await fetch(`${rt.url}/counter`)).text());
    expect(count).toBeGreaterThanOrEqual(r.requests?.ok ?? Infinity);
    expect(count).toBeLessThanOrEqual((r.requests?.ok ?? 0) + 4);
    expect(r.left_on).toEqual({ version: await running("counter"), semver: "1.0.0", entry: V1 });
  });

  it("counts a swap whose restore fails as rolled back, and goes on swapping", async () => {
    // flaky runs v1: the first swap goes to v2 and commits; each later one tries the failing version and rolls back.
    const { code, stdout } = await bench("flaky", V2, RESTORE_FAILS, "--swaps", "4", "--load", `${rt.url}/flaky`, "--method", "POST", "--connections", "2", "--duration-between", "20", "--json");
    expect(code).toBe(1);
    const r = parse(stdout);
    expect(r).toMatchObject({ swaps: 4, committed: 1, failed_swaps: 3, stopped: null });
    expect(r.failures.map((f) => [f.swap, f.entry, f.code])).toEqual([2, 3, 4].map((n) => [n, RESTORE_FAILS, "ERR_SWAP_RESTORE"]));
    expect(r.requests?.failed).toBe(0);
    expect(r.left_on).toMatchObject({ semver: "2.0.0", entry: V2, version: await running("flaky") });
    const records = await history("flaky");
    expect(records.filter((rec) => rec.outcome === "rolled-back")).toHaveLength(3);
  });

  it("stops at the first rollback with --stop-on-failure, and says so in the table", async () => {
    const { code, stdout } = await bench("stopper", V2, RESTORE_FAILS, "--swaps", "10", "--duration-between", "0", "--stop-on-failure");
    expect(code).toBe(1);
    expect(stdout).toMatch(/2 swaps, 1 committed, 1 rolled back/);
    expect(stdout).toMatch(/stopped early: failure/);
    expect(stdout).toMatch(/rolled back: swap 2 to \S+restore-throws\.ts: ERR_SWAP_RESTORE in prepare/);
    expect(stdout).toMatch(/left on\s+2\.0\.0/);
    expect((await history("stopper")).map((rec) => rec.outcome)).toEqual(["live", "live", "rolled-back"]);
  });

  it("stops before the first swap with ERR_SWAP_COMPILE when an entry does not compile", async () => {
    const { code, stdout, stderr } = await bench("broken", V2, SYNTAX_ERROR, "--swaps", "5", "--json");
    expect(code).toBe(1);
    expect(stderr).toMatch(/^molt: ERR_SWAP_COMPILE: /);
    expect(stdout).toBe("");
    expect(await history("broken")).toHaveLength(1);
  });

  it("refuses a service that does not exist with ERR_NO_SERVICE", async () => {
    const { code, stderr } = await bench("nosuch", V1, V2, "--swaps", "2");
    expect(code).toBe(1);
    expect(stderr).toMatch(/^molt: ERR_NO_SERVICE: /);
  });

  it("stops on Ctrl-C after the swap in flight, prints what it has, and says which version the service was left on", async () => {
    const child = spawn(
      process.execPath,
      [join(ROOT, "bin", "molt.js"), "bench", "swap", "interrupted", V1, V2, "--swaps", "1000", "--duration-between", "20", "--json", "--config", configPath],
      { cwd: ROOT },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
    await vi.waitFor(async () => expect((await history("interrupted")).length).toBeGreaterThanOrEqual(4), { timeout: 20_000, interval: 50 });
    child.kill("SIGINT");
    expect(await exited).toBe(130);
    const r = parse(stdout);
    expect(r.stopped).toBe("interrupted");
    expect(r.swaps).toBeGreaterThanOrEqual(3);
    expect(r.swaps).toBeLessThan(1000);
    expect(r.committed).toBe(r.swaps);
    // Every swap it started finished and is counted; the service runs the version the report names.
    expect((await history("interrupted")).filter((rec) => rec.via === "swap")).toHaveLength(r.swaps);
    const version = await running("interrupted");
    expect(r.left_on?.version).toBe(version);
    expect(r.left_on?.entry).toBe(r.swaps % 2 === 1 ? V2 : V1);
    expect(stderr).toContain(`left on ${r.left_on?.semver} (${version?.slice(0, 12)})`);
  });
});
