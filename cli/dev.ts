// `molt dev`: `molt run`, plus a watcher that hot-swaps a service whenever
// its entry, or any file its bundle imports, is saved. The swap is the
// kernel's own (state kept, blackout measured); a compile error or a refused
// swap is printed and the running version goes on serving.

import { watch, type FSWatcher } from "node:fs";
import { dirname, join } from "node:path";
import { bundleWithInputs, shortId, type Bundle } from "../core/bundle.ts";
import type { ResolvedConfig } from "../core/config.ts";
import { toMoltError } from "../core/errors.ts";
import type { Kernel } from "../core/kernel.ts";
import type { SwapReport } from "../protocol/admin.ts";
import { run } from "./run.ts";
import { displayPath } from "./stale-entries.ts";

/**
 * How long a service's files must be quiet before it is swapped: an editor's
 * save is often several writes (truncate, write, rename), and a formatter
 * may rewrite the file right after.
 */
const DEBOUNCE_MS = 150;

export async function devCommand(configArg: string | undefined): Promise<void> {
  await run(configArg, { ready: (kernel, config) => new DevWatcher(kernel, config).start() });
}

const say = (line: string): void => void process.stdout.write(`molt dev: ${line}\n`);
const complain = (line: string): void => void process.stderr.write(`molt dev: ${line}\n`);

interface Watched {
  entry: string;
  /** The files its last successful bundle read; the entry alone until one succeeded. */
  inputs: Set<string>;
  timer: NodeJS.Timeout | undefined;
  /** A deploy runs; `again` asks for one more when it ends, for a save that came meanwhile. */
  busy: boolean;
  again: boolean;
}

class DevWatcher {
  readonly #kernel: Kernel;
  readonly #services = new Map<string, Watched>();
  /**
   * Folders, not files, are watched: editors that save by writing a new
   * file and renaming it over the old one would end a watch on the file.
   */
  readonly #folders = new Map<string, FSWatcher>();

  constructor(kernel: Kernel, config: ResolvedConfig) {
    this.#kernel = kernel;
    for (const [name, spec] of Object.entries(config.services)) {
      this.#services.set(name, { entry: spec.entry, inputs: new Set([spec.entry]), timer: undefined, busy: false, again: false });
    }
  }

  /** Brings every service up to what is on disk, then watches. */
  start(): void {
    say(`watching ${this.#services.size} service${this.#services.size === 1 ? "" : "s"}; save a file to swap it live`);
    for (const name of this.#services.keys()) void this.#deploy(name, true);
  }

  #schedule(name: string): void {
    const watched = this.#services.get(name);
    if (watched === undefined) return;
    clearTimeout(watched.timer);
    watched.timer = setTimeout(() => void this.#deploy(name, false), DEBOUNCE_MS);
  }

  async #deploy(name: string, atStart: boolean): Promise<void> {
    const watched = this.#services.get(name);
    if (watched === undefined) return;
    if (watched.busy) {
      watched.again = true;
      return;
    }
    watched.busy = true;
    try {
      const bundle = await this.#bundle(name, watched);
      if (bundle === undefined) return;
      const running = this.#kernel.running(name);
      if (bundle.hash === running) {
        if (!atStart) say(`${name} unchanged (${shortId(bundle.hash)})`);
        return;
      }
      if (atStart) say(`${name}: ${displayPath(watched.entry)} changed since ${running === null ? "its last run" : shortId(running)} was built; swapping`);
      this.#report(await this.#kernel.swapBundle(name, bundle));
    } catch (err) {
      const e = toMoltError(err);
      complain(`${name} not swapped: ${e.code}: ${e.message}; it runs ${shortId(this.#kernel.running(name) ?? "-")} still`);
    } finally {
      watched.busy = false;
      if (watched.again) {
        watched.again = false;
        this.#schedule(name);
      }
    }
  }

  /** Bundles the entry and watches what it read; a compile error is printed and yields nothing. */
  async #bundle(name: string, watched: Watched): Promise<Bundle | undefined> {
    try {
      const { bundle, inputs } = await bundleWithInputs(watched.entry);
      // Packages change by install, not by save: their folders are left alone.
      watched.inputs = new Set([watched.entry, ...inputs.filter((input) => !input.includes("/node_modules/"))]);
      return bundle;
    } catch (err) {
      const e = toMoltError(err);
      complain(`${name} does not compile (${e.code}); it runs ${shortId(this.#kernel.running(name) ?? "-")} still:\n${e.message}`);
      // The files the failed build read are not known: the last good build's, and the entry, stay watched.
      watched.inputs.add(watched.entry);
      return undefined;
    } finally {
      for (const input of watched.inputs) this.#watchFolder(dirname(input));
    }
  }

  #watchFolder(folder: string): void {
    if (this.#folders.has(folder)) return;
    try {
      const watcher = watch(folder, { persistent: false }, (_event, file) => {
        if (file === null) return;
        const path = join(folder, file);
        for (const [name, watched] of this.#services) if (watched.inputs.has(path)) this.#schedule(name);
      });
      // A folder removed while watched is not worth stopping the runtime for.
      watcher.on("error", () => this.#folders.delete(folder));
      this.#folders.set(folder, watcher);
    } catch (err) {
      complain(`cannot watch ${folder}: ${toMoltError(err).message}`);
    }
  }

  #report(report: SwapReport): void {
    const from = `${report.from.semver} (${shortId(report.from.version)})`;
    const to = report.to === null ? "?" : `${report.to.semver} (${shortId(report.to.version)})`;
    const blackout = report.blackoutMs === null || report.blackoutMs === undefined ? "-" : `${report.blackoutMs.toFixed(3)} ms`;
    if (report.outcome === "committed") {
      say(`${report.service} committed ${from} → ${to}, stateVersion ${report.from.stateVersion} → ${report.to?.stateVersion}, blackout ${blackout}`);
      return;
    }
    if (report.outcome === "unchanged") {
      say(`${report.service} unchanged (${from})`);
      return;
    }
    const error = report.error === undefined ? "" : `: ${report.error.code} in ${report.error.phase}: ${report.error.message}`;
    complain(`${report.service} ${report.outcome}${error}; it runs ${report.outcome === "unhealthy" ? to : from}, blackout ${blackout}`);
  }
}
