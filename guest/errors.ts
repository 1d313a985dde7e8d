// The guest's side of molt errors: the contract's MoltError and codes
// (protocol/errors.ts, the same class the kernel uses, bundled into the
// isolate), and how an error turns into a reply and back.

import { ErrorCode, MoltError } from "../protocol/errors.ts";
import type { WireError } from "../protocol/wire.ts";

export { ErrorCode, MoltError };

/**
 * Errors that really arrived from a callee. Only these keep naming another
 * service when a handler lets them through; any other error a handler
 * throws is this service's own, whatever its `service` field says, so a
 * service cannot blame its failures on a neighbour (and slip through its
 * probation that way).
 */
const relayed = new WeakSet<object>();

/** Rebuilds an error that arrived in a reply, keeping the callee's code. */
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
