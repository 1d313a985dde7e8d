// The program a cell runs: one instance in an isolate, in its own process,
// so that a service able to abort V8 itself (some allocation patterns get
// past isolated-vm's memory limit and abort the whole process) takes down
// only its cell. It does what the kernel asks over IPC and relays the
// instance's bridge calls back to the kernel.

import {
  CELL_PROTOCOL,
  decodeFrame,
  encodeFrame,
  type CellArgs,
  type CellAsks,
  type CellOp,
  type CellResult,
  type ChildFrame,
  type ParentFrame,
} from "./cell-protocol.ts";
import { ErrorCode, MoltError, toMoltError } from "./errors.ts";
import type { Instance, InstanceBridge } from "./instance.ts";
import { bootIsolate } from "./isolate-host.ts";

const send = (frame: ChildFrame): void => {
  process.send?.(encodeFrame(frame));
};

let instance: Instance | undefined;
let nextId = 1;
const pending = new Map<number, (bytes: Uint8Array) => void>();

const bridge: InstanceBridge = {
  call: (binding, request) => ask("call", [binding, request]),
  fetch: (request) => ask("fetch", [request]),
  storage: (request) => ask("storage", [request]),
  send: (binding, request) => send([CELL_PROTOCOL, "event", "send", [binding, request]]),
  console: (level, text) => send([CELL_PROTOCOL, "event", "console", [level, text]]),
  stdout: (text) => send([CELL_PROTOCOL, "event", "stdout", [text]]),
  exited: (reason) => {
    send([CELL_PROTOCOL, "event", "exited", [reason.toJSON()]]);
    // Nothing is left to host: leave once the kernel has the message.
    setTimeout(() => process.exit(0), 50);
  },
  stalled: (verdict) => {
    const id = nextId++;
    send([CELL_PROTOCOL, "event", "stalled", [id]]);
    void verdict.then((healthy) => send([CELL_PROTOCOL, "event", "verdict", [id, healthy]]));
  },
};

function ask<Ask extends keyof CellAsks>(fn: Ask, args: CellAsks[Ask]): Promise<Uint8Array> {
  const id = nextId++;
  return new Promise((resolve) => {
    pending.set(id, resolve);
    send([CELL_PROTOCOL, "bridge", id, fn, args] as ChildFrame);
  });
}

function live(): Instance {
  if (instance === undefined) throw new MoltError(ErrorCode.SERVICE_DOWN, "the cell has no instance");
  return instance;
}

/** The deadline the kernel gave an op, as the Instance takes it: none means the service's own. */
const within = (timeoutMs: number | null): { timeoutMs?: number } => (timeoutMs === null ? {} : { timeoutMs });

/** Each op the kernel may ask, run on the instance this cell hosts. */
const ops: { [Op in CellOp]: (args: CellArgs<Op>) => Promise<CellResult<Op>> } = {
  boot: async ([spec, runtime]) => {
    instance = await bootIsolate(spec, bridge, runtime);
    return instance.meta;
  },
  init: () => live().init().then(() => undefined),
  start: () => live().start().then(() => undefined),
  stop: () => live().stop().then(() => undefined),
  dump: ([timeoutMs]) => live().dump(within(timeoutMs)),
  quiesce: ([timeoutMs]) => live().dump({ stop: true, ...within(timeoutMs) }),
  restore: ([dump, fromStateVersion, timeoutMs]) => live().restore(dump, fromStateVersion, within(timeoutMs)).then(() => undefined),
  resume: ([dump, fromStateVersion, timeoutMs]) =>
    live().restore(dump, fromStateVersion, { start: true, ...within(timeoutMs) }).then(() => undefined),
  "rehearse-quiesce": ([timeoutMs]) => live().dump({ rehearse: true, ...within(timeoutMs) }),
  "rehearse-resume": ([dump, fromStateVersion, timeoutMs]) =>
    live().restore(dump, fromStateVersion, { rehearse: true, ...within(timeoutMs) }).then(() => undefined),
  deliver: ([kind, request]) => live().deliver(kind, request),
  dispose: async () => {
    instance?.dispose();
    setTimeout(() => process.exit(0), 10);
    return undefined;
  },
};

async function run<Op extends CellOp>(op: Op, args: CellArgs<Op>): Promise<CellResult<Op>> {
  // A name off the wire is looked up as an own key only.
  if (!Object.hasOwn(ops, op)) throw new MoltError(ErrorCode.INTERNAL, `unknown cell op ${String(op)}`);
  const handler: (args: CellArgs<Op>) => Promise<CellResult<Op>> = ops[op];
  return handler(args);
}

process.on("message", (data: unknown) => {
  const frame = decodeFrame<ParentFrame>(data);
  if (frame[1] === "bridge-reply") {
    const resolve = pending.get(frame[2]);
    pending.delete(frame[2]);
    resolve?.(frame[3]);
    return;
  }
  if (frame[1] !== "op") return;
  const [, , id, op, args] = frame;
  run(op, args as CellArgs<typeof op>).then(
    (value) => send([CELL_PROTOCOL, "result", id, true, value]),
    (err: unknown) => send([CELL_PROTOCOL, "result", id, false, toMoltError(err).toJSON()]),
  );
});
// The kernel going away takes its cells with it.
process.on("disconnect", () => process.exit(0));
send([CELL_PROTOCOL, "event", "ready", []]);
