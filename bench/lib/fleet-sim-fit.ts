// bench:fleet-scale's cost model: each figure measured at several fleet
// sizes fitted to a + b·N by least squares, so the results say how a figure
// grows with N, not only what it was at the sizes that ran. A fit is a model
// of the points measured; the bench labels it as such and never reports it
// as a measurement.

export interface LinearFit {
  /** The fixed part, in the figure's unit. */
  a: number;
  /** What each runtime adds, in the figure's unit. */
  b: number;
  /** How much of the variation the line explains (1: all of it). */
  r2: number;
  /** The sizes it was fitted to. */
  points: number[];
}

/** Fits y = a + b·x; null with fewer than two distinct sizes. */
export function fitLinear(points: readonly { x: number; y: number }[]): LinearFit | null {
  const usable = points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  if (new Set(usable.map((p) => p.x)).size < 2) return null;
  const n = usable.length;
  const mx = usable.reduce((s, p) => s + p.x, 0) / n;
  const my = usable.reduce((s, p) => s + p.y, 0) / n;
  const sxx = usable.reduce((s, p) => s + (p.x - mx) ** 2, 0);
  const sxy = usable.reduce((s, p) => s + (p.x - mx) * (p.y - my), 0);
  const b = sxy / sxx;
  const a = my - b * mx;
  const ssTot = usable.reduce((s, p) => s + (p.y - my) ** 2, 0);
  const ssRes = usable.reduce((s, p) => s + (p.y - (a + b * p.x)) ** 2, 0);
  return { a: round(a), b: round(b), r2: ssTot === 0 ? 1 : round(1 - ssRes / ssTot), points: usable.map((p) => p.x) };
}

function round(v: number): number {
  return Number(v.toPrecision(4));
}
