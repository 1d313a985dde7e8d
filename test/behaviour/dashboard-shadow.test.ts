// Behaviour: shadow traffic as the dashboard's user sees it. A real runtime
// runs tally (test/fixtures/shadow/tally-v1.ts) behind an HTTP front, under
// a light load of `add` and `greet`; the page, in headless Chromium, swaps
// tally with its form to tally-greet.ts, which answers `greet` differently,
// with a shadow of 20 messages. The page shows the shadow's count as it
// runs, then the refusal (ERR_SWAP_SHADOW) with the verify result and the
// shadow report: `greet`, the payload and both replies. The same swap with
// `greet` declared as an expected change commits. The refused swap's
// picture goes to test/artifacts/dashboard-shadow.png.

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openChromium, watchProblems, type Browser } from "../support/chromium.ts";
import { startLoad, type LoadGenerator } from "../support/load.ts";
import { FIXTURES, ROOT, startRuntime, writeConfig, type RunningRuntime } from "../support/runtime.ts";

const ARTIFACTS = join(ROOT, "test", "artifacts");
const SHADOW = join(FIXTURES, "shadow");
const GREET = join(SHADOW, "tally-greet.ts");
/** How long the page may take to show something: a loaded machine bundles it and ticks late. */
const WAIT = { timeout: 15_000 };
/** How long a swap with its shadow may take on a loaded machine. */
const SWAP_WAIT = { timeout: 60_000 };

describe("the dashboard's swap form with shadow traffic", () => {
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
        front: { entry: join(SHADOW, "tally-http.ts"), bindings: { tally: "tally" } },
        tally: { entry: join(SHADOW, "tally-v1.ts"), bindings: { audit: "audit" } },
        audit: { entry: join(SHADOW, "audit.ts") },
      },
      http: { port: 0, service: "front" },
      admin: { port: 0, allowedRoots: [ROOT, dir] },
      dataDir,
    };
    writeFileSync(configPath, `export default ${JSON.stringify(config, null, 2)};\n`);
    rt = await startRuntime(configPath);
    admin = rt.adminUrl as string;
    token = readFileSync(join(dataDir, "admin.token"), "utf8").trim();
    // Each client alternates greet and add, so the shadow sees both: the one that diverges and the one whose calls it must match.
    load = startLoad({
      url: rt.url,
      clients: 2,
      thinkMs: 5,
      maxDurationMs: 110_000,
      next: (client, seq) => ({ method: "GET", path: seq % 2 === 0 ? `/greet/u${client}-${seq}` : `/add/u${client}` }),
    });
    browser = await openChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await load?.stop();
    await rt?.stop();
  });

  const swapWithShadow = async (page: Page, expectChange: string): Promise<void> => {
    await page.selectOption("#swap-service", "tally");
    await page.fill("#swap-entry", GREET);
    await page.fill("#swap-shadow", "20");
    await page.fill("#swap-expect-change", expectChange);
    await page.click("#swap-button");
  };
  const field = (page: Page, name: string) => page.locator(`#swap-checks dl[data-check="shadow"] dd[data-field="${name}"]`);
  const column = (page: Page, name: string) => page.locator(`#swap-checks table.examples td[data-column="${name}"]`).allTextContents();

  it("shows a refused swap's shadow report: the method, the payload and both replies", async () => {
    const page = await browser.context.newPage();
    const problems = watchProblems(page);
    await page.goto(`${admin}/`);
    await expect.poll(() => page.locator("#services tr[data-service]").count(), WAIT).toBe(3);
    await expect.poll(async () => Number(await page.locator('#services tr[data-service="tally"] td[data-column="rps"]').textContent()), WAIT).toBeGreaterThan(0);
    await page.fill("#token", token);
    await page.click("#token-form button[type=submit]");

    await swapWithShadow(page, "");
    await page.locator('#swap-outcome[data-outcome="rolled-back"]').waitFor(SWAP_WAIT);
    expect(await page.locator("#swap-outcome").textContent()).toContain("ERR_SWAP_SHADOW");
    // The shadow's count streamed in, and the swap stopped there: no later phase ran.
    const phases = await page.locator("#swap-phases li").allTextContents();
    expect(phases.map((p) => p.split(/\s+/)[0])).toEqual(["prepare", "shadow"]);
    expect(await page.locator("#swap-phases li.failed").textContent()).toMatch(/^shadow\s+\d+\/20 messages, [1-9]\d* divergences?$/);

    // The verified transfer, then the shadow report.
    expect(await page.locator('#swap-checks [data-check="verify"]').getAttribute("data-result")).toBe("ok");
    expect(Number(await field(page, "messages").evaluate((dd) => dd.firstChild?.textContent))).toBeGreaterThanOrEqual(20);
    expect(await field(page, "complete").textContent()).toBe("yes");
    expect(Number(await field(page, "divergences").textContent())).toBeGreaterThan(0);
    expect(await field(page, "expected").textContent()).toMatch(/^0 /);
    expect(await field(page, "state").textContent()).toBe("equal");
    // tally's add sends a ping: the shadow's were counted, not sent.
    expect(await field(page, "not performed").textContent()).toMatch(/^[1-9]\d* sends?, 0 fetches, 0 stdout writes, 0 console lines$/);

    // Every example is greet (add's calls matched the old version's), with its payload and both replies.
    const methods = await column(page, "method");
    expect(methods.length).toBeGreaterThan(0);
    expect(new Set(methods)).toEqual(new Set(["greet"]));
    const [payloads, olds, news] = await Promise.all([column(page, "payload"), column(page, "old"), column(page, "new")]);
    payloads.forEach((payload, i) => {
      const name = /^"(u\d+-\d+)"$/.exec(payload)?.[1];
      expect(name, payload).toBeDefined();
      expect(olds[i]).toBe(`"hello ${name}"`);
      expect(news[i]).toBe(`"hi ${name}"`);
    });
    expect(await column(page, "why")).toContain("the replies differ");
    expect(new Set(await column(page, "expected"))).toEqual(new Set([""]));

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-shadow.png"), fullPage: true });

    // Nothing changed: v1 still serves, with its own answer.
    expect(await page.locator('#services tr[data-service="tally"] td[data-column="semver"]').textContent()).toBe("1.0.0");
    expect(await (await fetch(`${rt.url}/greet/after`)).json()).toBe("hello after");
    expect(problems).toEqual([]);
  }, 100_000);

  it("commits the same swap when greet is declared an expected change, and shows its divergences as expected", async () => {
    const page = await browser.context.newPage();
    const problems = watchProblems(page);
    await page.goto(`${admin}/`);
    await expect.poll(() => page.locator("#services tr[data-service]").count(), WAIT).toBe(3);
    // A new tab: the token lives in each tab's sessionStorage.
    await page.fill("#token", token);
    await page.click("#token-form button[type=submit]");

    await swapWithShadow(page, " greet ");
    await page.locator('#swap-outcome[data-outcome="committed"]').waitFor(SWAP_WAIT);
    const phases = await page.locator("#swap-phases li").allTextContents();
    expect(phases.map((p) => p.split(/\s+/)[0])).toEqual(["prepare", "shadow", "quiesce", "dump", "restore", "cutover", "commit"]);
    expect(phases[1]).toMatch(/^shadow\s+[\d.]+ m?s, \d+\/20 messages, 0 divergences$/);
    expect(await field(page, "divergences").textContent()).toBe("0");
    expect(Number((await field(page, "expected").textContent())?.split(" ")[0])).toBeGreaterThan(0);
    expect(new Set(await column(page, "method"))).toEqual(new Set(["greet"]));
    expect(new Set(await column(page, "expected"))).toEqual(new Set(["yes"]));

    expect(await (await fetch(`${rt.url}/greet/after`)).json()).toBe("hi after");
    expect(problems).toEqual([]);
    const result = await load.stop();
    expect(result.failuresByKind).toEqual({});
    expect(result.ok).toBeGreaterThan(0);
  }, 100_000);
});
