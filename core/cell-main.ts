// The program a cell runs: one instance in an isolate, in its own process,
// so that a service able to abort V8 itself (some allocation patterns get
// past isolated-vm's memory limit and abort the whole process) takes down
// only its cell. It does what the kernel asks over IPC and relays the
// instance's bridge calls back to the kernel.

import type { DeliveryKind } from "../protocol/wire.ts";
import { decodeFrame, encodeFrame, CELL_PROTOCOL, type ChildFrame, type ParentFrame } from "./cell-protocol.ts";
import { ErrorCode, MoltError, toMoltError } from "./errors.ts";
import type { BootSpec, Instance, InstanceBridge } from "./instance.ts";
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

function ask(fn: string, args: unknown[]): Promise<Uint8Array> {
  const id = nextId++;
  return new Promise((resolve) => {
    pending.set(id, resolve);
    send([CELL_PROTOCOL, "bridge", id, fn, args]);
  });
}

async function run(op: string, args: unknown[]): Promise<unknown> {
  if (op === "boot") {
    const [spec, runtime] = args as [BootSpec, string];
    instance = await bootIsolate(spec, bridge, runtime);
    return instance.meta;
  }
  if (instance === undefined) throw new MoltError(ErrorCode.SERVICE_DOWN, "the cell has no instance");
  switch (op) {
    case "init":
      return instance.init();
    case "start":
      return instance.start();
    case "stop":
      return instance.stop();
    case "restore":
      return instance.restore(args[0] as Uint8Array, args[1] as number, args[2] as { start?: boolean; timeoutMs?: number });
    case "dump":
      return instance.dump(args[0] as { stop?: boolean; timeoutMs?: number });
    case "deliver":
      return instance.deliver(args[0] as DeliveryKind, args[1] as Uint8Array);
    case "dispose":
      instance.dispose();
      setTimeout(() => process.exit(0), 10);
      return undefined;
    default:
      throw new MoltError(ErrorCode.INTERNAL, `unknown cell op ${op}`);
  }
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
  run(op, args).then(
    (value) => send([CELL_PROTOCOL, "result", id, true, value]),
    (err: unknown) => send([CELL_PROTOCOL, "result", id, false, toMoltError(err).toJSON()]),
  );
});
// The kernel going away takes its cells with it.
process.on("disconnect", () => process.exit(0));
send([CELL_PROTOCOL, "event", "ready", []]);
