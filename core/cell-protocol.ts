// The frames between the kernel and a cell (a child process hosting one
// instance). Each frame is msgpack in a versioned envelope, carried as bytes
// over Node's IPC channel; payloads inside are the same opaque request and
// reply bytes the kernel routes between isolates. What each side may say is
// typed here, once: the kernel's asks (the control ops of
// protocol/control.ts, plus boot, deliver and dispose), and the cell's
// bridge calls and events.

import { Packr } from "msgpackr";
import type { ControlArgs, ControlResult, LifecycleOp, ServiceMeta } from "../protocol/control.ts";
import { PACK_OPTIONS, type DeliveryKind, type WireError } from "../protocol/wire.ts";
import { ErrorCode, MoltError } from "./errors.ts";
import type { BootSpec } from "./instance.ts";

export const CELL_PROTOCOL = 1;

/**
 * What the kernel asks of a cell, each answered by one "result" frame. The
 * lifecycle ops are the isolate's own control ops (protocol/control.ts),
 * with one more argument: the deadline the kernel gives the op (a swap's
 * budget), or null for the service's own. Ops whose Instance method takes
 * no deadline (init, start, stop) are always sent null.
 */
export type CellOps = {
  boot: { args: [spec: BootSpec, runtime: string]; result: ServiceMeta };
  deliver: { args: [kind: DeliveryKind, request: Uint8Array]; result: Uint8Array | undefined };
  dispose: { args: []; result: undefined };
} & { [Op in LifecycleOp]: { args: [...ControlArgs<Op>, timeoutMs: number | null]; result: ControlResult<Op> } };

export type CellOp = keyof CellOps;
export type CellArgs<Op extends CellOp> = CellOps[Op]["args"];
export type CellResult<Op extends CellOp> = CellOps[Op]["result"];

/** The instance's bridge calls that wait for an answer: the kernel answers each with a "bridge-reply" frame. */
export interface CellAsks {
  call: [binding: string, request: Uint8Array];
  fetch: [request: Uint8Array];
  storage: [request: Uint8Array];
}

/** What a cell tells the kernel without waiting for an answer. */
export interface CellEvents {
  ready: [];
  send: [binding: string, request: Uint8Array];
  console: [level: string, text: string];
  stdout: [text: string];
  /** A call passed its deadline: the verdict on the instance follows as "verdict" with the same id. */
  stalled: [id: number];
  verdict: [id: number, healthy: boolean];
  exited: [reason: WireError];
}

type OpFrame = { [Op in CellOp]: [typeof CELL_PROTOCOL, "op", number, Op, CellArgs<Op>] }[CellOp];
type AskFrame = { [Ask in keyof CellAsks]: [typeof CELL_PROTOCOL, "bridge", number, Ask, CellAsks[Ask]] }[keyof CellAsks];
export type CellEventFrame = { [Event in keyof CellEvents]: [typeof CELL_PROTOCOL, "event", Event, CellEvents[Event]] }[keyof CellEvents];

/** Kernel → cell. */
export type ParentFrame = OpFrame | [typeof CELL_PROTOCOL, "bridge-reply", number, Uint8Array];

/** Cell → kernel. A result's value is the result of the op its id names. */
export type ChildFrame =
  | [typeof CELL_PROTOCOL, "result", number, true, unknown]
  | [typeof CELL_PROTOCOL, "result", number, false, WireError]
  | AskFrame
  | CellEventFrame;

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
