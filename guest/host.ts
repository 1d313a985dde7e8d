// The references the kernel hands to a freshly created isolate, and the typed
// wrappers the guest runtime calls them through. These are the guest's only
// way out of its isolate; they are held in closures, never on globalThis, so
// service code cannot reach the raw references.

import { packBatch, readBatch } from "../protocol/batch.ts";
import { ErrorCode, MoltError } from "./errors.ts";

// Captured when the runtime script runs, before any service code: a service
// that replaces them later cannot stand between the runtime and the host.
const NativePromise = Promise;
const promiseThen = Promise.prototype.then;
const reflectApply = Reflect.apply;

/** The subset of isolated-vm's Reference API the guest uses. */
export interface Ref {
  apply(receiver: undefined, args: unknown[], options?: object): Promise<unknown>;
  applyIgnored(receiver: undefined, args: unknown[], options?: object): void;
  applySync(receiver: undefined, args: unknown[], options?: object): unknown;
  applySyncPromise(receiver: undefined, args: unknown[], options?: object): unknown;
}

export interface HostRefs {
  /** Calls, sends and fetches made in one turn, in one crossing (see wrapHost). */
  out: Ref;
  log: Ref;
  timer: Ref;
  random: Ref;
  now: Ref;
  stdout: Ref;
  replies: Ref;
  storage: Ref;
}

export type LogLevel = "debug" | "info" | "warn" | "error";

export interface Host {
  /** Resolves with the reply bytes; rejects only when they do not fit in this isolate (ERR_OOM). */
  call(binding: string, bytes: Uint8Array): Promise<Uint8Array>;
  send(binding: string, bytes: Uint8Array): void;
  log(level: LogLevel, text: string): void;
  setTimer(id: number, ms: number, repeat: boolean): void;
  clearTimer(id: number): void;
  random(n: number): Uint8Array;
  now(): number;
  fetch(bytes: Uint8Array): Promise<Uint8Array>;
  stdout(text: string): void;
  /** Replies to delivered messages: [seq, length] pairs (-1: none), their bytes end to end. */
  replies(meta: Float64Array, bytes: Uint8Array): void;
  /** A ctx.storage request (protocol/storage.ts), answered before this returns: the isolate's thread waits. */
  storage(request: Uint8Array): Uint8Array;
}

// isolated-vm reads the options of `apply`, `applyIgnored` and `applySync`
// with ordinary property lookups, prototype chain included, and applies
// them to the host's side of the call. An option object that inherits from
// Object.prototype would let a service that sets `Object.prototype.timeout`
// give the kernel's own functions a 1 ms deadline: isolated-vm would stop
// Node's JavaScript in the middle of the kernel's code (a mailbox left with
// a delivery in flight forever, Node's fetch interrupted half-way). So every
// option object, at every level, has a null prototype, names every option
// isolated-vm reads for these calls (a timeout of 0 is none; `release` and
// the like belong to calls the runtime never makes), and is frozen. They are
// built here, when the runtime script runs, before any service code exists.

/** What isolated-vm reads to transfer one argument or a result. */
type Transfer = Readonly<{ copy: boolean; externalCopy: boolean; reference: boolean; promise: boolean }>;
type CallOptions = Readonly<{ timeout: number; arguments: Transfer; result: Transfer }>;

const transfer = (promise: boolean): Transfer =>
  Object.freeze({ __proto__: null, copy: true, externalCopy: false, reference: false, promise });
const callOptions = (promise: boolean): CallOptions =>
  Object.freeze({ __proto__: null, timeout: 0, arguments: transfer(false), result: transfer(promise) });

/**
 * Options for every other call. Results are copies too, even where they are
 * ignored or primitive, so that no call can ever hand the guest a reference
 * to a host object.
 */
const SYNC_CALL: CallOptions = callOptions(false);

/**
 * Options of a call that waits for the host's promise (applySyncPromise):
 * isolated-vm refuses a `result` option there, and copies the answer the
 * host hands over (an ExternalCopy's copy), never a reference.
 */
const WAIT_CALL: Readonly<{ timeout: number; arguments: Transfer }> = Object.freeze({ __proto__: null, timeout: 0, arguments: transfer(false) });

type Bound<K extends keyof Ref> = (receiver: undefined, args: unknown[], options: CallOptions | typeof WAIT_CALL) => ReturnType<Ref[K]>;

/** A reference's method bound now, so that nothing a service changes later sits between the runtime and the call. */
function bind<K extends keyof Ref>(ref: Ref, method: K): Bound<K> {
  return (ref[method] as (...args: unknown[]) => unknown).bind(ref) as Bound<K>;
}

/** Kinds of what leaves in a batch of outgoing messages (core/guest-calls.ts reads the same numbers). */
const OUT_CALL = 0;
const OUT_SEND = 1;
const OUT_FETCH = 2;

/**
 * The host's side of the runtime, and `settle`, the entry through which the
 * host answers calls and fetches, a batch of [id, answer] (protocol/batch.ts;
 * no answer: it did not fit in this isolate). Answers are
 * arguments of a call into the isolate, copied by isolated-vm on a path
 * where a failed allocation is reported to the host, never the result of a
 * promise (whose copy, when it fails, aborts the process) and never a handle
 * the guest could use to reach host objects.
 */
export function wrapHost(refs: HostRefs): { host: Host; settle: (meta: Float64Array, bytes: Uint8Array) => void; recover: () => void } {
  const out = bind(refs.out, "applyIgnored");
  const log = bind(refs.log, "applyIgnored");
  const timer = bind(refs.timer, "applyIgnored");
  const random = bind(refs.random, "applySync");
  const now = bind(refs.now, "applySync");
  const stdout = bind(refs.stdout, "applyIgnored");
  const replies = bind(refs.replies, "applyIgnored");
  const storage = bind(refs.storage, "applySyncPromise");

  // Everything a turn of the guest's code sends leaves in one crossing, when
  // the turn's microtasks have run: a handler that fans out to many calls,
  // or many handlers each making one, pay for one.
  const waiting = new Map<number, { resolve: (bytes: Uint8Array) => void; reject: (err: Error) => void }>();
  let nextId = 1;
  let heads: number[] = [];
  let targets: string[] = [];
  let payloads: Uint8Array[] = [];
  let queued = false;
  const flush = (): void => {
    queued = false;
    // [id, kind, request] per message (protocol/batch.ts), and its binding beside.
    const [meta, all] = packBatch(3, heads, payloads);
    const names = targets;
    heads = [];
    targets = [];
    payloads = [];
    out(undefined, [meta, names, all], SYNC_CALL);
  };
  const enqueue = (kind: number, id: number, target: string, bytes: Uint8Array): void => {
    heads.push(id, kind);
    targets.push(target);
    payloads.push(bytes);
    if (!queued) {
      queued = true;
      reflectApply(promiseThen, NativePromise.resolve(), [flush]);
    }
  };
  const ask = (kind: number, target: string, bytes: Uint8Array): Promise<Uint8Array> =>
    new NativePromise<Uint8Array>((resolve, reject) => {
      const id = nextId++;
      waiting.set(id, { resolve, reject });
      enqueue(kind, id, target, bytes);
    });

  // [id, answer] per call; no answer: it did not fit in this isolate.
  const settle = (meta: Float64Array, bytes: Uint8Array): void => {
    readBatch(2, meta, bytes, (i, answer) => {
      const id = meta[i] as number;
      const entry = waiting.get(id);
      waiting.delete(id);
      if (answer === undefined) entry?.reject(new MoltError(ErrorCode.OOM, "the answer does not fit in this service's memory"));
      else entry?.resolve(answer);
    });
  };

  const host: Host = {
    call: (binding, bytes) => ask(OUT_CALL, binding, bytes),
    send: (binding, bytes) => enqueue(OUT_SEND, 0, binding, bytes),
    log: (level, text) => log(undefined, [level, text], SYNC_CALL),
    setTimer: (id, ms, repeat) => timer(undefined, ["set", id, ms, repeat], SYNC_CALL),
    clearTimer: (id) => timer(undefined, ["clear", id, 0, false], SYNC_CALL),
    random: (n) => random(undefined, [n], SYNC_CALL) as Uint8Array,
    now: () => now(undefined, [], SYNC_CALL) as number,
    fetch: (bytes) => ask(OUT_FETCH, "", bytes),
    stdout: (text) => stdout(undefined, [text], SYNC_CALL),
    replies: (meta, bytes) => replies(undefined, [meta, bytes], SYNC_CALL),
    storage: (request) => storage(undefined, [request], WAIT_CALL) as Uint8Array,
  };
  // Messages queued in a turn the kernel cut short never reached their flush.
  const recover = (): void => {
    if (queued) flush();
  };
  return { host, settle, recover };
}
