// Behaviour: `molt swap --shadow` as a user runs it against a real `molt
// run` under HTTP traffic: the refusal of a version that answers one method
// differently (exit 1, ERR_SWAP_SHADOW, each example with both replies),
// the same version accepted with --expect-change, the --json report, and
// `molt history`'s shadow column. Checked by exit status, codes and the
// report's fields, never by timing.

import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SwapReport, VersionRecord } from "../../protocol/admin.ts";
import { FIXTURES, ROOT, runCli, startRuntime, writeConfig, type RunningRuntime } from "../support/runtime.ts";

const SHADOW = join(FIXTURES, "shadow");
const GREET = join(SHADOW, "tally-greet.ts");
const NAMES = ["ann", "bob", "cy"];

describe("molt swap --shadow", () => {
  let configPath: string;
  let rt: RunningRuntime;
  const cli = (...args: string[]) => runCli([...args, "--config", configPath]);

  beforeAll(async () => {
    configPath = writeConfig("export default {};\n");
    const dir = dirname(configPath);
    const config = {
      services: {
        front: { entry: join(SHADOW, "tally-http.ts"), bindings: { tally: "tally" } },
        tally: { entry: join(SHADOW, "tally-v1.ts"), bindings: { audit: "audit" } },
        audit: { entry: join(SHADOW, "audit.ts") },
      },
      http: { port: 0, service: "front" },
      admin: { port: 0, allowedRoots: [ROOT, dir] },
      dataDir: join(dir, "data"),
    };
    writeFileSync(configPath, `export default ${JSON.stringify(config, null, 2)};\n`);
    rt = await startRuntime(configPath);
  });

  afterAll(async () => {
    await rt?.stop();
  });

  /** Runs a CLI command while HTTP callers add and greet in the background; resolves once both are done. */
  async function underTraffic(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; adds: number }> {
    let stopped = false;
    let adds = 0;
    const failures: string[] = [];
    const callers = [0, 1].map(async (caller) => {
      for (let i = caller; !stopped; i++) {
        const name = NAMES[i % NAMES.length] as string;
        const method = i % 3 === 2 ? "greet" : "add";
        const res = await fetch(`${rt.url}/${method}/${name}`);
        const body = await res.text();
        if (res.status !== 200) failures.push(`${method} ${name}: ${res.status} ${body}`);
        else if (method === "add") adds++;
      }
    });
    try {
      return { ...(await cli(...args)), adds };
    } finally {
      stopped = true;
      await Promise.all(callers);
      expect(failures).toEqual([]);
    }
  }

  it("refuses a version that answers greet differently: exit 1, ERR_SWAP_SHADOW, and each example with the payload and both replies", async () => {
    const out = await underTraffic("swap", "tally", GREET, "--shadow", "20");
    expect(out.code, out.stderr).toBe(1);
    expect(out.stderr).toContain("molt: ERR_SWAP_SHADOW:");
    expect(out.stderr).toContain("phase shadow");
    // Progress as the shadow goes, then the summary and the examples.
    expect(out.stdout).toMatch(/^ {2}shadow +\d+\/20 messages, \d+ divergences?$/m);
    expect(out.stdout).toMatch(/^rolled-back: tally stays at 1\.0\.0/m);
    expect(out.stdout).toMatch(/^shadow: \d+ messages, [1-9]\d* divergences?; states equal/m);
    const example = /^ {2}greet\("(\w+)"\): .*\n {4}old: "hello (\w+)"\n {4}new: "hi (\w+)"$/m.exec(out.stdout);
    expect(example, out.stdout).not.toBeNull();
    expect(new Set(example?.slice(1))).toEqual(new Set([example?.[1]]));
    // v1 serves on.
    expect(await (await fetch(`${rt.url}/greet/dee`)).json()).toBe("hello dee");
  });

  it("gives the report as JSON with --json: shadow with messages, divergences and examples, and verify", async () => {
    const out = await underTraffic("swap", "tally", GREET, "--shadow", "20", "--json");
    expect(out.code, out.stderr).toBe(1);
    const report = JSON.parse(out.stdout) as SwapReport;
    expect(report).toMatchObject({ outcome: "rolled-back", error: { code: "ERR_SWAP_SHADOW", phase: "shadow" }, verify: { ok: true } });
    expect(report.shadow?.messages).toBeGreaterThanOrEqual(20);
    expect(report.shadow?.divergences).toBeGreaterThan(0);
    expect(report.shadow?.examples.length).toBeGreaterThan(0);
    expect(report.shadow?.examples[0]).toMatchObject({ method: "greet", payload: expect.any(String), old: expect.stringMatching(/^"hello /), new: expect.stringMatching(/^"hi /) });
  });

  it("commits the same version with --expect-change greet, and molt history shows what each version's shadow found", async () => {
    const out = await underTraffic("swap", "tally", GREET, "--shadow", "20", "--expect-change", "greet");
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toMatch(/^committed: tally 1\.0\.0 .* → 2\.0\.0/m);
    expect(out.stdout).toMatch(/^shadow: \d+ messages, 0 divergences \(\+[1-9]\d* in methods expected to change\); states equal/m);
    expect(out.stdout).toMatch(/^ {2}expected greet\(/m);
    expect(await (await fetch(`${rt.url}/greet/dee`)).json()).toBe("hi dee");

    const json = await cli("history", "tally", "--json");
    expect(json.code, json.stderr).toBe(0);
    const records = (JSON.parse(json.stdout) as { records: VersionRecord[] }).records;
    // v1, the two refusals, the commit.
    expect(records.map((r) => r.outcome)).toEqual(["live", "rolled-back", "rolled-back", "live"]);
    expect(records[0]?.shadow).toBeUndefined();
    const marks = records.slice(1).map((r) => `${r.shadow?.messages}/${r.shadow?.divergences}`);
    expect(marks[2]).toMatch(/^\d+\/0$/);

    const table = await cli("history", "tally");
    expect(table.code, table.stderr).toBe(0);
    const [header, ...rows] = table.stdout.trimEnd().split("\n");
    const columns = (line: string | undefined): string[] => (line ?? "").trim().split(/\s{2,}/);
    expect(columns(header).at(-1)).toBe("shadow");
    expect(rows.map((row) => columns(row).at(-1))).toEqual(["-", ...marks]);
  });
});
