// The page `molt bench swap --report <file.html>` writes: one self-contained
// HTML file (inline CSS and SVG, no script, nothing fetched) that a user can
// mail to whoever approves live upgrades. It shows the figures, a histogram
// of the blackouts (drawn by dashboard/histogram.ts, as the dashboard draws
// its own), client latency over time with every swap marked, and each
// phase's share of a swap.

import { axisMs, histogramSvg, svg, type SvgNode } from "../dashboard/histogram.ts";
import type { Summary } from "./stats.ts";
import { Phase } from "../protocol/admin.ts";
import { blackouts, timeline, type BenchResult, type BenchRun } from "./bench-result.ts";

const COLORS = { p50: "#2f6fde", p99: "#e8743b", committed: "#1f9d55", failed: "#d64545", muted: "#6b7385" };
const PHASE_COLORS = ["#945ecf", "#c9a000", "#2f6fde", "#19a979", "#e8743b", "#13a4b4"];

export function reportHtml(run: BenchRun, result: BenchResult): string {
  const title = `molt bench swap: ${result.service}`;
  const sections = [
    section("Blackouts", `How long the service was dark in each of the ${result.committed} committed swaps: from the moment its mailbox was held to the moment it was released.`, svgText(histogramSvg(blackouts(run), { width: 760, height: 240 })), "blackout-histogram"),
    section("Latency over time", latencyCaption(run), svgText(timelineSvg(run)), "latency-timeline"),
    section("Phases", "Each phase's time over the committed swaps. quiesce, dump, restore and cutover are the blackout; prepare happens before it and commit after, with the service answering.", phasesHtml(result), "phase-breakdown"),
  ];
  if (result.failures.length > 0) sections.push(section("Swaps that rolled back", "The service kept running its previous version, with its state.", failuresHtml(result), "failures"));
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${text(title)}</title>
<style>${CSS}</style>
</head>
<body>
<header>
<h1>${text(title)}</h1>
<p class="muted">${text(run.date)} · ${text(run.entries[0])} ⇄ ${text(run.entries[1])}${run.load === null ? " · no load" : ` · ${run.load.connections} connections, ${text(run.load.method)} ${text(run.load.url)}`}</p>
</header>
<main>
${section("Summary", "", summaryHtml(result), "summary")}
${sections.join("\n")}
</main>
</body>
</html>
`;
}

function section(heading: string, caption: string, body: string, id: string): string {
  return `<section id="${id}"><h2>${text(heading)}</h2>${caption === "" ? "" : `<p class="muted">${text(caption)}</p>`}${body}</section>`;
}

function summaryHtml(r: BenchResult): string {
  const rows: [string, string][] = [
    ["swaps", `${r.swaps}: ${r.committed} committed, ${r.failed_swaps} rolled back${r.stopped === null ? "" : ` (stopped early: ${r.stopped})`}`],
    ["blackout", triple(r.blackout_ms)],
  ];
  if (r.latency_ms !== null) {
    rows.push(["latency, steady", triple(r.latency_ms.steady)], ["latency, during a swap", triple(r.latency_ms.during_swap)]);
  }
  if (r.requests !== null) {
    const failures = Object.entries(r.requests.failed_by_status).map(([status, n]) => `${n} × ${status}`);
    rows.push(["requests", `${r.requests.ok} ok, ${r.requests.failed} failed${failures.length === 0 ? "" : ` (${failures.join(", ")})`}`]);
  }
  if (r.left_on !== null) rows.push(["left on", `${r.left_on.semver} (${r.left_on.version.slice(0, 12)})${r.left_on.entry === null ? "" : `, ${r.left_on.entry}`}`]);
  return `<table class="summary">${rows.map(([k, v]) => `<tr><th>${text(k)}</th><td>${text(v)}</td></tr>`).join("")}</table>`;
}

function triple(s: Summary): string {
  return `p50 ${fmtMs(s.p50)} · p99 ${fmtMs(s.p99)} · max ${fmtMs(s.max)}`;
}

export function fmtMs(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return "–";
  return ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : ms < 10 ? `${ms.toFixed(2)} ms` : ms < 1000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

function latencyCaption(run: BenchRun): string {
  if (run.load === null) return "No load was driven (run with --load <url> to see what clients feel). The bands mark each swap.";
  return "p50 and p99 of the requests answered in each interval. Each band is a swap, from the moment it was asked for to its report (green: committed, red: rolled back); the solid line in it is its blackout.";
}

const TL = { width: 760, height: 260, left: 50, right: 14, top: 12, bottom: 34 };

function timelineSvg(run: BenchRun): SvgNode {
  const { points } = timeline(run);
  const span = Math.max(0.001, (run.endedAt - run.startedAt) / 1000);
  const plotW = TL.width - TL.left - TL.right;
  const plotH = TL.height - TL.top - TL.bottom;
  const top = niceCeil(Math.max(1, ...points.map((p) => p.p99 ?? 0)));
  const x = (s: number): number => TL.left + (s / span) * plotW;
  const y = (ms: number): number => TL.top + plotH - (Math.min(ms, top) / top) * plotH;
  const root = svg("svg", { xmlns: "http://www.w3.org/2000/svg", viewBox: `0 0 ${TL.width} ${TL.height}`, width: TL.width, height: TL.height, role: "img" });
  const label = { fill: COLORS.muted, "font-size": 11 };
  for (const s of run.swaps) {
    const from = (s.sentAt - run.startedAt) / 1000;
    const to = (s.endedAt - run.startedAt) / 1000;
    const band = svg("rect", {
      class: "swap",
      x: x(from),
      y: TL.top,
      width: Math.max(1, x(to) - x(from)),
      height: plotH,
      fill: s.report.outcome === "committed" ? COLORS.committed : COLORS.failed,
      "fill-opacity": 0.25,
    });
    band.children.push(svg("title", {}, `swap ${s.n} → ${s.entry}: ${s.report.outcome}, blackout ${fmtMs(s.report.blackoutMs)}`));
    root.children.push(band);
    // The blackout itself: a line where the cutover was reported, as wide as the blackout (at least a pixel).
    if (s.cutoverAt !== null && s.report.blackoutMs !== null) {
      const end = (s.cutoverAt - run.startedAt) / 1000;
      const begin = end - s.report.blackoutMs / 1000;
      root.children.push(svg("rect", { class: "blackout", x: x(begin), y: TL.top, width: Math.max(1.5, x(end) - x(begin)), height: plotH, fill: s.report.outcome === "committed" ? COLORS.committed : COLORS.failed }));
    }
  }
  root.children.push(
    svg("line", { x1: TL.left, y1: TL.top + plotH, x2: TL.left + plotW, y2: TL.top + plotH, stroke: COLORS.muted }),
    svg("line", { x1: TL.left, y1: TL.top, x2: TL.left, y2: TL.top + plotH, stroke: COLORS.muted }),
    svg("text", { x: TL.left - 6, y: TL.top + 4, "text-anchor": "end", ...label }, `${axisMs(top)} ms`),
    svg("text", { x: TL.left - 6, y: TL.top + plotH, "text-anchor": "end", ...label }, "0"),
    svg("text", { x: TL.left + plotW / 2, y: TL.height - 4, "text-anchor": "middle", ...label }, "seconds since the start"),
  );
  for (let i = 0; i <= 5; i++) {
    const s = (span * i) / 5;
    root.children.push(svg("text", { x: x(s), y: TL.top + plotH + 14, "text-anchor": "middle", ...label }, s.toFixed(s < 10 ? 1 : 0)));
  }
  for (const key of ["p50", "p99"] as const) {
    const path = points
      .filter((p) => p[key] !== null)
      .map((p, i) => `${i === 0 ? "M" : "L"}${x(p.t).toFixed(1)},${y(p[key] as number).toFixed(1)}`)
      .join("");
    if (path !== "") root.children.push(svg("path", { class: `latency ${key}`, d: path, fill: "none", stroke: COLORS[key], "stroke-width": 1.5 }));
  }
  root.children.push(
    svg("text", { x: TL.left + plotW - 90, y: TL.top + 12, fill: COLORS.p50, "font-size": 11 }, "p50"),
    svg("text", { x: TL.left + plotW - 60, y: TL.top + 12, fill: COLORS.p99, "font-size": 11 }, "p99"),
  );
  return root;
}

function niceCeil(v: number): number {
  const power = 10 ** Math.floor(Math.log10(v));
  return [1, 1.5, 2, 3, 4, 5, 6, 8, 10].map((m) => m * power).find((s) => s >= v) ?? 10 * power;
}

/** The phases that hold the mailbox: together, the blackout. */
const DARK: ReadonlySet<string> = new Set([Phase.QUIESCE, Phase.DUMP, Phase.RESTORE, Phase.CUTOVER]);

function phasesHtml(r: BenchResult): string {
  const phases = Object.entries(r.phases_ms);
  if (phases.length === 0) return `<p class="muted">No swap committed.</p>`;
  const color = (i: number): string => PHASE_COLORS[i % PHASE_COLORS.length] as string;
  const dark = phases.map((p, i) => ({ phase: p[0], s: p[1], color: color(i) })).filter((p) => DARK.has(p.phase));
  const total = dark.reduce((sum, p) => sum + (Number.isFinite(p.s.p50) ? p.s.p50 : 0), 0);
  const bar = dark
    .map((p) => `<span class="segment" style="width:${(total > 0 ? (p.s.p50 / total) * 100 : 0).toFixed(2)}%;background:${p.color}" title="${text(`${p.phase}: p50 ${fmtMs(p.s.p50)}`)}"></span>`)
    .join("");
  const rows = phases
    .map(
      ([phase, s], i) =>
        `<tr><td><span class="swatch" style="background:${color(i)}"></span>${text(phase)}</td><td>${DARK.has(phase) ? "dark" : "serving"}</td><td class="num">${fmtMs(s.p50)}</td><td class="num">${fmtMs(s.p99)}</td><td class="num">${fmtMs(s.max)}</td></tr>`,
    )
    .join("");
  return `<p class="muted">Inside the blackout, by median phase time:</p><div class="stack">${bar}</div>
<table class="phases"><thead><tr><th>phase</th><th>service</th><th class="num">p50</th><th class="num">p99</th><th class="num">max</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function failuresHtml(r: BenchResult): string {
  const rows = r.failures
    .map((f) => `<tr><td class="num">${f.swap}</td><td>${text(f.code)}</td><td>${text(f.phase)}</td><td class="num">${fmtMs(f.blackout_ms)}</td><td>${text(f.message)}</td></tr>`)
    .join("");
  return `<table><thead><tr><th class="num">swap</th><th>code</th><th>phase</th><th class="num">blackout</th><th>message</th></tr></thead><tbody>${rows}</tbody></table>`;
}

/** An SVG tree as markup, every attribute and text escaped. */
export function svgText(node: SvgNode): string {
  const attrs = Object.entries(node.attrs)
    .map(([k, v]) => ` ${k}="${text(String(v))}"`)
    .join("");
  const children = node.children.map((c) => (typeof c === "string" ? text(c) : svgText(c))).join("");
  return `<${node.tag}${attrs}>${children}</${node.tag}>`;
}

function text(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const CSS = `
body { margin: 0; background: #f5f6f8; color: #1d2330; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { padding: 14px 24px; background: #fff; border-bottom: 1px solid #e1e4ea; }
h1 { margin: 0; font-size: 20px; }
main { max-width: 820px; margin: 0 auto; padding: 16px 24px 40px; }
section { background: #fff; border: 1px solid #e1e4ea; border-radius: 8px; padding: 12px 16px; margin-bottom: 16px; }
h2 { margin: 0 0 6px; font-size: 15px; }
.muted { color: #6b7385; font-size: 12px; margin: 2px 0 10px; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: 4px 8px; text-align: left; border-bottom: 1px solid #e1e4ea; vertical-align: top; }
.summary th { width: 12em; color: #6b7385; font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
svg { max-width: 100%; height: auto; display: block; }
.stack { display: flex; height: 18px; border-radius: 4px; overflow: hidden; margin: 6px 0 10px; background: #e1e4ea; }
.segment { display: block; height: 100%; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
`;
