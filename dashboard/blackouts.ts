// The blackouts panel: a histogram of how long services were dark in the
// committed swaps this page has seen (from the live view's `swap` events,
// and, for swaps from before it opened, from each service's inventory), for
// one service or all of them. The drawing is dashboard/histogram.ts's, the
// same one `molt bench swap --report` puts in its page.

import type { SwapReport, VersionRecord } from "./api.ts";
import { h, ms, option } from "./dom.ts";
import { histogramSvg, type SvgNode } from "./histogram.ts";

const SVG_NS = "http://www.w3.org/2000/svg";
const ALL = "";

export class Blackouts {
  readonly #byService = new Map<string, number[]>();
  readonly #chart: HTMLElement;
  readonly #caption: HTMLElement;
  readonly #select: HTMLSelectElement;

  constructor(names: readonly string[], panel: HTMLElement) {
    this.#select = h("select", {}, option(ALL, "all services"), ...names.map((name) => option(name, name)));
    this.#select.id = "blackouts-service";
    this.#select.addEventListener("change", () => this.#render());
    this.#caption = h("span", { class: "muted" });
    this.#chart = h("div", { class: "histogram-chart" });
    panel.append(h("div", { class: "actions" }, this.#select, this.#caption), this.#chart);
    this.#render();
  }

  /** A swap as it ends; only a committed one has a blackout the service kept running through. */
  add(report: SwapReport): void {
    if (report.outcome !== "committed" || report.blackoutMs === null) return;
    this.#push(report.service, report.blackoutMs);
    this.#render();
  }

  /** The committed swaps in a service's inventory that went live before `before` (epoch ms). */
  addPast(service: string, records: readonly VersionRecord[], before: number): void {
    for (const r of records) {
      if ((r.via !== "swap" && r.via !== "rollback") || r.outcome !== "live" || r.blackoutMs === undefined) continue;
      if (Date.parse(r.startedAt ?? r.requestedAt) < before) this.#push(service, r.blackoutMs);
    }
    this.#render();
  }

  #push(service: string, blackoutMs: number): void {
    const list = this.#byService.get(service) ?? [];
    list.push(blackoutMs);
    this.#byService.set(service, list);
  }

  #render(): void {
    const chosen = this.#select.value;
    const values = chosen === ALL ? [...this.#byService.values()].flat() : (this.#byService.get(chosen) ?? []);
    const sorted = [...values].sort((a, b) => a - b);
    const median = sorted[Math.ceil(sorted.length / 2) - 1];
    this.#caption.textContent = `${values.length} swap${values.length === 1 ? "" : "s"}${median === undefined ? "" : `, median ${ms(median)}, max ${ms(sorted.at(-1))}`}`;
    this.#chart.dataset.swaps = String(values.length);
    this.#chart.replaceChildren(element(histogramSvg(values, { width: 640, height: 200 })));
  }
}

/** The drawing as DOM nodes; its text goes in as text. */
function element(node: SvgNode): Element {
  const el = document.createElementNS(SVG_NS, node.tag);
  for (const [key, value] of Object.entries(node.attrs)) el.setAttribute(key, String(value));
  for (const child of node.children) el.append(typeof child === "string" ? document.createTextNode(child) : element(child));
  return el;
}
