// Console output of services: each line a JSON record (time, level, who
// said it) sent as a one-way message to the log service, which owns the
// format. What a service prints is its own choice, so nothing it prints sets
// how much the host keeps or prints: each service has a budget of lines and
// bytes per second, long lines are cut, and drops are counted and reported
// once a second.

import { shortId } from "./bundle.ts";
import type { KernelLog } from "./log.ts";
import type { Slot } from "./slot.ts";
import { encodeRequest } from "./wire.ts";

/**
 * Each service's console budget, a token bucket in lines and in bytes. A
 * healthy service logs far less; a logging loop would otherwise cost the
 * kernel's one thread a JSON line and a message to the log service per line
 * (100,000 lines of 2 KB were 200 MB in two seconds) and drown its
 * neighbours' lines. The budget saves up a few seconds' worth, so a short
 * burst (a crash's stack traces, a startup banner) passes whole.
 */
export const CONSOLE_BUDGET = {
  linesPerSec: 1_000,
  bytesPerSec: 1024 * 1024,
  burstSeconds: 3,
  /** Longer lines are cut here (UTF-16 units, like String#length) and marked, so one line cannot spend a whole second's bytes. */
  maxLineChars: 16 * 1024,
} as const;

/** How long a dropped-lines count gathers before the kernel logs it: one warning a second at most, per service. */
const DROPPED_REPORT_MS = 1000;

const LEVELS: ReadonlySet<string> = new Set(["debug", "info", "warn", "error"]);

/** One service's console budget and what it dropped since the kernel last said so. */
class ConsoleBudget {
  #lines: number = CONSOLE_BUDGET.linesPerSec * CONSOLE_BUDGET.burstSeconds;
  #bytes: number = CONSOLE_BUDGET.bytesPerSec * CONSOLE_BUDGET.burstSeconds;
  #at = performance.now();
  #droppedLines = 0;
  #droppedBytes = 0;

  /** Spends one line of `bytes`, or says there is not enough left. */
  take(bytes: number): boolean {
    const now = performance.now();
    const seconds = (now - this.#at) / 1000;
    this.#at = now;
    const { linesPerSec, bytesPerSec, burstSeconds } = CONSOLE_BUDGET;
    this.#lines = Math.min(this.#lines + seconds * linesPerSec, linesPerSec * burstSeconds);
    this.#bytes = Math.min(this.#bytes + seconds * bytesPerSec, bytesPerSec * burstSeconds);
    if (this.#lines < 1 || this.#bytes < bytes) return false;
    this.#lines -= 1;
    this.#bytes -= bytes;
    return true;
  }

  /** Counts a line that was dropped; true if it is the first since the last report. */
  drop(bytes: number): boolean {
    this.#droppedLines++;
    this.#droppedBytes += bytes;
    return this.#droppedLines === 1;
  }

  /** What was dropped since the last report; starts a new count. */
  report(): { lines: number; bytes: number } {
    const dropped = { lines: this.#droppedLines, bytes: this.#droppedBytes };
    this.#droppedLines = this.#droppedBytes = 0;
    return dropped;
  }
}

/** A console line cut to the line limit, with a marker saying how much was cut. */
function clipLine(text: string): string {
  const max = CONSOLE_BUDGET.maxLineChars;
  if (text.length <= max) return text;
  // Cut already by the guest runtime (guest/globals.ts), with its count.
  if (text.length <= max + 48 && /… \[\d+ more characters cut\]$/.test(text)) return text;
  // Never split a surrogate pair: half of one is not a character.
  const code = text.charCodeAt(max - 1);
  const end = code >= 0xd800 && code <= 0xdbff ? max - 1 : max;
  return `${text.slice(0, end)}… [${text.length - end} more characters cut]`;
}


export interface ConsoleSinkOptions {
  slots: ReadonlyMap<string, Slot>;
  /** The service that receives console output, if any. */
  logService: string | null;
  log: KernelLog;
  stdout: (text: string) => void;
}

export class ConsoleSink {
  readonly #options: ConsoleSinkOptions;
  /** Per service: a flooding service spends its own budget, never a neighbour's. */
  readonly #budgets = new Map<string, ConsoleBudget>();

  constructor(options: ConsoleSinkOptions) {
    this.#options = options;
  }

  /**
   * Console output of a service, as a one-way message to the log service.
   * The log service's own output, and output it cannot take, is printed
   * directly, so nothing is lost and nothing loops. Lines past the service's
   * budget are dropped and counted; the kernel logs the count once a second.
   */
  write(slot: Slot, level: string, text: string): void {
    const { slots, logService, stdout } = this.#options;
    const message = clipLine(text);
    if (!this.#spend(slot.name, Buffer.byteLength(message))) return;
    const record = {
      time: new Date().toISOString(),
      level: LEVELS.has(level) ? level : "info",
      service: slot.name,
      version: slot.instance?.meta.semver ?? null,
      versionId: slot.instance === undefined ? null : shortId(slot.instance.versionId),
      message,
    };
    const sink = logService === null ? undefined : slots.get(logService);
    if (sink === undefined || sink === slot) {
      stdout(`${JSON.stringify(record)}\n`);
      return;
    }
    sink.deliver("send", encodeRequest("write", record)).catch(() => stdout(`${JSON.stringify(record)}\n`));
  }

  /** Takes one line of `bytes` from `service`'s console budget, or counts it as dropped. */
  #spend(service: string, bytes: number): boolean {
    let budget = this.#budgets.get(service);
    if (budget === undefined) {
      budget = new ConsoleBudget();
      this.#budgets.set(service, budget);
    }
    if (budget.take(bytes)) return true;
    if (budget.drop(bytes)) {
      const counted = budget;
      setTimeout(() => this.#options.log.log("warn", "console output dropped", { service, ...counted.report() }), DROPPED_REPORT_MS).unref();
    }
    return false;
  }

}
