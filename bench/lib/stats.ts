// Summaries the benchmarks report: percentiles by the nearest-rank method (cli/stats.ts, shared with `molt bench swap`).

import { percentile } from "../../cli/stats.ts";

export { percentile, summarize, type Summary } from "../../cli/stats.ts";

export function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

/** Prints rows as an aligned text table. */
export function printTable(head: string[], rows: (string | number)[][]): void {
  const cells = rows.map((r) => r.map(String));
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]): string => r.map((c, i) => c.padStart(widths[i] ?? 0)).join("  ");
  console.log(line(head));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const r of cells) console.log(line(r));
}
