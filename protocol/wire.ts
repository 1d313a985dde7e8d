// The wire format shared by the kernel and the guest runtime. Both sides
// import this one file so that an envelope written on one side is always
// read the same way on the other.
//
// A request is msgpack([WIRE_VERSION, method, payload]).
// A reply is   msgpack([WIRE_VERSION, REPLY_OK, value]) or
//              msgpack([WIRE_VERSION, REPLY_ERROR, { code, message, service?, version? }]).
// The kernel routes requests and replies as opaque bytes: it never decodes a
// message between two services, so a call costs one copy out of the caller's
// isolate and one copy into the callee's.

export const WIRE_VERSION = 1;
export const REPLY_ERROR = 0;
export const REPLY_OK = 1;

/**
 * Whether reply bytes carry an error, read without decoding the value: a
 * reply always starts with a three-element array header (0x93), the
 * envelope version, then the ok flag. Anything else is treated as an error.
 */
export function replyIsError(reply: Uint8Array): boolean {
  return !(reply[0] === 0x93 && reply[1] === WIRE_VERSION && reply[2] === REPLY_OK);
}

/** The envelope version of dumps and snapshots. */
export const DUMP_VERSION = 1;

export type DeliveryKind = "call" | "send";

export interface WireError {
  code: string;
  message: string;
  service?: string;
  version?: string;
}

/**
 * msgpackr options for messages and dumps. `structuredClone` keeps Maps,
 * Sets, Dates, binary data and cycles intact, like postMessage does. Its
 * records are defined inline in every message: no `structures` are shared
 * between encoder and decoder, so any message or dump decodes on its own, in
 * any isolate, in any later version of the code.
 */
export const PACK_OPTIONS = {
  structuredClone: true,
} as const;

/** How a fetch treats a redirect, as in the Fetch Standard. */
export type RedirectMode = "follow" | "error" | "manual";

/**
 * A guest's fetch, as it crosses to the host: msgpack([WIRE_VERSION,
 * FetchRequest]). The host checks every field: the guest runtime builds it,
 * but a service can tamper with its runtime.
 */
export interface FetchRequest {
  url: string;
  method: string;
  /** Lowercased names; repeated headers combined with ", ". */
  headers: Record<string, string>;
  body: Uint8Array | null;
  redirect: RedirectMode;
}

/** The host's answer to a fetch, in an ordinary reply envelope. */
export interface FetchReply {
  status: number;
  statusText: string;
  headers: [string, string][];
  body: Uint8Array;
  /** The URL of the response: the last one, when redirects were followed. */
  url: string;
  redirected: boolean;
}
