// A grouped bar chart as a standalone SVG file, on a log scale when the
// values span orders of magnitude (blackouts in µs next to restarts in ms).

export interface BarGroup {
  label: string;
  bars: { series: string; value: number }[];
}

const COLORS = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#c53030", "#718096"];

export function barChart(title: string, unit: string, groups: BarGroup[], options: { log?: boolean } = {}): string {
  const series = [...new Set(groups.flatMap((g) => g.bars.map((b) => b.series)))];
  const values = groups.flatMap((g) => g.bars.map((b) => b.value)).filter((v) => Number.isFinite(v) && v > 0);
  const log = options.log ?? (values.length > 0 && Math.max(...values) / Math.min(...values) > 50);
  const maxV = Math.max(...values, 1e-9);
  const minV = log ? Math.min(...values) / 2 : 0;
  const W = 900;
  const H = 420;
  const left = 70;
  const bottom = 70;
  const top = 50;
  const plotH = H - top - bottom;
  const plotW = W - left - 20;
  const y = (v: number): number => {
    if (!Number.isFinite(v) || v <= 0) return top + plotH;
    const t = log ? (Math.log10(v) - Math.log10(minV)) / (Math.log10(maxV * 1.2) - Math.log10(minV)) : v / (maxV * 1.1);
    return top + plotH * (1 - Math.max(0, Math.min(1, t)));
  };
  const groupW = plotW / Math.max(1, groups.length);
  const barW = Math.min(40, (groupW * 0.8) / Math.max(1, series.length));
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="100%" height="100%" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="16">${esc(title)}</text>`);
  // Axis ticks.
  const ticks = log ? logTicks(minV, maxV * 1.2) : linearTicks(maxV * 1.1);
  for (const t of ticks) {
    const ty = y(t);
    parts.push(`<line x1="${left}" x2="${W - 20}" y1="${ty}" y2="${ty}" stroke="#e2e8f0"/>`);
    parts.push(`<text x="${left - 6}" y="${ty + 4}" text-anchor="end">${fmt(t)}</text>`);
  }
  parts.push(`<text x="16" y="${top + plotH / 2}" transform="rotate(-90 16 ${top + plotH / 2})" text-anchor="middle">${esc(unit)}${log ? " (log)" : ""}</text>`);
  groups.forEach((g, gi) => {
    const gx = left + gi * groupW + (groupW - barW * series.length) / 2;
    g.bars.forEach((b) => {
      const si = series.indexOf(b.series);
      const x = gx + si * barW;
      const by = y(b.value);
      parts.push(`<rect x="${x}" y="${by}" width="${barW - 2}" height="${top + plotH - by}" fill="${COLORS[si % COLORS.length]}"><title>${esc(`${g.label} ${b.series}: ${fmt(b.value)} ${unit}`)}</title></rect>`);
      if (Number.isFinite(b.value)) parts.push(`<text x="${x + barW / 2 - 1}" y="${by - 3}" text-anchor="middle" font-size="9">${fmt(b.value)}</text>`);
    });
    parts.push(`<text x="${left + gi * groupW + groupW / 2}" y="${top + plotH + 16}" text-anchor="middle">${esc(g.label)}</text>`);
  });
  series.forEach((s, si) => {
    const lx = left + si * 190;
    parts.push(`<rect x="${lx}" y="${H - 28}" width="12" height="12" fill="${COLORS[si % COLORS.length]}"/>`);
    parts.push(`<text x="${lx + 16}" y="${H - 18}">${esc(s)}</text>`);
  });
  parts.push("</svg>");
  return parts.join("\n");
}

function logTicks(min: number, max: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) out.push(10 ** e);
  return out.filter((t) => t >= min && t <= max);
}

function linearTicks(max: number): number[] {
  const step = 10 ** Math.floor(Math.log10(max));
  const out: number[] = [];
  for (let t = 0; t <= max; t += step) out.push(t);
  return out;
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return "n/a";
  if (v >= 100) return v.toFixed(0);
  if (v >= 1) return v.toFixed(2).replace(/\.?0+$/, "");
  return v.toPrecision(2);
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
