// The fleet as a user runs it: a real nats-server with JetStream on loopback,
// three `molt run` processes joined to it, and `molt fleet rollout|status`
// from the command line. Calls cross runtimes through bindings; rollouts
// move every runtime under load; a killed runtime, a restarted NATS server
// and a release that fails on its canary each end in a fleet that is whole.

import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually } from "../support/kernel.ts";
import { startLoad, type LoadGenerator, type LoadResult } from "../support/load.ts";
import { NatsServer } from "../support/nats.ts";
import { FIXTURES, ROOT, runCli, startRuntime, type RunningRuntime } from "../support/runtime.ts";

const V1 = join(ROOT, "services", "counter", "index.ts");
const V2 = join(ROOT, "services", "counter", "v2.ts");
const BROKEN = join(FIXTURES, "fleet", "counter-start-fails.ts");
const WHERE_V2 = join(FIXTURES, "fleet", "where-v2.ts");

interface Node {
  name: string;
  dir: string;
  runtime: RunningRuntime;
}

interface FleetStatusJson {
  nodes: { node: string; live: boolean; services: { name: string; version: string | null; semver: string | null; chain: { version: string }[] }[] }[];
  desired: Record<string, { version: string; state: string }>;
}

interface ServiceViewJson {
  desired: { version: string } | null;
  groups: { version: string; semver: string; nodes: string[]; gone: string[]; desired: boolean; superseded: { by: string; rollout: string } | null }[];
}

let nats: NatsServer;
const nodes = new Map<string, Node>();

function config(name: string, withWhere: boolean): string {
  return `import { defineConfig } from "molt";
export default defineConfig({
  services: {
    gateway: {
      entry: ${JSON.stringify(join(ROOT, "services", "gateway", "index.ts"))},
      bindings: { counter: "counter", where: "where", ghost: "ghost" },
      config: { routes: { "/counter": "counter", "/where": "where", "/ghost": "ghost" } },
    },
    counter: { entry: ${JSON.stringify(V1)} },
    ${withWhere ? `where: { entry: ${JSON.stringify(join(FIXTURES, "fleet", "where.ts"))}, config: { node: ${JSON.stringify(name)} } },` : ""}
  },
  http: { port: 0, service: "gateway" },
  dataDir: "./data",
  fleet: { nats: ${JSON.stringify(nats.url)}, node: ${JSON.stringify(name)}, heartbeatMs: 300, reconcileMs: 1500 },
});
`;
}

async function startNode(name: string, withWhere = false, dir?: string): Promise<Node> {
  const folder = dir ?? mkdtempSync(join(tmpdir(), `molt-fleet-${name}-`));
  const path = join(folder, "molt.config.ts");
  writeFileSync(path, config(name, withWhere));
  const node = { name, dir: folder, runtime: await startRuntime(path) };
  nodes.set(name, node);
  return node;
}

async function fleetStatus(): Promise<FleetStatusJson> {
  const out = await runCli(["fleet", "status", "--json", "--nats", nats.url]);
  expect(out.code, out.stderr).toBe(0);
  return JSON.parse(out.stdout) as FleetStatusJson;
}

async function serviceView(service: string): Promise<ServiceViewJson> {
  const out = await runCli(["fleet", "status", "--service", service, "--json", "--nats", nats.url]);
  expect(out.code, out.stderr).toBe(0);
  return JSON.parse(out.stdout) as ServiceViewJson;
}

/** The counter's version on each live runtime. */
async function counterVersions(): Promise<Record<string, string | null>> {
  const status = await fleetStatus();
  return Object.fromEntries(
    status.nodes.filter((n) => n.live).map((n) => [n.node, n.services.find((s) => s.name === "counter")?.version ?? null]),
  );
}

/** Increments on every runtime's counter, two clients each, counting failures. */
function loadEverywhere(): LoadGenerator[] {
  return [...nodes.values()].map((n) =>
    startLoad({ url: `${n.runtime.url}/counter/incr`, clients: 2, maxDurationMs: 120_000, requestTimeoutMs: 10_000 }),
  );
}

function expectNoFailures(results: LoadResult[]): void {
  const failed = results.flatMap((r) => r.failed);
  expect(failed.slice(0, 5), JSON.stringify(results.map((r) => r.failuresByKind))).toEqual([]);
  for (const r of results) {
    expect(r.lost).toBe(0);
    expect(r.ok).toBeGreaterThan(0);
  }
}

async function allJoined(names: string[]): Promise<void> {
  await eventually(async () => {
    const live = (await fleetStatus()).nodes.filter((n) => n.live).map((n) => n.node);
    if (!names.every((n) => live.includes(n))) throw new Error(`joined so far: ${live.join(", ")}`);
  }, 20_000);
}

beforeAll(async () => {
  nats = await NatsServer.start();
  await Promise.all([startNode("a"), startNode("b"), startNode("c", true)]);
  await allJoined(["a", "b", "c"]);
}, 90_000);

afterAll(async () => {
  await Promise.all([...nodes.values()].map((n) => n.runtime.stop()));
  await nats?.stop();
});

describe("the fleet", () => {
  it("carries a call through a binding to a service that runs only on another runtime", async () => {
    const a = nodes.get("a") as Node;
    const b = nodes.get("b") as Node;
    const viaA = await fetch(`${a.runtime.url}/where`);
    expect(viaA.status).toBe(200);
    expect((await viaA.text()).split(" ")[0]).toBe("c");
    const viaB = await fetch(`${b.runtime.url}/where`);
    expect((await viaB.text()).split(" ")[0]).toBe("c");
    // A local instance is preferred: c answers its own calls.
    const viaC = await fetch(`${(nodes.get("c") as Node).runtime.url}/where`);
    expect((await viaC.text()).split(" ")[0]).toBe("c");
    // A binding to a service no runtime offers: ERR_NO_SERVICE, as a call to an unknown local service would be.
    const ghost = await fetch(`${a.runtime.url}/ghost`);
    expect(ghost.status).toBeGreaterThanOrEqual(500);
    expect(((await ghost.json()) as { error: { code: string } }).error.code).toBe("ERR_NO_SERVICE");
  });

  it("holds calls from other runtimes while the service they reach is swapped: none fails", async () => {
    const a = nodes.get("a") as Node;
    const b = nodes.get("b") as Node;
    // Clients on a and b reach "where", which runs only on c, through NATS.
    const loads = [a, b].map((n) =>
      startLoad({ url: `${n.runtime.url}/where`, clients: 2, next: () => ({ method: "GET" }), maxDurationMs: 60_000 }),
    );
    await Promise.all(loads.map((l) => l.moreOk(50)));
    const out = await runCli(["fleet", "rollout", "where", WHERE_V2, "--nats", nats.url]);
    const results = await Promise.all(loads.map((l) => l.stop()));
    console.log(out.stdout);
    expect(out.code, out.stdout + out.stderr).toBe(0);
    expect(out.stdout).toMatch(/canary\s+c\s+committed/);
    expect(out.stdout).toMatch(/rollout completed: 1 on the new version, 0 failed/);
    expectNoFailures(results);
    // The state came across: the count goes on from where v1 left it.
    const answered = results.reduce((n, r) => n + r.ok, 0);
    const body = await (await fetch(`${a.runtime.url}/where`)).text();
    expect(body.split(" ")[0]).toBe("c");
    expect(Number(body.split(" ")[1])).toBeGreaterThan(answered);
  }, 60_000);

  it("halts a rollout whose new version fails on the canary and leaves every runtime on v1", async () => {
    const before = await counterVersions();
    const v1 = before.a as string;
    expect(Object.values(before)).toEqual([v1, v1, v1]);
    const out = await runCli(["fleet", "rollout", "counter", BROKEN, "--nats", nats.url, "--canary", "1", "--batch", "2"]);
    expect(out.code, out.stdout + out.stderr).toBe(1);
    expect(out.stderr).toMatch(/ERR_ROLLOUT_HALTED/);
    expect(out.stdout).toMatch(/canary\s+a\s+rolled-back/);
    expect(out.stdout).not.toMatch(/batch 1/);
    expect(await counterVersions()).toEqual({ a: v1, b: v1, c: v1 });
    // Nothing was settled: no runtime converges to the broken release later.
    expect((await fleetStatus()).desired.counter).toBeUndefined();
  });

  it("rolls v1 → v2 across three runtimes under load with zero failed requests, and status shows all on v2", async () => {
    const loads = loadEverywhere();
    const out = await runCli(["fleet", "rollout", "counter", V2, "--nats", nats.url, "--canary", "1", "--batch", "1"]);
    const results = await Promise.all(loads.map((l) => l.stop()));
    console.log(out.stdout);
    expect(out.code, out.stdout + out.stderr).toBe(0);
    expect(out.stdout).toMatch(/canary\s+a\s+committed/);
    expect(out.stdout).toMatch(/batch 2\s+c\s+committed/);
    expect(out.stdout).toMatch(/rollout completed: 3 on the new version, 0 failed/);
    expectNoFailures(results);

    const status = await fleetStatus();
    const desired = status.desired.counter;
    expect(desired?.state).toBe("settled");
    for (const name of ["a", "b", "c"]) {
      const counter = status.nodes.find((n) => n.node === name)?.services.find((s) => s.name === "counter");
      expect(counter?.version).toBe(desired?.version);
      expect(counter?.semver).toBe("2.0.0");
      // The chain says what it replaced.
      expect(counter?.chain.length).toBeGreaterThanOrEqual(2);
    }
    const view = await serviceView("counter");
    expect(view.groups).toHaveLength(1);
    expect(view.groups[0]).toMatchObject({ nodes: ["a", "b", "c"], desired: true, superseded: null });
  }, 60_000);

  it("a runtime killed during a rollout is flagged as superseded, and converges when it comes back", async () => {
    const c = nodes.get("c") as Node;
    const before = await counterVersions();
    const v2 = before.c as string;
    const loads = [...nodes.values()].filter((n) => n.name !== "c").map((n) => startLoad({ url: `${n.runtime.url}/counter/incr`, clients: 2, maxDurationMs: 120_000 }));
    // Back to v1 (it migrates v2's state down), killing c as soon as the canary is done.
    const rollout = spawn(process.execPath, [join(ROOT, "bin", "molt.js"), "fleet", "rollout", "counter", V1, "--nats", nats.url], { cwd: ROOT });
    let stdout = "";
    let stderr = "";
    rollout.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const killed = new Promise<void>((resolve) => {
      rollout.stdout.on("data", (d: Buffer) => {
        stdout += d.toString();
        if (/canary\s+a\s+committed/.test(stdout) && c.runtime.process.exitCode === null) {
          void c.runtime.stop("SIGKILL").then(() => resolve());
        }
      });
    });
    const code = await new Promise<number | null>((resolve) => rollout.on("exit", resolve));
    await killed;
    const results = await Promise.all(loads.map((l) => l.stop()));
    console.log(stdout);
    expect(code, stdout + stderr).toBe(0);
    expectNoFailures(results);
    expect(stdout).toMatch(/canary\s+a\s+committed/);
    // c was killed: skipped, not failed.
    expect(stdout).toMatch(/c\s+skipped/);
    expect(stdout).toMatch(/rollout completed: 2 on the new version, 0 failed, 1 skipped/);

    const view = await serviceView("counter");
    const v1 = view.desired?.version as string;
    expect(v1).not.toBe(v2);
    const stale = view.groups.find((g) => g.version === v2);
    expect(stale?.nodes).toEqual(["c"]);
    expect(stale?.superseded?.by).toBe(v1);
    expect(view.groups.find((g) => g.version === v1)?.nodes).toEqual(["a", "b"]);

    // c comes back on its own dataDir: at its committed v2 first, then converging to v1.
    await startNode("c", true, c.dir);
    await eventually(async () => {
      const versions = await counterVersions();
      if (versions.c !== v1) throw new Error(`c runs ${versions.c}`);
    }, 20_000);
    const after = await serviceView("counter");
    expect(after.groups).toHaveLength(1);
    expect(after.groups[0]?.nodes).toEqual(["a", "b", "c"]);
  }, 90_000);

  it("a rollout goes on when the NATS server restarts in the middle of it", async () => {
    const loads = loadEverywhere();
    const rollout = spawn(process.execPath, [join(ROOT, "bin", "molt.js"), "fleet", "rollout", "counter", V2, "--nats", nats.url], { cwd: ROOT });
    let stdout = "";
    let stderr = "";
    rollout.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    let restarted: Promise<void> | undefined;
    rollout.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      if (restarted === undefined && /canary\s+a\s+committed/.test(stdout)) {
        restarted = (async () => {
          await nats.kill();
          await new Promise((r) => setTimeout(r, 1000));
          await nats.restart();
        })();
      }
    });
    const code = await new Promise<number | null>((resolve) => rollout.on("exit", resolve));
    await restarted;
    const results = await Promise.all(loads.map((l) => l.stop()));
    console.log(stdout);
    expect(code, stdout + stderr).toBe(0);
    expect(stdout).toMatch(/lost the NATS connection/);
    expect(stdout).toMatch(/rollout completed: 3 on the new version, 0 failed/);
    // Calls between the runtimes' own services never went through NATS: none failed.
    expectNoFailures(results);
    await eventually(async () => {
      const versions = await counterVersions();
      const desired = (await fleetStatus()).desired.counter?.version;
      if (!(versions.a === desired && versions.b === desired && versions.c === desired)) throw new Error(JSON.stringify(versions));
    }, 20_000);
    // Calls across runtimes work again after the server came back.
    const where = await fetch(`${(nodes.get("a") as Node).runtime.url}/where`);
    expect((await where.text()).split(" ")[0]).toBe("c");
  }, 90_000);
});
