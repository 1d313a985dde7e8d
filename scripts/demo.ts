// `npm run demo`: molt swapping every service of a live daemon under load.
//
// It runs the example daemon (molt.config.ts: gateway, counter, kv, log) as
// `molt run` would, on free ports and a temporary dataDir so that it does not
// clash with an `npm start`; puts HTTP load on the counter and the kv store
// through the gateway; prints the dashboard's address and the admin token;
// then swaps each service in turn to its next version while the load runs,
// with one summary line a second. It ends with a table of the swaps and the
// totals, checks that the counter counted every increment it answered, and
// exits 0 only if nothing failed. About 35 seconds.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import example from "../molt.config.ts";
import { startLoad, summarize, type LoadRequest, type LoadResult } from "../test/support/load.ts";
import { ROOT, startRuntime } from "../test/support/runtime.ts";

/** The services in the order they are swapped, and the version each goes to. */
const SWAPS = [
  { service: "gateway", entry: "services/gateway/v2.ts" },
  { service: "kv", entry: "services/kv/v2.ts" },
  { service: "log", entry: "services/log/v2.ts" },
  { service: "counter", entry: "services/counter/v2.ts" },
];
const CLIENTS = 8;
const WARMUP_MS = 5000;
const BETWEEN_SWAPS_MS = 6000;
const TAIL_MS = 3000;

interface VersionInfo {
  version: string;
  semver: string;
}

interface SwapReport {
  service: string;
  outcome: string;
  from: VersionInfo;
  to: VersionInfo | null;
  blackoutMs: number | null;
  error?: { code: string; message: string; phase: string };
}

const short = (id: string): string => id.slice(0, 12);
const ms = (value: number | null): string => (value === null || Number.isNaN(value) ? "–" : `${value.toFixed(value < 10 ? 2 : 1)} ms`);
const sleep = (msValue: number): Promise<void> => new Promise((r) => setTimeout(r, msValue));

/** The example config with absolute entries, free ports, and its own dataDir and allowed swap root. */
function writeDemoConfig(dir: string): string {
  const services = Object.fromEntries(
    Object.entries(example.services).map(([name, service]) => [name, { ...service, entry: resolve(ROOT, service.entry) }]),
  );
  const config = {
    ...example,
    services,
    http: { ...example.http, port: 0 },
    admin: { ...example.admin, port: 0, allowedRoots: [ROOT] },
    dataDir: join(dir, "data"),
  };
  const path = join(dir, "molt.config.ts");
  writeFileSync(path, `export default ${JSON.stringify(config, null, 2)};\n`);
  return path;
}

/** Half the clients count on the counter, half write and read their own key in kv (and list now and then). */
function nextRequest(client: number, seq: number): LoadRequest {
  if (client % 2 === 0) return seq % 4 === 3 ? { method: "GET", path: "/counter" } : { method: "POST", path: "/counter/incr" };
  const key = `/kv/demo-${client}`;
  if (seq % 10 === 9) return { method: "GET", path: "/kv/?prefix=demo-" };
  return seq % 2 === 0 ? { method: "PUT", path: key, body: `value ${seq}` } : { method: "GET", path: key };
}

/** POST /v1/services/:name/swap on the admin API; reads its NDJSON progress to the report. */
async function swap(admin: string, token: string, service: string, entry: string): Promise<SwapReport> {
  const res = await fetch(`${admin}/v1/services/${service}/swap`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ entry }),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`swap of ${service} refused: HTTP ${res.status} ${text}`);
  for (const line of text.split("\n").filter(Boolean)) {
    const progress = JSON.parse(line) as { event: string; report?: SwapReport; error?: { code: string; message: string } };
    if (progress.event === "report" && progress.report !== undefined) return progress.report;
    if (progress.event === "error") throw new Error(`swap of ${service} failed: ${progress.error?.code} ${progress.error?.message}`);
  }
  throw new Error(`swap of ${service}: no report in ${text}`);
}

function table(head: string[], rows: string[][], right: Set<number>): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]): string =>
    r.map((c, i) => (right.has(i) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join("   ").trimEnd();
  console.log(line(head));
  console.log(widths.map((w) => "─".repeat(w)).join("   "));
  for (const r of rows) console.log(line(r));
}

async function main(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "molt-demo-"));
  const rt = await startRuntime(writeDemoConfig(dir)).catch((err: unknown) => {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  });
  const admin = rt.adminUrl as string;
  const token = readFileSync(join(dir, "data", "admin.token"), "utf8").trim();
  let increments = 0;
  const load = startLoad({
    url: rt.url,
    clients: CLIENTS,
    next: nextRequest,
    onOk: (r) => {
      if (r.request.method === "POST" && r.request.path === "/counter/incr") increments++;
    },
    maxDurationMs: 120_000,
    maxRequests: 5_000_000,
  });
  let ticker: NodeJS.Timeout | undefined;
  const stopAll = async (): Promise<void> => {
    clearInterval(ticker);
    if (load.running) await load.stop();
    await rt.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("SIGINT", () => {
    console.log("\ninterrupted: stopping");
    void stopAll().then(() => process.exit(130));
  });

  console.log(`molt demo: the example daemon (${Object.keys(example.services).join(", ")}), ${CLIENTS} HTTP clients on counter and kv`);
  console.log(`  http       ${rt.url}`);
  console.log(`  dashboard  ${admin}/`);
  console.log(`  token      ${token}   (paste it into the dashboard to swap from there)`);
  console.log(`  swaps      ${SWAPS.map((s) => s.service).join(" → ")}, one every ${BETWEEN_SWAPS_MS / 1000} s`);
  console.log("  each second: requests answered, their p99 as the clients saw it, failed requests, the last swap\n");

  // One line a second: the load's own view (client side, so a blackout shows in its p99).
  const started = performance.now();
  let seen = { answered: 0, failed: 0 };
  let lastSwap = "none yet";
  ticker = setInterval(() => {
    const now = load.result();
    const latencies = now.latencies.slice(seen.answered);
    const failed = now.failed.length - seen.failed;
    seen = { answered: now.latencies.length, failed: now.failed.length };
    const s = summarize(latencies);
    const t = `${Math.round((performance.now() - started) / 1000)}s`.padStart(4);
    console.log(`${t}  ${String(latencies.length).padStart(6)} req/s   p99 ${ms(s.p99).padStart(8)}   errors ${failed}   last swap: ${lastSwap}`);
  }, 1000);

  const reports: SwapReport[] = [];
  let result: LoadResult;
  let counted: number;
  try {
    await sleep(WARMUP_MS);
    for (const [i, { service, entry }] of SWAPS.entries()) {
      const report = await swap(admin, token, service, join(ROOT, entry));
      reports.push(report);
      lastSwap = `${service} ${report.from.semver} → ${report.to?.semver ?? "–"} ${report.outcome}, blackout ${ms(report.blackoutMs)}`;
      await sleep(i === SWAPS.length - 1 ? TAIL_MS : BETWEEN_SWAPS_MS);
    }
    clearInterval(ticker);
    result = await load.stop();
    counted = Number((await (await fetch(`${rt.url}/counter`)).text()).trim());
  } finally {
    await stopAll();
  }

  console.log("");
  table(
    ["service", "from", "to", "blackout", "outcome"],
    reports.map((r) => [
      r.service,
      `${r.from.semver} ${short(r.from.version)}`,
      r.to === null ? "–" : `${r.to.semver} ${short(r.to.version)}`,
      ms(r.blackoutMs),
      r.error === undefined ? r.outcome : `${r.outcome} (${r.error.code})`,
    ]),
    new Set([3]),
  );
  const all = summarize(result.latencies);
  const errors = result.failed.length + result.lost;
  console.log("");
  console.log(`requests   ${result.sent} sent, ${result.ok} ok, ${errors} errors in ${(result.durationMs / 1000).toFixed(1)} s (p99 ${ms(all.p99)}, max ${ms(all.max)})`);
  console.log(`counter    ${increments} increments answered; the counter reads ${counted}`);

  const problems: string[] = [];
  if (errors > 0) problems.push(`${errors} requests failed: ${JSON.stringify(result.failuresByKind)}`);
  const failedSwaps = reports.filter((r) => r.outcome !== "committed");
  if (failedSwaps.length > 0) problems.push(`swaps not committed: ${failedSwaps.map((r) => r.service).join(", ")}`);
  if (counted !== increments) problems.push(`the counter reads ${counted}, but ${increments} increments were answered`);
  for (const p of problems) console.log(`FAILED     ${p}`);
  if (problems.length === 0) console.log("ok         every service swapped under load, no request failed, no increment lost");
  return problems.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
