// The one narrow interface through which the kernel reaches a live instance
// of a service, whatever hosts it: an isolate in this process today, an
// isolate in a supervised child process or a service on another runtime
// later. The kernel imports this file, never an implementation.

import type { DeliveryKind } from "../protocol/wire.ts";
import type { ResolvedService } from "./config.ts";
import type { MoltError } from "./errors.ts";

export type { ServiceMeta } from "../protocol/control.ts";
import type { ServiceMeta } from "../protocol/control.ts";

/** What the kernel offers an instance: its way to the rest of the runtime. */
export interface InstanceBridge {
  /** A request through one of the instance's bindings; resolves with the reply bytes, never rejects. */
  call(binding: string, request: Uint8Array): Promise<Uint8Array>;
  /** A one-way message through one of the instance's bindings. */
  send(binding: string, request: Uint8Array): void;
  /** console.* output of the instance. */
  console(level: string, text: string): void;
  /** A fetch request envelope; resolves with the reply bytes, never rejects. */
  fetch(request: Uint8Array): Promise<Uint8Array>;
  /** A write to standard output, when permitted. */
  stdout(text: string): void;
  /**
   * A ctx.storage request (protocol/storage.ts), answered in the same turn
   * here and asynchronously from a cell; the answer says a failure with its
   * code, so this never throws or rejects.
   */
  storage(request: Uint8Array): Uint8Array | Promise<Uint8Array>;
  /** The instance died on its own (memory, a wedged isolate): it is disposed already. */
  exited(reason: MoltError, advice?: ExitAdvice): void;
  /**
   * A call passed its deadline and the instance is being checked for a
   * runaway loop; `verdict` resolves true if it is healthy. Called before
   * the timed-out caller is answered, so no further message is sent to the
   * instance until the verdict is in (or, if it is wedged, until the kernel
   * has replaced it).
   */
  stalled(verdict: Promise<boolean>): void;
}

/** What a dying instance tells the kernel about the next one. */
export interface ExitAdvice {
  /**
   * It died in a way that left something behind in the hosting process (a
   * quarantined isolate): the service's next instances run in a cell of
   * their own, so that a second time costs only that cell.
   */
  contain?: boolean;
}

export interface BootSpec {
  service: ResolvedService;
  code: string;
  versionId: string;
  /** Environment values granted by permissions.env. */
  env: Record<string, string>;
}

/**
 * How a restore runs: `start` runs `start` too, in the same step;
 * `rehearse` runs the path a swap's blackout will take (the restore, then
 * `start` without its hook) on an instance that is not live yet, so that the
 * blackout runs code V8 has just run; `timeoutMs` overrides the service's
 * deadline.
 */
export interface RestoreOptions {
  start?: boolean;
  rehearse?: boolean;
  timeoutMs?: number;
}

/**
 * How a dump runs: `stop` runs `stop` first, in the same step; `rehearse`
 * runs the path a swap's blackout will take (`stop` without its hook and
 * without clearing timers, then the dump) while the instance keeps serving.
 * The two are not combined.
 */
export interface DumpOptions {
  stop?: boolean;
  rehearse?: boolean;
  timeoutMs?: number;
}

export interface Instance {
  readonly service: string;
  readonly versionId: string;
  readonly meta: ServiceMeta;
  readonly disposed: boolean;
  init(): Promise<void>;
  /** Takes state from a dump (see RestoreOptions). */
  restore(dump: Uint8Array, fromStateVersion: number, options?: RestoreOptions): Promise<void>;
  start(): Promise<void>;
  /**
   * Runs one message; a call resolves with reply bytes (errors are encoded
   * in them), a send with undefined. An instance that ends before it started
   * the message rejects with ERR_REDELIVER (deliveries.ts): the kernel then
   * delivers it again, to the next instance, `again` (ahead of new messages).
   */
  deliver(kind: DeliveryKind, request: Uint8Array, options?: { again?: boolean }): Promise<Uint8Array | undefined>;
  stop(): Promise<void>;
  /** The state as a dump envelope: [DUMP_VERSION, stateVersion, value, codec?] (guest/dump-codec.ts; see DumpOptions). */
  dump(options?: DumpOptions): Promise<Uint8Array>;
  dispose(): void;
  /** Heap bytes in use, where the host can tell (for metrics). */
  heapUsed?(): Promise<number>;
}

/** Creates an instance with its code loaded and activated, holding no state yet. */
export type Boot = (spec: BootSpec, bridge: InstanceBridge) => Promise<Instance>;
