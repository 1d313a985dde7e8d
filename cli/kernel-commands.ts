// The commands about molt itself rather than its services: `molt history
// --kernel` (every runtime that ran on this dataDir) and `molt upgrade`
// (replace the running runtime with one started from the molt code on disk,
// carrying every service's state). Both talk to the runtime's admin API.

import { ErrorCode, MoltError } from "../core/errors.ts";
import type { KernelUpgradeProgress, KernelUpgradeReport } from "../protocol/admin.ts";
import { shortId } from "../protocol/admin.ts";
import { connect } from "./client.ts";
import { fmtMs, table, type CommonOptions } from "./commands.ts";

const out = (line = ""): void => void process.stdout.write(`${line}\n`);

/** `molt history --kernel [--json]` */
export async function kernelHistoryCommand(options: CommonOptions): Promise<number> {
  const client = await connect(options.config);
  const body = await client.kernelHistory();
  if (options.json) {
    out(JSON.stringify(body));
    return 0;
  }
  table(
    ["#", "version", "semver", "parent", "via", "pid", "started", "ended", "outcome", "blackout"],
    body.kernel.map((r) => [
      String(r.seq),
      shortId(r.version),
      r.semver,
      r.parent === null ? "-" : shortId(r.parent),
      r.via,
      String(r.pid),
      r.startedAt,
      r.replacedAt ?? (r.outcome === "live" ? "(running)" : "-"),
      r.failedUpgrades.length === 0 ? r.outcome : `${r.outcome}, ${r.failedUpgrades.length} upgrade${r.failedUpgrades.length === 1 ? "" : "s"} failed`,
      fmtMs(r.blackoutMs),
    ]),
  );
  for (const r of body.kernel) {
    for (const f of r.failedUpgrades) out(`#${r.seq}: upgrade to ${f.tried.semver} (${shortId(f.tried.version)}) failed at ${f.at}: ${f.code}: ${f.message}`);
  }
  if (body.corrupt > 0) process.stderr.write(`molt: the kernel chain has ${body.corrupt} damaged stretch${body.corrupt === 1 ? "" : "es"}, skipped\n`);
  return 0;
}

/** `molt upgrade [--json]`: exits 0 once the new runtime serves, 1 (with the phase's code) when the old one kept serving. */
export async function upgradeCommand(options: CommonOptions): Promise<number> {
  const client = await connect(options.config);
  if (!options.json) out("upgrade molt → the code on disk now");
  let report: KernelUpgradeReport | undefined;
  await client.upgrade((line: KernelUpgradeProgress) => {
    if (line.event === "phase" && !options.json) out(`  ${line.phase.padEnd(8)} ${fmtMs(line.ms).padStart(10)}`);
    if (line.event === "report") report = line.report;
    if (line.event === "error") throw new MoltError(line.error.code, line.error.message);
  });
  if (report === undefined) throw new MoltError(ErrorCode.ADMIN, "the runtime ended the upgrade without a report");
  out(options.json ? JSON.stringify(report) : upgradedLine(report));
  return 0;
}

/** The last line of `molt upgrade`. */
export function upgradedLine(report: KernelUpgradeReport): string {
  const end = (e: KernelUpgradeReport["from"]): string => `${e.semver} (${shortId(e.version)}, pid ${e.pid})`;
  return `upgraded ${end(report.from)} → ${end(report.to)} in ${fmtMs(report.blackoutMs)} dark, ${report.services} service${report.services === 1 ? "" : "s"} carried`;
}
