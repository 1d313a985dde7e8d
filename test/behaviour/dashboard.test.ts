// Behaviour: the dashboard as its user sees it — a real runtime under light
// HTTP load, the page served by its admin port, opened in headless Chromium
// (test/support/chromium.ts). The page lists the services from the live
// ticks, takes the pasted admin token, swaps the counter with its form,
// shows the phases and the outcome, and marks the swap on the chart. The
// page's picture goes to test/artifacts/dashboard.png. Shadow traffic from
// the form: dashboard-shadow.test.ts.

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openChromium, watchProblems, type Browser } from "../support/chromium.ts";
import { startLoad, type LoadGenerator } from "../support/load.ts";
import { FIXTURES, ROOT, startRuntime, writeConfig, type RunningRuntime } from "../support/runtime.ts";

const ARTIFACTS = join(ROOT, "test", "artifacts");
const V1 = join(FIXTURES, "swap", "counter-v1.ts");
const V2 = join(FIXTURES, "swap", "counter-v2.ts");
/** How long the page may take to show something: a loaded machine bundles it and ticks late. */
const WAIT = { timeout: 15_000 };

describe("the dashboard in a browser", () => {
  let rt: RunningRuntime;
  let admin: string;
  let token: string;
  let load: LoadGenerator;
  let browser: Browser;

  beforeAll(async () => {
    const configPath = writeConfig("export default {};\n");
    const dir = dirname(configPath);
    const dataDir = join(dir, "data");
    const config = {
      services: {
        gateway: {
          entry: join(ROOT, "services", "gateway", "index.ts"),
          bindings: { counter: "counter" },
          config: { routes: { "/counter": "counter" } },
        },
        counter: { entry: V1 },
      },
      http: { port: 0, service: "gateway" },
      admin: { port: 0, allowedRoots: [ROOT, dir] },
      dataDir,
    };
    writeFileSync(configPath, `export default ${JSON.stringify(config, null, 2)};\n`);
    rt = await startRuntime(configPath);
    admin = rt.adminUrl as string;
    token = readFileSync(join(dataDir, "admin.token"), "utf8").trim();
    load = startLoad({ url: `${rt.url}/counter`, clients: 2, thinkMs: 5, maxDurationMs: 115_000 });
    browser = await openChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await load?.stop();
    await rt?.stop();
  });

  /** The text of one cell of the services table. */
  const cell = (page: Page, service: string, column: string) =>
    page.locator(`#services tr[data-service="${service}"] td[data-column="${column}"]`);

  it("serves a page and a script that hold no token", async () => {
    for (const path of ["/", "/dashboard.js"]) {
      const res = await fetch(`${admin}${path}`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-security-policy")).toContain("default-src 'none'");
      expect(await res.text()).not.toContain(token);
    }
    for (const path of ["/uplot.iife.min.js", "/uplot.min.css", "/style.css"]) expect((await fetch(`${admin}${path}`)).status).toBe(200);
  });

  it("lists the services live, swaps the counter from its form, and marks the swap on the chart", async () => {
    const page = await browser.context.newPage();
    const problems = watchProblems(page);
    await page.goto(`${admin}/`);

    // Every service, with its version, from the ticks; the load shows as a rate.
    await expect.poll(() => page.locator("#services tr[data-service]").count(), WAIT).toBe(2);
    await expect.poll(() => cell(page, "counter", "semver").textContent(), WAIT).toBe("1.0.0");
    expect(await cell(page, "counter", "version").textContent()).toMatch(/^[0-9a-f]{12}$/);
    await expect.poll(async () => Number(await cell(page, "counter", "rps").textContent()), WAIT).toBeGreaterThan(0);
    await expect.poll(() => page.locator('.chain[data-service="counter"]').getAttribute("data-versions"), WAIT).toBe("1");

    // Without the token the form says so and sends nothing.
    await page.selectOption("#swap-service", "counter");
    await page.fill("#swap-entry", V2);
    await page.click("#swap-button");
    await expect.poll(() => page.locator("#swap-outcome").getAttribute("data-outcome"), WAIT).toBe("error");
    expect(await page.locator("#swap-outcome").textContent()).toContain("token");

    await page.fill("#token", token);
    await page.click("#token-form button[type=submit]");
    expect(await page.locator("#token-state").textContent()).toContain("set");
    expect(await page.inputValue("#token")).toBe("");

    await page.click("#swap-button");
    await page.locator('#swap-outcome[data-outcome="committed"]').waitFor({ timeout: 30_000 });
    const phases = await page.locator("#swap-phases li").allTextContents();
    expect(phases.map((p) => p.split(/\s+/)[0])).toEqual(["prepare", "quiesce", "dump", "restore", "cutover", "commit"]);
    expect(await page.locator("#swap-outcome").textContent()).toMatch(/counter 1\.0\.0 \([0-9a-f]{12}\) → 2\.0\.0 \([0-9a-f]{12}\), blackout/);

    // The swap event reaches the chart, the table and the inventory.
    await expect.poll(async () => Number(await page.locator("#traffic").getAttribute("data-swap-markers")), WAIT).toBeGreaterThanOrEqual(1);
    await expect.poll(() => cell(page, "counter", "semver").textContent(), WAIT).toBe("2.0.0");
    await expect.poll(() => page.locator('.chain[data-service="counter"]').getAttribute("data-versions"), WAIT).toBe("2");
    expect(await page.locator("#swap-log li").first().textContent()).toContain("committed");

    // A few more seconds of traffic after the marker, then the picture.
    await page.waitForTimeout(3000);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "dashboard.png"), fullPage: true });

    expect(problems).toEqual([]);
    const result = await load.stop();
    expect(result.failuresByKind).toEqual({});
    expect(result.ok).toBeGreaterThan(0);
  }, 120_000);
});
