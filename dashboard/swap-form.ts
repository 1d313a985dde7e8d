// The write side of the page: the admin token and the swap / rollback form.
// The token is only what the user pastes: kept in this tab's sessionStorage
// (gone when the tab closes), sent only as the bearer of write calls, never
// put back into the page. The form shows each phase as it ends (and the
// shadow traffic's count as it runs), then the outcome, in #swap-outcome
// (data-outcome: committed, rolled-back, error…), and what the swap checked
// before its cutover in #swap-checks (swap-checks.ts).

import type { RollbackBody, SwapBody } from "../protocol/admin.ts";
import { swapOrRollback, type ApiError } from "./api.ts";
import { byId, describeSwap, h, ms, option, outcomeBadge, type Child } from "./dom.ts";
import type { Inventory } from "./inventory.ts";
import { describeChecks, shadowProgress } from "./swap-checks.ts";

const TOKEN_KEY = "molt.adminToken";
const READ_ONLY = "none: read-only";
const SET = "set for this tab: swap and roll back enabled";

const token = {
  get: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  set(value: string): void {
    sessionStorage.setItem(TOKEN_KEY, value);
    showTokenState(SET);
  },
  forget(why = READ_ONLY): void {
    sessionStorage.removeItem(TOKEN_KEY);
    showTokenState(why);
  },
};

function showTokenState(text: string): void {
  byId("token-state").textContent = text;
  byId("token-forget").hidden = token.get() === null;
}

export function initToken(): void {
  const input = byId<HTMLInputElement>("token");
  byId("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = input.value.trim();
    input.value = "";
    if (value !== "") token.set(value);
  });
  byId("token-forget").addEventListener("click", () => token.forget());
  showTokenState(token.get() === null ? READ_ONLY : SET);
}

export class SwapForm {
  readonly #inventory: Inventory;
  readonly #service = byId<HTMLSelectElement>("swap-service");

  constructor(names: readonly string[], inventory: Inventory) {
    this.#inventory = inventory;
    this.#service.replaceChildren(...names.map((name) => option(name, name)));
    this.#service.addEventListener("change", () => this.update());
    byId("swap-form").addEventListener("submit", (event) => {
      event.preventDefault();
      void this.#run("swap");
    });
    byId("rollback-button").addEventListener("click", () => void this.#run("rollback"));
  }

  /** Shows what the chosen service runs, and offers every entry seen as a choice. */
  update(): void {
    const entry = this.#inventory.running(this.#service.value);
    byId("swap-running").textContent = entry === undefined ? "" : `runs ${entry}`;
    byId("known-entries").replaceChildren(...this.#inventory.entries.map((e) => option(e)));
  }

  async #run(kind: "swap" | "rollback"): Promise<void> {
    const bearer = token.get();
    if (bearer === null) {
      outcome("error", outcomeBadge("error"), " paste the admin token first (top right)");
      byId("token").focus();
      return;
    }
    const service = this.#service.value;
    let body: SwapBody | RollbackBody;
    if (kind === "swap") {
      const entry = byId<HTMLInputElement>("swap-entry").value.trim();
      if (entry === "") return outcome("error", outcomeBadge("error"), " give the entry file of the new version (an absolute path)");
      const checks = shadowFields();
      if (typeof checks === "string") return outcome("error", outcomeBadge("error"), ` ${checks}`);
      body = { entry, ...checks };
    } else {
      const to = byId<HTMLInputElement>("rollback-to").value.trim();
      body = to === "" ? {} : { to };
    }

    const phases = byId("swap-phases");
    phases.replaceChildren();
    byId("swap-checks").replaceChildren();
    outcome("running", `${kind === "swap" ? "swapping" : "rolling back"} ${service}…`);
    busy(true);
    // The shadow's line, rewritten as its count grows; it becomes the phase's line when the phase ends.
    let shadow: { node: HTMLElement; text: string } | undefined;
    try {
      for await (const line of swapOrRollback(kind, service, body, bearer)) {
        if (line.event === "phase") {
          const text = `${line.phase.padEnd(8)} ${ms(line.ms)}`;
          if (line.phase === "shadow" && shadow !== undefined) {
            shadow.node.className = "";
            shadow.node.textContent = `${text}, ${shadow.text}`;
            shadow = undefined;
          } else phases.append(h("li", {}, text));
        } else if (line.event === "shadow") {
          shadow ??= { node: phases.appendChild(h("li", { class: "running" })), text: "" };
          shadow.text = shadowProgress(line);
          shadow.node.textContent = `${"shadow".padEnd(8)} ${shadow.text}`;
        } else if (line.event === "report") {
          outcome(line.report.outcome, ...describeSwap(line.report));
          byId("swap-checks").replaceChildren(...describeChecks(line.report));
        } else outcome("error", outcomeBadge("error"), ` ${line.error.code}: ${line.error.message}`);
      }
    } catch (err) {
      const refused = err as Partial<ApiError> & { status?: number };
      if (refused.status === 401) token.forget("refused by the runtime: paste it again");
      const text = refused.code !== undefined ? `${refused.code}: ${refused.message ?? ""}` : String(err);
      outcome("error", outcomeBadge("error"), ` ${text}`);
    } finally {
      // A shadow that never ended its phase is where the swap stopped.
      if (shadow !== undefined) shadow.node.className = "failed";
      busy(false);
    }
  }
}

/**
 * The shadow traffic fields of a swap's body, only those filled in (an empty
 * one leaves the runtime's default), or what is wrong with them.
 */
function shadowFields(): Pick<SwapBody, "shadow" | "expectChange" | "maxDivergence"> | string {
  const shadow = wholeNumber("swap-shadow");
  if (shadow === null) return "shadow messages must be a whole number";
  const maxDivergence = wholeNumber("swap-max-divergence");
  if (maxDivergence === null) return "max divergence must be a whole number";
  const expectChange = byId<HTMLInputElement>("swap-expect-change")
    .value.split(",")
    .map((method) => method.trim())
    .filter((method) => method !== "");
  return {
    ...(shadow === undefined ? {} : { shadow }),
    ...(expectChange.length === 0 ? {} : { expectChange }),
    ...(maxDivergence === undefined ? {} : { maxDivergence }),
  };
}

/** A number input's value: undefined when empty, null when it is not a whole number from 0. */
function wholeNumber(id: string): number | undefined | null {
  const input = byId<HTMLInputElement>(id);
  // A number input reads "" for text it cannot parse: that is not an empty field.
  if (input.validity.badInput) return null;
  const text = input.value.trim();
  if (text === "") return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) && value >= 0 ? value : null;
}

function outcome(value: string, ...content: Child[]): void {
  const node = byId("swap-outcome");
  node.className = "";
  node.dataset.outcome = value;
  node.replaceChildren(...content);
}

function busy(on: boolean): void {
  for (const id of ["swap-button", "rollback-button"]) byId<HTMLButtonElement>(id).disabled = on;
}
