// The inventory panel: each service's versions as a chain, oldest first,
// with how each came to run (start, swap, rollback, restart) and how that
// ended. It also knows which entry files each service has run, for the swap
// form, and the swaps that ended before the page opened, for the charts.

import { history, type VersionRecord } from "./api.ts";
import type { Marker } from "./chart.ts";
import { clock, h, ms, outcomeBadge, short } from "./dom.ts";

/** Versions shown per service; older ones are counted. */
const SHOWN = 8;

export class Inventory {
  readonly #chains = new Map<string, HTMLElement>();
  readonly #entries = new Map<string, Set<string>>();
  readonly #running = new Map<string, string>();
  readonly #onChange: () => void;

  constructor(names: readonly string[], container: HTMLElement, onChange: () => void) {
    for (const service of names) {
      const chain = h("div", { class: "chain", data: { service } });
      this.#chains.set(service, chain);
      container.append(chain);
    }
    this.#onChange = onChange;
  }

  /** Every entry file any service has run. */
  get entries(): string[] {
    return [...new Set([...this.#entries.values()].flatMap((set) => [...set]))].sort();
  }

  /** The entry file of the version a service runs now. */
  running(service: string): string | undefined {
    return this.#running.get(service);
  }

  async refresh(service: string): Promise<VersionRecord[]> {
    const records = await history(service);
    this.#entries.set(service, new Set(records.map((r) => r.entry)));
    const now = records.findLast((r) => r.startedAt !== null && r.replacedAt === null);
    if (now !== undefined) this.#running.set(service, now.entry);
    this.#render(service, records);
    this.#onChange();
    return records;
  }

  #render(service: string, records: VersionRecord[]): void {
    const chain = this.#chains.get(service);
    if (chain === undefined) return;
    const list = h("ol");
    const hidden = records.length - SHOWN;
    if (hidden > 0) list.append(h("li", {}, h("span", { class: "muted" }, `${hidden} earlier`)));
    for (const r of records.slice(-SHOWN)) list.append(h("li", {}, card(r)));
    chain.replaceChildren(h("div", { class: "chain-name" }, service), list);
    chain.dataset.versions = String(records.length);
  }
}

function card(r: VersionRecord): HTMLElement {
  const current = r.replacedAt === null && r.startedAt !== null && (r.outcome === "live" || r.outcome === "unhealthy");
  const failed = r.outcome === "rolled-back" || r.outcome === "probation-failed";
  // "live" in the inventory also means "ran until it was replaced".
  const shown = r.outcome === "live" && r.replacedAt !== null ? "replaced" : r.outcome;
  const node = h(
    "div",
    { class: `version${current ? " current" : ""}${failed ? " failed" : ""}`, title: `${r.version}\n${r.entry}`, data: { outcome: r.outcome } },
    h("div", {}, h("span", { class: "semver" }, r.semver), " ", h("span", { class: "mono" }, short(r.version))),
    h("div", { class: "details" }, `state v${r.stateVersion} · via ${r.via} · ${clock(r.startedAt ?? r.requestedAt)}`),
    h("div", { class: "details" }, outcomeBadge(shown), r.blackoutMs === undefined ? "" : ` blackout ${ms(r.blackoutMs)}`),
  );
  if (r.code !== undefined) node.append(h("div", { class: "details", title: r.message ?? "" }, r.code));
  return node;
}

/** The swaps in a service's inventory that ended before `before` (epoch ms), as chart markers. */
export function pastSwaps(service: string, records: VersionRecord[], before: number): Marker[] {
  const markers: Marker[] = [];
  for (const r of records) {
    if (r.via !== "swap" && r.via !== "rollback") continue;
    const time = Date.parse(r.startedAt ?? r.requestedAt);
    if (!(time < before)) continue;
    const outcome = r.outcome === "live" ? "committed" : r.outcome === "unhealthy" ? "unhealthy" : "rolled-back";
    markers.push({ time, service, outcome, label: `${service} ${outcome === "committed" ? r.semver : outcome}` });
  }
  return markers;
}
