// What a swap checked before its cutover, as the swap form shows it: the
// verified transfer (the state to the new version and back) and the shadow
// traffic report (both versions on the same messages), with the examples of
// divergence as a table. The same facts `molt swap` prints (cli/commands.ts).
// Every value is the runtime's text (payloads and replies are the service's
// own data), so all of it goes in as text nodes.

import type { ShadowExample, ShadowResult, SwapProgress, VerifyResult } from "../protocol/admin.ts";
import type { SwapReport } from "./api.ts";
import { h, type Child } from "./dom.ts";

type ShadowLine = Extract<SwapProgress, { event: "shadow" }>;

const plural = (n: number, word: string, words = `${word}s`): string => `${n} ${n === 1 ? word : words}`;

/** A shadow progress line: "20/1000 messages, 0 divergences". */
export function shadowProgress(line: ShadowLine): string {
  return `${line.messages}/${line.of} messages, ${plural(line.divergences, "divergence")}`;
}

/** The verify result and the shadow report of a swap's report; nothing when it has neither. */
export function describeChecks(report: SwapReport): HTMLElement[] {
  const parts: HTMLElement[] = [];
  if (report.verify !== undefined) parts.push(h("h3", {}, "Verified transfer"), verifyLine(report.verify));
  if (report.shadow !== undefined) parts.push(h("h3", {}, "Shadow traffic"), ...shadowReport(report.shadow));
  return parts;
}

/** The data-result a check is marked with, for the style and for tests. */
function resultOf(check: VerifyResult): string {
  return check.ok ? "ok" : check.path !== undefined ? "differs" : check.skipped !== undefined ? "skipped" : "failed";
}

function verifyLine(verify: VerifyResult): HTMLElement {
  const text = verify.ok
    ? "ok: the state went to the new version and back unchanged"
    : verify.path !== undefined
      ? `differs at ${verify.path}: the state came back different`
      : verify.skipped !== undefined
        ? `skipped: ${verify.skipped}`
        : "failed: the way back did not run";
  return h("p", { class: "check", data: { check: "verify", result: resultOf(verify) } }, text);
}

function stateWords(state: VerifyResult | undefined): string {
  if (state === undefined) return "not compared";
  if (state.ok) return "equal";
  if (state.path !== undefined) return `differs at ${state.path}`;
  return `skipped: ${state.skipped ?? "not compared"}`;
}

function shadowReport(shadow: ShadowResult): HTMLElement[] {
  const s = shadow.suppressed;
  const row = (term: string, ...value: Child[]): HTMLElement[] => [h("dt", {}, term), h("dd", { data: { field: term } }, ...value)];
  const summary = h(
    "dl",
    { class: "check", data: { check: "shadow", result: shadow.divergences > 0 ? "differs" : "ok" } },
    // More than asked for when some were already queued as the shadow ended: those are compared too.
    ...row("messages", String(shadow.messages), h("span", { class: "muted" }, ` (${shadow.requested} asked for)`)),
    ...row("complete", shadow.complete ? "yes" : "no: the shadow's time ran out before the messages came"),
    ...row("divergences", String(shadow.divergences)),
    ...row("expected", String(shadow.expected), h("span", { class: "muted" }, " in methods expected to change, not counted")),
    ...row("state", stateWords(shadow.state)),
    ...row(
      "not performed",
      `${plural(s.sends, "send")}, ${plural(s.fetches, "fetch", "fetches")}, ${plural(s.stdout, "stdout write")}, ${plural(s.console, "console line")}`,
    ),
  );
  if (shadow.examples.length === 0) return [summary, h("p", { class: "muted" }, "no examples: the two versions agreed")];
  return [summary, h("div", { class: "examples-wrap" }, examplesTable(shadow.examples))];
}

function examplesTable(examples: readonly ShadowExample[]): HTMLTableElement {
  const columns = ["method", "payload", "old", "new", "why", "expected"] as const;
  const head = h("tr", {}, ...columns.map((c) => h("th", {}, c)));
  const rows = examples.map((e) =>
    h(
      "tr",
      { data: { method: e.method, ...(e.expected === true ? { expected: "" } : {}) } },
      ...columns.map((c) => h("td", { data: { column: c } }, c === "expected" ? (e.expected === true ? "yes" : "") : e[c])),
    ),
  );
  return h("table", { class: "examples" }, h("thead", {}, head), h("tbody", {}, ...rows));
}
