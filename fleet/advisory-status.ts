// `molt fleet status --advisory <id>`: the fleet's runtimes in three groups
// for one advisory — running a version that fixes it, running one that does
// not, and not heard from (no recent heartbeat: gone or stopped, so what
// they would run is not known). Pure functions over a listing of the fleet.

import { shortId } from "../core/bundle.ts";
import { fixesAdvisory } from "./advisory.ts";
import type { SeenNode } from "./nodes.ts";
import type { AdvisoryRecord } from "./protocol.ts";

export interface AdvisoryEntry {
  node: string;
  service: string;
  version: string | null;
  semver: string | null;
}

export interface AdvisoryStatus {
  advisory: AdvisoryRecord;
  /** The services the advisory was judged against (see `concernedServices`). */
  services: string[];
  fixed: AdvisoryEntry[];
  vulnerable: AdvisoryEntry[];
  unknown: AdvisoryEntry[];
}

/**
 * What each version declares it fixes, as any heartbeat carries it: a
 * version is one bundle, so every runtime reports the same list for it, and
 * a heartbeat that had no room for its list is covered by another that had.
 */
function declarations(nodes: readonly SeenNode[]): Map<string, readonly string[]> {
  const known = new Map<string, readonly string[]>();
  for (const node of nodes) {
    for (const s of node.services) if (s.version !== null && Array.isArray(s.fixes) && !known.has(s.version)) known.set(s.version, s.fixes);
  }
  return known;
}

/**
 * The services an advisory concerns: those of which any version seen in the
 * fleet (running, or in a runtime's recent history) declares the id or is
 * named in the advisory's `fixedIn`, revoked or not. An advisory no known
 * version names, a problem not fixed anywhere yet, concerns every service.
 */
export function concernedServices(nodes: readonly SeenNode[], advisory: AdvisoryRecord): string[] {
  const all = new Set<string>();
  const concerned = new Set<string>();
  const named = (version: string): boolean => advisory.fixedIn.some((v) => version.startsWith(v)) || advisory.revoked.some((v) => version.startsWith(v));
  for (const node of nodes) {
    for (const s of node.services) {
      all.add(s.name);
      if ((s.fixes ?? []).includes(advisory.id) || (s.version !== null && named(s.version)) || s.chain.some((link) => named(link.version))) concerned.add(s.name);
    }
  }
  return [...(concerned.size > 0 ? concerned : all)].sort();
}

export function advisoryStatus(nodes: readonly SeenNode[], advisory: AdvisoryRecord): AdvisoryStatus {
  const services = concernedServices(nodes, advisory);
  const known = declarations(nodes);
  const status: AdvisoryStatus = { advisory, services, fixed: [], vulnerable: [], unknown: [] };
  for (const node of nodes) {
    for (const s of node.services) {
      if (!services.includes(s.name)) continue;
      const entry: AdvisoryEntry = { node: node.node, service: s.name, version: s.version, semver: s.semver };
      if (!node.live) status.unknown.push(entry);
      else if (fixesAdvisory(advisory, s.version, s.version === null ? null : (known.get(s.version) ?? s.fixes))) status.fixed.push(entry);
      else status.vulnerable.push(entry);
    }
  }
  return status;
}

/** Runtimes named per version line before the rest are only counted: a group may hold tens of thousands. */
const NAMES_SHOWN = 8;

export function formatAdvisoryStatus(status: AdvisoryStatus): string {
  const a = status.advisory;
  const lines = [`${a.id}${a.title === null ? "" : `  ${a.title}`}${a.severity === null ? "" : `  (${a.severity})`}`];
  lines.push(`  fixed in: declared by a version's module${a.fixedIn.length === 0 ? "" : `, and ${a.fixedIn.map(shortId).join(", ")}`}`);
  if (a.revoked.length > 0) lines.push(`  revoked: ${a.revoked.map(shortId).join(", ")}`);
  lines.push(`  services: ${status.services.join(", ") || "-"}`);
  for (const [label, entries] of [
    ["fixed", status.fixed],
    ["vulnerable", status.vulnerable],
    ["unknown", status.unknown],
  ] as const) {
    lines.push(`${label.padEnd(11)}${entries.length} runtime${entries.length === 1 ? "" : "s"}${label === "unknown" ? " (no recent heartbeat)" : ""}`);
    for (const group of byVersion(entries)) {
      const names = group.nodes.slice(0, NAMES_SHOWN).join(", ");
      const more = group.nodes.length > NAMES_SHOWN ? ` and ${group.nodes.length - NAMES_SHOWN} more` : "";
      const version = group.version === null ? "-".padEnd(12) : shortId(group.version);
      lines.push(`  ${group.service.padEnd(12)} ${version}  ${(group.semver ?? "-").padEnd(8)} ${String(group.nodes.length).padStart(6)}: ${names}${more}`);
    }
  }
  return `${lines.join("\n")}\n`;
}

interface Group {
  service: string;
  version: string | null;
  semver: string | null;
  nodes: string[];
}

/** Entries grouped by service and version, the largest group first. */
export function byVersion(entries: readonly AdvisoryEntry[]): Group[] {
  const groups = new Map<string, Group>();
  for (const e of entries) {
    const key = `${e.service}\u0000${e.version ?? ""}`;
    let group = groups.get(key);
    if (group === undefined) {
      group = { service: e.service, version: e.version, semver: e.semver, nodes: [] };
      groups.set(key, group);
    }
    group.nodes.push(e.node);
  }
  return [...groups.values()].sort((a, b) => b.nodes.length - a.nodes.length || a.service.localeCompare(b.service));
}
