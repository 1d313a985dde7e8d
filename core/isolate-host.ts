// Hosts an instance in a V8 isolate in this process. This is the only file of
// core/ that imports isolated-vm: everything else reaches instances through
// the Instance interface (instance.ts).

import { randomBytes } from "node:crypto";
import ivm from "isolated-vm";
import { ControlOp, dumpOp, restoreOp, type ControlArgs, type ControlResult } from "../protocol/control.ts";
import type { DeliveryKind } from "../protocol/wire.ts";
import { shortId } from "./bundle.ts";
import { ErrorCode, MoltError } from "./errors.ts";
import type { BootSpec, DumpOptions, ExitAdvice, Instance, InstanceBridge, RestoreOptions, ServiceMeta } from "./instance.ts";
import { Deliveries } from "./deliveries.ts";
import { Catastrophe } from "./catastrophe.ts";
import { GuestCalls } from "./guest-calls.ts";
import { GuestTimers } from "./guest-timers.ts";
import { decodeReply, encode } from "./wire.ts";

/** Options of a crossing that hands the isolate data: null-prototype like every option object isolated-vm reads. */
const crossing = (timeout: number): object =>
  Object.freeze({ __proto__: null, timeout, arguments: Object.freeze({ __proto__: null, copy: true }), result: Object.freeze({ __proto__: null, copy: false }) });

/** Messages whose start time is kept for their deadline (deliveries.ts): far more than are ever in flight at once. */
const START_RING = 4096;

/** How long a timed-out isolate gets to show it is not stuck in a loop. */
const PROBE_MS = 250;

/**
 * isolated-vm reports its own failures as plain Errors that carry no code,
 * so they can only be told apart by their text: this table is the one place
 * that reads it, where a rewording in a new isolated-vm shows up. Failures
 * of the service itself never need it: the guest runtime answers every
 * control op and every message in a reply envelope that carries a code.
 */
const IsolatedVmFailure = {
  /** The isolate's ArrayBuffer allocator refused: every later copy into it fails the same way. */
  ALLOCATION: /Array buffer allocation failed/i,
  /** isolated-vm disposed the isolate for passing its memory limit. */
  MEMORY_LIMIT: /memory limit/i,
  /** isolated-vm's own timeout stopped synchronous code. */
  TIMED_OUT: /timed out/i,
  /** V8 collected a promise the isolate held and could never settle. */
  ABANDONED: /Promise was abandoned/,
} as const;

function isolatedVmFailed(err: unknown, failure: keyof typeof IsolatedVmFailure): boolean {
  return IsolatedVmFailure[failure].test(err instanceof Error ? err.message : String(err));
}

let runtimeCache: ivm.ExternalCopy<ArrayBuffer> | undefined;
let live = 0;

/** Isolates created by this process and not yet disposed (for the soak test and leak checks). */
export function liveIsolates(): number {
  return live;
}

export { quarantinedIsolates } from "./catastrophe.ts";

export async function bootIsolate(spec: BootSpec, bridge: InstanceBridge, runtimeCode: string): Promise<Instance> {
  const { service } = spec;
  const catastrophe = new Catastrophe();
  const isolate = new ivm.Isolate({ memoryLimit: service.limits.memoryMb, onCatastrophicError: catastrophe.raise });
  live++;
  try {
    const context = await catastrophe.race(isolate.createContext());
    const runtime: ivm.Script & ivm.CachedDataResult = await catastrophe.race(
      isolate.compileScript(runtimeCode, {
        filename: "molt://runtime.js",
        ...(runtimeCache === undefined ? { produceCachedData: true } : { cachedData: runtimeCache }),
      }),
    );
    // V8's code cache for the runtime, made by the first isolate, spares every later one a full compile.
    if (runtimeCache === undefined && runtime.cachedData !== undefined) runtimeCache = runtime.cachedData;
    await catastrophe.race(runtime.run(context, { timeout: service.limits.timeoutMs }));

    const host = new IsolateInstance(spec, bridge, isolate, context, catastrophe);
    await host.install();
    const script = await catastrophe.race(
      isolate.compileScript(spec.code, {
        filename: `molt://${service.name}/${shortId(spec.versionId)}.js`,
      }),
    );
    await catastrophe.race(script.run(context, { timeout: service.limits.timeoutMs }));
    await host.activate();
    return host;
  } catch (err) {
    // A quarantined isolate is left as it is: disposing it would wait on its parked thread.
    if (!isolate.isDisposed && catastrophe.message === undefined) isolate.dispose();
    live--;
    if (catastrophe.message !== undefined) {
      throw new MoltError(ErrorCode.OOM, `${service.name} exhausted V8's heap while loading; its isolate was quarantined`, {
        service: service.name,
        cause: err,
      });
    }
    throw err instanceof MoltError
      ? err
      : new MoltError(ErrorCode.BAD_SERVICE, `cannot load ${service.name}: ${(err as Error).message}`, {
          service: service.name,
          cause: err,
        });
  }
}

/**
 * Bytes that own their whole buffer. isolated-vm copies a view's entire
 * underlying buffer into the isolate, so a small message that views a large
 * buffer (msgpackr's working buffer, a pooled Buffer's slab, a file read
 * whole) would cost the large copy on every crossing. Everything that enters
 * an isolate passes here; exact-size bytes pass as they are.
 */
export function own(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : new Uint8Array(bytes);
}

class IsolateInstance implements Instance {
  readonly service: string;
  readonly versionId: string;
  meta: ServiceMeta = { semver: "0.0.0", stateVersion: 1, restoresFrom: null, hasRestore: false, handlers: [] };
  readonly #spec: BootSpec;
  readonly #bridge: InstanceBridge;
  readonly #isolate: ivm.Isolate;
  readonly #context: ivm.Context;
  readonly #timers: GuestTimers;
  readonly #catastrophe: Catastrophe;
  #deliverBatch: ivm.Reference | undefined;
  #settle: ivm.Reference | undefined;
  #controlRef: ivm.Reference | undefined;
  /** [0] the last message the guest started, [1] the epoch: shared with the guest (see deliveries.ts). */
  readonly #progress = new Int32Array(new SharedArrayBuffer(8));
  /** Start times of messages, written by the guest: see deliveries.ts. */
  readonly #starts = { seqs: new Int32Array(new SharedArrayBuffer(START_RING * 4)), times: new Float64Array(new SharedArrayBuffer(START_RING * 8)) };
  readonly #deliveries: Deliveries;
  /** The options of every batch crossing, built once: they are the same for each. */
  readonly #crossing: object;
  readonly #guestCalls: GuestCalls;
  #fireTimer: ivm.Reference | undefined;
  #probing: Promise<boolean> | undefined;
  /** Still counted among the live isolates: cleared by the first dispose, whoever calls it. */
  #counted = true;
  #exited = false;

  constructor(spec: BootSpec, bridge: InstanceBridge, isolate: ivm.Isolate, context: ivm.Context, catastrophe: Catastrophe) {
    this.service = spec.service.name;
    this.versionId = spec.versionId;
    this.#spec = spec;
    this.#bridge = bridge;
    this.#isolate = isolate;
    this.#context = context;
    this.#catastrophe = catastrophe;
    this.#crossing = crossing(spec.service.limits.timeoutMs);
    this.#deliveries = new Deliveries({
      service: this.service,
      timeoutMs: spec.service.limits.timeoutMs,
      progress: this.#progress,
      starts: this.#starts,
      send: (meta, bytes) => this.#cross(this.#deliverBatch, [meta, bytes], `messages to ${this.service}`),
      expired: () => {
        const verdict = this.#probe();
        if (verdict !== undefined) this.#bridge.stalled(verdict);
      },
      replace: (reason) => this.#exit(reason),
      error: (code, message, cause) => this.#error(code, message, cause),
    });
    this.#timers = new GuestTimers({
      service: this.service,
      limit: spec.service.limits.timers,
      warn: (text) => bridge.console("warn", text),
      fire: (id) => {
        const ref = this.#fireTimer;
        if (ref === undefined || this.#isolate.isDisposed) return Promise.resolve();
        return this.#guard(`timer of ${this.service}`, undefined, (timeout) => {
          const crossing = ref.apply(undefined, [id], { timeout }) as Promise<unknown>;
          // Stopped by isolated-vm's timeout: the continuations pending in that turn were dropped with it (deliveries.ts).
          crossing.catch((err: unknown) => {
            if (isolatedVmFailed(err, "TIMED_OUT")) this.#deliveries.interrupted();
          });
          return crossing;
        }).then(
          () => undefined,
          (err: MoltError) => bridge.console("error", `timer callback failed: ${err.code}: ${err.message}`),
        );
      },
    });
    this.#guestCalls = new GuestCalls({
      bridge,
      send: (meta, bytes) => this.#cross(this.#settle, [meta, bytes], `answers to ${this.service}`, false),
      timeoutMs: spec.service.limits.timeoutMs,
      service: this.service,
    });
    catastrophe.onRaise(() => {
      // The isolate is left as V8 left it: disposing it would wait on the
      // parked thread's lock. The service comes back in a cell of its own,
      // where a second time costs only that cell.
      this.#exit(
        this.#error(
          ErrorCode.OOM,
          `${this.service} exhausted V8's heap past its limit of ${this.#spec.service.limits.memoryMb} MiB (a hash table grown without end, most often); its isolate is quarantined and the service restarts in a cell of its own`,
        ),
        { contain: true },
      );
    });
  }

  get disposed(): boolean {
    return this.#isolate.isDisposed;
  }

  /** Hands the runtime its references to the host and takes back its entry points. */
  async install(): Promise<void> {
    const { service, env } = this.#spec;
    const bridge = this.#bridge;
    const origin = performance.now();
    const refs = [
      new ivm.Reference((meta: unknown, targets: unknown, request: unknown) => this.#guestCalls.out(meta, targets, request)),
      new ivm.Reference((level: unknown, text: unknown) => bridge.console(String(level), String(text))),
      new ivm.Reference((op: unknown, id: unknown, ms: unknown, repeat: unknown) =>
        op === "set" ? this.#timers.set(Number(id), Number(ms), repeat === true) : this.#timers.clear(Number(id)),
      ),
      new ivm.Reference((n: unknown) => new Uint8Array(randomBytes(Math.min(Math.max(Number(n) || 0, 0), 65536)))),
      new ivm.Reference(() => performance.now() - origin),
      new ivm.Reference((text: unknown) => bridge.stdout(String(text))),
      new ivm.Reference((meta: unknown, replies: unknown) => this.#deliveries.replies(meta, replies)),
      // Called with applySyncPromise: the guest's thread waits for the answer
      // (in a cell it comes over IPC). Its answer is copied in, never a handle.
      new ivm.Reference((request: unknown) => {
        const answer = bridge.storage(request instanceof Uint8Array ? request : new Uint8Array(0));
        const copy = (bytes: Uint8Array): unknown => new ivm.ExternalCopy(own(bytes)).copyInto({ release: true });
        return answer instanceof Uint8Array ? copy(answer) : answer.then(copy);
      }),
    ];
    const info = {
      service: service.name,
      versionId: this.versionId,
      bindings: Object.keys(service.bindings),
      env,
      stdout: service.permissions.stdout,
      timers: service.limits.timers,
      concurrency: service.concurrency,
      concurrencySet: service.concurrencySet,
      progress: this.#progress.buffer,
      startSeqs: this.#starts.seqs.buffer,
      startTimes: this.#starts.times.buffer,
      config: service.config === undefined ? new Uint8Array(0) : encode(service.config),
      // An eighth of the heap, at most 16 MiB: stored records read again cost a crossing, not a disk read.
      storageCacheBytes: Math.min(16 * 1024 * 1024, Math.floor((service.limits.memoryMb * 1024 * 1024) / 8)),
    };
    const exports = (await this.#context.evalClosure(
      `const install = globalThis.__molt_install;
       delete globalThis.__molt_install;
       return install({ out: $0, log: $1, timer: $2, random: $3, now: $4, stdout: $5, replies: $6, storage: $7 }, $8);`,
      [...refs, new ivm.ExternalCopy(info).copyInto()],
      { result: { reference: true } },
    )) as ivm.Reference;
    this.#deliverBatch = (await exports.get("deliverBatch", { reference: true })) as ivm.Reference;
    this.#settle = (await exports.get("settle", { reference: true })) as ivm.Reference;
    this.#controlRef = (await exports.get("control", { reference: true })) as ivm.Reference;
    this.#fireTimer = (await exports.get("fireTimer", { reference: true })) as ivm.Reference;
    exports.release();
  }

  async activate(): Promise<void> {
    this.meta = await this.#control(ControlOp.ACTIVATE, []);
    // Warm both sides of the control path now, not in a swap's blackout.
    for (let i = 0; i < 2; i++) await this.#control(ControlOp.WARM, []);
  }

  async init(): Promise<void> {
    await this.#control(ControlOp.INIT, []);
  }

  async restore(dump: Uint8Array, fromStateVersion: number, options: RestoreOptions = {}): Promise<void> {
    await this.#control(restoreOp(options), [own(dump), fromStateVersion], options.timeoutMs);
  }

  async start(): Promise<void> {
    await this.#control(ControlOp.START, []);
  }

  async stop(): Promise<void> {
    await this.#control(ControlOp.STOP, []);
    this.#timers.clearAll();
  }

  async dump(options: DumpOptions = {}): Promise<Uint8Array> {
    const op = dumpOp(options);
    const dumped = await this.#control(op, [], options.timeoutMs);
    if (op === ControlOp.QUIESCE) this.#timers.clearAll();
    return dumped;
  }

  deliver(kind: DeliveryKind, request: Uint8Array, options?: { again?: boolean }): Promise<Uint8Array | undefined> {
    if (this.#deliverBatch === undefined || this.#isolate.isDisposed) {
      return Promise.reject(new MoltError(ErrorCode.SERVICE_DOWN, `${this.service} has no live instance`, { service: this.service }));
    }
    return this.#deliveries.deliver(kind, request, options?.again === true);
  }

  /**
   * One crossing into the isolate that hands it data and expects nothing
   * back but completion (a batch of messages, a batch of answers): the
   * synchronous part runs under the service's deadline. With `fatal` false, data that
   * does not fit in the isolate fails this crossing alone (ERR_OOM) instead
   * of ending the instance: a few bytes saying so may still fit.
   */
  async #cross(ref: ivm.Reference | undefined, args: [Float64Array, Uint8Array], what: string, fatal = true): Promise<void> {
    const live = this.#live(ref);
    try {
      await live.apply(undefined, args, this.#crossing);
    } catch (err) {
      if (!fatal && isolatedVmFailed(err, "ALLOCATION") && !this.#isolate.isDisposed) {
        throw this.#error(ErrorCode.OOM, `${what} do not fit in ${this.service}'s memory`, err);
      }
      throw this.#translate(err, what, this.#spec.service.limits.timeoutMs);
    }
  }

  async heapUsed(): Promise<number> {
    return this.#isolate.isDisposed ? 0 : (await this.#isolate.getHeapStatistics()).used_heap_size;
  }

  /** Idempotent: a swap, a restart and a stop may each get here for the same instance. */
  dispose(): void {
    this.#timers.clearAll();
    this.#deliveries.close(new MoltError(ErrorCode.SERVICE_DOWN, `${this.service}'s instance was disposed`, { service: this.service, version: this.versionId }));
    const refs = [this.#deliverBatch, this.#settle, this.#controlRef, this.#fireTimer];
    this.#deliverBatch = this.#settle = this.#controlRef = this.#fireTimer = undefined;
    this.#guestCalls.close();
    if (!this.#counted) return;
    this.#counted = false;
    live--;
    if (this.#catastrophe.message === undefined && !this.#isolate.isDisposed) {
      for (const ref of refs) ref?.release();
      this.#isolate.dispose();
    }
  }

  /** One control op (protocol/control.ts): the guest's `control` entry answers it in a reply envelope. */
  async #control<Op extends ControlOp>(op: Op, args: ControlArgs<Op>, timeoutMs?: number): Promise<ControlResult<Op>> {
    const control = this.#live(this.#controlRef);
    const reply = await this.#guard(`${op} of ${this.service}`, timeoutMs, (timeout) =>
      control.apply(undefined, [op, ...args], {
        arguments: { copy: true },
        result: { promise: true, copy: true },
        timeout,
      }) as Promise<Uint8Array>,
    );
    return decodeReply(reply) as ControlResult<Op>;
  }

  #live(ref: ivm.Reference | undefined): ivm.Reference {
    if (ref === undefined || this.#isolate.isDisposed) {
      throw new MoltError(ErrorCode.SERVICE_DOWN, `${this.service} has no live instance`, { service: this.service });
    }
    return ref;
  }

  /**
   * Runs one operation under the service's deadline. isolated-vm's own
   * `timeout` stops synchronous code only; the host-side timer covers awaited
   * continuations too. When it fires, the isolate is probed: one stuck in a
   * loop after an await cannot be interrupted, so it is disposed and the
   * kernel is told, rather than left spinning on a thread forever.
   */
  async #guard<T>(what: string, deadlineMs: number | undefined, op: (timeout: number) => Promise<T>): Promise<T> {
    const timeoutMs = deadlineMs ?? this.#spec.service.limits.timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const verdict = this.#probe();
        if (verdict !== undefined) this.#bridge.stalled(verdict);
        reject(this.#error(ErrorCode.TIMEOUT, `${what} exceeded ${timeoutMs} ms`));
      }, timeoutMs);
    });
    // A promise the isolate can never settle (its handler awaits nothing that
    // will ever resolve) is "abandoned" once V8 collects it: that is a call
    // past its deadline, reported as such when the deadline comes.
    const call = op(timeoutMs).catch((err: unknown) => {
      if (err instanceof Error && isolatedVmFailed(err, "ABANDONED") && !this.#isolate.isDisposed) return deadline;
      throw err;
    });
    try {
      return await Promise.race([call, deadline, this.#catastrophe.settled]);
    } catch (err) {
      throw this.#translate(err, what, timeoutMs);
    } finally {
      clearTimeout(timer);
    }
  }

  #translate(err: unknown, what: string, timeoutMs: number): MoltError {
    if (err instanceof MoltError) return err;
    if (this.#catastrophe.message !== undefined) {
      return this.#error(ErrorCode.OOM, `${this.service} exhausted V8's heap during ${what}; its isolate is quarantined`, err);
    }
    const message = err instanceof Error ? err.message : String(err);
    // The isolate's ArrayBuffer allocator refused: it is out of memory for
    // good (every later copy into it fails the same way), so it is replaced.
    if (isolatedVmFailed(err, "ALLOCATION")) {
      const reason = this.#error(ErrorCode.OOM, `${this.service} ran out of memory for binary data (limit ${this.#spec.service.limits.memoryMb} MiB)`, err);
      this.#exit(reason);
      return reason;
    }
    if (this.#isolate.isDisposed) {
      // Nothing but its memory limit disposes an isolate behind our back.
      const oom = isolatedVmFailed(err, "MEMORY_LIMIT") || this.#counted;
      const reason = oom
        ? this.#error(ErrorCode.OOM, `${this.service} exceeded its memory limit of ${this.#spec.service.limits.memoryMb} MiB`, err)
        : this.#error(ErrorCode.SERVICE_CRASHED, `${this.service}'s isolate died during ${what}: ${message}`, err);
      this.#exit(reason);
      return reason;
    }
    if (isolatedVmFailed(err, "TIMED_OUT")) return this.#error(ErrorCode.TIMEOUT, `${what} exceeded ${timeoutMs} ms`, err);
    return this.#error(ErrorCode.INTERNAL, `${what} failed: ${message}`, err);
  }

  /** Resolves true when the isolate answers in time; a wedged one is disposed (and the kernel told) before it resolves false. */
  #probe(): Promise<boolean> | undefined {
    if (this.#probing !== undefined || this.#isolate.isDisposed) return this.#probing;
    this.#probing = this.#runProbe().finally(() => (this.#probing = undefined));
    return this.#probing;
  }

  async #runProbe(): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const answered = await Promise.race([
      this.#context.eval("0", { timeout: PROBE_MS }).then(
        () => true,
        () => !this.#isolate.isDisposed,
      ),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), PROBE_MS * 2))),
    ]);
    clearTimeout(timer);
    if (!answered && !this.#isolate.isDisposed) {
      this.#exit(this.#error(ErrorCode.TIMEOUT, `${this.service} is stuck running code past its deadline; its isolate was stopped`));
    }
    return answered && !this.#isolate.isDisposed;
  }

  #exit(reason: MoltError, advice?: ExitAdvice): void {
    if (this.#exited) return;
    this.#exited = true;
    this.#deliveries.close(reason);
    this.dispose();
    this.#bridge.exited(reason, advice);
  }

  #error(code: string, message: string, cause?: unknown): MoltError {
    return new MoltError(code, message, { service: this.service, version: this.versionId, cause });
  }
}
