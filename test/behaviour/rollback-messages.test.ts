// Behaviour (issue 20, item 5): what `molt swap`, `molt rollback`, `molt
// status` and `molt history` say, run as a user runs them against `molt run`.
// A rollback to a version that cannot take the newer state is refused, says
// so without printing "rolled-back:", and names the ways back: `--fresh-state`
// or a version that migrates down. Outcomes read the same in every command's
// human output ("committed"), while the JSON keeps the inventory's words. A
// restore that throws is reported in phase prepare, as the rehearsal.

import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SwapProgress, VersionRecord } from "../../protocol/admin.ts";
import { FIXTURES, ROOT, runCli, startRuntime, writeConfig, type RunningRuntime } from "../support/runtime.ts";

const V1 = join(FIXTURES, "i20c-rb-v1.ts");
const V2 = join(FIXTURES, "i20c-rb-v2.ts");
const BROKEN = join(FIXTURES, "i20c-rb-restore-throws.ts");

describe("rollback and outcome messages", () => {
  let configPath: string;
  let dataDir: string;
  let rt: RunningRuntime;
  const cli = (...args: string[]) => runCli([...args, "--config", configPath]);

  async function count(method: "GET" | "POST" = "GET"): Promise<number> {
    const res = await fetch(rt.url, { method });
    expect(res.status).toBe(200);
    return Number(await res.text());
  }

  async function history(): Promise<VersionRecord[]> {
    const out = await cli("history", "counter", "--json");
    expect(out.code, out.stderr).toBe(0);
    return (JSON.parse(out.stdout) as { records: VersionRecord[] }).records;
  }

  /** The human history's outcome cells, one per record, as the table prints them. */
  async function humanOutcomes(): Promise<string[]> {
    const out = await cli("history", "counter");
    expect(out.code, out.stderr).toBe(0);
    const [head = "", ...rows] = out.stdout.split("\n").filter((line) => line.trim() !== "");
    const at = head.indexOf("outcome");
    const end = head.indexOf("blackout");
    return rows.map((row) => row.slice(at, end).trim());
  }

  beforeAll(async () => {
    configPath = writeConfig("export default {};\n");
    const dir = dirname(configPath);
    dataDir = join(dir, "data");
    const config = {
      services: { counter: { entry: V1 } },
      http: { port: 0, service: "counter" },
      admin: { port: 0, allowedRoots: [ROOT, dir] },
      dataDir,
    };
    writeFileSync(configPath, `export default ${JSON.stringify(config, null, 2)};\n`);
    rt = await startRuntime(configPath);
  });

  afterAll(async () => {
    await rt?.stop();
  });

  it("a swap says committed, and status and history say committed for the same version, while --json keeps `live`", async () => {
    for (let i = 0; i < 3; i++) await count("POST");
    const swap = await cli("swap", "counter", V2);
    expect(swap.code, swap.stderr).toBe(0);
    expect(swap.stdout).toMatch(/^committed: counter 1\.0\.0/m);

    const status = await cli("status");
    expect(status.code, status.stderr).toBe(0);
    const row = status.stdout.split("\n").find((line) => line.startsWith("counter")) ?? "";
    expect(row).toMatch(/\bcommitted\b/);
    expect(row).not.toMatch(/\blive\b/);

    expect(await humanOutcomes()).toEqual(["committed", "committed"]);
    expect((await history()).map((r) => r.outcome)).toEqual(["live", "live"]);
    expect(await count()).toBe(3);
  }, 60_000);

  it("a restore that throws is reported in phase prepare, as the rehearsal, with nothing paused", async () => {
    const out = await cli("swap", "counter", BROKEN);
    expect(out.code).toBe(1);
    expect(out.stdout).toMatch(/^rolled-back: counter stays at 2\.0\.0/m);
    expect(out.stderr).toMatch(/ERR_SWAP_RESTORE: .*\(phase prepare, in the rehearsal/);
    expect(out.stdout).toMatch(/blackout -/);
    expect((await history()).at(-1)).toMatchObject({ outcome: "rolled-back", code: "ERR_SWAP_RESTORE", via: "swap" });
    expect(await count()).toBe(3);
  }, 60_000);

  it("a rollback the older version cannot take is refused without `rolled-back:`, and says how to go back", async () => {
    const out = await cli("rollback", "counter");
    expect(out.code).toBe(1);
    expect(out.stdout).not.toMatch(/rolled-back:/);
    expect(out.stdout).toMatch(/^failed: counter stays at 2\.0\.0/m);
    expect(out.stderr).toMatch(/ERR_STATE_VERSION/);
    // The two ways back, as commands and declarations to copy.
    expect(out.stderr).toContain("molt rollback counter --fresh-state");
    expect(out.stderr).toContain("restoresFrom: [2]");

    // The inventory keeps its words; the human history says what the command said.
    expect((await history()).at(-1)).toMatchObject({ via: "rollback", outcome: "rolled-back", code: "ERR_STATE_VERSION" });
    expect((await humanOutcomes()).at(-1)).toBe("failed ERR_STATE_VERSION");
    expect(await count()).toBe(3);
  }, 60_000);

  it("the admin API rolls back with freshState: the older version starts from its init, the state is dropped", async () => {
    const token = readFileSync(join(dataDir, "admin.token"), "utf8").trim();
    const post = (body: unknown) =>
      fetch(`${rt.adminUrl}/v1/services/counter/rollback`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify(body),
      });
    const bad = await post({ freshState: "yes" });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe("ERR_BAD_MESSAGE");

    const res = await post({ freshState: true });
    expect(res.status).toBe(200);
    const lines = (await res.text()).trim().split("\n").map((line) => JSON.parse(line) as SwapProgress);
    const last = lines.at(-1);
    expect(last?.event).toBe("report");
    if (last?.event !== "report") return;
    expect(last.report).toMatchObject({ outcome: "committed", via: "rollback", freshState: true, to: { semver: "1.0.0", stateVersion: 1 } });
    expect(await count()).toBe(0);
    expect((await history()).at(-1)).toMatchObject({ via: "rollback", outcome: "live", freshState: true });
  }, 60_000);

  it("`molt rollback --fresh-state` does the same from the command line", async () => {
    const up = await cli("swap", "counter", V2);
    expect(up.code, up.stderr).toBe(0);
    await count("POST");
    const out = await cli("rollback", "counter", "--fresh-state");
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toMatch(/^committed: counter 2\.0\.0 .* → 1\.0\.0/m);
    expect(out.stdout).toMatch(/fresh from init/);
    expect(await count()).toBe(0);
  }, 60_000);
});
