// Routing: what one instance may reach. Its calls and sends go only through
// its own bindings; its console output goes to the log service through its
// budget (console-sink.ts); its fetches and stdout writes pass its
// permissions. This is the kernel's side of the InstanceBridge.
//
// What an instance hands over here is its own choice: error codes and
// messages that reach the kernel's log or a key of a host-side map are
// bounded first.

import { ConsoleSink } from "./console-sink.ts";
import { ErrorCode, MoltError, toMoltError } from "./errors.ts";
import type { Instance, InstanceBridge } from "./instance.ts";
import type { KernelLog } from "./log.ts";
import { permittedFetch } from "./permissions.ts";
import type { Shadow } from "./shadow.ts";
import type { Slot } from "./slot.ts";
import { decodeReply, encodeErrorReply, encodeStorageFailure } from "./wire.ts";
import { replyFailure, type ReplyFailure } from "../protocol/wire.ts";

/**
 * Services on other runtimes, reached when a binding names a service that
 * does not run here (the fleet plugs this in; the kernel knows no transport).
 * `call` resolves with reply bytes and never rejects.
 */
export interface RemoteServices {
  call(service: string, request: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
  send(service: string, request: Uint8Array): void;
}

/** Longest error message the kernel logs for a service; a message is the guest's to choose. */
const MAX_LOGGED_MESSAGE_CHARS = 1024;

/** The kernel's codes are a fixed set; any other code would let a guest pick map keys. */
const KERNEL_CODES: ReadonlySet<string> = new Set(Object.values(ErrorCode));

/** An error message as the kernel logs it: at most MAX_LOGGED_MESSAGE_CHARS. */
function clipMessage(text: string): string {
  return text.length <= MAX_LOGGED_MESSAGE_CHARS ? text : `${text.slice(0, MAX_LOGGED_MESSAGE_CHARS)}… [cut]`;
}

export interface RouterOptions {
  slots: ReadonlyMap<string, Slot>;
  /** The service that receives console output, if any. */
  logService: string | null;
  log: KernelLog;
  stdout: (text: string) => void;
}

export class Router {
  readonly #options: RouterOptions;
  readonly #sendFailures = new Map<string, { count: number }>();
  readonly #console: ConsoleSink;
  #remote: RemoteServices | undefined;
  /** Per service, the sends waiting for its writes to be durable: later sends queue behind them, in order. */
  readonly #heldSends = new Map<string, Promise<void>>();

  constructor(options: RouterOptions) {
    this.#options = options;
    this.#console = new ConsoleSink(options);
  }

  /** Plugs in the way to services on other runtimes (or unplugs it with undefined). */
  useRemote(remote: RemoteServices | undefined): void {
    this.#remote = remote;
  }

  /**
   * The bridge for one instance of `slot` (`self`: that instance, once it
   * exists); `exited` is called when it dies on its own. Its calls, sends
   * and fetches leave only once the writes its service committed before
   * them are durable (the output gate, storage.ts).
   */
  bridge(slot: Slot, exited: InstanceBridge["exited"], self: () => Instance | undefined): InstanceBridge {
    const { stdout } = this.#options;
    // Shadow traffic (shadow.ts): the new version's effects are not performed, and the old one's calls are kept to answer it.
    const shadowing = (): Shadow | undefined => {
      const shadow = slot.shadow;
      return shadow !== undefined && shadow.instance === self() ? shadow : undefined;
    };
    const watched = (): Shadow | undefined => {
      const shadow = slot.shadow;
      return shadow !== undefined && slot.instance === self() ? shadow : undefined;
    };
    const call = async (binding: string, request: Uint8Array): Promise<Uint8Array> => {
        try {
          const durable = slot.store?.durable();
          if (durable !== undefined) await durable;
          const to = this.#route(slot, binding);
          const reply =
            typeof to === "string"
              ? await (this.#remote as RemoteServices).call(to, request, slot.spec.limits.timeoutMs)
              : ((await to.deliver("call", request)) as Uint8Array);
          const failure = replyFailure(reply);
          // A callee's error is the callee's: one that names the caller, or none, is taken as the callee's own, so that no service can make its caller's probation count a failure.
          if (failure !== undefined && (failure.service === null || failure.service === slot.name)) return blame(reply, typeof to === "string" ? to : to.name, failure);
          const max = slot.spec.limits.maxMessageBytes;
          if (reply.byteLength > max) {
            throw new MoltError(ErrorCode.MESSAGE_TOO_LARGE, `reply of ${reply.byteLength} bytes exceeds ${slot.name}'s maxMessageBytes (${max})`, {
              service: slot.name,
            });
          }
          return reply;
        } catch (err) {
          return encodeErrorReply(toMoltError(err));
        }
    };
    const fetch = async (request: Uint8Array): Promise<Uint8Array> => {
      const durable = slot.store?.durable();
      if (durable !== undefined) {
        try {
          await durable;
        } catch (err) {
          return encodeErrorReply(toMoltError(err));
        }
      }
      return permittedFetch(slot.name, slot.spec.permissions.net, request, slot.spec.limits.timeoutMs, slot.spec.limits.maxMessageBytes);
    };
    return {
      call: (binding, request) => {
        const shadow = shadowing();
        if (shadow !== undefined) return shadow.answer(binding, request);
        const reply = call(binding, request);
        watched()?.record(binding, request, reply);
        return reply;
      },
      send: (binding, request) => {
        const shadow = shadowing();
        if (shadow !== undefined) return shadow.suppress("sends");
        const durable = slot.store?.durable();
        const held = this.#heldSends.get(slot.name);
        if (durable === undefined && held === undefined) return this.#send(slot, binding, request);
        // Behind the writes before it, and behind the sends held before it, so a binding's sends keep their order.
        const next = (held ?? Promise.resolve())
          .then(() => durable)
          .then(
            () => this.#send(slot, binding, request),
            (err: unknown) => this.#options.log.log("warn", "send dropped: the writes before it could not be made durable", { service: slot.name, code: toMoltError(err).code }),
          );
        this.#heldSends.set(slot.name, next);
        void next.then(() => {
          if (this.#heldSends.get(slot.name) === next) this.#heldSends.delete(slot.name);
        });
      },
      console: (level, text) => {
        const shadow = shadowing();
        if (shadow !== undefined) return shadow.suppress("console");
        this.#console.write(slot, level, text);
      },
      fetch: (request) => {
        const shadow = shadowing();
        if (shadow !== undefined) {
          shadow.suppress("fetches");
          return shadow.answer("", request);
        }
        const reply = fetch(request);
        watched()?.record("", request, reply);
        return reply;
      },
      storage: (request) => {
        const store = slot.store;
        if (store === undefined) return encodeStorageFailure(ErrorCode.STORAGE_FAILED, "this runtime was started without storage");
        const shadow = shadowing();
        // The shadow writes to a scratch overlay of its own; the store never sees it.
        if (shadow !== undefined) {
          return shadow.scratch === undefined ? encodeStorageFailure(ErrorCode.STORAGE_READONLY, "the shadow has no view of the store yet") : store.request(request, true, shadow.scratch);
        }
        const instance = self();
        return store.request(request, instance !== undefined && instance === slot.instance);
      },
      stdout: (text) => {
        const shadow = shadowing();
        if (shadow !== undefined) return shadow.suppress("stdout");
        if (slot.spec.permissions.stdout) stdout(text);
      },
      exited,
      stalled: (verdict) => {
        const release = slot.mailbox.hold();
        void verdict.finally(release);
      },
    };
  }

  /** The local slot a binding leads to, or the name of a service on another runtime. */
  #route(slot: Slot, binding: string): Slot | string {
    const target = Object.hasOwn(slot.spec.bindings, binding) ? slot.spec.bindings[binding] : undefined;
    if (target === undefined) {
      throw new MoltError(ErrorCode.NO_BINDING, `service "${slot.name}" has no binding "${binding}"`, { service: slot.name });
    }
    // A local instance is preferred; otherwise the fleet, if this runtime is in one.
    const local = this.#options.slots.get(target);
    if (local !== undefined) return local;
    if (this.#remote !== undefined) return target;
    throw new MoltError(ErrorCode.NO_SERVICE, `"${target}" (binding "${binding}" of ${slot.name}) runs on no runtime this one can reach`, {
      service: slot.name,
    });
  }

  #send(slot: Slot, binding: string, request: Uint8Array): void {
    const { log } = this.#options;
    let to: Slot | string;
    try {
      to = this.#route(slot, binding);
    } catch (err) {
      log.log("warn", "send refused", { service: slot.name, code: toMoltError(err).code });
      return;
    }
    if (typeof to === "string") {
      (this.#remote as RemoteServices).send(to, request);
      return;
    }
    const local = to;
    local.deliver("send", request).catch((err: unknown) => {
      const e = toMoltError(err);
      // A flood of failing sends logs the first failure, then once a second
      // how many more failed the same way: not once per message. The key
      // holds only a kernel code, so the map has a few keys per pair of
      // services whatever codes the failures carry.
      const code = KERNEL_CODES.has(e.code) ? e.code : ErrorCode.OTHER;
      const key = `${slot.name}>${local.name}:${code}`;
      const seen = this.#sendFailures.get(key);
      if (seen !== undefined) {
        seen.count++;
        return;
      }
      const fields = { service: slot.name, to: local.name, code, error: clipMessage(e.message) };
      log.log("warn", "send failed", fields);
      const window = { count: 0 };
      this.#sendFailures.set(key, window);
      setTimeout(() => {
        this.#sendFailures.delete(key);
        if (window.count > 0) log.log("warn", "send failed", { ...fields, alsoFailedInTheLastSecond: window.count });
      }, 1000).unref();
    });
  }
}

/** A callee's failed reply, re-encoded as the callee's own failure (its code and message kept; one whose header is unreadable is ERR_BAD_RESPONSE). */
function blame(reply: Uint8Array, callee: string, failure: ReplyFailure): Uint8Array {
  if (failure.code === ErrorCode.BAD_MESSAGE) {
    return encodeErrorReply(new MoltError(ErrorCode.BAD_RESPONSE, `${callee} answered with a malformed reply`, { service: callee }));
  }
  let error: MoltError;
  try {
    decodeReply(reply);
    error = new MoltError(ErrorCode.BAD_RESPONSE, `${callee} answered with a malformed error`);
  } catch (err) {
    error = toMoltError(err);
  }
  return encodeErrorReply(new MoltError(error.code, error.message, { service: callee }));
}
