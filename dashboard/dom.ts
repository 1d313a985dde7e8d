// Building the page: element helpers and the formats numbers and ids are
// shown in. Text from the runtime always goes in as text, never as HTML.

import type { SwapReport } from "./api.ts";

export type Child = Node | string;

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (found === null) throw new Error(`the page has no #${id}`);
  return found as T;
}

/** An element with a class, a title, data-* attributes and children (strings become text nodes). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: { class?: string; title?: string; data?: Record<string, string> } = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (attrs.class !== undefined) node.className = attrs.class;
  if (attrs.title !== undefined) node.title = attrs.title;
  for (const [key, value] of Object.entries(attrs.data ?? {})) node.dataset[key] = value;
  node.append(...children);
  return node;
}

export function option(value: string, text = ""): HTMLOptionElement {
  const node = h("option", {}, text);
  node.value = value;
  return node;
}

/** A version id as the CLI shows it: 12 hex digits. */
export const short = (id: string | null | undefined): string => (id ? id.slice(0, 12) : "–");

export function ms(value: number | null | undefined): string {
  if (value === null || value === undefined) return "–";
  return value < 10 ? `${value.toFixed(2)} ms` : value < 1000 ? `${value.toFixed(1)} ms` : `${(value / 1000).toFixed(2)} s`;
}

export function duration(msValue: number): string {
  const s = Math.floor(msValue / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor(s / 3600) % 24}h`;
}

export const clock = (time: number | string): string => new Date(time).toLocaleTimeString([], { hour12: false });

export function outcomeBadge(outcome: string): HTMLElement {
  return h("span", { class: "outcome", data: { outcome } }, outcome);
}

/** "committed counter 1.0.0 (abc…) → 2.0.0 (def…), blackout 0.61 ms", and the error if any. */
export function describeSwap(report: SwapReport): Child[] {
  const to = report.to === null ? "–" : `${report.to.semver} (${short(report.to.version)})`;
  const parts: Child[] = [
    outcomeBadge(report.outcome),
    ` ${report.service} ${report.via === "rollback" ? "rolled back " : ""}${report.from.semver} (${short(report.from.version)}) → ${to}`,
  ];
  if (report.blackoutMs !== null) parts.push(`, blackout ${ms(report.blackoutMs)}`);
  if (report.error !== undefined) parts.push(` — ${report.error.code} in ${report.error.phase}: ${report.error.message}`);
  return parts;
}
