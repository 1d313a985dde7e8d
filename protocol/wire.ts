// The wire format shared by the kernel and the guest runtime. Both sides
// import this one file so that an envelope written on one side is always
// read the same way on the other.
//
// A request is msgpack([WIRE_VERSION, method, payload]).
// A reply is   msgpack([WIRE_VERSION, REPLY_OK, value]) or
//              msgpack([WIRE_VERSION, REPLY_ERROR, code, service, { code, message, service?, version? }]).
// The kernel routes requests and replies as opaque bytes: it never decodes a
// message between two services, so a call costs one copy out of the caller's
// isolate and one copy into the callee's. What it must know of a reply (did
// it fail, with which code, whose failure was it) is in the header, read
// without decoding the value (`replyFailure`).

import { ErrorCode } from "./errors.ts";

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

/** The envelope of an error reply: its code and the service at fault first, where `replyFailure` reads them. */
export function errorReplyEnvelope(error: WireError): unknown[] {
  return [WIRE_VERSION, REPLY_ERROR, error.code, error.service ?? null, error];
}

/** The error a decoded error reply carries: after its header, or (a reply from an older runtime of the fleet) in place of the value. */
export function wireErrorOf(reply: readonly unknown[]): WireError {
  return (reply.length >= 5 ? reply[4] : reply[2]) as WireError;
}

/** What the kernel reads of a failed reply: the code, and the service whose failure it is (null when none is named). */
export interface ReplyFailure {
  code: string;
  service: string | null;
}

/**
 * A reply's failure, read from its header without decoding its value:
 * undefined for a success; for anything that is not a well-formed error
 * header (a foreign or corrupt reply), ERR_BAD_MESSAGE.
 */
export function replyFailure(reply: Uint8Array): ReplyFailure | undefined {
  if (!replyIsError(reply)) return undefined;
  if (reply[0] !== 0x95 || reply[1] !== WIRE_VERSION || reply[2] !== REPLY_ERROR) return BAD_REPLY;
  const code = readString(reply, 3);
  if (code === undefined || code.value === null) return BAD_REPLY;
  const service = readString(reply, code.end);
  if (service === undefined) return BAD_REPLY;
  // A code is the service's to choose: one no header can carry whole is malformed, and counted as such.
  return { code: code.value ?? MALFORMED, service: service.value === undefined ? null : service.value };
}

const BAD_REPLY: ReplyFailure = Object.freeze({ code: ErrorCode.BAD_MESSAGE, service: null });
/** What a code that is not a short printable ASCII string is read as (the metrics' label for malformed codes). */
const MALFORMED = ErrorCode.OTHER;

/** Longest string read from a header: error codes are bounded at 128 characters, service names shorter still. */
const HEADER_STRING_MAX = 255;

/**
 * A msgpack string or nil at `at`: its value (null for nil; undefined for a
 * string too long or not printable ASCII, as codes and service names are)
 * and where the next item starts; undefined when no string or nil is there.
 */
function readString(bytes: Uint8Array, at: number): { value: string | null | undefined; end: number } | undefined {
  const tag = bytes[at];
  if (tag === undefined) return undefined;
  if (tag === 0xc0) return { value: null, end: at + 1 };
  let start: number;
  let length: number;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (tag >= 0xa0 && tag <= 0xbf) [start, length] = [at + 1, tag & 0x1f];
  else if (tag === 0xd9 && at + 2 <= bytes.length) [start, length] = [at + 2, view.getUint8(at + 1)];
  else if (tag === 0xda && at + 3 <= bytes.length) [start, length] = [at + 3, view.getUint16(at + 1)];
  else if (tag === 0xdb && at + 5 <= bytes.length) [start, length] = [at + 5, view.getUint32(at + 1)];
  else return undefined;
  const end = start + length;
  if (end > bytes.length) return undefined;
  if (length > HEADER_STRING_MAX) return { value: undefined, end };
  let value = "";
  for (let i = start; i < end; i++) {
    const byte = bytes[i] as number;
    if (byte < 0x20 || byte > 0x7e) return { value: undefined, end };
    value += String.fromCharCode(byte);
  }
  return { value, end };
}

/** The envelope version of dumps and snapshots: [DUMP_VERSION, stateVersion, value, codec?] (the codec: guest/dump-codec.ts; a dump without it was written with structured clone). */
export const DUMP_VERSION = 1;

export type DeliveryKind = "call" | "send";

export interface WireError {
  code: string;
  message: string;
  service?: string;
  version?: string;
  /** A handler's own failure: its stack, bounded (logged by the host, never shown to an HTTP client by default). */
  stack?: string;
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
