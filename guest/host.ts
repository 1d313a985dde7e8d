// The references the kernel hands to a freshly created isolate, and the typed
// wrappers the guest runtime calls them through. These are the guest's only
// way out of its isolate; they are held in closures, never on globalThis, so
// service code cannot reach the raw references.

import { MoltError } from "./errors.ts";

/** The subset of isolated-vm's Reference API the guest uses. */
export interface Ref {
  apply(receiver: undefined, args: unknown[], options?: object): Promise<unknown>;
  applyIgnored(receiver: undefined, args: unknown[], options?: object): void;
  applySync(receiver: undefined, args: unknown[], options?: object): unknown;
}

export interface HostRefs {
  call: Ref;
  send: Ref;
  log: Ref;
  timer: Ref;
  random: Ref;
  now: Ref;
  fetch: Ref;
  stdout: Ref;
}

export type LogLevel = "debug" | "info" | "warn" | "error";

export interface Host {
  call(binding: string, bytes: Uint8Array): Promise<Uint8Array>;
  send(binding: string, bytes: Uint8Array): void;
  log(level: LogLevel, text: string): void;
  setTimer(id: number, ms: number, repeat: boolean): void;
  clearTimer(id: number): void;
  random(n: number): Uint8Array;
  now(): number;
  fetch(bytes: Uint8Array): Promise<Uint8Array>;
  stdout(text: string): void;
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
 * Options for calls whose host function returns a promise of bytes. The
 * bytes come as an ExternalCopy the runtime copies in itself (`copyIn`):
 * isolated-vm copies a promise's result into the isolate on a path where a
 * failed allocation is not caught, so a reply that did not fit in a nearly
 * full isolate aborted the whole process. Copied in here, the same failure
 * is an exception in this isolate.
 */
const ASYNC_BYTES: CallOptions = Object.freeze({
  __proto__: null,
  timeout: 0,
  arguments: transfer(false),
  result: Object.freeze({ __proto__: null, copy: false, externalCopy: false, reference: false, promise: true }),
});
/** What the runtime passes to ExternalCopy#copy: read through the prototype chain too. */
const COPY_IN = Object.freeze({ __proto__: null, release: true, transferIn: false });

/** The subset of isolated-vm's ExternalCopy API the runtime uses. */
interface ExternalBytes {
  copy(options: typeof COPY_IN): unknown;
}

/** Copies bytes the host handed over into this isolate; ERR_OOM when they do not fit. */
function copyIn(handle: unknown, what: string): Uint8Array {
  let bytes: unknown;
  try {
    bytes = (handle as ExternalBytes).copy(COPY_IN);
  } catch (err) {
    if (err instanceof RangeError) throw new MoltError("ERR_OOM", `${what} does not fit in this service's memory: ${err.message}`);
    throw err;
  }
  if (!(bytes instanceof Uint8Array)) throw new TypeError(`${what} arrived as something other than bytes`);
  return bytes;
}
/**
 * Options for every other call. Results are copies too, even where they are
 * ignored or primitive, so that no call can ever hand the guest a reference
 * to a host object.
 */
const SYNC_CALL: CallOptions = callOptions(false);

type Bound<K extends keyof Ref> = (receiver: undefined, args: unknown[], options: CallOptions) => ReturnType<Ref[K]>;

/** A reference's method bound now, so that nothing a service changes later sits between the runtime and the call. */
function bind<K extends keyof Ref>(ref: Ref, method: K): Bound<K> {
  return (ref[method] as (...args: unknown[]) => unknown).bind(ref) as Bound<K>;
}

export function wrapHost(refs: HostRefs): Host {
  const call = bind(refs.call, "apply");
  const send = bind(refs.send, "applyIgnored");
  const log = bind(refs.log, "applyIgnored");
  const timer = bind(refs.timer, "applyIgnored");
  const random = bind(refs.random, "applySync");
  const now = bind(refs.now, "applySync");
  const fetch = bind(refs.fetch, "apply");
  const stdout = bind(refs.stdout, "applyIgnored");
  return {
    call: async (binding, bytes) => copyIn(await call(undefined, [binding, bytes], ASYNC_BYTES), "the reply"),
    send: (binding, bytes) => send(undefined, [binding, bytes], SYNC_CALL),
    log: (level, text) => log(undefined, [level, text], SYNC_CALL),
    setTimer: (id, ms, repeat) => timer(undefined, ["set", id, ms, repeat], SYNC_CALL),
    clearTimer: (id) => timer(undefined, ["clear", id, 0, false], SYNC_CALL),
    random: (n) => random(undefined, [n], SYNC_CALL) as Uint8Array,
    now: () => now(undefined, [], SYNC_CALL) as number,
    fetch: async (bytes) => copyIn(await fetch(undefined, [bytes], ASYNC_BYTES), "the response"),
    stdout: (text) => stdout(undefined, [text], SYNC_CALL),
  };
}
