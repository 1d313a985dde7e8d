// Handler failures in the kernel's log. A handler that throws answers its
// caller with a coded error, and an HTTP client may see only the code
// (`http.exposeErrors`): the operator reads the rest here, one line per
// failure with the service, its version, the method and the error's stack.
//
// How often a service fails is the service's choice, so nothing it does sets
// how much the host spends on it: each service has a budget of lines per
// second, as its console output has (core/console-sink.ts); past it a failure
// costs a counter, and the count is logged once a second. The error body is
// decoded only for failures within the budget and only when small, so a
// failing flood costs the kernel three bytes read per reply.

import { WIRE_VERSION, wireErrorOf } from "../protocol/wire.ts";
import { shortId } from "./bundle.ts";
import type { KernelLog } from "./log.ts";
import { decode } from "./wire.ts";
import type { DeliveryObserver } from "./slot.ts";

export const FAILURE_LOG_BUDGET = {
  /** Lines per second, per service, saved up over `burstSeconds` so a short burst is logged whole. */
  linesPerSec: 20,
  burstSeconds: 3,
  /** Error replies larger than this are logged without their body: the runtime's own stay far below it. */
  maxReplyBytes: 32 * 1024,
  /** Longest text kept of any field read from a reply. */
  maxFieldChars: 8192,
} as const;

/** How long a count of failures not logged gathers before the kernel logs it: once a second at most, per service. */
const DROPPED_REPORT_MS = 1000;

/** Who failed: the service, and the version that answered. */
export interface FailedVersion {
  versionId: string;
  semver: string;
}

class Budget {
  #lines: number = FAILURE_LOG_BUDGET.linesPerSec * FAILURE_LOG_BUDGET.burstSeconds;
  #at = performance.now();
  dropped = 0;

  take(): boolean {
    const now = performance.now();
    const { linesPerSec, burstSeconds } = FAILURE_LOG_BUDGET;
    this.#lines = Math.min(this.#lines + ((now - this.#at) / 1000) * linesPerSec, linesPerSec * burstSeconds);
    this.#at = now;
    if (this.#lines < 1) return false;
    this.#lines -= 1;
    return true;
  }
}

export class FailureLog {
  readonly #service: string;
  readonly #log: KernelLog;
  readonly #budget = new Budget();

  constructor(service: string, log: KernelLog) {
    this.#service = service;
    this.#log = log;
  }

  /**
   * An observer for the service's slot: each failed reply that is the
   * service's own (not relayed from a callee, whose own slot logs it) goes to
   * the log.
   */
  observer(): DeliveryObserver {
    return (_ms, failure, request, reply, instance) => {
      if (failure === undefined || reply === undefined || failure.service !== this.#service) return;
      this.failed(failure.code, request, reply, { versionId: instance.versionId, semver: instance.meta.semver });
    };
  }

  /** Logs one failed reply of this service to the call `request`, or counts it past the budget. */
  failed(code: string, request: Uint8Array, reply: Uint8Array, version: FailedVersion | undefined): void {
    if (!this.#budget.take()) {
      if (this.#budget.dropped++ === 0) {
        setTimeout(() => {
          const dropped = this.#budget.dropped;
          this.#budget.dropped = 0;
          this.#log.log("warn", "handler failures not logged", { service: this.#service, dropped });
        }, DROPPED_REPORT_MS).unref();
      }
      return;
    }
    const body = errorBody(reply);
    this.#log.log("error", "handler failed", {
      service: this.#service,
      version: version?.semver ?? null,
      versionId: version === undefined ? null : shortId(version.versionId),
      method: methodOf(request) ?? null,
      code,
      error: body?.message ?? null,
      stack: body?.stack ?? null,
    });
  }
}

/** The message and stack of an error reply, each bounded; undefined for a reply too large or not well-formed. */
function errorBody(reply: Uint8Array): { message: string | undefined; stack: string | undefined } | undefined {
  if (reply.byteLength > FAILURE_LOG_BUDGET.maxReplyBytes) return undefined;
  try {
    const decoded = decode(reply);
    if (!Array.isArray(decoded)) return undefined;
    const error = wireErrorOf(decoded) as unknown;
    if (typeof error !== "object" || error === null) return undefined;
    const { message, stack } = error as { message?: unknown; stack?: unknown };
    return { message: bounded(message), stack: bounded(stack) };
  } catch {
    return undefined;
  }
}

function bounded(value: unknown): string | undefined {
  if (typeof value !== "string") return undefined;
  const max = FAILURE_LOG_BUDGET.maxFieldChars;
  return value.length <= max ? value : `${value.slice(0, max)}… [${value.length - max} more characters cut]`;
}

/** Longest method name read from a request's header. */
const METHOD_MAX = 128;

/**
 * The method of a request (msgpack [WIRE_VERSION, method, payload]), read
 * from its first bytes without decoding the payload; undefined unless it is
 * a short printable ASCII string.
 */
function methodOf(request: Uint8Array): string | undefined {
  // A three-element array, the envelope's version as a positive fixint, then the method.
  if (request[0] !== 0x93 || request[1] !== WIRE_VERSION) return undefined;
  const tag = request[2];
  let start: number;
  let length: number;
  if (tag === undefined) return undefined;
  if (tag >= 0xa0 && tag <= 0xbf) [start, length] = [3, tag & 0x1f];
  else if (tag === 0xd9 && request.length > 3) [start, length] = [4, request[3] as number];
  else return undefined;
  if (length > METHOD_MAX || start + length > request.length) return undefined;
  let method = "";
  for (let i = start; i < start + length; i++) {
    const byte = request[i] as number;
    if (byte < 0x20 || byte > 0x7e) return undefined;
    method += String.fromCharCode(byte);
  }
  return method;
}
