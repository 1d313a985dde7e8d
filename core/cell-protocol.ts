// The frames between the kernel and a cell (a child process hosting one
// instance). Each frame is msgpack in a versioned envelope, carried as bytes
// over Node's IPC channel; payloads inside are the same opaque request and
// reply bytes the kernel routes between isolates.

import { Packr } from "msgpackr";
import { PACK_OPTIONS } from "../protocol/wire.ts";
import { ErrorCode, MoltError } from "./errors.ts";

export const CELL_PROTOCOL = 1;

/** Kernel → cell. */
export type ParentFrame =
  | [typeof CELL_PROTOCOL, "op", number, string, unknown[]]
  | [typeof CELL_PROTOCOL, "bridge-reply", number, Uint8Array]
  | [typeof CELL_PROTOCOL, "verdict-ack", number];

/** Cell → kernel. */
export type ChildFrame =
  | [typeof CELL_PROTOCOL, "result", number, true, unknown]
  | [typeof CELL_PROTOCOL, "result", number, false, { code: string; message: string }]
  | [typeof CELL_PROTOCOL, "bridge", number, string, unknown[]]
  | [typeof CELL_PROTOCOL, "event", string, unknown[]];

const packr = new Packr({ ...PACK_OPTIONS });

export function encodeFrame(frame: ParentFrame | ChildFrame): Buffer {
  return Buffer.from(packr.pack(frame));
}

export function decodeFrame<T extends ParentFrame | ChildFrame>(data: unknown): T {
  const bytes = data instanceof Uint8Array ? data : Buffer.isBuffer(data) ? data : Buffer.from((data as { data: number[] }).data ?? []);
  const frame = packr.unpack(bytes) as T;
  if (!Array.isArray(frame) || frame[0] !== CELL_PROTOCOL) {
    throw new MoltError(ErrorCode.BAD_MESSAGE, "not a molt cell frame");
  }
  return frame;
}
