// The guest runtime: the code that runs first in every service isolate.
// It installs the web globals, then waits for the kernel to hand over its
// references (`__molt_install`) and exposes exactly two entry points back:
// `deliverBatch` for user messages and `control` for the lifecycle (activate,
// init, start, stop, dump, restore). The two never share a path, as in OTP's
// sys module: a control operation is never queued behind user messages.

import { Packr } from "msgpackr";
import type { ServiceContext, ServiceDefinition } from "../sdk/service.ts";
import { PACK_OPTIONS, REPLY_OK, WIRE_VERSION, errorReplyEnvelope, wireErrorOf, type DeliveryKind, type WireError } from "../protocol/wire.ts";
import { packBatch, readBatch } from "../protocol/batch.ts";
import { CONTROL_FAILURE, type ControlOp } from "../protocol/control.ts";
import { ErrorCode, fromWire, MoltError, toWire } from "./errors.ts";
import { installGlobals } from "./globals.ts";
import { wrapHost, type HostRefs } from "./host.ts";
import { formatArgs } from "./inspect.ts";
import { decodeDump, encodeDump, warmDumpCodec } from "./dump-codec.ts";
import { StorageCore, Transaction } from "./storage.ts";

export interface InstallInfo {
  service: string;
  versionId: string;
  bindings: string[];
  env: Record<string, string>;
  stdout: boolean;
  /** limits.timers: pending timers past it make setTimeout throw ERR_LIMIT. */
  timers: number;
  /** How many handlers may run at once: the runtime holds messages beyond it, in order. */
  concurrency: number;
  /** Whether the config set `concurrency`; if not, the module's own declaration counts. */
  concurrencySet: boolean;
  /**
   * Shared with the kernel: [0] the sequence number of the last message this
   * runtime started, [1] the epoch below which a message it has not started
   * is no longer its to start (the kernel took it back). See deliverBatch.
   */
  progress: SharedArrayBuffer;
  /** Shared with the kernel: a ring of [sequence number] and [Date.now()] of each message's start, for its deadline. */
  startSeqs: SharedArrayBuffer;
  startTimes: SharedArrayBuffer;
  config: Uint8Array;
  /** Bytes of stored records the instance keeps cached (guest/storage.ts). */
  storageCacheBytes: number;
}


const codec = new Packr({ ...PACK_OPTIONS, writeFunction: unencodable });

function unencodable(): never {
  throw new MoltError(ErrorCode.UNENCODABLE, "functions cannot cross an isolate boundary");
}

// Captured when the runtime script runs, before any service code exists, so
// that a service replacing them later cannot change how the runtime reads
// its messages or decides what to await. Function.prototype[Symbol.hasInstance]
// cannot be replaced at all.
const NativePromise = Promise;
const hasInstance = Function.prototype[Symbol.hasInstance];
const reflectApply = Reflect.apply;
const getPrototypeOf = Object.getPrototypeOf;
const hasOwn = Object.hasOwn;
const setHas = Set.prototype.has;
const defineProperty = Object.defineProperty;
const isArray = Array.isArray;
const promiseThen = Promise.prototype.then;
const bytesSlice = Uint8Array.prototype.slice;
const stringSlice = String.prototype.slice;
const dateNow = Date.now;

/** The prototypes of the realm's built-in objects: everything a service can pollute for every value at once. */
const BUILT_IN_PROTOTYPES = ((): Set<object> => {
  const found = new Set<object>([getPrototypeOf(Uint8Array.prototype) as object, getPrototypeOf([][Symbol.iterator]()) as object]);
  for (const name of Object.getOwnPropertyNames(globalThis)) {
    const value = (globalThis as Record<string, unknown>)[name];
    const prototype = typeof value === "function" ? (value as { prototype?: unknown }).prototype : undefined;
    if (typeof prototype === "object" && prototype !== null) found.add(prototype);
  }
  return found;
})();

/**
 * Whether a hook's or a handler's result is to be awaited: a native promise,
 * or an object whose `then` comes from itself or its own class (a library's
 * promise). A `then` found on a built-in prototype does not make a value a
 * promise. A service that sets Object.prototype.then makes every object a
 * thenable; awaiting its state would hand the runtime's control flow to
 * that function, and a state that cannot be dumped is a service that cannot
 * be swapped out.
 */
function isThenable(value: unknown): value is PromiseLike<unknown> {
  if ((typeof value !== "object" && typeof value !== "function") || value === null) return false;
  if (reflectApply(hasInstance, NativePromise, [value]) === true) return true;
  for (let o: object | null = value; o !== null; o = getPrototypeOf(o) as object | null) {
    if (reflectApply(setHas, BUILT_IN_PROTOTYPES, [o]) === true) return false;
    if (hasOwn(o, "then")) return typeof (value as { then?: unknown }).then === "function";
  }
  return false;
}

/** Longest stack an error reply carries: a stack of ordinary depth with a message at its longest (4,096 characters) fits. */
const MAX_STACK_CHARS = 8192;

/**
 * The stack of something a handler threw, bounded; undefined if it has none.
 * Read once and never allowed to throw: `stack` may be the service's own
 * getter, and a reply must be built whatever it does.
 */
function stackOf(err: unknown): string | undefined {
  if ((typeof err !== "object" && typeof err !== "function") || err === null) return undefined;
  try {
    const stack = (err as { stack?: unknown }).stack;
    if (typeof stack !== "string") return undefined;
    return stack.length <= MAX_STACK_CHARS ? stack : `${reflectApply(stringSlice, stack, [0, MAX_STACK_CHARS]) as string}… [cut]`;
  } catch {
    return undefined;
  }
}

/** Encodes to an exact-size copy: isolated-vm copies a view's whole buffer, and msgpackr reuses its own. */
function encode(packr: Packr, value: unknown): Uint8Array {
  try {
    return reflectApply(bytesSlice, packr.pack(value), []) as Uint8Array;
  } catch (err) {
    if (err instanceof MoltError) throw err;
    throw new MoltError(ErrorCode.UNENCODABLE, `value cannot be encoded: ${(err as Error).message}`);
  }
}

/**
 * An entry's kind on the wire of a batch (core/deliveries.ts): a one-way
 * message; a message the kernel gave up on; a turn of this isolate the
 * kernel cut short; a message whose place the kernel takes back.
 */
const KIND_SEND = 1;
const KIND_CANCEL = 2;
const KIND_INTERRUPTED = 3;
const KIND_RELEASE = 4;
/** The id, in a batch of answers (core/guest-calls.ts), that says a turn of this isolate was cut short: guest/host.ts numbers calls from 1. */
const ANSWER_INTERRUPTED = 0;

function install(refs: HostRefs, info: InstallInfo): { deliverBatch: unknown; settle: unknown; control: unknown; fireTimer: unknown } {
  // Everything the runtime hands back to the kernel is bytes, and a promise
  // resolved with bytes looks up their `then`: with Object.prototype.then
  // set by the service, every reply and every dump would be taken for a
  // thenable and never settle. This `then`, fixed before any service code
  // runs, shadows whatever the service puts on Object.prototype, for the
  // runtime's bytes and for those the host's replies arrive in.
  defineProperty(Uint8Array.prototype, "then", { value: undefined, writable: false, enumerable: false, configurable: false });
  const { host, settle, recover: recoverOut } = wrapHost(refs);
  const reportUncaught = (where: string, err: unknown): void =>
    host.log("error", `uncaught error in ${where}: ${formatArgs([err])}`);
  const globals = installGlobals(host, reportUncaught, { timers: info.timers });

  const bindings = new Set(info.bindings);
  const config: unknown = info.config.byteLength === 0 ? undefined : codec.unpack(info.config);
  let definition: ServiceDefinition | undefined;
  let state: unknown;
  const version = { id: info.versionId, semver: "0.0.0", stateVersion: 1 };

  const checkBinding = (binding: string): void => {
    if (!bindings.has(binding)) {
      throw new MoltError(ErrorCode.NO_BINDING, `service "${info.service}" has no binding "${binding}"`, {
        service: info.service,
      });
    }
  };
  const storage = new StorageCore({
    ask: host.storage,
    codec,
    stateVersion: () => version.stateVersion,
    migrate: () => (typeof definition?.migrate === "function" ? definition.migrate : undefined),
    cacheBytes: info.storageCacheBytes,
  });
  const ctx: ServiceContext = Object.freeze({
    service: info.service,
    version,
    config,
    async call<T>(binding: string, method: string, payload?: unknown): Promise<T> {
      checkBinding(binding);
      const reply = codec.unpack(await host.call(binding, encode(codec, [WIRE_VERSION, method, payload]))) as unknown[];
      if (reply[1] === REPLY_OK) return reply[2] as T;
      throw fromWire(wireErrorOf(reply) as never);
    },
    send(binding: string, method: string, payload?: unknown): void {
      checkBinding(binding);
      host.send(binding, encode(codec, [WIRE_VERSION, method, payload]));
    },
    env: Object.freeze({
      get(name: string): string | undefined {
        if (!Object.hasOwn(info.env, name)) {
          throw new MoltError(ErrorCode.PERMISSION, `environment variable "${name}" is not in permissions.env`, {
            service: info.service,
          });
        }
        return info.env[name];
      },
    }),
    stdout: Object.freeze({
      write(text: string): void {
        if (!info.stdout) {
          throw new MoltError(ErrorCode.PERMISSION, "writing to stdout needs permissions.stdout", { service: info.service });
        }
        host.stdout(String(text));
      },
    }),
    // Outside a message (hooks, timers), each write is its own transaction.
    storage: new Transaction(storage, { auto: true }),
  });
  /**
   * A message's context: its own transaction, committed when its handler
   * returns; a call or send commits the writes before it first (guest/storage.ts).
   */
  const messageContext = (txn: Transaction): ServiceContext =>
    ({
      __proto__: ctx,
      storage: txn,
      call<T>(binding: string, method: string, payload?: unknown): Promise<T> {
        try {
          txn.commitPending();
        } catch (err) {
          return NativePromise.reject(err);
        }
        return ctx.call<T>(binding, method, payload);
      },
      send(binding: string, method: string, payload?: unknown): void {
        txn.commitPending();
        ctx.send(binding, method, payload);
      },
    }) as unknown as ServiceContext;

  const reply = (value: unknown): Uint8Array => {
    try {
      return encode(codec, [WIRE_VERSION, REPLY_OK, value]);
    } catch (err) {
      return replyError(err, ErrorCode.UNENCODABLE);
    }
  };
  /**
   * An error reply. A handler's own failure (not one relayed from a callee,
   * whose runtime sent its own) carries the error's stack too, for the
   * kernel's log: the kernel reads it only from failed replies, and the
   * callers' runtimes and the HTTP ingress never pass it on.
   */
  const replyError = (err: unknown, fallback: string, withStack = false): Uint8Array => {
    const error: WireError & { stack?: string } = toWire(err, fallback, info.service, version.id);
    if (withStack && error.service === info.service) {
      const stack = stackOf(err);
      if (stack !== undefined) error.stack = stack;
    }
    return encode(codec, errorReplyEnvelope(error));
  };

  /**
   * Runs one message. A handler that returns a value (not a promise) is
   * answered synchronously, so a batch of such messages runs in one go and
   * its replies leave together.
   */
  function run(kind: DeliveryKind, bytes: Uint8Array, seq: number): Uint8Array | undefined | Promise<Uint8Array | undefined> {
    let method: unknown;
    let payload: unknown;
    try {
      const message = codec.unpack(bytes) as unknown[];
      if (!isArray(message) || message[0] !== WIRE_VERSION) throw new Error("not a molt request envelope");
      // Indexed, not destructured: destructuring goes through Array.prototype[Symbol.iterator], which is the service's to replace.
      method = message[1];
      payload = message[2];
    } catch (err) {
      return replyError(new MoltError(ErrorCode.BAD_MESSAGE, `undecodable message: ${(err as Error).message}`), ErrorCode.BAD_MESSAGE);
    }
    const handlers = definition?.handlers;
    const handler = typeof method === "string" && handlers !== undefined && Object.hasOwn(handlers, method) ? handlers[method] : undefined;
    if (typeof handler !== "function") {
      return replyError(
        new MoltError(ErrorCode.NO_HANDLER, `service "${info.service}" has no handler "${String(method)}"`),
        ErrorCode.NO_HANDLER,
      );
    }
    const txn = new Transaction(storage);
    const failed = (err: unknown): Uint8Array | undefined => {
      txn.end(false);
      if (kind === "send") reportUncaught(`handler "${method as string}" (send)`, err);
      return kind === "send" ? undefined : replyError(err, ErrorCode.HANDLER, true);
    };
    let returned: unknown;
    try {
      returned = handler(state, payload, messageContext(txn));
      // Its writes apply when it returns: a commit the store refuses fails the message.
      if (!isThenable(returned)) {
        txn.end(true);
        if (txn.ticket !== 0) tickets.set(seq, txn.ticket);
      }
    } catch (err) {
      return failed(err);
    }
    if (!isThenable(returned)) return kind === "send" ? undefined : reply(returned);
    const pending = returned;
    return (async (): Promise<Uint8Array | undefined> => {
      try {
        const result = await pending;
        txn.end(true);
        if (txn.ticket !== 0) tickets.set(seq, txn.ticket);
        return kind === "send" ? undefined : reply(result);
      } catch (err) {
        return failed(err);
      }
    })();
  }

  // Messages arrive in batches: everything the kernel had for this instance
  // when it crossed, in order. They run in that order with at most
  // `concurrency` handlers at once, as the kernel's mailbox would have run
  // them one crossing each; replies go back as handlers finish, those
  // finished in the same turn in one crossing.
  const progress = new Int32Array(info.progress);
  const startSeqs = new Int32Array(info.startSeqs);
  const startTimes = new Float64Array(info.startTimes);
  let concurrency = Math.max(1, info.concurrency);
  let declared: number | undefined;
  const waiting: { seq: number; epoch: number; kind: DeliveryKind; bytes: Uint8Array }[] = [];
  let head = 0;
  /** Messages started and not finished, by sequence number: what counts against `concurrency`. */
  const running = new Set<number>();
  /**
   * Running messages the kernel gave up on (past their deadline: their
   * callers have their answer). They keep their place until their handlers
   * settle: a handler still awaiting runs again when its await resolves,
   * and the next message must not run beside it. The kernel replaces the
   * instance if one keeps its place too long while others wait.
   */
  const abandoned = new Set<number>();
  /**
   * Messages that were running when the kernel cut a turn of this isolate
   * short (code spinning past its deadline). V8 drops every continuation
   * pending in the turn it stops, so these handlers may never settle, and
   * nothing here can tell which: they let go of their place once the kernel
   * gives up on them.
   */
  const maybeDropped = new Set<number>();
  /** Messages that ended with writes queued for the turn's commit: sequence number → ticket (guest/storage.ts). */
  const tickets = new Map<number, number>();
  let doneSeqs: number[] = [];
  let doneReplies: (Uint8Array | undefined)[] = [];
  let flushQueued = false;

  const flush = (): void => {
    flushQueued = false;
    if (doneSeqs.length === 0) return;
    const seqs = doneSeqs;
    const replies = doneReplies;
    // The turn's write sets, committed together before the replies that depend on them leave; a refused one fails its message alone.
    storage.settle();
    if (tickets.size > 0) {
      for (let i = 0; i < seqs.length; i++) {
        const ticket = tickets.get(seqs[i] as number);
        if (ticket === undefined) continue;
        tickets.delete(seqs[i] as number);
        const refused = storage.refusal(ticket);
        if (refused === undefined) continue;
        if (replies[i] === undefined) reportUncaught("a one-way message's writes", refused);
        else replies[i] = replyError(refused, ErrorCode.STORAGE_FAILED);
      }
    }
    doneSeqs = [];
    doneReplies = [];
    // [seq, reply] per message (no reply: a send).
    const [meta, out] = packBatch(2, seqs, replies);
    host.replies(meta, out);
  };
  const record = (seq: number, bytes: Uint8Array | undefined): void => {
    // Done: its deadline no longer runs, even if this turn is cut short before the reply leaves.
    const at = seq % startSeqs.length;
    if (startSeqs[at] === seq) startSeqs[at] = -seq;
    doneSeqs.push(seq);
    doneReplies.push(bytes);
    if (!flushQueued) {
      flushQueued = true;
      reflectApply(promiseThen, NativePromise.resolve(), [flush]);
    }
  };
  /** A handler that awaited something has finished: its place goes to the next message. */
  const finish = (seq: number, bytes: Uint8Array | undefined): void => {
    // Let go of already (see release): the place it had is another's now; its writes commit with the next turn's.
    if (!running.delete(seq)) {
      tickets.delete(seq);
      return;
    }
    if (maybeDropped.size > 0) maybeDropped.delete(seq);
    // Given up on: its caller has an answer; the kernel only learns that the place is free.
    record(seq, abandoned.size > 0 && abandoned.delete(seq) ? undefined : bytes);
    pump();
  };
  /** Frees the place of a message whose handler has not settled; the kernel learns it as a reply without bytes. */
  const release = (seq: number): void => {
    running.delete(seq);
    abandoned.delete(seq);
    maybeDropped.delete(seq);
    record(seq, undefined);
  };
  /** A turn was cut short: running handlers given up on are let go of, the others once they are (see maybeDropped). */
  const interrupted = (): void => {
    for (const seq of [...running]) {
      if (abandoned.has(seq)) release(seq);
      else maybeDropped.add(seq);
    }
  };
  /** What the kernel says of a running message: given up on (cancel) or taken back (release). */
  const givenUp = (kind: number, seq: number): void => {
    // Not running: it finished already, and its reply is on its way.
    if (!running.has(seq)) return;
    if (kind === KIND_RELEASE || maybeDropped.has(seq)) release(seq);
    else abandoned.add(seq);
  };
  const pump = (): void => {
    while (running.size < concurrency && head < waiting.length) {
      const message = waiting[head++] as (typeof waiting)[number];
      // A message the kernel took back (its batch was cut short) is not this runtime's to start.
      if (message.epoch < Atomics.load(progress, 1)) continue;
      const at = message.seq % startSeqs.length;
      startTimes[at] = dateNow();
      startSeqs[at] = message.seq;
      Atomics.store(progress, 0, message.seq);
      running.add(message.seq);
      const result = run(message.kind, message.bytes, message.seq);
      if (reflectApply(hasInstance, NativePromise, [result]) === true) {
        reflectApply(promiseThen, result, [(bytes: Uint8Array | undefined) => finish(message.seq, bytes)]);
      } else {
        running.delete(message.seq);
        record(message.seq, result as Uint8Array | undefined);
      }
    }
    if (head === waiting.length) {
      waiting.length = 0;
      head = 0;
    }
  };

  /**
   * Replies recorded in a turn that the kernel cut short (a handler, or a
   * microtask, spinning past its deadline) never reached the flush queued
   * for them: a crossing starts by sending them, so no reply is stuck.
   */
  const recover = (): void => {
    if (flushQueued) flush();
    recoverOut();
  };

  /** One crossing: a batch of [seq, kind, epoch, request] (protocol/batch.ts). */
  function deliverBatch(meta: Float64Array, bytes: Uint8Array): void {
    recover();
    readBatch(4, meta, bytes, (i, body) => {
      const kind = meta[i + 1] as number;
      if (kind <= KIND_SEND) {
        if (body !== undefined) waiting.push({ seq: meta[i] as number, kind: kind === KIND_SEND ? "send" : "call", bytes: body, epoch: meta[i + 2] as number });
      } else if (kind === KIND_INTERRUPTED) interrupted();
      else if (kind === KIND_CANCEL || kind === KIND_RELEASE) givenUp(kind, meta[i] as number);
    });
    pump();
  }

  // Its results are primitives, bytes or objects without a prototype: an
  // async function's result is looked up for `then`, which a service may
  // have put on Object.prototype.
  /**
   * One lifecycle op. `dry`: the path a swap's blackout takes, run before it
   * as a rehearsal (V8 compiles a function the first time it runs, and the
   * blackout should not pay for that), with what has effects left out: the
   * `stop` and `start` hooks, clearing timers, and dropping the storage cache.
   */
  async function control(op: ControlOp, bytes?: Uint8Array, fromStateVersion?: number, dry = false): Promise<unknown> {
    switch (op) {
      case "activate": {
        const g = globalThis as { __molt_module?: { default?: unknown } | undefined };
        const mod = g.__molt_module;
        // The bundle declares it with `var`, which makes it non-deletable.
        g.__molt_module = undefined;
        definition = checkDefinition(mod?.default ?? mod);
        // The config's `concurrency` wins; without it, the module's own.
        declared = Number.isInteger(definition.concurrency) && (definition.concurrency as number) >= 1 ? Math.min(definition.concurrency as number, 10_000) : undefined;
        if (!info.concurrencySet && declared !== undefined) concurrency = declared;
        version.semver = definition.version ?? "0.0.0";
        version.stateVersion = definition.stateVersion ?? 1;
        Object.freeze(version);
        warmCodecs();
        return {
          __proto__: null,
          semver: version.semver,
          stateVersion: version.stateVersion,
          fixes: fixesOf(definition),
          restoresFrom: definition.restoresFrom ?? null,
          concurrency: declared ?? null,
          hasRestore: typeof definition.restore === "function",
          handlers: Object.keys(definition.handlers),
        };
      }
      // The runtime's own side of a swap, run on a throwaway value so that V8
      // has compiled it before a blackout needs it; no service hook runs.
      case "warm": {
        const sample = encodeDump(version.stateVersion, { warm: [1, "x"], m: new Map([[1, 2]]) }, "state", info.service);
        for (let i = 0; i < 3; i++) {
          await step(CONTROL_FAILURE.warm, async () => {
            decodeDump(sample);
          });
          globals.clearTimers();
        }
        return sample;
      }
      case "init":
        state = definition?.init === undefined ? {} : (await settled(definition.init(ctx))).value;
        return undefined;
      case "start":
        if (dry) return await settled(undefined);
        // Live from here: what another instance wrote since this one cached it must be read again.
        storage.clear();
        await settled(definition?.start?.(state, ctx));
        return undefined;
      case "stop":
        // Committing what handlers that ended wrote has no effect a rehearsal must avoid: their turns commit it anyway.
        if (dry) {
          storage.settle();
          return await settled(undefined);
        }
        // What handlers that ended wrote is committed before the instance goes quiet.
        storage.settle();
        globals.clearTimers();
        await settled(definition?.stop?.(state, ctx));
        globals.clearTimers();
        return undefined;
      case "dump":
        return dump();
      case "restore":
        return restore(bytes as Uint8Array, fromStateVersion);
      // A swap's two steps on each side, one boundary crossing each: the
      // blackout pays for two crossings instead of four.
      case "quiesce":
        await step(CONTROL_FAILURE.stop, () => control("stop", undefined, undefined, dry));
        return await step(CONTROL_FAILURE.dump, dump);
      case "resume":
        await step(CONTROL_FAILURE.restore, () => restore(bytes as Uint8Array, fromStateVersion));
        await step(CONTROL_FAILURE.start, () => control("start", undefined, undefined, dry));
        return undefined;
      case "rehearse-quiesce":
        return control("quiesce", undefined, undefined, true);
      case "rehearse-resume":
        return control("resume", bytes, fromStateVersion, true);
    }
  }

  async function dump(): Promise<Uint8Array> {
    const dumped = definition?.dump === undefined ? state : (await settled(definition.dump(state))).value;
    // A state holding a class instance is refused (ERR_STATE_NOT_PLAIN), so a
    // swap rolls back (in its rehearsal, before anything pauses) instead of
    // committing a state every handler then fails on.
    return encodeDump(version.stateVersion, dumped, definition?.dump === undefined ? "state" : "dump()", info.service);
  }

  /**
   * A hook's result, awaited only when it is a promise (see isThenable).
   * The value comes back in a box without a prototype: a promise resolved
   * with the value itself would look up its `then` all the same.
   */
  async function settled<T>(value: T | PromiseLike<T>): Promise<{ value: T }> {
    return { __proto__: null, value: isThenable(value) ? await value : value } as { value: T };
  }

  /** Runs one lifecycle step; its failure is named for the step, keeping what the hook said. */
  async function step<T>(code: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      const e = err as { code?: unknown; message?: unknown };
      // The runtime's own refusals keep their code: they name no hook's failure.
      if (e?.code === ErrorCode.STATE_VERSION || e?.code === ErrorCode.STATE_NOT_PLAIN) throw err;
      const inner = typeof e?.code === "string" ? `${e.code}: ` : "";
      throw new MoltError(code, `${inner}${typeof e?.message === "string" ? e.message : String(err)}`, { cause: err });
    }
  }

  async function restore(bytes: Uint8Array, fromStateVersion: number | undefined): Promise<undefined> {
    // A state taken anew: timers armed for the one it replaces (a shadow's handlers, a rehearsal) must not fire on it,
    // and records cached before (a rehearsal's reads) may be older than what this state goes with.
    globals.clearTimers();
    storage.clear();
    const dumped = decodeDump(bytes).value;
    const from = fromStateVersion ?? version.stateVersion;
    if (definition?.restore !== undefined) state = (await settled(definition.restore(dumped, from, ctx))).value;
    else if (from === version.stateVersion) state = dumped;
    else {
      throw new MoltError(
        ErrorCode.STATE_VERSION,
        `${info.service} holds stateVersion ${version.stateVersion} and has no restore for stateVersion ${from}`,
      );
    }
    return undefined;
  }

  // Control results travel in the same reply envelope as messages, so a
  // lifecycle hook's error reaches the kernel with its code intact.
  async function controlEntry(op: ControlOp, bytes?: Uint8Array, fromStateVersion?: number): Promise<Uint8Array> {
    try {
      return encode(codec, [WIRE_VERSION, REPLY_OK, await control(op, bytes, fromStateVersion)]);
    } catch (err) {
      return replyError(err, CONTROL_FAILURE[op]);
    }
  }

  return {
    deliverBatch,
    settle: (meta: Float64Array, bytes: Uint8Array) => {
      recover();
      if (meta[0] === ANSWER_INTERRUPTED) {
        interrupted();
        pump();
      }
      settle(meta, bytes);
    },
    control: controlEntry,
    fireTimer: (id: number) => {
      recover();
      globals.fireTimer(id);
    },
  };
}

/**
 * Runs the codecs over a message shaped like real traffic, so that V8 has
 * compiled their paths before the instance's first message: a swap boots
 * and activates the new instance before the blackout, and its first
 * messages after cutover should not pay for warming up.
 */
function warmCodecs(): void {
  const sample = [WIRE_VERSION, "warm", { s: "text", n: 1.5, i: 7, a: [1, "x", null], m: new Map([["k", new Set([1])]]), d: new Date(0), b: new Uint8Array(4) }];
  for (let i = 0; i < 20; i++) {
    codec.unpack(codec.pack(sample));
    warmDumpCodec(sample);
  }
}

function checkDefinition(value: unknown): ServiceDefinition {
  const bad = (why: string): never => {
    throw new MoltError(ErrorCode.BAD_SERVICE, `the service module's default export ${why}`);
  };
  if (typeof value !== "object" || value === null) bad("must be an object (see defineService)");
  const def = value as ServiceDefinition;
  if (typeof def.handlers !== "object" || def.handlers === null) bad("must have a `handlers` object");
  for (const [name, fn] of Object.entries(def.handlers)) if (typeof fn !== "function") bad(`has handler "${name}" that is not a function`);
  for (const hook of ["init", "start", "stop", "dump", "restore", "migrate"] as const) {
    if (def[hook] !== undefined && typeof def[hook] !== "function") bad(`has \`${hook}\` that is not a function`);
  }
  if (def.version !== undefined && typeof def.version !== "string") bad("has a `version` that is not a string");
  if (def.stateVersion !== undefined && (!Number.isInteger(def.stateVersion) || def.stateVersion < 0)) {
    bad("has a `stateVersion` that is not a non-negative integer");
  }
  return def;
}

/** The most advisory ids a module may declare, and the longest id: what a heartbeat and an inventory record can afford to carry. */
const MAX_FIXES = 64;
const MAX_FIX_CHARS = 128;

/**
 * The module's `fixes`, checked and copied in one pass into a fresh array of
 * distinct strings: the value is read once, so a getter or a proxy cannot
 * show the check one list and the host another.
 */
function fixesOf(def: ServiceDefinition): string[] {
  const declared: unknown = def.fixes;
  if (declared === undefined) return [];
  const bad = (why: string): never => {
    throw new MoltError(ErrorCode.BAD_SERVICE, `the service module's \`fixes\` ${why}`);
  };
  if (!Array.isArray(declared)) return bad("must be an array of advisory ids");
  const length = declared.length;
  if (length > MAX_FIXES) bad(`lists ${length} advisory ids (at most ${MAX_FIXES})`);
  const fixes: string[] = [];
  for (let i = 0; i < length; i++) {
    const id: unknown = declared[i];
    if (typeof id !== "string" || id.length === 0 || id.length > MAX_FIX_CHARS) bad(`has an entry that is not an advisory id of 1 to ${MAX_FIX_CHARS} characters`);
    if (!fixes.includes(id as string)) fixes.push(id as string);
  }
  return fixes;
}

// The kernel calls this once, right after the runtime script ran, then
// deletes it: service code, which runs later, never sees it.
Object.defineProperty(globalThis, "__molt_install", { value: install, configurable: true, writable: false });
