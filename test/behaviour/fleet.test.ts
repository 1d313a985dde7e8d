// The fleet as a user runs it: a real nats-server with JetStream on loopback,
// three `molt run` processes joined to it, and `molt fleet rollout|status`
// from the command line. Calls cross runtimes through bindings; rollouts
// move every runtime under load; a killed runtime, a restarted NATS server
// and a release that fails on its canary each end in a fleet that is whole.

import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFleetCli, fleetJson, type BackgroundCli } from "../support/fleet.ts";
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

/** Every runtime runs the gateway and the counter; "where" and "fragile" run on b and c, "big" only on c. */
function config(name: string): string {
  const where = name === "b" || name === "c";
  const big = name === "c";
  return `import { defineConfig } from "molt";
export default defineConfig({
  services: {
    gateway: {
      entry: ${JSON.stringify(join(ROOT, "services", "gateway", "index.ts"))},
      bindings: { counter: "counter", where: "where", ghost: "ghost", big: "big", fragile: "fragile" },
      config: { routes: { "/counter": "counter", "/where": "where", "/ghost": "ghost", "/big": "big", "/fragile": "fragile" } },
    },
    counter: { entry: ${JSON.stringify(V1)} },
    ${where ? `where: { entry: ${JSON.stringify(join(FIXTURES, "fleet", "where.ts"))}, config: { node: ${JSON.stringify(name)} } },` : ""}
    ${big ? `big: { entry: ${JSON.stringify(join(FIXTURES, "fleet", "big.ts"))} },` : ""}
    ${where ? `fragile: { entry: ${JSON.stringify(join(FIXTURES, "fleet", "fragile.ts"))}, config: { node: ${JSON.stringify(name)} }, limits: { memoryMb: 16 } },` : ""}
  },
  http: { port: 0, service: "gateway" },
  dataDir: "./data",
  fleet: { nats: ${JSON.stringify(nats.url)}, node: ${JSON.stringify(name)}, heartbeatMs: 1000, reconcileMs: 2000 },
});
`;
}

async function startNode(name: string, dir?: string): Promise<Node> {
  const folder = dir ?? mkdtempSync(join(tmpdir(), `molt-fleet-${name}-`));
  const path = join(folder, "molt.config.ts");
  writeFileSync(path, config(name));
  const node = { name, dir: folder, runtime: await startRuntime(path) };
  nodes.set(name, node);
  return node;
}

/** `molt fleet rollout …` in the background, with its output as it comes. */
function startRollout(args: string[]): BackgroundCli {
  return startFleetCli(["rollout", ...args], nats.url);
}

function fleetStatus(): Promise<FleetStatusJson> {
  return fleetJson<FleetStatusJson>(["status"], nats.url);
}

function serviceView(service: string): Promise<ServiceViewJson> {
  return fleetJson<ServiceViewJson>(["status", "--service", service], nats.url);
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
  await Promise.all([startNode("a"), startNode("b"), startNode("c")]);
  await allJoined(["a", "b", "c"]);
}, 90_000);

afterAll(async () => {
  await Promise.all([...nodes.values()].map((n) => n.runtime.stop()));
  await nats?.stop();
});

const node = (name: string): Node => nodes.get(name) as Node;
const answeredBy = async (url: string): Promise<string> => (await (await fetch(url)).text()).split(" ")[0] as string;

describe("the fleet", () => {
  it("carries a call through a binding to a service that runs only on other runtimes; a local one is preferred", async () => {
    // a does not run "where": its calls reach b or c, through NATS.
    const viaA = new Set<string>();
    for (let i = 0; i < 20; i++) viaA.add(await answeredBy(`${node("a").runtime.url}/where`));
    expect([...viaA].every((n) => n === "b" || n === "c")).toBe(true);
    // b and c both run it: each answers its own calls, never the other's.
    for (let i = 0; i < 10; i++) {
      expect(await answeredBy(`${node("b").runtime.url}/where`)).toBe("b");
      expect(await answeredBy(`${node("c").runtime.url}/where`)).toBe("c");
    }
    // A binding to a service no runtime offers: ERR_NO_SERVICE, as a call to an unknown local service would be.
    const ghost = await fetch(`${node("a").runtime.url}/ghost`);
    expect(ghost.status).toBeGreaterThanOrEqual(500);
    expect(((await ghost.json()) as { error: { code: string } }).error.code).toBe("ERR_NO_SERVICE");
  });

  it("answers a reply too large for NATS with ERR_MESSAGE_TOO_LARGE, and the runtime that made it keeps serving", async () => {
    const big = await fetch(`${node("a").runtime.url}/big`);
    expect(big.status).toBeGreaterThanOrEqual(500);
    expect(((await big.json()) as { error: { code: string } }).error.code).toBe("ERR_MESSAGE_TOO_LARGE");
    // Locally the same reply fits (maxMessageBytes is 4 MiB): only the hop over NATS refuses it.
    expect((await fetch(`${node("c").runtime.url}/big`)).status).toBe(200);
    expect(node("c").runtime.process.exitCode).toBeNull();
    expect(await answeredBy(`${node("a").runtime.url}/counter`)).toMatch(/^\d+/);
  });

  it("a runtime whose service is down leaves that service's queue group: other runtimes' calls reach one that is up", async () => {
    // c's fragile crashes past its restart limit (5 in 60 s) and is marked down.
    await eventually(async () => {
      const res = await fetch(`${node("c").runtime.url}/fragile/crash`);
      const body = (await res.json()) as { error: { code: string } };
      if (body.error.code !== "ERR_SERVICE_DOWN") throw new Error(body.error.code);
    }, 30_000);
    // Within a heartbeat c stops answering for it: every call from a reaches b.
    await eventually(async () => {
      const by = new Set<string>();
      for (let i = 0; i < 20; i++) {
        const res = await fetch(`${node("a").runtime.url}/fragile`);
        by.add(res.status === 200 ? ((await res.text()).split(" ")[0] as string) : `${res.status}`);
      }
      expect([...by]).toEqual(["b"]);
    }, 10_000);
  }, 60_000);

  it("holds calls from other runtimes while the service they reach is swapped: none fails", async () => {
    // Clients on a reach "where" on b and c through NATS while it is rolled out on both.
    const load = startLoad({ url: `${node("a").runtime.url}/where`, clients: 4, next: () => ({ method: "GET" }), maxDurationMs: 60_000 });
    await load.moreOk(50);
    const out = await runCli(["fleet", "rollout", "where", WHERE_V2, "--nats", nats.url]);
    const result = await load.stop();
    console.log(out.stdout);
    expect(out.code, out.stdout + out.stderr).toBe(0);
    expect(out.stdout).toMatch(/canary\s+b\s+committed/);
    expect(out.stdout).toMatch(/rollout completed: 2 on the new version, 0 failed/);
    expectNoFailures([result]);
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
  }, 90_000);

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

  it("a runtime killed during a rollout is flagged as superseded, and converges when it comes back; a second rollout meanwhile is refused", async () => {
    const c = node("c");
    const v2 = (await counterVersions()).c as string;
    const loads = ["a", "b"].map((n) => startLoad({ url: `${node(n).runtime.url}/counter/incr`, clients: 2, maxDurationMs: 120_000 }));
    // Back to v1 (it migrates v2's state down). The pause after the canary is when c dies.
    const rollout = startRollout(["counter", V1, "--batch", "2", "--pause", "5000"]);
    await rollout.seen(/canary\s+a\s+committed/);
    await c.runtime.stop("SIGKILL");
    // While it runs, another rollout of the same service is refused, not interleaved.
    const second = await runCli(["fleet", "rollout", "counter", V2, "--nats", nats.url]);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/ERR_ROLLOUT_BUSY/);
    const code = await rollout.exited;
    const results = await Promise.all(loads.map((l) => l.stop()));
    console.log(rollout.stdout());
    expect(code, rollout.stdout() + rollout.stderr()).toBe(0);
    expectNoFailures(results);
    // c was killed: skipped, not failed.
    expect(rollout.stdout()).toMatch(/batch 1\s+c\s+skipped/);
    expect(rollout.stdout()).toMatch(/rollout completed: 2 on the new version, 0 failed, 1 skipped/);

    const view = await serviceView("counter");
    const v1 = view.desired?.version as string;
    expect(v1).not.toBe(v2);
    const stale = view.groups.find((g) => g.version === v2);
    expect(stale?.nodes).toEqual(["c"]);
    expect(stale?.superseded?.by).toBe(v1);
    expect(view.groups.find((g) => g.version === v1)?.nodes).toEqual(["a", "b"]);

    // c comes back on its own dataDir: at its committed v2 first, then converging to v1.
    await startNode("c", c.dir);
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
    const rollout = startRollout(["counter", V2, "--batch", "2", "--pause", "6000"]);
    await rollout.seen(/canary\s+a\s+committed/);
    // Killed and started again during the pause after the canary.
    await nats.kill();
    await new Promise((r) => setTimeout(r, 1000));
    await nats.restart();
    const code = await rollout.exited;
    const results = await Promise.all(loads.map((l) => l.stop()));
    console.log(rollout.stdout());
    expect(code, rollout.stdout() + rollout.stderr()).toBe(0);
    expect(rollout.stdout()).toMatch(/lost the NATS connection/);
    expect(rollout.stdout()).toMatch(/rollout completed: 3 on the new version, 0 failed/);
    // Calls between the runtimes' own services never went through NATS: none failed.
    expectNoFailures(results);
    const desired = (await fleetStatus()).desired.counter?.version;
    expect(await counterVersions()).toEqual({ a: desired, b: desired, c: desired });
    // Calls across runtimes work again after the server came back.
    await eventually(async () => {
      const by = await answeredBy(`${node("a").runtime.url}/where`);
      if (by !== "b" && by !== "c") throw new Error(by);
    }, 10_000);
  }, 90_000);

  it("Ctrl-C halts a rollout and takes the runtimes it swapped back; the fleet's decision stays as it was", async () => {
    const before = await counterVersions();
    const settled = (await fleetStatus()).desired.counter?.version;
    const rollout = startRollout(["counter", V1, "--batch", "2", "--pause", "4000"]);
    await rollout.seen(/canary\s+a\s+committed/);
    rollout.kill("SIGINT");
    const code = await rollout.exited;
    console.log(rollout.stdout());
    expect(code).toBe(1);
    expect(rollout.stderr()).toMatch(/ERR_ROLLOUT_HALTED/);
    expect(rollout.stdout()).toMatch(/rollback\s+a\s+committed/);
    expect(await counterVersions()).toEqual(before);
    const status = await fleetStatus();
    expect(status.desired.counter).toMatchObject({ version: settled, state: "settled" });
  }, 60_000);
});
