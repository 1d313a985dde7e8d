// The blackout histogram, drawn once for two places: the dashboard (in the
// browser, dashboard/blackouts.ts turns the drawing into DOM nodes) and the
// report `molt bench swap --report` writes (in Node, cli/bench-report.ts
// turns it into SVG text). So this file touches neither the DOM nor Node: it
// computes the bins and returns the drawing as a plain tree.

/** An SVG element as data: a tag, its attributes, and children (strings are text). */
export interface SvgNode {
  tag: string;
  attrs: Record<string, string | number>;
  children: (SvgNode | string)[];
}

export function svg(tag: string, attrs: Record<string, string | number> = {}, ...children: (SvgNode | string)[]): SvgNode {
  return { tag, attrs, children };
}

/** Blackouts from `from` (inclusive) to `to` (exclusive), in ms. */
export interface Bin {
  from: number;
  to: number;
  count: number;
}

/**
 * Equal-width bins from 0 that hold every value, at most `most` of them, the
 * width a round number (1, 2 or 5 times a power of ten) so the axis reads
 * plainly. Values that are not finite (a swap with no blackout) are left out.
 */
export function bins(values: readonly number[], most = 24): Bin[] {
  const finite = values.filter((v) => Number.isFinite(v) && v >= 0);
  if (finite.length === 0) return [];
  const max = Math.max(...finite);
  const width = niceStep(max / most);
  const count = Math.max(1, Math.floor(max / width) + 1);
  const result: Bin[] = Array.from({ length: count }, (_, i) => ({ from: i * width, to: (i + 1) * width, count: 0 }));
  for (const v of finite) (result[Math.min(count - 1, Math.floor(v / width))] as Bin).count++;
  return result;
}

function niceStep(raw: number): number {
  if (!(raw > 0)) return 0.01;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  return step ?? 10 * power;
}

/** A number of ms as an axis label: no more digits than it needs. */
export function axisMs(v: number): string {
  return `${Number(v.toPrecision(3))}`;
}

export interface HistogramOptions {
  width: number;
  height: number;
  /** Bar colour. */
  color?: string;
}

const PAD = { left: 40, right: 12, top: 10, bottom: 34 };

/** The histogram as an SVG tree: bars, a count axis, a ms axis, each bar titled with its range and count. */
export function histogramSvg(values: readonly number[], options: HistogramOptions): SvgNode {
  const { width, height } = options;
  const data = bins(values);
  const plotW = width - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  const root = svg("svg", { xmlns: "http://www.w3.org/2000/svg", viewBox: `0 0 ${width} ${height}`, width, height, class: "histogram", role: "img" });
  const last = data.at(-1);
  if (last === undefined) {
    root.children.push(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", fill: "#6b7385", "font-size": 12 }, "no blackouts yet"));
    return root;
  }
  const top = Math.max(...data.map((b) => b.count));
  const x = (ms: number): number => PAD.left + (ms / last.to) * plotW;
  const y = (count: number): number => PAD.top + plotH - (count / top) * plotH;
  const axis = { stroke: "#6b7385", "stroke-width": 1 };
  const label = { fill: "#6b7385", "font-size": 11 };
  root.children.push(
    svg("line", { x1: PAD.left, y1: PAD.top + plotH, x2: PAD.left + plotW, y2: PAD.top + plotH, ...axis }),
    svg("line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: PAD.top + plotH, ...axis }),
    svg("text", { x: PAD.left - 6, y: PAD.top + 4, "text-anchor": "end", ...label }, String(top)),
    svg("text", { x: PAD.left - 6, y: PAD.top + plotH, "text-anchor": "end", ...label }, "0"),
    svg("text", { x: PAD.left + plotW / 2, y: height - 4, "text-anchor": "middle", ...label }, "blackout (ms)"),
  );
  // A label every few bins, so that they never overlap.
  const every = Math.ceil(data.length / 8);
  data.forEach((b, i) => {
    if (i % every === 0) root.children.push(svg("text", { x: x(b.from), y: PAD.top + plotH + 14, "text-anchor": "middle", ...label }, axisMs(b.from)));
  });
  root.children.push(svg("text", { x: x(last.to), y: PAD.top + plotH + 14, "text-anchor": "middle", ...label }, axisMs(last.to)));
  for (const b of data) {
    if (b.count === 0) continue;
    const bar = svg("rect", {
      class: "bar",
      x: x(b.from) + 1,
      y: y(b.count),
      width: Math.max(1, x(b.to) - x(b.from) - 2),
      height: PAD.top + plotH - y(b.count),
      fill: options.color ?? "#2f6fde",
      "data-count": b.count,
    });
    bar.children.push(svg("title", {}, `${axisMs(b.from)}–${axisMs(b.to)} ms: ${b.count} swap${b.count === 1 ? "" : "s"}`));
    root.children.push(bar);
  }
  return root;
}
