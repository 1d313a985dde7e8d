// The guest's view of molt errors: the same shape as the kernel's MoltError
// (a stable `code`, the service and version it concerns), rebuilt inside the
// isolate because guest code never imports host code.

import type { WireError } from "../protocol/wire.ts";

export class MoltError extends Error {
  override readonly name = "MoltError";
  readonly code: string;
  readonly service: string | undefined;
  readonly version: string | undefined;

  constructor(code: string, message: string, details: { service?: string; version?: string; cause?: unknown } = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    this.service = details.service;
    this.version = details.version;
  }
}

/** Rebuilds an error that arrived in a reply, keeping the callee's code. */
/**
 * Errors that really arrived from a callee. Only these keep naming another
 * service when a handler lets them through; any other error a handler
 * throws is this service's own, whatever its `service` field says, so a
 * service cannot blame its failures on a neighbour (and slip through its
 * probation that way).
 */
const relayed = new WeakSet<object>();

export function fromWire(err: WireError): MoltError {
  const details: { service?: string; version?: string } = {};
  if (err.service !== undefined) details.service = err.service;
  if (err.version !== undefined) details.version = err.version;
  const error = new MoltError(err.code, err.message, details);
  // The origin cannot be edited afterwards either.
  Object.defineProperty(error, "service", { value: error.service, writable: false, configurable: false });
  Object.defineProperty(error, "version", { value: error.version, writable: false, configurable: false });
  relayed.add(error);
  return error;
}

/** The reply shape of anything a handler threw; a code it carried is kept. */
export function toWire(err: unknown, fallbackCode: string, service: string, version: string): WireError {
  if (typeof err === "object" && err !== null) {
    const e = err as { code?: unknown; message?: unknown; service?: unknown; version?: unknown };
    const code = typeof e.code === "string" && e.code !== "" ? e.code : fallbackCode;
    // An error passed on from a callee names the callee, so the original culprit is kept.
    const fromCallee = relayed.has(err) && typeof e.service === "string";
    return {
      code,
      message: typeof e.message === "string" ? e.message : String(err),
      service: fromCallee ? (e.service as string) : service,
      version: fromCallee && typeof e.version === "string" ? e.version : version,
    };
  }
  return { code: fallbackCode, message: String(err), service, version };
}
