// The traffic charts: requests per second and p99 latency of every service,
// one point a second from the live ticks, with each swap drawn as a dashed
// vertical line (a uPlot draw hook). The number of swap lines in view is
// kept on the page, in data-swap-markers of the traffic panel.

import type UPlot from "uplot";
import type { Tick } from "./api.ts";
import { ms } from "./dom.ts";

/** uPlot's iife build, loaded before this script, defines it. */
declare const uPlot: typeof UPlot;

/** Points kept: one a second, five minutes. */
const WINDOW = 300;
const HEIGHT = 190;
const COLORS = ["#2f6fde", "#e8743b", "#19a979", "#945ecf", "#d64545", "#13a4b4", "#c9a000", "#6c757d"];
const OUTCOME_COLORS: Record<string, string> = { committed: "#1f9d55", "rolled-back": "#d64545", unhealthy: "#d98a00" };

export interface Marker {
  /** When the swap ended, epoch ms. */
  time: number;
  service: string;
  outcome: string;
  label: string;
}

/** A service's colour, the same in the table and on the charts. */
export function colorOf(names: readonly string[], name: string): string {
  return COLORS[Math.max(0, names.indexOf(name)) % COLORS.length] as string;
}

export class Traffic {
  readonly #names: readonly string[];
  readonly #panel: HTMLElement;
  readonly #times: number[] = [];
  readonly #rps = new Map<string, number[]>();
  readonly #p99 = new Map<string, (number | null)[]>();
  readonly #markers: Marker[] = [];
  readonly #charts: UPlot[] = [];

  constructor(names: readonly string[], panel: HTMLElement, rpsBox: HTMLElement, p99Box: HTMLElement) {
    this.#names = names;
    this.#panel = panel;
    for (const name of names) {
      this.#rps.set(name, []);
      this.#p99.set(name, []);
    }
    const width = (): number => Math.max(300, rpsBox.clientWidth);
    this.#charts.push(
      new uPlot(this.#options("requests / s", "", (v) => v.toFixed(1), width()), this.#data(this.#rps), rpsBox),
      new uPlot(this.#options("p99 latency", "ms", (v) => ms(v), width()), this.#data(this.#p99), p99Box),
    );
    window.addEventListener("resize", () => {
      for (const chart of this.#charts) chart.setSize({ width: width(), height: HEIGHT });
    });
  }

  push(tick: Tick): void {
    this.#times.push(tick.time / 1000);
    const byName = new Map(tick.services.map((s) => [s.name, s]));
    for (const name of this.#names) {
      (this.#rps.get(name) as number[]).push(byName.get(name)?.rps ?? 0);
      (this.#p99.get(name) as (number | null)[]).push(byName.get(name)?.p99Ms ?? null);
    }
    if (this.#times.length > WINDOW) {
      this.#times.shift();
      for (const series of [...this.#rps.values(), ...this.#p99.values()]) series.shift();
    }
    this.#charts[0]?.setData(this.#data(this.#rps));
    this.#charts[1]?.setData(this.#data(this.#p99));
  }

  mark(...markers: Marker[]): void {
    this.#markers.push(...markers);
    this.#markers.sort((a, b) => a.time - b.time);
    for (const chart of this.#charts) chart.redraw(false, false);
  }

  #data(source: Map<string, (number | null)[]>): UPlot.AlignedData {
    return [this.#times, ...this.#names.map((name) => source.get(name) ?? [])];
  }

  #options(title: string, unit: string, format: (v: number) => string, width: number): UPlot.Options {
    return {
      title,
      width,
      height: HEIGHT,
      cursor: { sync: { key: "molt" } },
      scales: {
        // At least a minute wide, so the first seconds do not fill the chart.
        x: { time: true, range: (_u, min, max) => [Math.min(min, max - 60), max] },
        y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.15 : 1] },
      },
      axes: [
        { stroke: "#6b7385", grid: { stroke: "#eef0f4" }, ticks: { stroke: "#e1e4ea" } },
        { stroke: "#6b7385", grid: { stroke: "#eef0f4" }, ticks: { stroke: "#e1e4ea" }, size: 60, values: (_u, ticks) => ticks.map((v) => `${v} ${unit}`) },
      ],
      series: [
        { label: "time" },
        ...this.#names.map((name) => ({
          label: name,
          stroke: colorOf(this.#names, name),
          width: 1.5,
          value: (_u: UPlot, v: number | null) => (v === null ? "–" : format(v)),
        })),
      ],
      hooks: { draw: [(u) => this.#drawMarkers(u)] },
    };
  }

  /** Each swap in view as a dashed vertical line, labelled with the service and its new semver. */
  #drawMarkers(u: UPlot): void {
    const { ctx, bbox } = u;
    const min = u.scales.x?.min ?? Infinity;
    const max = u.scales.x?.max ?? -Infinity;
    const ratio = window.devicePixelRatio || 1;
    let drawn = 0;
    let row = 0;
    let previousEnd = -Infinity;
    ctx.save();
    ctx.lineWidth = 1.5 * ratio;
    ctx.setLineDash([5 * ratio, 4 * ratio]);
    ctx.font = `${11 * ratio}px system-ui, sans-serif`;
    for (const marker of this.#markers) {
      const t = marker.time / 1000;
      if (t < min || t > max) continue;
      const x = Math.round(u.valToPos(t, "x", true));
      const color = OUTCOME_COLORS[marker.outcome] ?? "#6b7385";
      ctx.strokeStyle = color;
      ctx.beginPath();
      ctx.moveTo(x, bbox.top);
      ctx.lineTo(x, bbox.top + bbox.height);
      ctx.stroke();
      // Right of the line, or left of it near the right edge; a row lower
      // when it would overprint the label before it.
      const width = ctx.measureText(marker.label).width + 8 * ratio;
      const right = x + width <= bbox.left + bbox.width;
      const [from, to] = right ? [x, x + width] : [x - width, x];
      row = from < previousEnd ? (row + 1) % 4 : 0;
      previousEnd = Math.max(previousEnd, to);
      ctx.fillStyle = color;
      ctx.textAlign = right ? "left" : "right";
      ctx.fillText(marker.label, right ? x + 4 * ratio : x - 4 * ratio, bbox.top + (12 + row * 13) * ratio);
      drawn++;
    }
    ctx.restore();
    if (u === this.#charts[0]) this.#panel.dataset.swapMarkers = String(drawn);
  }
}
