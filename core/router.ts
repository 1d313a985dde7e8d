// Routing: what one instance may reach. Its calls and sends go only through
// its own bindings; its console output goes to the log service (the kernel
// adds who said it and leaves the format to that service); its fetches and
// stdout writes pass its permissions. This is the kernel's side of the
// InstanceBridge.
//
// What an instance hands over here is its own choice, so nothing it chooses
// sets how much the host keeps or prints: console output is held to a
// per-service budget, and error codes and messages that reach the kernel's
// log or a key of a host-side map are bounded first.

import { shortId } from "./bundle.ts";
import { ErrorCode, MoltError, toMoltError } from "./errors.ts";
import type { InstanceBridge } from "./instance.ts";
import type { KernelLog } from "./log.ts";
import { permittedFetch } from "./permissions.ts";
import type { Slot } from "./slot.ts";
import { encodeErrorReply, encodeRequest } from "./wire.ts";

/**
 * Services on other runtimes, reached when a binding names a service that
 * does not run here (the fleet plugs this in; the kernel knows no transport).
 * `call` resolves with reply bytes and never rejects.
 */
export interface RemoteServices {
  call(service: string, request: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
  send(service: string, request: Uint8Array): void;
}

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

/** Longest error message the kernel logs for a service; a message is the guest's to choose. */
const MAX_LOGGED_MESSAGE_CHARS = 1024;

const LEVELS: ReadonlySet<string> = new Set(["debug", "info", "warn", "error"]);

/** The kernel's codes are a fixed set; any other code would let a guest pick map keys. */
const KERNEL_CODES: ReadonlySet<string> = new Set(Object.values(ErrorCode));

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

/** An error message as the kernel logs it: at most MAX_LOGGED_MESSAGE_CHARS. */
function clipMessage(text: string): string {
  return text.length <= MAX_LOGGED_MESSAGE_CHARS ? text : `${text.slice(0, MAX_LOGGED_MESSAGE_CHARS)}… [cut]`;
}

export interface RouterOptions {
  slots: ReadonlyMap<string, Slot>;
  /** The service that receives console output, if any. */
  logService: string | null;
  log: KernelLog;
  stdout: (text: string) => void;
}

export class Router {
  readonly #options: RouterOptions;
  readonly #sendFailures = new Map<string, { count: number }>();
  /** Per service: a flooding service spends its own budget, never a neighbour's. */
  readonly #budgets = new Map<string, ConsoleBudget>();
  #remote: RemoteServices | undefined;

  constructor(options: RouterOptions) {
    this.#options = options;
  }

  /** Plugs in the way to services on other runtimes (or unplugs it with undefined). */
  useRemote(remote: RemoteServices | undefined): void {
    this.#remote = remote;
  }

  /** The bridge for one instance of `slot`; `exited` is called when it dies on its own. */
  bridge(slot: Slot, exited: InstanceBridge["exited"]): InstanceBridge {
    const { stdout } = this.#options;
    return {
      call: async (binding, request) => {
        try {
          const to = this.#route(slot, binding);
          const reply =
            typeof to === "string"
              ? await (this.#remote as RemoteServices).call(to, request, slot.spec.limits.timeoutMs)
              : ((await to.deliver("call", request)) as Uint8Array);
          const max = slot.spec.limits.maxMessageBytes;
          if (reply.byteLength > max) {
            throw new MoltError(ErrorCode.MESSAGE_TOO_LARGE, `reply of ${reply.byteLength} bytes exceeds ${slot.name}'s maxMessageBytes (${max})`, {
              service: slot.name,
            });
          }
          return reply;
        } catch (err) {
          return encodeErrorReply(toMoltError(err));
        }
      },
      send: (binding, request) => this.#send(slot, binding, request),
      console: (level, text) => this.console(slot, level, text),
      fetch: (request) => permittedFetch(slot.name, slot.spec.permissions.net, request, slot.spec.limits.timeoutMs, slot.spec.limits.maxMessageBytes),
      stdout: (text) => {
        if (slot.spec.permissions.stdout) stdout(text);
      },
      exited,
      stalled: (verdict) => {
        const release = slot.mailbox.hold();
        void verdict.finally(release);
      },
    };
  }

  /**
   * Console output of a service, as a one-way message to the log service.
   * The log service's own output, and output it cannot take, is printed
   * directly, so nothing is lost and nothing loops. Lines past the service's
   * budget are dropped and counted; the kernel logs the count once a second.
   */
  console(slot: Slot, level: string, text: string): void {
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

  /** The local slot a binding leads to, or the name of a service on another runtime. */
  #route(slot: Slot, binding: string): Slot | string {
    const target = Object.hasOwn(slot.spec.bindings, binding) ? slot.spec.bindings[binding] : undefined;
    if (target === undefined) {
      throw new MoltError(ErrorCode.NO_BINDING, `service "${slot.name}" has no binding "${binding}"`, { service: slot.name });
    }
    // A local instance is preferred; otherwise the fleet, if this runtime is in one.
    const local = this.#options.slots.get(target);
    if (local !== undefined) return local;
    if (this.#remote !== undefined) return target;
    throw new MoltError(ErrorCode.NO_SERVICE, `"${target}" (binding "${binding}" of ${slot.name}) runs on no runtime this one can reach`, {
      service: slot.name,
    });
  }

  #send(slot: Slot, binding: string, request: Uint8Array): void {
    const { log } = this.#options;
    let to: Slot | string;
    try {
      to = this.#route(slot, binding);
    } catch (err) {
      log.log("warn", "send refused", { service: slot.name, code: toMoltError(err).code });
      return;
    }
    if (typeof to === "string") {
      (this.#remote as RemoteServices).send(to, request);
      return;
    }
    const local = to;
    local.deliver("send", request).catch((err: unknown) => {
      const e = toMoltError(err);
      // A flood of failing sends logs the first failure, then once a second
      // how many more failed the same way: not once per message. The key
      // holds only a kernel code, so the map has a few keys per pair of
      // services whatever codes the failures carry.
      const code = KERNEL_CODES.has(e.code) ? e.code : ErrorCode.OTHER;
      const key = `${slot.name}>${local.name}:${code}`;
      const seen = this.#sendFailures.get(key);
      if (seen !== undefined) {
        seen.count++;
        return;
      }
      const fields = { service: slot.name, to: local.name, code, error: clipMessage(e.message) };
      log.log("warn", "send failed", fields);
      const window = { count: 0 };
      this.#sendFailures.set(key, window);
      setTimeout(() => {
        this.#sendFailures.delete(key);
        if (window.count > 0) log.log("warn", "send failed", { ...fields, alsoFailedInTheLastSecond: window.count });
      }, 1000).unref();
    });
  }
}
