// molt's dashboard, in the browser: the entry esbuild bundles into
// /dashboard.js. Everything it shows comes from the admin API of the runtime
// that served it (same origin):
//   GET /v1/status                         the services, once at load
//   GET /v1/events                         live: a `tick` a second, a `swap` as each ends
//   GET /v1/services/:name/history         each service's inventory (again after its swaps)
//   POST /v1/services/:name/swap|rollback  with the pasted token (swap-form.ts)
// This file holds the services table and wires the panels to the live events.

import { Blackouts } from "./blackouts.ts";
import { serviceNames, type ServiceTick, type SwapReport, type Tick } from "./api.ts";
import { colorOf, Traffic } from "./chart.ts";
import { byId, clock, describeSwap, duration, h, ms, short } from "./dom.ts";
import { Inventory, pastSwaps } from "./inventory.ts";
import { initToken, SwapForm } from "./swap-form.ts";

const COLUMNS = ["version", "semver", "stateVersion", "uptime", "queue", "inFlight", "rps", "p99", "errors"] as const;
type Column = (typeof COLUMNS)[number];

/** The services table: one row per service, its cells rewritten on every tick. */
class ServicesTable {
  readonly #rows = new Map<string, { row: HTMLTableRowElement; cells: Map<Column, HTMLTableCellElement>; version: string | null }>();

  constructor(names: readonly string[], body: HTMLElement) {
    for (const name of names) {
      const swatch = h("span", { class: "swatch" });
      swatch.style.background = colorOf(names, name);
      const row = h("tr", { data: { service: name } }, h("td", {}, swatch, name));
      const cells = new Map<Column, HTMLTableCellElement>();
      for (const column of COLUMNS) {
        const cell = h("td", { class: column === "version" ? "mono" : column === "semver" ? "" : "num", data: { column } }, "–");
        cells.set(column, cell);
        row.append(cell);
      }
      body.append(row);
      this.#rows.set(name, { row, cells, version: null });
    }
  }

  update(services: ServiceTick[]): void {
    for (const s of services) {
      const entry = this.#rows.get(s.name);
      if (entry === undefined) continue;
      const set = (column: Column, text: string): HTMLTableCellElement => {
        const cell = entry.cells.get(column) as HTMLTableCellElement;
        cell.textContent = text;
        return cell;
      };
      set("version", short(s.version)).title = s.version ?? "";
      set("semver", s.semver ?? "–");
      set("stateVersion", s.stateVersion === null ? "–" : String(s.stateVersion));
      set("uptime", s.version === null ? "down" : duration(s.uptimeMs));
      set("queue", String(s.queueDepth));
      set("inFlight", String(s.inFlight));
      set("rps", s.rps.toFixed(1));
      set("p99", ms(s.p99Ms));
      set("errors", String(s.errors)).style.color = s.errors > 0 ? "var(--bad)" : "";
      if (entry.version !== null && s.version !== entry.version) flash(entry.row);
      entry.version = s.version;
    }
  }
}

function flash(row: HTMLElement): void {
  row.classList.remove("changed");
  void row.offsetWidth; // restart the animation
  row.classList.add("changed");
}

/** "Swaps since this page opened", newest first. */
function logSwap(time: number, report: SwapReport): void {
  const log = byId("swap-log");
  log.querySelector(".empty")?.remove();
  log.prepend(h("li", {}, h("span", { class: "muted" }, clock(time), " "), ...describeSwap(report)));
  while (log.children.length > 10) log.lastElementChild?.remove();
}

function connect(table: ServicesTable, traffic: Traffic, inventory: Inventory, blackouts: Blackouts): void {
  const pill = byId("connection");
  const state = (value: string, text: string): void => {
    pill.dataset.state = value;
    pill.textContent = text;
  };
  const events = new EventSource("/v1/events");
  events.addEventListener("open", () => state("live", "live"));
  events.addEventListener("error", () => state("down", "reconnecting…"));
  events.addEventListener("tick", (event) => {
    const tick = JSON.parse((event as MessageEvent<string>).data) as Tick;
    table.update(tick.services);
    traffic.push(tick);
  });
  events.addEventListener("swap", (event) => {
    const { time, report } = JSON.parse((event as MessageEvent<string>).data) as { time: number; report: SwapReport };
    const label = `${report.service} ${report.outcome === "committed" ? (report.to?.semver ?? "") : report.outcome}`;
    traffic.mark({ time, service: report.service, outcome: report.outcome, label });
    logSwap(time, report);
    blackouts.add(report);
    // A failed refresh leaves the chain as it was; the next swap refreshes it.
    inventory.refresh(report.service).catch(() => undefined);
  });
}

async function main(): Promise<void> {
  const opened = Date.now();
  initToken();
  const names = await serviceNames();
  const table = new ServicesTable(names, byId("services").querySelector("tbody") as HTMLElement);
  const traffic = new Traffic(names, byId("traffic"), byId("chart-rps"), byId("chart-p99"));
  let form: SwapForm | undefined;
  const inventory = new Inventory(names, byId("inventory"), () => form?.update());
  form = new SwapForm(names, inventory);
  const blackouts = new Blackouts(names, byId("blackouts"));
  connect(table, traffic, inventory, blackouts);
  // Swaps from before the page opened come from the inventory; later ones arrive as events.
  const histories = await Promise.all(
    names.map(async (name) => {
      const records = await inventory.refresh(name);
      blackouts.addPast(name, records, opened);
      return pastSwaps(name, records, opened);
    }),
  );
  traffic.mark(...histories.flat());
}

main().catch((err: unknown) => {
  const pill = byId("connection");
  pill.dataset.state = "down";
  pill.textContent = `cannot reach the runtime: ${String(err)}`;
});
