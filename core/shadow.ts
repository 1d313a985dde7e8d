// Shadow traffic: before a swap's cutover, the new version runs beside the
// old one on a restored copy of the state, and each of the next N messages
// to the service is delivered to it too, off the caller's path, after the
// old version has answered it (as Diffy and GitHub's Scientist do). The two
// replies are compared, and at the end the two states.
//
// The new version has no side effects while it shadows: its calls and
// fetches are answered with what the old version's identical calls got
// (one it makes that the old version did not make is a divergence, answered
// with ERR_SWAP_SHADOW); its sends, console and stdout output are dropped
// and counted; its storage writes go to a scratch overlay the real store
// never sees. The router asks `slot.shadow` for all this (router.ts).

import { ErrorCode, MoltError, toMoltError } from "./errors.ts";
import type { Instance } from "./instance.ts";
import type { Slot } from "./slot.ts";
import type { StoreScratch } from "./storage.ts";
import { firstDifference } from "./state-diff.ts";
import { betweenMessages } from "./transfer.ts";
import { decode, encodeErrorReply } from "./wire.ts";
import { REPLY_OK, WIRE_VERSION, wireErrorOf } from "../protocol/wire.ts";
import type { ShadowExample, ShadowResult } from "../protocol/admin.ts";

export type { ShadowExample, ShadowResult } from "../protocol/admin.ts";

/** Header names whose values an example never shows. */
const SECRET_HEADER = /^(authorization|proxy-authorization|cookie|set-cookie|x-api-key|x-auth-token)$/i;

/** At most this many examples are kept in a report. */
const MAX_EXAMPLES = 10;
/** A value in an example is shown in at most this many characters. */
const PREVIEW_CHARS = 300;

export interface ShadowOptions {
  /** How many messages to deliver to both versions. */
  messages: number;
  /** Methods whose divergences are reported but not counted: the new version is meant to change them. */
  expectChange: readonly string[];
  /** The longest the shadow waits for its messages; it ends early (incomplete) past it. */
  timeoutMs: number;
  /** How long a drain may take, at the start and the end (the service's deadline). */
  drainMs: number;
  /** Called as messages are compared. */
  onProgress?: (messages: number, divergences: number) => void;
}

interface Teed {
  kind: "call" | "send";
  request: Uint8Array;
  reply: Uint8Array | undefined;
}

/** What the shadowed instance did that was not performed. */
type Suppressed = ShadowResult["suppressed"];

export class Shadow {
  readonly instance: Instance;
  readonly #slot: Slot;
  readonly #old: Instance;
  readonly #options: ShadowOptions;
  /** The old version's calls and fetches during the shadow, by binding and request bytes: their replies, in order. */
  readonly #recorded = new Map<string, Promise<Uint8Array>[]>();
  readonly #queue: Teed[] = [];
  #teeing = false;
  #wake: (() => void) | undefined;
  /** Why the message the shadow runs now diverges, beyond its reply (a call the old version did not make). */
  #unmatched: string | undefined;
  /** The new version's storage writes: seen by its own reads, never by the store. */
  scratch: StoreScratch | undefined;
  /** A shadowed message passed its deadline in the new instance: its handler may still be running there. */
  stray = false;
  #teedCount = 0;
  readonly #counted: ShadowExample[] = [];
  readonly #expected: ShadowExample[] = [];
  readonly #result: ShadowResult;

  constructor(slot: Slot, old: Instance, next: Instance, options: ShadowOptions) {
    this.#slot = slot;
    this.#old = old;
    this.instance = next;
    this.#options = options;
    this.#result = {
      requested: options.messages,
      messages: 0,
      divergences: 0,
      expected: 0,
      complete: false,
      examples: [],
      suppressed: { sends: 0, fetches: 0, stdout: 0, console: 0 },
    };
  }

  /** The old version made a call (or a fetch, binding ""): kept for the new version's identical one. */
  record(binding: string, request: Uint8Array, reply: Promise<Uint8Array>): void {
    if (!this.#teeing) return;
    const key = callKey(binding, request);
    const list = this.#recorded.get(key);
    if (list === undefined) this.#recorded.set(key, [reply]);
    else list.push(reply);
  }

  /** The new version's call (or fetch): the old version's identical call's reply, or a divergence. */
  answer(binding: string, request: Uint8Array): Promise<Uint8Array> {
    const reply = this.#recorded.get(callKey(binding, request))?.shift();
    if (reply !== undefined) return reply;
    const what = binding === "" ? "a fetch" : `a call through "${binding}" (${methodOf(request)})`;
    this.#unmatched ??= `${what} the old version did not make with the same arguments`;
    return Promise.resolve(encodeErrorReply(new MoltError(ErrorCode.SWAP_SHADOW, `${what} has no match in the old version's calls`, { service: this.#slot.name })));
  }

  /** Something the new version did that is not performed while it shadows. */
  suppress(what: keyof Suppressed): void {
    this.#result.suppressed[what]++;
  }

  /**
   * Runs the shadow: both versions from the same state, the next N
   * messages to both, the replies and the final states compared. Never
   * throws for a divergence: the caller decides from the result.
   */
  async run(): Promise<ShadowResult> {
    const slot = this.#slot;
    const { expectChange } = this.#options;
    const stop = slot.observe((_ms, failure, request, reply, instance) => {
      if (!this.#teeing || instance !== this.#old) return;
      // A message the kernel answered for the old version (a deadline, its death) has no reply to compare.
      if (reply === undefined && failure !== undefined) return;
      this.#queue.push({ kind: reply === undefined ? "send" : "call", request, reply });
      this.#teedCount++;
      this.#wake?.();
    });
    let teed = 0;
    try {
      // The same starting point: the old state and the store as they are between two messages.
      let start: Uint8Array | undefined;
      await this.#between(async () => {
        start = await this.#old.dump();
        this.scratch = slot.store?.scratch();
        this.#teeing = true;
      });
      // Restored with the callers let through: the messages teed meanwhile wait in the queue.
      await this.instance.restore(start as Uint8Array, this.#old.meta.stateVersion);
      const deadline = performance.now() + this.#options.timeoutMs;
      const { messages } = this.#options;
      // Until N messages were teed (then the end comes at once, so a slow new
      // version does not let the queue grow), or the time is up, or the old
      // instance is gone.
      while (this.#teedCount < messages && performance.now() < deadline && slot.instance === this.#old) {
        const next = this.#queue.shift();
        if (next !== undefined) {
          await this.#compare(next, expectChange);
          continue;
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(250, Math.max(0, deadline - performance.now())));
          this.#wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.#wake = undefined;
      }
      teed = this.#teedCount;
      // The end: the old state between two messages; what the old version answered before it is run by the shadow too.
      let oldDump: Uint8Array | undefined;
      await this.#between(async () => {
        this.#teeing = false;
        oldDump = await this.#old.dump();
      });
      for (let next = this.#queue.shift(); next !== undefined; next = this.#queue.shift()) await this.#compare(next, expectChange);
      this.#result.complete = teed >= this.#options.messages;
      const state = await this.#states(oldDump as Uint8Array);
      if (state !== undefined) {
        this.#result.state = state;
        // States that end apart are a divergence of their own, whatever the replies said.
        if (state.path !== undefined) {
          this.#result.divergences++;
          this.#counted.unshift({ method: "(state)", payload: "", old: "", new: "", why: `the states differ at ${state.path} after the last shadowed message` });
        }
      }
      // Counted divergences first: those are what a refusal is about.
      this.#result.examples = [...this.#counted, ...this.#expected].slice(0, MAX_EXAMPLES);
      // Timers and subscriptions the shadowed messages armed end here, while its effects are still not performed.
      await this.instance.stop().catch(() => undefined);
      return this.#result;
    } finally {
      this.#teeing = false;
      this.scratch?.close();
      stop();
    }
  }

  /** Runs `step` between two of the old instance's messages (transfer.ts). */
  #between(step: () => Promise<void>): Promise<void> {
    return betweenMessages(this.#slot, this.#options.drainMs, ErrorCode.SWAP_DRAIN_TIMEOUT, async () => {
      if (this.#slot.instance !== this.#old) throw new MoltError(ErrorCode.SWAP_SHADOW, `${this.#slot.name}'s instance changed during the shadow`, { service: this.#slot.name });
      await step();
    });
  }

  async #compare(teed: Teed, expectChange: readonly string[]): Promise<void> {
    this.#unmatched = undefined;
    let reply: Uint8Array | undefined;
    let failed: MoltError | undefined;
    try {
      reply = await this.instance.deliver(teed.kind, teed.request);
    } catch (err) {
      failed = toMoltError(err);
      // Its handler may still be running in the new instance, and would act for real once that instance is live.
      if (failed.code === ErrorCode.TIMEOUT) this.stray = true;
    }
    this.#result.messages++;
    // The common case costs a byte comparison: the same reply bytes, and no call left unmatched.
    if (this.#unmatched === undefined && failed === undefined && (teed.kind === "send" || sameBytes(teed.reply as Uint8Array, reply as Uint8Array))) {
      this.#options.onProgress?.(this.#result.messages, this.#result.divergences);
      return;
    }
    const [method, payload] = requestOf(teed.request);
    const oldSide = teed.kind === "send" ? { value: "(one-way)" } : outcome(teed.reply as Uint8Array);
    const newSide = failed !== undefined ? { error: failed.code } : teed.kind === "send" ? { value: "(one-way)" } : outcome(reply as Uint8Array);
    let why: string | undefined = this.#unmatched;
    if (why === undefined) {
      if (oldSide.error !== undefined || newSide.error !== undefined) {
        if (oldSide.error !== newSide.error) why = "the replies differ";
      } else {
        const path = safeDifference(oldSide.value, newSide.value, "reply");
        // "reply" alone: the values differ as a whole (a string, a number); a deeper path names the field.
        if (path !== undefined) why = path === "reply" ? "the replies differ" : `the replies differ at ${path}`;
      }
    }
    if (why !== undefined) {
      const expected = expectChange.includes(method);
      if (expected) this.#result.expected++;
      else this.#result.divergences++;
      const examples = expected ? this.#expected : this.#counted;
      if (examples.length < MAX_EXAMPLES) {
        const example: ShadowExample = {
          method,
          payload: preview(payload),
          old: oldSide.error ?? preview(oldSide.value),
          new: newSide.error ?? preview(newSide.value),
          why,
          ...(expected ? { expected: true } : {}),
        };
        examples.push(example);
      }
    }
    this.#options.onProgress?.(this.#result.messages, this.#result.divergences);
  }

  /** The two states at the end, compared when both versions hold the same stateVersion. */
  async #states(oldDump: Uint8Array): Promise<ShadowResult["state"]> {
    const next = this.instance;
    if (next.meta.stateVersion !== this.#old.meta.stateVersion) {
      return { ok: false, skipped: `the versions hold different stateVersions (${this.#old.meta.stateVersion} → ${next.meta.stateVersion})` };
    }
    let newDump: Uint8Array;
    try {
      newDump = await next.dump();
    } catch (err) {
      return { ok: false, skipped: `the new version could not dump its state (${toMoltError(err).code})` };
    }
    const [, , a] = decode(oldDump) as [number, number, unknown];
    const [, , b] = decode(newDump) as [number, number, unknown];
    const path = safeDifference(a, b, "state");
    return path === undefined ? { ok: true } : { ok: false, path };
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array | undefined): boolean {
  return b !== undefined && a.byteLength === b.byteLength && Buffer.compare(a, b) === 0;
}

function callKey(binding: string, request: Uint8Array): string {
  return `${binding}\u0000${Buffer.from(request.buffer, request.byteOffset, request.byteLength).toString("base64")}`;
}

function methodOf(request: Uint8Array): string {
  return requestOf(request)[0];
}

/** A request's method and payload; an undecodable one says so. */
function requestOf(request: Uint8Array): [string, unknown] {
  try {
    const message = decode(request) as unknown[];
    if (Array.isArray(message) && message[0] === WIRE_VERSION && typeof message[1] === "string") return [message[1], message[2]];
  } catch {
    // Shown as undecodable below.
  }
  return ["(undecodable)", undefined];
}

/** A reply as the comparison sees it: its value, or its error's code. */
function outcome(reply: Uint8Array): { value?: unknown; error?: string } {
  try {
    const message = decode(reply) as unknown[];
    if (!Array.isArray(message) || message[0] !== WIRE_VERSION) return { error: ErrorCode.BAD_MESSAGE };
    if (message[1] === REPLY_OK) return { value: message[2] };
    const error = wireErrorOf(message) as { code?: unknown } | undefined;
    return { error: typeof error?.code === "string" ? error.code : ErrorCode.OTHER };
  } catch {
    return { error: ErrorCode.BAD_MESSAGE };
  }
}

function safeDifference(a: unknown, b: unknown, root: string): string | undefined {
  try {
    return firstDifference(a, b, root);
  } catch {
    return `${root} (too deep to compare)`;
  }
}

/** A value as an example shows it: JSON-like, Maps, Sets, Dates and bytes named, cut to PREVIEW_CHARS. */
export function preview(value: unknown): string {
  let text: string;
  try {
    text =
      JSON.stringify(value, (_key, v: unknown) => {
        if (v instanceof Map) return { "(Map)": [...v.entries()] };
        if (v instanceof Set) return { "(Set)": [...v.values()] };
        if (v instanceof Uint8Array) return `(${v.byteLength} bytes)`;
        if (typeof v === "bigint") return `${v}n`;
        if (v === undefined) return "(undefined)";
        // An example is kept in the inventory: credentials a request carried are not.
        if (typeof v === "string" && SECRET_HEADER.test(_key)) return "(hidden)";
        return v;
      }) ?? "undefined";
  } catch {
    text = String(value);
  }
  return text.length <= PREVIEW_CHARS ? text : `${text.slice(0, PREVIEW_CHARS)}…`;
}
