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
 * Sets, Dates, binary data and cycles intact, like postMessage does;
 * records stay off because their shared structures would tie every message
 * to codec state on both sides. `variableMapSize` keeps large plain objects
 * encodable when records are off.
 */
export const PACK_OPTIONS = {
  structuredClone: true,
  useRecords: false,
  moreTypes: true,
  variableMapSize: true,
} as const;
