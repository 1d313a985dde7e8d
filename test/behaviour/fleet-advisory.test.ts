// "Which of my servers have the fix?" as a user asks it: a real nats-server
// with JetStream on loopback and three `molt run` processes, on three
// releases of one service — v1 has the hole, v2 declares a first fix for
// MOLT-2026-0001, v3 declares it too. Advisories are added and revoked from
// the command line, the fleet is grouped by them, and rollouts go in waves:
// one that completes, and one that fails in its last wave and rolls back.

import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readAdvisoryStatus, readFleet } from "../../fleet/status.ts";
import { fleetJson, startFleetCli } from "../support/fleet.ts";
import { eventually } from "../support/kernel.ts";
import { NatsServer } from "../support/nats.ts";
import { FIXTURES, ROOT, runCli, startRuntime, type RunningRuntime } from "../support/runtime.ts";

const RELEASE = { a: "v1.ts", b: "v2.ts", c: "v3.ts" } as const;
type Name = keyof typeof RELEASE;
const entry = (file: string): string => join(FIXTURES, "fixes", file);
const ID = "MOLT-2026-0001";

interface Entry {
  node: string;
  service: string;
  version: string;
  semver: string;
}

interface AdvisoryStatusJson {
  advisory: { id: string; title: string | null; severity: string | null; fixedIn: string[]; revoked: string[] };
  fixed: Entry[];
  vulnerable: Entry[];
  unknown: Entry[];
}

let nats: NatsServer;
const runtimes = new Map<Name, { config: string; runtime: RunningRuntime }>();

async function startNode(name: Name): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), `molt-advisory-${name}-`));
  const config = join(dir, "molt.config.ts");
  writeFileSync(
    config,
    `export default {
  services: { patched: { entry: ${JSON.stringify(entry(RELEASE[name]))}, config: { node: ${JSON.stringify(name)} } } },
  http: { port: 0, service: "patched" },
  admin: { port: 0, allowedRoots: [${JSON.stringify(ROOT)}] },
  dataDir: "./data",
  fleet: { nats: ${JSON.stringify(nats.url)}, node: ${JSON.stringify(name)}, heartbeatMs: 500, reconcileMs: 2000 },
};
`,
  );
  // A loaded machine (the suite runs beside others) can take long to start three runtimes at once.
  runtimes.set(name, { config, runtime: await startRuntime(config, { readyTimeoutMs: 60_000 }) });
}

// The CLI is what these tests exercise; where they only need to know the
// fleet's state, they read it in-process, as the CLI does, which is several
// times faster than starting a command.
const advisory = (): Promise<AdvisoryStatusJson> => readAdvisoryStatus(nats.url, ID) as Promise<AdvisoryStatusJson>;
const who = (entries: Entry[]): string[] => entries.map((e) => `${e.node} ${e.semver}`);

/** The semver each runtime runs, by node. */
async function versions(): Promise<Record<string, string>> {
  const status = await readFleet(nats.url);
  return Object.fromEntries(status.nodes.map((n) => [n.node, n.services[0]?.semver ?? "-"]));
}

beforeAll(async () => {
  nats = await NatsServer.start();
  await Promise.all((Object.keys(RELEASE) as Name[]).map(startNode));
  await eventually(async () => {
    const live = (await readFleet(nats.url)).nodes.filter((n) => n.live).length;
    if (live < 3) throw new Error(`${live} runtimes joined`);
  }, 20_000);
}, 90_000);

afterAll(async () => {
  await Promise.all([...runtimes.values()].map((r) => r.runtime.stop()));
  await nats?.stop();
});

describe("advisories and waves across a fleet", () => {
  it("carries the fixes a version declares into molt status, molt history and the fleet's heartbeats", async () => {
    const b = runtimes.get("b")?.config as string;
    const [json, history, text, fleet] = await Promise.all([
      runCli(["status", "--json", "--config", b]),
      runCli(["history", "patched", "--json", "--config", b]),
      runCli(["status", "--config", b]),
      readFleet(nats.url),
    ]);
    expect((JSON.parse(json.stdout) as { services: unknown[] }).services).toMatchObject([{ name: "patched", fixes: [ID] }]);
    expect((JSON.parse(history.stdout) as { records: { fixes?: string[] }[] }).records.at(-1)?.fixes).toEqual([ID]);
    expect(text.stdout).toMatch(/patched .*MOLT-2026-0001/);
    expect(Object.fromEntries(fleet.nodes.map((n) => [n.node, n.services[0]?.fixes]))).toEqual({ a: [], b: [ID], c: [ID, "MOLT-2026-0002"] });
  }, 60_000);

  it("adds an advisory, shows it, and groups the runtimes by whether the version they run fixes it", async () => {
    const added = await runCli(["fleet", "advisory", "add", ID, "--title", "heap overflow in the parser", "--severity", "high", "--nats", nats.url]);
    expect(added.code, added.stdout + added.stderr).toBe(0);
    console.log(added.stdout);
    const shown = await fleetJson<AdvisoryStatusJson["advisory"]>(["advisory", "show", ID], nats.url);
    expect(shown).toMatchObject({ id: ID, title: "heap overflow in the parser", severity: "high", fixedIn: [], revoked: [] });

    const [status, text, unknown] = await Promise.all([
      fleetJson<AdvisoryStatusJson>(["status", "--advisory", ID], nats.url),
      runCli(["fleet", "status", "--advisory", ID, "--nats", nats.url]),
      // An advisory nobody added: a stable code.
      runCli(["fleet", "status", "--advisory", "MOLT-2026-9999", "--nats", nats.url]),
    ]);
    expect(Object.keys(status)).toEqual(expect.arrayContaining(["advisory", "fixed", "vulnerable", "unknown"]));
    expect(status.fixed.map((e) => Object.keys(e).sort())[0]).toEqual(["node", "semver", "service", "version"]);
    expect(who(status.fixed)).toEqual(["b 2.0.0", "c 3.0.0"]);
    expect(who(status.vulnerable)).toEqual(["a 1.0.0"]);
    expect(status.unknown).toEqual([]);
    console.log(text.stdout);
    expect(text.stdout).toMatch(/^fixed +2 runtimes$/m);
    expect(text.stdout).toMatch(/^vulnerable +1 runtime$/m);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/ERR_NO_ADVISORY/);
  }, 60_000);

  it("after v2's claim is revoked, the runtime on v2 is vulnerable and v3 still counts as fixed", async () => {
    const v2 = (await advisory()).fixed.find((e) => e.node === "b")?.version as string;
    const revoked = await runCli(["fleet", "advisory", "revoke", ID, "--version", v2.slice(0, 12), "--nats", nats.url]);
    expect(revoked.code, revoked.stdout + revoked.stderr).toBe(0);
    console.log(revoked.stdout);
    const status = await advisory();
    expect(status.advisory.revoked).toEqual([v2.slice(0, 12)]);
    expect(who(status.fixed)).toEqual(["c 3.0.0"]);
    expect(who(status.vulnerable)).toEqual(["a 1.0.0", "b 2.0.0"]);
  }, 60_000);

  it("rolls v3 out in waves, printing each wave as it goes, and leaves every runtime fixed", async () => {
    const rollout = startFleetCli(["rollout", "patched", entry("v3.ts"), "--waves", "34,67,100"], nats.url);
    // Waves that do not increase are refused before anything is published.
    const badWaves = await runCli(["fleet", "rollout", "patched", entry("v3.ts"), "--waves", "50,25,100", "--nats", nats.url]);
    expect(badWaves.code).toBe(1);
    expect(badWaves.stderr).toMatch(/ERR_USAGE/);
    const code = await rollout.exited;
    console.log(rollout.stdout());
    expect(code, rollout.stdout() + rollout.stderr()).toBe(0);
    const out = rollout.stdout();
    // c runs v3 already; a is the canary; 67% of 3 is every runtime, so b goes in wave 2.
    expect(out).toMatch(/canary\s+a\s+committed/);
    expect(out).toMatch(/wave 1\/3: to 34% \(2 of 3 runtimes\), 2 on the new version now/);
    expect(out).toMatch(/wave 2\s+b\s+committed/);
    expect(out).toMatch(/wave 3\/3 done: 3 of 3 runtimes on the new version, 0 failed/);
    expect(out).toMatch(/rollout completed: 2 on the new version, 0 failed/);
    expect(await versions()).toEqual({ a: "3.0.0", b: "3.0.0", c: "3.0.0" });
    const status = await advisory();
    expect(who(status.fixed)).toEqual(["a 3.0.0", "b 3.0.0", "c 3.0.0"]);
    expect(status.vulnerable).toEqual([]);
  }, 60_000);

  it("halts a wave in which a runtime fails its swap, and takes the runtimes of the earlier waves back", async () => {
    const settled = (await readFleet(nats.url)).desired.patched;
    const rollout = startFleetCli(["rollout", "patched", entry("v4-fails-on-c.ts"), "--waves", "50,100"], nats.url);
    const code = await rollout.exited;
    console.log(rollout.stdout());
    expect(code, rollout.stdout()).toBe(1);
    expect(rollout.stderr()).toMatch(/ERR_ROLLOUT_HALTED/);
    const out = rollout.stdout();
    expect(out).toMatch(/canary\s+a\s+committed/);
    expect(out).toMatch(/wave 1\s+b\s+committed/);
    expect(out).toMatch(/wave 2\s+c\s+rolled-back/);
    expect(out).toMatch(/wave 2\/2 done: 2 of 3 runtimes on the new version, 1 failed/);
    expect(out).toMatch(/rollback\s+a\s+committed/);
    expect(out).toMatch(/rollback\s+b\s+committed/);
    expect(await versions()).toEqual({ a: "3.0.0", b: "3.0.0", c: "3.0.0" });
    // The fleet's decision is the one before the failed rollout.
    expect((await readFleet(nats.url)).desired.patched).toMatchObject({ version: settled?.version, state: "settled" });
  }, 60_000);

  it("puts a runtime whose heartbeat stopped in the unknown group", async () => {
    await runtimes.get("c")?.runtime.stop("SIGKILL");
    await eventually(async () => {
      const status = await advisory();
      expect(who(status.unknown)).toEqual(["c 3.0.0"]);
      expect(who(status.fixed)).toEqual(["a 3.0.0", "b 3.0.0"]);
    }, 10_000);
  });
});
