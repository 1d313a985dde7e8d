// The commands that talk to a running runtime: swap, rollback, status,
// history, snapshot, restart. Human output by default, --json for scripts.

import { resolve } from "node:path";
import { ErrorCode, MoltError } from "../core/errors.ts";
import type { RollbackBody, ShadowResult, SwapBody, SwapProgress, SwapReport, VerifyResult, VersionRecord } from "../protocol/admin.ts";
import { shortId } from "../protocol/admin.ts";
import { connect } from "./client.ts";

export interface CommonOptions {
  config: string | undefined;
  json: boolean;
}

const out = (line = ""): void => void process.stdout.write(`${line}\n`);

/** `molt swap <service> <entry> [--fresh-state] [--no-verify] [--shadow N …]`: exits 0 when committed or unchanged, 1 otherwise. */
export async function swapCommand(
  service: string,
  entry: string,
  options: CommonOptions & { freshState?: boolean; verify?: boolean; shadow?: number; expectChange?: string[]; maxDivergence?: number },
): Promise<number> {
  const client = await connect(options.config);
  const absolute = resolve(process.cwd(), entry);
  const freshState = options.freshState === true;
  if (!options.json) out(`swap ${service} → ${entry}${freshState ? " (fresh state: the current state is dropped)" : ""}`);
  const body: SwapBody = {
    entry: absolute,
    ...(freshState ? { freshState } : {}),
    ...(options.verify === false ? { verify: false } : {}),
    ...(options.shadow === undefined ? {} : { shadow: options.shadow }),
    ...(options.expectChange === undefined ? {} : { expectChange: options.expectChange }),
    ...(options.maxDivergence === undefined ? {} : { maxDivergence: options.maxDivergence }),
  };
  return reportSwap(await untilReport((onLine) => client.swap(service, body, onLine), options), options);
}

/** `molt rollback <service> [--to <version>] [--fresh-state]`: exits 0 when committed, 1 otherwise. */
export async function rollbackCommand(service: string, to: string | undefined, options: CommonOptions & { freshState?: boolean }): Promise<number> {
  const client = await connect(options.config);
  const freshState = options.freshState === true;
  if (!options.json) {
    out(`rollback ${service}${to === undefined ? " to the previous version" : ` to ${to}`}${freshState ? " (fresh state: the current state is dropped)" : ""}`);
  }
  const body: RollbackBody = { ...(to === undefined ? {} : { to }), ...(freshState ? { freshState } : {}) };
  return reportSwap(await untilReport((onLine) => client.rollback(service, body, onLine), options), options);
}

/** Shows a swap's or a rollback's phases as they stream in, and returns its report. */
async function untilReport(run: (onLine: (line: SwapProgress) => void) => Promise<void>, options: CommonOptions): Promise<SwapReport> {
  let report: SwapReport | undefined;
  await run((line) => {
    if (line.event === "phase" && !options.json) out(`  ${line.phase.padEnd(8)} ${fmtMs(line.ms).padStart(10)}`);
    if (line.event === "shadow" && !options.json) out(`  shadow   ${line.messages}/${line.of} messages, ${line.divergences} divergence${line.divergences === 1 ? "" : "s"}`);
    if (line.event === "report") report = line.report;
    if (line.event === "error") throw new MoltError(line.error.code, line.error.message);
  });
  if (report === undefined) throw new MoltError(ErrorCode.ADMIN, "the runtime ended the swap without a report");
  return report;
}

function reportSwap(report: SwapReport, options: CommonOptions): number {
  const ok = report.outcome === "committed" || report.outcome === "unchanged";
  if (options.json) {
    out(JSON.stringify(report));
    return ok ? 0 : 1;
  }
  const from = `${report.from.semver} (${shortId(report.from.version)})`;
  const to = report.to === null ? "?" : `${report.to.semver} (${shortId(report.to.version)})`;
  switch (report.outcome) {
    case "unchanged":
      out(`unchanged: ${report.service} already runs ${from}`);
      break;
    case "committed":
      out(`committed: ${report.service} ${from} → ${to}, stateVersion ${report.from.stateVersion} → ${report.to?.stateVersion}, blackout ${fmtMs(report.blackoutMs)}`);
      if (report.freshState === true) out("state: fresh from init (the previous state was dropped)");
      if (report.verify !== undefined) out(`verify: ${verifyWords(report.verify)}`);
      if (report.shadow !== undefined) for (const line of shadowWords(report.shadow)) out(line);
      out(`version ${report.to?.version}`);
      break;
    default: {
      // A rollback that fails leaves the service where it was: "rolled-back" would say the opposite.
      const word = report.outcome === "rolled-back" && report.via === "rollback" ? "failed" : report.outcome;
      out(`${word}: ${report.service} stays at ${report.outcome === "unhealthy" ? to : from}; blackout ${fmtMs(report.blackoutMs)}`);
      if (report.verify !== undefined) out(`verify: ${verifyWords(report.verify)}`);
      if (report.shadow !== undefined) for (const line of shadowWords(report.shadow)) out(line);
      const error = report.error;
      if (error !== undefined) process.stderr.write(`molt: ${error.code}: ${error.message} (${whereFailed(error, report.blackoutMs)})\n`);
      const [first, ...more] = whatToDo(report);
      if (first !== undefined) process.stderr.write(`molt: ${first}\n${more.map((line) => `${line}\n`).join("")}`);
    }
  }
  return ok ? 0 : 1;
}

/** What the verified transfer found, as `molt swap` prints it. */
function verifyWords(verify: VerifyResult): string {
  if (verify.ok) return "ok (the state went to the new version and back unchanged)";
  if (verify.path !== undefined) return `the state came back different at ${verify.path}`;
  if (verify.skipped !== undefined) return `skipped: ${verify.skipped}`;
  return "the way back failed";
}

/** What shadow traffic found, as `molt swap` prints it: a summary, then each example. */
function shadowWords(shadow: ShadowResult): string[] {
  const expected = shadow.expected > 0 ? ` (+${shadow.expected} in methods expected to change)` : "";
  const incomplete = shadow.complete ? "" : ` (of ${shadow.requested} asked for: the shadow's time ran out)`;
  const state = shadow.state === undefined ? "" : shadow.state.ok ? "; states equal" : shadow.state.path !== undefined ? `; states differ at ${shadow.state.path}` : `; states not compared: ${shadow.state.skipped}`;
  const s = shadow.suppressed;
  const held = s.sends + s.fetches + s.stdout + s.console;
  const lines = [
    `shadow: ${shadow.messages} messages${incomplete}, ${shadow.divergences} divergence${shadow.divergences === 1 ? "" : "s"}${expected}${state}` +
      (held === 0 ? "" : `; not performed: ${s.sends} sends, ${s.fetches} fetches, ${s.stdout} stdout writes, ${s.console} console lines`),
  ];
  for (const e of shadow.examples) {
    lines.push(`  ${e.expected === true ? "expected " : ""}${e.method}(${e.payload}): ${e.why}`);
    if (e.method !== "(state)") lines.push(`    old: ${e.old}`, `    new: ${e.new}`);
  }
  return lines;
}

/** Shadow traffic in a few characters, for `molt history`'s table: messages/divergences. */
function shadowMark(shadow: ShadowResult | undefined): string {
  return shadow === undefined ? "-" : `${shadow.messages}/${shadow.divergences}`;
}

/** The verified transfer in one word, for `molt history`'s table (--json has the path or the reason). */
function verifyMark(verify: VerifyResult | undefined): string {
  if (verify === undefined) return "-";
  if (verify.ok) return "ok";
  return verify.skipped !== undefined ? "skipped" : "differs";
}

/** Codes a rehearsal can fail with: a dump of the current state, restored into the new version before anything pauses. */
const REHEARSED: ReadonlySet<string> = new Set([ErrorCode.SWAP_DUMP, ErrorCode.SWAP_RESTORE, ErrorCode.STATE_NOT_PLAIN, ErrorCode.SWAP_ROUNDTRIP]);

/** The phase a failure happened in, said so that it matches the README's steps: prepare includes the rehearsal. */
function whereFailed(error: NonNullable<SwapReport["error"]>, blackoutMs: number | null): string {
  if (error.phase === "shadow") return "phase shadow, before the cutover: the running version served throughout, held only between two messages to take its state, at the start and at the end";
  if (error.phase !== "prepare") return `phase ${error.phase}${blackoutMs === null ? "" : `, after a blackout of ${fmtMs(blackoutMs)}`}`;
  if (error.code === ErrorCode.SWAP_ROUNDTRIP) return "phase prepare, in the verified transfer (to the new version and back, on a copy of the current state): nothing was paused; --no-verify skips it";
  if (REHEARSED.has(error.code)) return "phase prepare, in the rehearsal of the restore on a copy of the current state: nothing was paused";
  return "phase prepare: nothing was paused";
}

/** What an operator can do next about a failure that has a known way out: the first line, then indented commands. */
function whatToDo(report: SwapReport): string[] {
  if (report.error?.code !== ErrorCode.STATE_VERSION || report.freshState === true) return [];
  const { service } = report;
  const sv = report.from.stateVersion;
  const target = report.to === null ? "that version" : `${report.to.semver} (${shortId(report.to.version)})`;
  if (report.via === "rollback") {
    return [
      `${target} cannot take stateVersion ${sv}: it has no down-migration. To go back anyway, either`,
      `  molt rollback ${service} --fresh-state    the older version starts from its init; the current state is dropped`,
      `  molt swap ${service} <entry>              an entry for the older code with restoresFrom: [${sv}] and a restore that migrates down`,
    ];
  }
  return [
    `${target} cannot take stateVersion ${sv}. Either declare restoresFrom: [${sv}] with a restore that migrates it, or`,
    `  molt swap ${service} <entry> --fresh-state    the new version starts from its init; the current state is dropped`,
  ];
}

/**
 * An inventory record's outcome in the words `molt swap` and `molt rollback`
 * print: the inventory says a version that went live is "live" and a swap
 * said it "committed"; a rollback that did not happen "failed". The JSON
 * keeps the inventory's words.
 */
function outcomeWord(record: Pick<VersionRecord, "outcome" | "via">): string {
  if (record.outcome === "live") return "committed";
  return record.outcome === "rolled-back" && record.via === "rollback" ? "failed" : record.outcome;
}

/** `molt status [--json]` */
export async function statusCommand(options: CommonOptions): Promise<number> {
  const client = await connect(options.config);
  const { kernel, services } = await client.status();
  if (options.json) {
    out(JSON.stringify({ kernel, services }));
    return 0;
  }
  out(`kernel ${kernel.semver} (${shortId(kernel.version)}), pid ${kernel.pid}, since ${kernel.startedAt}; ${kernel.upgrades} upgrades, ${kernel.restarts} restarts since molt run`);
  table(
    ["service", "state", "in", "version", "semver", "stateVersion", "fixes", "uptime", "queue", "last swap"],
    services.map((s) => [
      s.name,
      s.state,
      s.isolation === "process" ? "cell" : "isolate",
      s.version === null ? "-" : shortId(s.version),
      s.semver ?? "-",
      s.stateVersion === null ? "-" : String(s.stateVersion),
      fixesMark(s.fixes),
      fmtUptime(s.uptimeMs),
      `${s.queueDepth}+${s.inFlight}`,
      s.lastSwap === null ? "-" : `${outcomeWord(s.lastSwap)}${s.lastSwap.blackoutMs === undefined ? "" : ` (${fmtMs(s.lastSwap.blackoutMs)})`} ${s.lastSwap.requestedAt}`,
    ]),
  );
  return 0;
}

/**
 * A version's advisory ids in a table cell: the first two and how many more
 * (`--json` has them all), so a version that fixes many does not widen the
 * table past a screen.
 */
function fixesMark(fixes: readonly string[] | undefined): string {
  if (fixes === undefined || fixes.length === 0) return "-";
  const shown = fixes.slice(0, 2).join(",");
  return fixes.length > 2 ? `${shown} +${fixes.length - 2}` : shown;
}

/** `molt history <service> [--json]` */
export async function historyCommand(service: string, options: CommonOptions): Promise<number> {
  const client = await connect(options.config);
  const { records } = await client.history(service);
  if (options.json) {
    out(JSON.stringify({ service, records }));
    return 0;
  }
  table(
    ["#", "version", "semver", "sv", "fixes", "parent", "via", "started", "replaced", "outcome", "blackout", "verify", "shadow"],
    records.map((r) => [
      String(r.seq),
      shortId(r.version),
      r.semver,
      String(r.stateVersion),
      fixesMark(r.fixes),
      r.parent === null ? "-" : shortId(r.parent),
      r.via,
      r.startedAt ?? "-",
      r.replacedAt ?? (r.startedAt !== null && r.outcome !== "probation-failed" ? "(running)" : "-"),
      r.code === undefined ? outcomeWord(r) : `${outcomeWord(r)} ${r.code}`,
      r.blackoutMs === undefined ? "-" : fmtMs(r.blackoutMs),
      verifyMark(r.verify),
      shadowMark(r.shadow),
    ]),
  );
  return 0;
}

/** `molt snapshot [service]`: every service is tried; exits 1 if any failed, after printing each failure. */
export async function snapshotCommand(service: string | undefined, options: CommonOptions): Promise<number> {
  const client = await connect(options.config);
  const { result } = await client.snapshot(service === undefined ? {} : { service });
  const failed = result.filter((s) => "error" in s);
  if (options.json) out(JSON.stringify({ snapshots: result }));
  for (const s of result) {
    if ("error" in s) process.stderr.write(`molt: ${s.error.code}: snapshot of ${s.service} failed: ${s.error.message}\n`);
    else if (!options.json) out(`snapshot ${s.service} ${shortId(s.version)} stateVersion ${s.stateVersion}: ${s.bytes} bytes`);
  }
  return failed.length === 0 ? 0 : 1;
}

/** `molt restart <service>`: exits 0 when the service runs afterwards (restarted or already running). */
export async function restartCommand(service: string, options: CommonOptions): Promise<number> {
  const client = await connect(options.config);
  const { result } = await client.restart(service);
  if (options.json) out(JSON.stringify(result));
  else if (result.restarted) out(`restarted: ${result.service} runs ${shortId(result.version)} again`);
  else out(`running: ${result.service} already runs ${shortId(result.version)}; nothing to do`);
  return 0;
}

export function table(head: string[], rows: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ").trimEnd();
  out(line(head));
  for (const row of rows) out(line(row));
}

export function fmtMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "-";
  return ms < 10 ? `${ms.toFixed(3)} ms` : `${ms.toFixed(1)} ms`;
}

function fmtUptime(ms: number): string {
  if (ms === 0) return "-";
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}
