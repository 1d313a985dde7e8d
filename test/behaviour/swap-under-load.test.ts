// Behaviour: live swap under continuous HTTP load, driven as a user drives it
// — a real runtime (`molt run`), real HTTP clients through the gateway, the
// real `molt swap` command (and, for the long series, the admin API it uses).
// Assertions are on codes and counts only; blackouts and latencies are
// printed, never asserted.

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startLoad, summarize, type LoadGenerator, type LoadResult } from "../support/load.ts";
import { FIXTURES, ROOT, runCli, startRuntime, writeConfig, type RunningRuntime } from "../support/runtime.ts";

const SWAP = join(FIXTURES, "swap");
const MINE = join(FIXTURES, "behaviour-swap");
const PROBE = join(FIXTURES, "probe.ts");
const V1 = join(SWAP, "counter-v1.ts");
const V2 = join(SWAP, "counter-v2.ts");
const V3 = join(SWAP, "counter-v3.ts");

interface Runtime {
  rt: RunningRuntime;
  configPath: string;
  dir: string;
  dataDir: string;
}

interface Report {
  outcome: string;
  blackoutMs: number | null;
  from: { version: string; semver: string; stateVersion: number };
  to: { version: string; semver: string; stateVersion: number } | null;
  error?: { code: string; message: string; phase: string };
  phases: Record<string, number>;
}

interface ServiceStatus {
  name: string;
  state: string;
  version: string | null;
  semver: string | null;
  stateVersion: number | null;
  inFlight: number;
  queueDepth: number;
}

interface VersionRecord {
  seq: number;
  version: string;
  semver: string;
  stateVersion: number;
  parent: string | null;
  via: string;
  outcome: string;
  code?: string;
  blackoutMs?: number;
  startedAt: string | null;
  replacedAt: string | null;
}

const runtimes: RunningRuntime[] = [];
const loads: LoadGenerator[] = [];

/** Writes a config (absolute entries, ports 0, dataDir and allowedRoots in the temp folder) and starts `molt run` on it. */
async function boot(services: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<Runtime> {
  const configPath = writeConfig("export default {};\n");
  const dir = dirname(configPath);
  const dataDir = join(dir, "data");
  const config = {
    services,
    http: { port: 0, service: "gateway" },
    admin: { port: 0, allowedRoots: [ROOT, dir] },
    dataDir,
    swap: { drainTimeoutMs: 2000 },
    ...extra,
  };
  writeFileSync(configPath, `export default ${JSON.stringify(config, null, 2)};\n`);
  const rt = await startRuntime(configPath);
  runtimes.push(rt);
  return { rt, configPath, dir, dataDir };
}

function load(options: Parameters<typeof startLoad>[0]): LoadGenerator {
  const generator = startLoad({ maxDurationMs: 120_000, ...options });
  loads.push(generator);
  return generator;
}

afterAll(async () => {
  await Promise.all(loads.map((l) => l.stop()));
  const codes = await Promise.all(runtimes.map((rt) => rt.stop()));
  // Every runtime drains and exits cleanly.
  expect(codes.every((c) => c === 0)).toBe(true);
});

function token(r: Runtime): string {
  return readFileSync(join(r.dataDir, "admin.token"), "utf8").trim();
}

/** A swap through the admin API, as the CLI makes it: POST, then read the NDJSON progress to the report. */
async function adminSwap(r: Runtime, service: string, entry: string): Promise<Report> {
  const res = await fetch(`${r.rt.adminUrl}/v1/services/${service}/swap`, {
    method: "POST",
    headers: { authorization: `Bearer ${token(r)}`, "content-type": "application/json" },
    body: JSON.stringify({ entry }),
  });
  const text = await res.text();
  if (!(res.headers.get("content-type") ?? "").includes("ndjson")) throw new Error(`swap answered ${res.status}: ${text}`);
  const lines = text.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as { event: string; report?: Report; error?: unknown });
  const error = lines.find((l) => l.event === "error");
  if (error !== undefined) throw new Error(`swap failed: ${JSON.stringify(error.error)}`);
  const report = lines.find((l) => l.event === "report")?.report;
  if (report === undefined) throw new Error(`no report in ${text}`);
  return report;
}

async function adminStatus(r: Runtime): Promise<ServiceStatus[]> {
  const res = await fetch(`${r.rt.adminUrl}/v1/status`);
  return ((await res.json()) as { services: ServiceStatus[] }).services;
}

async function adminHistory(r: Runtime, service: string): Promise<VersionRecord[]> {
  const res = await fetch(`${r.rt.adminUrl}/v1/services/${service}/history`);
  return ((await res.json()) as { records: VersionRecord[] }).records;
}

async function cliStatus(r: Runtime): Promise<ServiceStatus[]> {
  const out = await runCli(["status", "--json", "--config", r.configPath]);
  expect(out.code, out.stderr).toBe(0);
  return (JSON.parse(out.stdout) as { services: ServiceStatus[] }).services;
}

async function cliHistory(r: Runtime, service: string): Promise<VersionRecord[]> {
  const out = await runCli(["history", service, "--json", "--config", r.configPath]);
  expect(out.code, out.stderr).toBe(0);
  return (JSON.parse(out.stdout) as { records: VersionRecord[] }).records;
}

/** `molt swap` through the real CLI; returns its output and the blackout it printed. */
async function cliSwap(r: Runtime, service: string, entry: string): Promise<{ code: number | null; stdout: string; stderr: string; blackoutMs: number | null }> {
  const out = await runCli(["swap", service, entry, "--config", r.configPath]);
  const m = /blackout ([\d.]+) ms/.exec(out.stdout);
  return { ...out, blackoutMs: m?.[1] === undefined ? null : Number(m[1]) };
}

async function getText(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.text() };
}

async function counterValue(r: Runtime): Promise<number> {
  const res = await getText(`${r.rt.url}/counter`);
  expect(res.status).toBe(200);
  return Number(res.body);
}

function expectClean(result: LoadResult, what: string): void {
  const detail = `${what}: ${JSON.stringify({ failuresByKind: result.failuresByKind, first: result.failed.slice(0, 3) })}`;
  expect(result.stoppedBy, detail).toBe("stopped");
  expect(result.failed, detail).toEqual([]);
  expect(result.lost, detail).toBe(0);
  expect(result.answered, detail).toBe(result.sent);
}

function printFigures(label: string, blackouts: number[], result: LoadResult): void {
  const b = summarize(blackouts);
  const l = summarize(result.latencies);
  const f = (n: number): string => n.toFixed(2);
  console.log(
    `[${label}] ${blackouts.length} swaps, blackout median ${f(b.median)} ms, max ${f(b.max)} ms | ` +
      `${result.sent} requests (${result.ok} ok, ${result.failed.length} failed) in ${f(result.durationMs / 1000)} s, ` +
      `latency median ${f(l.median)} ms, p99 ${f(l.p99)} ms, max ${f(l.max)} ms`,
  );
}

describe("a counter swapped 50 times under load", () => {
  let r: Runtime;
  beforeAll(async () => {
    r = await boot({
      gateway: { entry: join(ROOT, "services/gateway/index.ts"), bindings: { counter: "counter" }, config: { routes: { "/counter": "counter" } } },
      counter: { entry: V1, bindings: { slow: "slow" } },
      slow: { entry: PROBE },
    });
  });

  it("answers every request 200 through 50 swaps between stateVersions 1 and 2, and counts every POST exactly once", async () => {
    const gen = load({ url: `${r.rt.url}/counter`, clients: 8 });
    await gen.moreOk(100);
    const blackouts: number[] = [];
    // The real CLI for the first two and the last two swaps, the admin API (what the CLI calls) for the rest.
    const viaCli = new Set([0, 1, 48, 49]);
    for (let i = 0; i < 50; i++) {
      const target = i % 2 === 0 ? V2 : V1;
      if (viaCli.has(i)) {
        const out = await cliSwap(r, "counter", target);
        expect(out.code, `${out.stdout}\n${out.stderr}`).toBe(0);
        expect(out.stdout).toMatch(/committed/);
        expect(out.blackoutMs).not.toBeNull();
        blackouts.push(out.blackoutMs as number);
      } else {
        const report = await adminSwap(r, "counter", target);
        expect(report.outcome, JSON.stringify(report)).toBe("committed");
        expect(report.to?.stateVersion).toBe(i % 2 === 0 ? 2 : 1);
        expect(typeof report.blackoutMs).toBe("number");
        blackouts.push(report.blackoutMs as number);
      }
      // Traffic between every two swaps, so each one begins under load.
      await gen.moreOk(16);
    }
    const result = await gen.stop();
    expectClean(result, "load through 50 swaps");
    expect(result.okByMethod.POST).toBe(result.ok);
    expect(await counterValue(r)).toBe(result.ok);

    // Every swap is in the inventory, each one's parent the version it replaced.
    const history = await cliHistory(r, "counter");
    expect(history).toHaveLength(51);
    const swaps = history.slice(1);
    expect(swaps.every((rec) => rec.via === "swap" && rec.outcome === "live")).toBe(true);
    for (let i = 1; i < history.length; i++) expect(history[i]?.parent).toBe(history[i - 1]?.version);
    expect(swaps.map((rec) => rec.stateVersion)).toEqual(Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? 2 : 1)));
    expect(swaps.every((rec) => typeof rec.blackoutMs === "number")).toBe(true);
    printFigures("counter ×50", blackouts, result);
    const recorded = summarize(swaps.map((rec) => rec.blackoutMs as number));
    console.log(`[counter ×50] blackoutMs in history --json: median ${recorded.median} ms, max ${recorded.max} ms`);
  }, 120_000);

  it("lets a call the old instance is awaiting finish before the dump; its HTTP caller gets 200 with the incremented count", async () => {
    // Setup: a counter version whose fetch relays through the `slow` probe before counting.
    expect((await adminSwap(r, "counter", join(MINE, "counter-relay.ts"))).outcome).toBe("committed");
    const before = await counterValue(r);

    const pending = fetch(`${r.rt.url}/counter/relay?ms=1000`, { method: "POST" }).then(async (res) => ({ status: res.status, body: await res.text() }));
    // Wait until the counter is inside that request, awaiting the probe.
    await vi.waitFor(
      async () => {
        const seen = await adminStatus(r);
        expect(seen.find((s) => s.name === "slow")?.inFlight, "the relay call never started").toBe(1);
        expect(seen.find((s) => s.name === "counter")?.inFlight).toBe(1);
      },
      { timeout: 2000, interval: 5 },
    );

    // The swap begins while that call is outstanding (the CLI would take longer to start than the call lasts).
    const report = await adminSwap(r, "counter", V2);
    const answer = await pending;
    expect(report.outcome, JSON.stringify(report)).toBe("committed");
    expect(answer).toEqual({ status: 200, body: String(before + 1) });
    expect(await counterValue(r)).toBe(before + 1);
    const counter = (await adminStatus(r)).find((s) => s.name === "counter");
    expect(counter).toMatchObject({ semver: "2.0.0", stateVersion: 2 });
    console.log(`[relay] swap began during a 1000 ms outgoing call: blackout ${report.blackoutMs} ms, phases ${JSON.stringify(report.phases)}`);
  }, 60_000);
});

describe("gateway, kv and log swapped under load", () => {
  let r: Runtime;
  beforeAll(async () => {
    r = await boot(
      {
        gateway: {
          entry: join(ROOT, "services/gateway/index.ts"),
          bindings: { counter: "counter", kv: "kv" },
          config: { routes: { "/counter": "counter", "/kv": "kv" } },
        },
        counter: { entry: join(MINE, "counter-logging.ts"), bindings: { slow: "slow" } },
        slow: { entry: PROBE },
        kv: { entry: join(ROOT, "services/kv/index.ts") },
        log: { entry: join(ROOT, "services/log/index.ts"), permissions: { stdout: true } },
      },
      { log: { service: "log" } },
    );
  });

  it("answers every request, keeps every key and every log line, and the listener stays open", async () => {
    // Counter traffic (each POST also logs a line through the log service).
    const counterLoad = load({ url: `${r.rt.url}/counter`, clients: 4 });
    // kv traffic: each client PUTs a fresh key, then GETs it back and checks the value.
    const written = new Map<string, string>();
    const kvLoad = load({
      url: `${r.rt.url}/kv`,
      clients: 4,
      next: (client, seq) => {
        const key = `k${client}-${Math.floor(seq / 2)}`;
        return seq % 2 === 0 ? { method: "PUT", path: `/${key}`, body: `v-${key}` } : { method: "GET", path: `/${key}` };
      },
      ok: (res) => res.status === 200 && (res.request.method !== "GET" || res.body === `v-${res.request.path?.slice(1)}`),
      onOk: (res) => {
        if (res.request.method === "PUT") written.set(res.request.path?.slice(1) as string, res.request.body as string);
      },
    });
    // A fresh connection every few ms: the listening socket must never refuse one.
    const connector = load({ url: `${r.rt.url}/counter`, clients: 1, keepAlive: false, thinkMs: 5, next: () => ({ method: "GET" }) });

    const both = (n: number): Promise<unknown> => Promise.all([counterLoad.moreOk(n), kvLoad.moreOk(n), connector.moreOk(3)]);
    await both(50);
    const blackouts: Record<string, number[]> = { gateway: [], kv: [], log: [] };
    const targets: Record<string, [string, string]> = {
      gateway: [join(MINE, "gateway-v2.ts"), join(ROOT, "services/gateway/index.ts")],
      kv: [join(MINE, "kv-v2.ts"), join(ROOT, "services/kv/index.ts")],
      log: [join(MINE, "log-v2.ts"), join(ROOT, "services/log/index.ts")],
    };
    for (const service of ["gateway", "kv", "log"]) {
      const [next, original] = targets[service] as [string, string];
      // To the new version through the real CLI, back and forth again through the admin API.
      const out = await cliSwap(r, service, next);
      expect(out.code, `${out.stdout}\n${out.stderr}`).toBe(0);
      expect(out.stdout).toMatch(/committed/);
      blackouts[service]?.push(out.blackoutMs as number);
      await both(30);
      for (const entry of [original, next]) {
        const report = await adminSwap(r, service, entry);
        expect(report.outcome, JSON.stringify(report)).toBe("committed");
        blackouts[service]?.push(report.blackoutMs as number);
        await both(30);
      }
    }
    const [counterResult, kvResult, connectorResult] = await Promise.all([counterLoad.stop(), kvLoad.stop(), connector.stop()]);
    expectClean(counterResult, "counter load");
    expectClean(kvResult, "kv load");
    expectClean(connectorResult, "fresh connections");
    expect(connectorResult.ok).toBeGreaterThan(0);

    // Every POST counted once.
    const posted = counterResult.okByMethod.POST ?? 0;
    expect(await counterValue(r)).toBe(posted);
    // Every key written before, during and after the swaps is there, with its value.
    const listed = await getText(`${r.rt.url}/kv/`);
    expect(listed.status).toBe(200);
    const stored = new Map((JSON.parse(listed.body) as { key: string; value: string }[]).map((e) => [e.key, e.value]));
    expect(written.size).toBeGreaterThan(0);
    expect(stored.size).toBe(written.size);
    for (const [key, value] of written) expect(stored.get(key), key).toBe(value);
    // Every increment was logged exactly once, through all three log versions.
    const counted = (): number[] =>
      r.rt
        .stdout()
        .split("\n")
        .flatMap((line) => {
          // The log service's line ("msg") or the kernel's direct fallback ("message"): each exactly once.
          const m = /"(?:msg|message)":"counted (\d+)"/.exec(line);
          return m?.[1] === undefined ? [] : [Number(m[1])];
        });
    // The log service may still be writing the last lines: wait until every count is there exactly once.
    await vi.waitFor(
      () => {
        const lines = counted();
        const seen = new Map<number, number>();
        for (const n of lines) seen.set(n, (seen.get(n) ?? 0) + 1);
        const missing = Array.from({ length: posted }, (_, i) => i + 1).filter((n) => !seen.has(n));
        const repeated = [...seen].filter(([, times]) => times > 1).map(([n]) => n);
        const extra = [...seen.keys()].filter((n) => n < 1 || n > posted);
        expect({ missing, repeated, extra }, `${lines.length} log lines for ${posted} POSTs`).toEqual({ missing: [], repeated: [], extra: [] });
      },
      { timeout: 5000, interval: 50 },
    );

    // The new versions run (status --json, through the CLI).
    const status = await cliStatus(r);
    for (const name of ["gateway", "kv", "log"]) expect(status.find((s) => s.name === name)).toMatchObject({ state: "running", semver: "1.0.1" });

    for (const [service, list] of Object.entries(blackouts)) {
      const s = summarize(list);
      console.log(`[${service}] ${list.length} swaps, blackouts ${list.map((b) => b.toFixed(2)).join(", ")} ms (median ${s.median.toFixed(2)}, max ${s.max.toFixed(2)})`);
    }
    printFigures("counter load during gateway/kv/log swaps", Object.values(blackouts).flat(), counterResult);
    printFigures("kv load during gateway/kv/log swaps", Object.values(blackouts).flat(), kvResult);
  }, 120_000);
});

/**
 * Failed swaps under load, each through the real CLI: `molt swap` exits
 * non-zero and prints the code, no client request fails, and the counter
 * keeps its version (status --json) and its state (the count equals the
 * successful POSTs).
 */
function failedSwaps(
  title: string,
  counterEntry: string,
  limits: { timeoutMs?: number; memoryMb?: number },
  cases: [fixture: string, code: string][],
  paused: boolean,
): void {
  describe(title, () => {
    let r: Runtime;
    /** Successful POSTs across this block's tests: the counter must equal it. */
    let posted = 0;
    const blackouts: number[] = [];
    beforeAll(async () => {
      r = await boot({
        gateway: { entry: join(ROOT, "services/gateway/index.ts"), bindings: { counter: "counter" }, config: { routes: { "/counter": "counter" } } },
        counter: { entry: counterEntry, bindings: { slow: "slow" }, limits },
        slow: { entry: PROBE },
      });
    });
    afterAll(() => {
      const s = summarize(blackouts);
      console.log(
        `[${title}] blackouts ${blackouts.map((b) => b.toFixed(2)).join(", ") || "none (nothing paused)"}` +
          (blackouts.length > 0 ? ` (median ${s.median.toFixed(2)}, max ${s.max.toFixed(2)})` : ""),
      );
    });

    it.each(cases)("%s: `molt swap` exits non-zero with %s, no request fails, version and count unchanged", async (fixture, code) => {
      const before = (await adminStatus(r)).find((s) => s.name === "counter");
      expect(before?.state).toBe("running");
      const historyBefore = (await adminHistory(r, "counter")).length;
      const gen = load({ url: `${r.rt.url}/counter`, clients: 8 });
      await gen.moreOk(50);
      const entry = existsSync(join(SWAP, `${fixture}.ts`)) ? join(SWAP, `${fixture}.ts`) : join(MINE, `${fixture}.ts`);
      const out = await cliSwap(r, "counter", entry);
      await gen.moreOk(50);
      const result = await gen.stop();
      posted += result.okByMethod.POST ?? 0;

      expect(out.code, out.stdout).not.toBe(0);
      expect(out.code).not.toBeNull();
      expect(out.stderr).toContain(code);
      if (out.blackoutMs !== null) blackouts.push(out.blackoutMs);
      // Past the rehearsal the failure is met with the mailbox paused, and the rollback resumes it; before it, nothing pauses.
      expect(out.blackoutMs !== null, out.stdout).toBe(paused);
      expectClean(result, `load during a ${fixture} swap`);

      const after = (await cliStatus(r)).find((s) => s.name === "counter");
      expect(after).toMatchObject({ state: "running", version: before?.version, semver: before?.semver, stateVersion: 1 });
      expect(await counterValue(r)).toBe(posted);
      // A bundle that does not compile is refused before the swap begins: nothing is recorded.
      const recorded = (await adminHistory(r, "counter")).slice(historyBefore);
      expect(recorded).toEqual(code === "ERR_SWAP_COMPILE" ? [] : [expect.objectContaining({ outcome: "rolled-back", code, startedAt: null })]);
    }, 60_000);
  });
}

// A deadline of 500 ms for the hangs and spins; the memory limit in a runtime of its own, with the
// default deadline: a restore that fills its heap slows down in V8's last GCs, and under a 500 ms
// deadline the timeout can win that race (ERR_SWAP_TIMEOUT instead of ERR_SWAP_OOM).
failedSwaps(
  "failed swaps under load leave the counter as it was",
  V1,
  { timeoutMs: 500 },
  [
    ["restore-throws", "ERR_SWAP_RESTORE"],
    ["restore-hangs", "ERR_SWAP_TIMEOUT"],
    ["restore-spins", "ERR_SWAP_TIMEOUT"],
    ["syntax-error", "ERR_SWAP_COMPILE"],
    ["only-v3-state", "ERR_STATE_VERSION"],
  ],
  false,
);
// `start` is not rehearsed (it has effects): a start that hangs is met with the mailbox paused.
failedSwaps("a new version whose start hangs, under load", V1, { timeoutMs: 500 }, [["start-hangs", "ERR_SWAP_TIMEOUT"]], true);
failedSwaps("a swap that runs out of memory under load", V1, { memoryMb: 32 }, [["restore-oom", "ERR_SWAP_OOM"]], false);

// A state too large for the kernel to rehearse the restore before the
// blackout: the same failures then happen with the mailbox paused.
failedSwaps(
  "failed swaps of a large state, met during the blackout, under load",
  join(MINE, "counter-big.ts"),
  { timeoutMs: 500 },
  [
    ["restore-throws", "ERR_SWAP_RESTORE"],
    ["restore-hangs", "ERR_SWAP_TIMEOUT"],
    ["restore-spins", "ERR_SWAP_TIMEOUT"],
  ],
  true,
);
failedSwaps("a swap of a large state that runs out of memory during the blackout, under load", join(MINE, "counter-big.ts"), { memoryMb: 32 }, [["restore-oom", "ERR_SWAP_OOM"]], true);

describe("a version that fails its probation under load", () => {
  let r: Runtime;
  let posted = 0;
  beforeAll(async () => {
    r = await boot(
      {
        gateway: { entry: join(ROOT, "services/gateway/index.ts"), bindings: { counter: "counter" }, config: { routes: { "/counter": "counter" } } },
        counter: { entry: V1, bindings: { slow: "slow" } },
        slow: { entry: PROBE },
      },
      { swap: { drainTimeoutMs: 2000, probationMs: 1500, probationMaxErrors: 2 } },
    );
  });

  it("is rolled back with the state it reached: `molt swap` exits non-zero with ERR_SWAP_PROBATION; only probation requests fail", async () => {
    const before = (await adminStatus(r)).find((s) => s.name === "counter");
    const gen = load({ url: `${r.rt.url}/counter`, clients: 8 });
    await gen.moreOk(50);
    const out = await cliSwap(r, "counter", join(MINE, "fetch-fails.ts"));
    await gen.moreOk(50);
    const result = await gen.stop();
    posted += result.okByMethod.POST ?? 0;

    expect(out.code, out.stdout).not.toBe(0);
    expect(out.code).not.toBeNull();
    expect(out.stderr).toContain("ERR_SWAP_PROBATION");
    // The faulty version answered some requests with 500 during its probation: more than probationMaxErrors,
    // all of them 500s, none lost, none refused.
    const probationFailures = result.failed.length;
    console.log(`[probation] ${probationFailures} request(s) failed during probation: ${JSON.stringify(result.failuresByKind)}; blackout ${out.blackoutMs} ms`);
    expect(probationFailures).toBeGreaterThan(2);
    expect(result.failed.every((f) => f.status === 500)).toBe(true);
    expect(result.lost).toBe(0);
    expect(result.answered).toBe(result.sent);

    const after = (await cliStatus(r)).find((s) => s.name === "counter");
    expect(after).toMatchObject({ state: "running", version: before?.version, semver: "1.0.0", stateVersion: 1 });
    expect(await counterValue(r)).toBe(posted);
    const history = await cliHistory(r, "counter");
    expect(history.at(-2)).toMatchObject({ semver: "9.1.0-fetch-fails", outcome: "probation-failed", code: "ERR_SWAP_PROBATION" });
    expect(history.at(-1)).toMatchObject({ via: "rollback", outcome: "live", semver: "1.0.0", version: before?.version, replacedAt: null });
  }, 60_000);

  it("commits a healthy version once its probation passes, with no request failing", async () => {
    const gen = load({ url: `${r.rt.url}/counter`, clients: 8 });
    await gen.moreOk(50);
    const swapping = cliSwap(r, "counter", V3);
    // During the probation window the swap is still in progress: a second one is refused.
    await vi.waitFor(async () => expect((await adminStatus(r)).find((s) => s.name === "counter")?.semver).toBe("3.0.0"), { timeout: 10_000, interval: 5 });
    const busy = await fetch(`${r.rt.adminUrl}/v1/services/counter/swap`, {
      method: "POST",
      headers: { authorization: `Bearer ${token(r)}`, "content-type": "application/json" },
      body: JSON.stringify({ entry: V2 }),
    });
    expect(busy.status).toBe(409);
    expect(((await busy.json()) as { error: { code: string } }).error.code).toBe("ERR_SWAP_BUSY");
    const out = await swapping;
    await gen.moreOk(50);
    const result = await gen.stop();
    posted += result.okByMethod.POST ?? 0;
    expect(out.code, `${out.stdout}\n${out.stderr}`).toBe(0);
    expect(out.stdout).toMatch(/committed/);
    expectClean(result, "load during a swap with probation");
    expect((await adminStatus(r)).find((s) => s.name === "counter")).toMatchObject({ semver: "3.0.0", stateVersion: 2 });
    expect(await counterValue(r)).toBe(posted);
    printFigures("probation pass", out.blackoutMs === null ? [] : [out.blackoutMs], result);
  }, 60_000);
});
