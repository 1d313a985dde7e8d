// The kernel's side of the wire format (protocol/wire.ts): building requests
// for messages the kernel itself originates (HTTP requests, calls from the
// host API) and reading replies. Messages between two services pass through
// the kernel as opaque bytes and never come here.

import { Packr } from "msgpackr";
import { PACK_OPTIONS, REPLY_OK, WIRE_VERSION, errorReplyEnvelope, wireErrorOf, type WireError } from "../protocol/wire.ts";
import { STORAGE_FAILED } from "../protocol/storage.ts";
import { ErrorCode, MoltError } from "./errors.ts";

const packr = new Packr({
  ...PACK_OPTIONS,
  writeFunction: () => {
    throw new MoltError(ErrorCode.UNENCODABLE, "functions cannot be sent to a service");
  },
});

/**
 * Encodes to an exact-size copy, since isolated-vm copies a view's whole
 * underlying buffer. On Node, msgpackr returns a Buffer that views its
 * working buffer (one for the whole process, shared by every Packr), and
 * Buffer's `slice()` is a view too: a working buffer grown once by any large
 * value (a cell's boot frame, a dump) would then be copied whole into the
 * isolate on every call after it.
 */
export function encode(value: unknown): Uint8Array {
  try {
    return new Uint8Array(packr.pack(value));
  } catch (err) {
    if (err instanceof MoltError) throw err;
    throw new MoltError(ErrorCode.UNENCODABLE, `value cannot be encoded: ${(err as Error).message}`, { cause: err });
  }
}

export function decode(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}

export function encodeRequest(method: string, payload: unknown): Uint8Array {
  return encode([WIRE_VERSION, method, payload]);
}

export function encodeErrorReply(err: MoltError): Uint8Array {
  return encode(errorReplyEnvelope(err.toJSON()));
}

/** A storage request's failure, as protocol/storage.ts lays it out: nothing was written. */
export function encodeStorageFailure(code: string, message: string): Uint8Array {
  return encode([STORAGE_FAILED, code, message]);
}

export function encodeOkReply(value: unknown): Uint8Array {
  return encode([WIRE_VERSION, REPLY_OK, value]);
}

/** Reads a reply: its value, or the error it carries thrown as a MoltError. */
export function decodeReply(bytes: Uint8Array): unknown {
  let reply: unknown;
  try {
    reply = packr.unpack(bytes);
  } catch (cause) {
    throw new MoltError(ErrorCode.BAD_MESSAGE, "undecodable reply", { cause });
  }
  if (!Array.isArray(reply) || reply[0] !== WIRE_VERSION) throw new MoltError(ErrorCode.BAD_MESSAGE, "not a molt reply");
  if (reply[1] === REPLY_OK) return reply[2];
  const err = wireErrorOf(reply) as WireError | undefined;
  throw new MoltError(String(err?.code ?? ErrorCode.INTERNAL), String(err?.message ?? "unknown error"), {
    service: err?.service,
    version: err?.version,
  });
}
