// Behaviour: the page `molt bench swap --report` writes, and the dashboard's
// blackout histogram, as a person sees them in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core). The report is a file with
// nothing to fetch: opened from disk, it shows a histogram holding every
// committed swap, the latency timeline with every swap marked, and the
// phases. The dashboard shows the same histogram for the swaps it has seen.
// A browser that cannot be launched fails the suite: it never skips. The
// report's picture goes to test/artifacts/bench-swap-report.png.

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BenchResult } from "../../cli/bench-result.ts";
import { FIXTURES, ROOT, runCli, startRuntime, writeConfig, type RunningRuntime } from "../support/runtime.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = join(ROOT, "test", "artifacts");
const V1 = join(FIXTURES, "swap", "counter-v1.ts");
const V2 = join(FIXTURES, "swap", "counter-v2.ts");
const SWAPS = 6;
const WAIT = { timeout: 15_000 };

describe("the bench report and the dashboard's blackout histogram in a browser", () => {
  let rt: RunningRuntime;
  let configPath: string;
  let browser: Browser;
  let out: string;
  let result: BenchResult;

  beforeAll(async () => {
    configPath = writeConfig("export default {};\n");
    const dir = dirname(configPath);
    const config = {
      services: {
        gateway: { entry: join(ROOT, "services", "gateway", "index.ts"), bindings: { counter: "counter" }, config: { routes: { "/counter": "counter" } } },
        counter: { entry: V1 },
      },
      http: { port: 0, service: "gateway" },
      admin: { port: 0, allowedRoots: [ROOT, dir] },
      dataDir: join(dir, "data"),
    };
    writeFileSync(configPath, `export default ${JSON.stringify(config, null, 2)};\n`);
    rt = await startRuntime(configPath);
    out = mkdtempSync(join(tmpdir(), "molt-bench-report-"));
    const run = await runCli([
      "bench", "swap", "counter", V1, V2, "--config", configPath,
      "--swaps", String(SWAPS), "--load", `${rt.url}/counter`, "--method", "POST", "--connections", "2", "--duration-between", "100",
      "--json", "--report", join(out, "report.html"),
    ]);
    expect(run.code).toBe(0);
    result = JSON.parse(run.stdout) as BenchResult;
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--no-first-run"] });
  });

  afterAll(async () => {
    await browser?.close();
    await rt?.stop();
    if (out !== undefined) rmSync(out, { recursive: true, force: true });
  });

  it("writes a self-contained page: no script, nothing fetched", () => {
    const html = readFileSync(join(out, "report.html"), "utf8");
    expect(html).not.toMatch(/<script|<link|src=|url\(/i);
  });

  it("shows the blackout histogram of every committed swap, the latency timeline with each swap marked, and the phases", async () => {
    const page = await browser.newPage({ viewport: { width: 900, height: 1000 } });
    const requests: string[] = [];
    page.on("request", (req) => requests.push(req.url()));
    await page.goto(`file://${join(out, "report.html")}`);

    const bars = page.locator("#blackout-histogram svg rect.bar");
    expect(await bars.count()).toBeGreaterThan(0);
    const counts = await bars.evaluateAll((nodes) => nodes.map((n) => Number(n.getAttribute("data-count"))));
    expect(counts.reduce((a, b) => a + b, 0)).toBe(SWAPS);
    expect(await bars.first().isVisible()).toBe(true);
    expect(await page.locator("#latency-timeline svg rect.swap").count()).toBe(SWAPS);
    expect(await page.locator("#latency-timeline svg path.latency").count()).toBe(2);
    expect(await page.locator("#phase-breakdown tbody tr").count()).toBe(Object.keys(result.phases_ms).length);
    expect(await page.locator("#summary").textContent()).toContain(`${SWAPS}: ${SWAPS} committed, 0 rolled back`);
    expect(requests).toEqual([`file://${join(out, "report.html")}`]);

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "bench-swap-report.png"), fullPage: true });
    await page.close();
  });

  it("shows the dashboard's histogram of the swaps it has seen: those before it opened, then each one as it ends", async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const problems: string[] = [];
    page.on("pageerror", (err) => problems.push(err.message));
    await page.goto(`${rt.adminUrl}/`);
    const chart = page.locator("#blackouts .histogram-chart");
    await expect.poll(() => chart.getAttribute("data-swaps"), WAIT).toBe(String(SWAPS));
    expect(await chart.locator("svg rect.bar").count()).toBeGreaterThan(0);

    const swap = await runCli(["swap", "counter", V2, "--config", configPath]);
    expect(swap.code).toBe(0);
    await expect.poll(() => chart.getAttribute("data-swaps"), WAIT).toBe(String(SWAPS + 1));
    const counts = await chart.locator("svg rect.bar").evaluateAll((nodes) => nodes.map((n) => Number(n.getAttribute("data-count"))));
    expect(counts.reduce((a, b) => a + b, 0)).toBe(SWAPS + 1);
    expect(problems).toEqual([]);
    await page.close();
  });
});
