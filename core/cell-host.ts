// Hosts an instance in a cell: a child process of its own, for services
// whose failures must not reach the kernel's process. Measured here, a Map
// that grows without end inside an isolate with a 128 MB limit aborts the
// whole Node process (SIGABRT): no in-process limit contains that. In a cell
// the abort ends the cell; the kernel sees the process exit, fails the calls
// in flight with ERR_SERVICE_CRASHED and restarts the service from its last
// snapshot, while every other service keeps serving and the sockets stay open.
//
// The price: each message crosses a process boundary (IPC) on top of the
// isolate boundary, and each cell is a Node process (tens of MB). Cells are
// per instance, so a swap's new version boots in a new cell and a version
// that dies in restore cannot take the old one with it.

import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { dumpOp, restoreOp } from "../protocol/control.ts";
import type { DeliveryKind } from "../protocol/wire.ts";
import {
  CELL_PROTOCOL,
  decodeFrame,
  encodeFrame,
  type CellArgs,
  type CellEventFrame,
  type CellOp,
  type CellResult,
  type ChildFrame,
  type ParentFrame,
} from "./cell-protocol.ts";
import { ErrorCode, MoltError } from "./errors.ts";
import type { BootSpec, DumpOptions, Instance, InstanceBridge, RestoreOptions, ServiceMeta } from "./instance.ts";

const CELL_MAIN = fileURLToPath(new URL("./cell-main.ts", import.meta.url));
/** Slack past an op's deadline before the kernel gives up on a silent cell. */
const CELL_GRACE_MS = 2000;
/** How long a cell may take to boot its instance: a Node process and an isolate, loaded from nothing. */
const CELL_BOOT_MS = 30_000;

export async function bootCell(spec: BootSpec, bridge: InstanceBridge, runtimeCode: string): Promise<Instance> {
  const child = fork(CELL_MAIN, [], {
    execArgv: ["--no-node-snapshot", "--import", import.meta.resolve("tsx")],
    serialization: "advanced",
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const cell = new CellInstance(spec, bridge, child);
  try {
    await cell.ready;
    cell.meta = await cell.op("boot", [spec, runtimeCode], CELL_BOOT_MS);
    return cell;
  } catch (err) {
    cell.dispose();
    throw err;
  }
}

class CellInstance implements Instance {
  readonly service: string;
  readonly versionId: string;
  meta: ServiceMeta = { semver: "0.0.0", stateVersion: 1, restoresFrom: null, hasRestore: false, handlers: [] };
  readonly ready: Promise<void>;
  readonly #spec: BootSpec;
  readonly #bridge: InstanceBridge;
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: MoltError) => void; timer: NodeJS.Timeout }>();
  readonly #verdicts = new Map<number, (healthy: boolean) => void>();
  #nextId = 1;
  #disposed = false;

  constructor(spec: BootSpec, bridge: InstanceBridge, child: ChildProcess) {
    this.service = spec.service.name;
    this.versionId = spec.versionId;
    this.#spec = spec;
    this.#bridge = bridge;
    this.#child = child;
    let ready: () => void = () => undefined;
    this.ready = new Promise((resolve) => (ready = resolve));
    child.on("message", (data: unknown) => this.#onFrame(decodeFrame<ChildFrame>(data), ready));
    child.on("exit", (code, signal) => this.#onExit(code, signal));
    child.on("error", () => undefined);
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  async init(): Promise<void> {
    await this.op("init", [null]);
  }

  async start(): Promise<void> {
    await this.op("start", [null]);
  }

  async stop(): Promise<void> {
    await this.op("stop", [null]);
  }

  // The same control ops an isolate answers (protocol/control.ts): a restore
  // that starts too is `resume`, a dump that stops first is `quiesce`, and
  // either as a rehearsal is `rehearse-resume` or `rehearse-quiesce`.
  async restore(dump: Uint8Array, fromStateVersion: number, options: RestoreOptions = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? null;
    await this.op(restoreOp(options), [dump, fromStateVersion, timeoutMs], timeoutMs);
  }

  dump(options: DumpOptions = {}): Promise<Uint8Array> {
    const timeoutMs = options.timeoutMs ?? null;
    return this.op(dumpOp(options), [timeoutMs], timeoutMs);
  }

  deliver(kind: DeliveryKind, request: Uint8Array): Promise<Uint8Array | undefined> {
    return this.op("deliver", [kind, request]);
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#failAll(new MoltError(ErrorCode.SERVICE_DOWN, `${this.service}'s cell was disposed`, { service: this.service }));
    if (this.#child.connected) this.#child.send(encodeFrame([CELL_PROTOCOL, "op", 0, "dispose", []]));
    // A cell that does not leave on its own is made to.
    setTimeout(() => this.#child.kill("SIGKILL"), 500).unref();
  }

  /** One op (cell-protocol.ts); `deadlineMs` is how long the cell itself has to answer it, by default the service's deadline. */
  op<Op extends CellOp>(name: Op, args: CellArgs<Op>, deadlineMs: number | null = null): Promise<CellResult<Op>> {
    if (this.#disposed || !this.#child.connected) {
      return Promise.reject(new MoltError(ErrorCode.SERVICE_DOWN, `${this.service} has no live cell`, { service: this.service }));
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      // The cell enforces the deadline itself; this one only catches a cell that went silent.
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new MoltError(ErrorCode.TIMEOUT, `${this.service}'s cell did not answer ${name}`, { service: this.service }));
        this.#child.kill("SIGKILL");
      }, (deadlineMs ?? this.#spec.service.limits.timeoutMs) + CELL_GRACE_MS);
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject, timer });
      this.#child.send(encodeFrame([CELL_PROTOCOL, "op", id, name, args] as ParentFrame));
    });
  }

  #onFrame(frame: ChildFrame, ready: () => void): void {
    switch (frame[1]) {
      case "result": {
        const pending = this.#pending.get(frame[2]);
        if (pending === undefined) return;
        this.#pending.delete(frame[2]);
        clearTimeout(pending.timer);
        if (frame[3]) pending.resolve(frame[4]);
        else {
          const e = frame[4];
          pending.reject(new MoltError(e.code, e.message, { service: e.service, version: e.version }));
        }
        return;
      }
      case "bridge": {
        const id = frame[2];
        const answer =
          frame[3] === "call" ? this.#bridge.call(...frame[4]) : frame[3] === "fetch" ? this.#bridge.fetch(...frame[4]) : Promise.resolve(this.#bridge.storage(...frame[4]));
        void answer.then((bytes) => {
          if (this.#child.connected) this.#child.send(encodeFrame([CELL_PROTOCOL, "bridge-reply", id, bytes]));
        });
        return;
      }
      case "event":
        this.#onEvent(frame, ready);
    }
  }

  #onEvent(frame: CellEventFrame, ready: () => void): void {
    switch (frame[2]) {
      case "ready":
        return ready();
      case "send":
        return this.#bridge.send(...frame[3]);
      case "console":
        return this.#bridge.console(...frame[3]);
      case "stdout":
        return this.#bridge.stdout(...frame[3]);
      case "stalled": {
        const [id] = frame[3];
        this.#bridge.stalled(new Promise<boolean>((resolve) => this.#verdicts.set(id, resolve)));
        return;
      }
      case "verdict": {
        const [id, healthy] = frame[3];
        const resolve = this.#verdicts.get(id);
        this.#verdicts.delete(id);
        return resolve?.(healthy);
      }
      case "exited": {
        const [e] = frame[3];
        return this.#died(new MoltError(e.code, e.message, { service: this.service, version: this.versionId }));
      }
    }
  }

  #onExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.#disposed) return;
    this.#died(
      new MoltError(
        signal === "SIGABRT" ? ErrorCode.OOM : ErrorCode.SERVICE_CRASHED,
        `${this.service}'s cell exited (${signal ?? `code ${code}`})${signal === "SIGABRT" ? ": V8 aborted, most often on memory" : ""}`,
        { service: this.service, version: this.versionId },
      ),
    );
  }

  #died(reason: MoltError): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const crashed = new MoltError(ErrorCode.SERVICE_CRASHED, reason.message, { service: this.service, version: this.versionId, cause: reason });
    this.#failAll(crashed);
    for (const resolve of this.#verdicts.values()) resolve(false);
    this.#verdicts.clear();
    if (this.#child.exitCode === null) this.#child.kill("SIGKILL");
    this.#bridge.exited(reason);
  }

  #failAll(err: MoltError): void {
    for (const { reject, timer } of this.#pending.values()) {
      clearTimeout(timer);
      reject(err);
    }
    this.#pending.clear();
  }
}
