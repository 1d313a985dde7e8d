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
export function fromWire(err: WireError): MoltError {
  const details: { service?: string; version?: string } = {};
  if (err.service !== undefined) details.service = err.service;
  if (err.version !== undefined) details.version = err.version;
  return new MoltError(err.code, err.message, details);
}

/** The reply shape of anything a handler threw; a code it carried is kept. */
export function toWire(err: unknown, fallbackCode: string, service: string, version: string): WireError {
  if (typeof err === "object" && err !== null) {
    const e = err as { code?: unknown; message?: unknown; service?: unknown; version?: unknown };
    const code = typeof e.code === "string" && e.code !== "" ? e.code : fallbackCode;
    // An error passed on from a callee names the callee, so the original culprit is kept.
    return {
      code,
      message: typeof e.message === "string" ? e.message : String(err),
      service: typeof e.service === "string" ? e.service : service,
      version: typeof e.version === "string" ? e.version : version,
    };
  }
  return { code: fallbackCode, message: String(err), service, version };
}
