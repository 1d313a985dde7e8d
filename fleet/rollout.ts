// A rollout: one service to a new version across the fleet, a canary first,
// then batches or waves, each runtime swapping live (the same swap as `molt
// swap`, with its rollback on failure). Failures past the threshold halt it
// and take every runtime it touched back to the version it ran before. The
// desired version is settled only when the rollout completes, so runtimes
// that were down or joined late converge to it on their own.
//
// The fleet is read once and then followed by one watch on the heartbeats
// (fleet/view.ts): a step picks its runtimes from memory, so a rollout over
// 50,000 runtimes costs one listing, not one per step.

import { randomBytes } from "node:crypto";
import type { KvEntry } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { bundleService, shortId, type Bundle } from "../core/bundle.ts";
import { ErrorCode, MoltError, toMoltError } from "../core/errors.ts";
import { connectFleet, isStaleRevision, maxPayload, openStores, requestFailure, type FleetStores } from "./connection.ts";
import { runningVersion } from "./nodes.ts";
import {
  decodeRecord,
  encodeRecord,
  HEARTBEAT_LIMITS,
  ROLLOUT_HISTORY,
  ROLLOUT_NAMES_KEPT,
  Subject,
  type DesiredChange,
  type DesiredRecord,
  type RolloutHistory,
  type RolloutRecord,
  type SettledVersion,
  type SwapAnswer,
  type SwapRequest,
} from "./protocol.ts";
import { NodesView } from "./view.ts";
import { waveTarget } from "./waves.ts";

export interface RolloutOptions {
  nats: string;
  service: string;
  entry: string;
  /** Runtimes that must take the new version, one at a time, before any batch (default 1). */
  canary?: number;
  /** Runtimes swapped at once after the canary (default 1); with `waves`, how many swaps are in flight at once within a wave. */
  batch?: number;
  /**
   * Cumulative percentages of the runtimes that run the service which
   * should run the new version after each wave, e.g. [1, 5, 25, 100]
   * (fleet/waves.ts checks them). Replaces batches: within a wave, `batch`
   * runtimes are asked at once, the next as soon as one answers.
   */
  waves?: number[];
  /** Failed swaps tolerated; one more halts the rollout (default 0). */
  maxFailures?: number;
  /** A pause after the canary and after each batch, to watch the fleet before going on (default 0). */
  pauseMs?: number;
  /** Take over from a rollout of the same service that is running or was interrupted. */
  force?: boolean;
  /** How long one runtime may take to answer a swap (default 60 s). */
  swapTimeoutMs?: number;
  /** How long to wait for a lost NATS connection before stopping (default 30 s). */
  reconnectWaitMs?: number;
  /** Aborting halts the rollout after the step in progress, and takes the runtimes back. */
  signal?: AbortSignal;
  onEvent?: (event: RolloutEvent) => void;
}

export type RolloutEvent =
  | { type: "start"; id: string; service: string; version: string; runtimes: string[]; canary: number; batch: number; maxFailures: number; waves?: number[] }
  | {
      type: "wave";
      /** "start" as a wave begins, "end" once its runtimes answered (or the rollout halted in it). */
      phase: "start" | "end";
      /** From 1. */
      wave: number;
      waves: number;
      percent: number;
      /** Runtimes that should run the new version once this wave is done. */
      target: number;
      /** Runtimes known to run the service. */
      runtimes: number;
      /** Runtimes that run the new version now. */
      onNew: number;
      failed: number;
    }
  | { type: "runtime"; stage: string; node: string; outcome: SwapAnswer["outcome"] | "skipped"; blackoutMs: number | null; code?: string; message?: string }
  | { type: "waiting"; message: string }
  | { type: "halt"; message: string }
  | { type: "rollback"; node: string; outcome: SwapAnswer["outcome"] | "skipped"; code?: string }
  | {
      type: "end";
      id: string;
      outcome: "completed" | "halted";
      swapped: string[];
      failed: RolloutRecord["failed"];
      skipped: string[];
      ms: number;
    };

/** Runs a rollout to the end; resolves with its record when it completes, rejects with ERR_ROLLOUT_HALTED when it halts. */
export async function rollout(options: RolloutOptions): Promise<RolloutRecord> {
  let bundle: Bundle;
  try {
    bundle = await bundleService(options.entry);
  } catch (err) {
    const e = toMoltError(err);
    throw new MoltError(ErrorCode.SWAP_COMPILE, e.message, { service: options.service, cause: e });
  }
  const nc = await connectFleet({ servers: options.nats, name: "rollout", waitOnFirstConnect: false });
  try {
    const stores = await openStores(nc);
    const view = await NodesView.open(stores.nodes, (err) => options.onEvent?.({ type: "waiting", message: `watching the fleet's heartbeats failed (${String(err)}); watching again` }));
    try {
      return await new Rollout(nc, stores, view, bundle, options).run();
    } finally {
      await view.close();
    }
  } finally {
    await nc.drain().catch(() => undefined);
  }
}

type Result = { node: string; answer: SwapAnswer | "skipped" };

class Rollout {
  readonly #nc: NatsConnection;
  readonly #stores: FleetStores;
  readonly #view: NodesView;
  readonly #bundle: Bundle;
  readonly #options: Required<Omit<RolloutOptions, "onEvent" | "signal" | "waves">> & Pick<RolloutOptions, "onEvent" | "signal" | "waves">;
  readonly #record: RolloutRecord;
  /** What each runtime ran before this rollout touched it: the runtimes the rollout is about. */
  readonly #from = new Map<string, string | null>();
  /** Runtimes that already ran the new version when the rollout first saw them. */
  readonly #alreadyNew = new Set<string>();
  /** Runtimes asked to swap, whatever they answered (a lost answer may hide a swap that happened). */
  readonly #attempted = new Set<string>();
  /** Runtimes to consider, in the order they are asked; `#cursor` is the next one. */
  readonly #queue: string[] = [];
  #cursor = 0;
  #tried = false;
  #disconnected = false;
  readonly #reconnected = new Set<() => void>();
  readonly #onDisconnect = new Set<() => void>();
  readonly #started = performance.now();
  /** The desired record as this rollout last wrote it: its revision, and the KV entry revision to update against. */
  #revision = 0;
  #entryRevision = 0;
  /** What the fleet had settled on before: restored if the rollout halts. */
  #lastSettled: SettledVersion | null = null;

  constructor(nc: NatsConnection, stores: FleetStores, view: NodesView, bundle: Bundle, options: RolloutOptions) {
    this.#nc = nc;
    this.#stores = stores;
    this.#view = view;
    this.#bundle = bundle;
    this.#options = {
      canary: 1,
      batch: 1,
      maxFailures: 0,
      pauseMs: 0,
      force: false,
      swapTimeoutMs: 60_000,
      reconnectWaitMs: 30_000,
      ...options,
    };
    this.#record = {
      id: `r-${Date.now().toString(36)}-${randomBytes(2).toString("hex")}`,
      service: options.service,
      version: bundle.hash,
      semver: null,
      from: [],
      startedAt: new Date().toISOString(),
      endedAt: null,
      outcome: "running",
      swapped: [],
      failed: [],
      skipped: [],
    };
  }

  async run(): Promise<RolloutRecord> {
    const { service, canary, batch, maxFailures, waves } = this.#options;
    this.#watchConnection().catch(() => undefined);
    const runtimes = this.#view.nodes().filter((n) => n.live && runningVersion(n, service) !== undefined);
    if (runtimes.length === 0) throw new MoltError(ErrorCode.NO_SERVICE, `no live runtime in the fleet runs "${service}"`, { service });
    for (const n of runtimes) {
      const running = runningVersion(n, service) ?? null;
      this.#from.set(n.node, running);
      if (running === this.#bundle.hash) this.#alreadyNew.add(n.node);
      this.#queue.push(n.node);
    }
    this.#record.from = [...new Set([...this.#from.values()].filter((v): v is string => v !== null))];

    await this.#claim();
    if ((await this.#stores.bundles.info(this.#bundle.hash)) === null) {
      await this.#stores.bundles.putBlob({ name: this.#bundle.hash, description: this.#bundle.entry }, new TextEncoder().encode(this.#bundle.code));
    }
    await this.#saveRecord();
    this.#emit({
      type: "start",
      id: this.#record.id,
      service,
      version: this.#bundle.hash,
      runtimes: runtimes.map((n) => n.node),
      canary,
      batch,
      maxFailures,
      ...(waves === undefined ? {} : { waves }),
    });

    let halted = await this.#canaries();
    if (halted === undefined) halted = waves === undefined ? await this.#batches() : await this.#waves(waves);
    // A rollout in which no runtime took the new version (all skipped) settles nothing.
    if (halted === undefined && this.#tried && this.#record.swapped.length === 0) halted = "no runtime took the new version (none answered)";
    if (halted !== undefined) return this.#halt(halted);

    await this.#writeDesired(this.#desired("settled", this.#bundle.hash, this.#bundle.entry, null, this.#record.id));
    this.#broadcast({ service, revision: this.#revision, version: this.#bundle.hash, state: "settled" });
    return this.#end("completed");
  }

  /**
   * Canaries go one at a time until enough of them took the new version;
   * one that does not answer is replaced by the next runtime, never counted.
   * Returns why the rollout halts, if it does.
   */
  async #canaries(): Promise<string | undefined> {
    while (this.#record.swapped.length < this.#options.canary) {
      if (this.#aborted()) return "interrupted";
      const node = this.#next();
      if (node === undefined) return undefined;
      const halted = await this.#step("canary", [node]);
      if (halted !== undefined) return halted;
    }
    return undefined;
  }

  /** Batches of `batch` runtimes, each batch answered whole before the next. */
  async #batches(): Promise<string | undefined> {
    for (let stage = 1; ; stage++) {
      if (this.#aborted()) return "interrupted";
      const group: string[] = [];
      while (group.length < this.#options.batch) {
        const node = this.#next();
        if (node === undefined) break;
        group.push(node);
      }
      if (group.length === 0) return undefined;
      const halted = await this.#step(`batch ${stage}`, group);
      if (halted !== undefined) return halted;
    }
  }

  /** Swaps a group at once, tallies the answers, and pauses when asked to and runtimes are left. */
  async #step(label: string, group: string[]): Promise<string | undefined> {
    const results = await Promise.all(group.map((node) => this.#ask(node)));
    for (const result of results) this.#tally(label, result);
    const halted = this.#overFailures();
    if (halted === undefined) await this.#pauseIfMore();
    return halted;
  }

  /**
   * Waves: after wave i, `waves[i]` percent of the runtimes that run the
   * service run the new version (canaries included). Within a wave, `batch`
   * swaps are in flight at once and the next runtime is asked as soon as
   * one answers; a runtime that fails or is skipped is replaced by the next,
   * so the wave still reaches its share unless the failures halt it.
   */
  async #waves(waves: number[]): Promise<string | undefined> {
    for (let i = 0; i < waves.length; i++) {
      if (this.#aborted()) return "interrupted";
      const percent = waves[i] as number;
      const last = i === waves.length - 1;
      // Runtimes that joined meanwhile count in the fleet the share is taken of.
      this.#peek();
      const runtimes = this.#from.size;
      // The last wave takes every runtime left, however many joined during it.
      const target = last ? Number.POSITIVE_INFINITY : waveTarget(percent, runtimes);
      const wave = { type: "wave", wave: i + 1, waves: waves.length, percent } as const;
      this.#emit({ ...wave, phase: "start", target: last ? runtimes : target, runtimes, onNew: this.#onNew(), failed: this.#record.failed.length });
      const halted = await this.#fill(`wave ${i + 1}`, target);
      this.#emit({ ...wave, phase: "end", target: last ? this.#from.size : target, runtimes: this.#from.size, onNew: this.#onNew(), failed: this.#record.failed.length });
      if (halted !== undefined) return halted;
      if (!last) await this.#pauseIfMore();
    }
    return undefined;
  }

  /** Asks runtimes, `batch` at a time, until `target` run the new version, none are left, or failures halt the rollout. */
  async #fill(label: string, target: number): Promise<string | undefined> {
    const width = Math.max(1, this.#options.batch);
    const inFlight = new Set<Promise<void>>();
    let halted: string | undefined;
    // A request that cannot be made at all (NATS gone past the wait) stops the
    // rollout, after the others in flight have answered: none is left unheard.
    let broken: { error: unknown } | undefined;
    for (;;) {
      while (halted === undefined && broken === undefined && !this.#aborted() && inFlight.size < width && this.#onNew() + inFlight.size < target) {
        const node = this.#next();
        if (node === undefined) break;
        const asked: Promise<void> = this.#ask(node)
          .then(
            (result) => {
              this.#tally(label, result);
              halted ??= this.#overFailures();
            },
            (error: unknown) => {
              broken ??= { error };
            },
          )
          .finally(() => inFlight.delete(asked));
        inFlight.add(asked);
      }
      if (inFlight.size === 0) break;
      await Promise.race(inFlight);
    }
    if (broken !== undefined) throw broken.error;
    return halted ?? (this.#aborted() ? "interrupted" : undefined);
  }

  /** Asks one runtime to swap to the new version; it counts as asked whatever it answers. */
  #ask(node: string): Promise<Result> {
    this.#attempted.add(node);
    this.#tried = true;
    return this.#swapOne(node, { via: "swap", version: this.#bundle.hash, entry: this.#bundle.entry });
  }

  /** Runtimes of the rollout that run the new version: those it swapped and those that ran it already. */
  #onNew(): number {
    return this.#record.swapped.length + this.#alreadyNew.size;
  }

  #overFailures(): string | undefined {
    const failed = this.#record.failed.length;
    return failed > this.#options.maxFailures ? `${failed} failed swap${failed === 1 ? "" : "s"} (at most ${this.#options.maxFailures} allowed)` : undefined;
  }

  async #pauseIfMore(): Promise<void> {
    if (this.#options.pauseMs > 0 && this.#peek()) {
      this.#emit({ type: "waiting", message: `pausing ${this.#options.pauseMs / 1000} s before the next step` });
      await this.#sleep(this.#options.pauseMs);
    }
  }

  #aborted(): boolean {
    return this.#options.signal?.aborted === true;
  }

  #tally(stage: string, { node, answer }: Result): void {
    if (answer === "skipped") {
      this.#record.skipped.push(node);
      this.#emit({ type: "runtime", stage, node, outcome: "skipped", blackoutMs: null, message: "not reachable; it converges when it comes back" });
      return;
    }
    if (answer.outcome === "committed" || answer.outcome === "unchanged") this.#record.swapped.push(node);
    else this.#record.failed.push({ node, code: answer.code ?? ErrorCode.FLEET, message: answer.message ?? answer.outcome });
    this.#emit({
      type: "runtime",
      stage,
      node,
      outcome: answer.outcome,
      blackoutMs: answer.blackoutMs,
      ...(answer.code === undefined ? {} : { code: answer.code }),
      ...(answer.message === undefined ? {} : { message: answer.message }),
    });
  }

  /** The next runtime to ask, if any is left. */
  #next(): string | undefined {
    return this.#peek() ? this.#queue[this.#cursor++] : undefined;
  }

  /**
   * Whether a runtime is left to ask, passing over those that are not to
   * be. The runtimes that appeared or restarted since the last look join the
   * end of the queue, read from the watch, not from a new listing.
   */
  #peek(): boolean {
    for (const node of this.#view.takeNew()) this.#queue.push(node);
    while (this.#cursor < this.#queue.length) {
      if (this.#pending(this.#queue[this.#cursor] as string)) return true;
      this.#cursor++;
    }
    return false;
  }

  /**
   * Whether a runtime is still to be asked: not asked yet, runs the service
   * on another version, and either the rollout started with it, even if its
   * heartbeat lapsed meanwhile (a NATS restart makes every heartbeat late;
   * one that is really gone is skipped when it does not answer), or it is
   * live and joined since.
   */
  #pending(node: string): boolean {
    const n = this.#view.get(node);
    if (n === null || this.#attempted.has(node) || n.stoppedAt !== null) return false;
    const running = runningVersion(n, this.#options.service);
    if (running === undefined) return false;
    if (!this.#from.has(node)) {
      if (!n.live) return false;
      this.#from.set(node, running);
      if (running === this.#bundle.hash) this.#alreadyNew.add(node);
    }
    return running !== this.#bundle.hash;
  }

  async #halt(reason: string): Promise<never> {
    const { service } = this.#options;
    this.#emit({ type: "halt", message: `halting: ${reason}; taking the runtimes this rollout asked back` });
    // Every runtime asked, whatever it answered: one whose answer was lost
    // may have swapped. As many at once as the rollout swapped at once.
    const swapped = new Set(this.#record.swapped);
    await eachWithin([...this.#attempted], Math.max(1, this.#options.batch), async (node) => {
      const from = this.#from.get(node);
      if (from === null || from === undefined || from === this.#bundle.hash) return;
      const { answer } = await this.#swapOne(node, { via: "rollback", version: from, entry: this.#bundle.entry });
      if (answer !== "skipped" && answer.outcome === "unchanged" && !swapped.has(node)) return;
      this.#emit({
        type: "rollback",
        node,
        outcome: answer === "skipped" ? "skipped" : answer.outcome,
        ...(answer !== "skipped" && answer.code !== undefined ? { code: answer.code } : {}),
      });
    });
    // The fleet goes back to what it had settled on before; with no earlier decision, to none.
    const back = this.#lastSettled;
    if (back === null) {
      await this.#retrying("clearing the desired version", () => this.#stores.desired.delete(service));
      this.#broadcast({ service, revision: this.#revision + 1, version: null, state: "cleared" });
    } else {
      await this.#writeDesired(this.#desired("settled", back.version, back.entry, back.semver, back.rollout));
      this.#broadcast({ service, revision: this.#revision, version: back.version, state: "settled" });
    }
    this.#record.message = reason;
    await this.#end("halted");
    const failures = this.#record.failed.map((f) => `${f.node}: ${f.code} ${f.message}`).join("; ");
    throw new MoltError(ErrorCode.ROLLOUT_HALTED, `rollout ${this.#record.id} of ${service} halted: ${reason}${failures === "" ? "" : ` — ${failures}`}`, {
      service,
    });
  }

  async #end(outcome: "completed" | "halted"): Promise<RolloutRecord> {
    this.#record.outcome = outcome;
    this.#record.endedAt = new Date().toISOString();
    await this.#saveRecord();
    const { id, swapped, failed, skipped } = this.#record;
    this.#emit({ type: "end", id, outcome, swapped, failed, skipped, ms: performance.now() - this.#started });
    return this.#record;
  }

  /**
   * Asks one runtime to swap. The request is idempotent (a runtime already
   * on the version answers "unchanged"), so it is asked again after a lost
   * connection comes back or while the runtime is busy with another swap. A
   * runtime that does not answer at all is skipped: it converges once the
   * rollout settles.
   */
  async #swapOne(node: string, target: { via: "swap" | "rollback"; version: string; entry: string }): Promise<Result> {
    const request: SwapRequest = { service: this.#options.service, version: target.version, entry: target.entry, via: target.via, rollout: this.#record.id };
    for (let attempt = 1; ; attempt++) {
      await this.#connected();
      let failure: MoltError;
      try {
        const reply = await this.#request(Subject.swap(node), encodeRecord(request));
        const answer = decodeRecord<SwapAnswer>(reply, `swap answer of ${node}`);
        if (answer.code !== ErrorCode.SWAP_BUSY || attempt >= 3) return { node, answer };
        failure = new MoltError(ErrorCode.SWAP_BUSY, answer.message ?? "busy");
      } catch (err) {
        failure = toMoltError(err);
      }
      // Nobody answers for it: gone, or still reconnecting after a NATS restart. Asked again a little later, then skipped.
      if (failure.code === ErrorCode.NO_SERVICE && attempt >= 3) return { node, answer: "skipped" };
      if (attempt >= 3) {
        return { node, answer: { node, outcome: "error", from: null, to: null, blackoutMs: null, code: failure.code, message: failure.message } };
      }
      this.#emit({ type: "waiting", message: `${node}: ${failure.message}; asking again` });
      if (failure.code === ErrorCode.NO_SERVICE || failure.code === ErrorCode.SWAP_BUSY) await this.#sleep(1000 * attempt);
    }
  }

  /** A request that fails at once when the connection drops, rather than at its timeout. */
  #request(subject: string, data: Uint8Array): Promise<Uint8Array> {
    const timeout = this.#options.swapTimeoutMs;
    return new Promise((resolve, reject) => {
      const dropped = (): void => reject(new MoltError(ErrorCode.FLEET, "the NATS connection dropped while waiting for the answer"));
      this.#onDisconnect.add(dropped);
      this.#nc
        .request(subject, data, { timeout })
        .then(
          (msg) => resolve(msg.data),
          (err: unknown) => reject(requestFailure(err, subject, timeout)),
        )
        .finally(() => this.#onDisconnect.delete(dropped));
    });
  }

  async #watchConnection(): Promise<void> {
    for await (const status of this.#nc.status()) {
      if (status.type === "disconnect") {
        this.#disconnected = true;
        for (const drop of [...this.#onDisconnect]) drop();
        this.#emit({ type: "waiting", message: `lost the NATS connection; waiting up to ${this.#options.reconnectWaitMs / 1000} s for it` });
      } else if (status.type === "reconnect") {
        this.#disconnected = false;
        this.#emit({ type: "waiting", message: "reconnected to NATS; going on" });
        for (const wake of [...this.#reconnected]) wake();
      }
    }
  }

  /** Waits for a lost connection to come back; stops the rollout with ERR_FLEET when it does not in time. */
  async #connected(): Promise<void> {
    if (!this.#disconnected) return;
    const back = await new Promise<boolean>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.#reconnected.delete(wake);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.#reconnected.delete(wake);
        resolve(false);
      }, this.#options.reconnectWaitMs);
      this.#reconnected.add(wake);
    });
    if (!back) {
      const { swapped } = this.#record;
      throw new MoltError(
        ErrorCode.FLEET,
        `rollout ${this.#record.id} stopped: NATS did not come back within ${this.#options.reconnectWaitMs / 1000} s. ` +
          `Runtimes on ${shortId(this.#bundle.hash)}: ${swapped.join(", ") || "none"}; the others run what they ran. ` +
          `The desired version stays "rolling" (runtimes do not act on it): run the rollout again with --force to finish it.`,
        { service: this.#options.service },
      );
    }
  }

  /** Runs a store operation, waiting out a lost connection and trying again (at most 3 times). */
  async #retrying<T>(what: string, run: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      await this.#connected();
      try {
        return await run();
      } catch (err) {
        if (err instanceof MoltError && err.code === ErrorCode.ROLLOUT_BUSY) throw err;
        if (attempt >= 3) throw new MoltError(ErrorCode.FLEET, `${what} failed: ${(err as Error).message}`, { cause: err });
        this.#emit({ type: "waiting", message: `${what} failed (${(err as Error).message}); trying again` });
        await new Promise((r) => setTimeout(r, 500 * attempt));
      }
    }
  }

  /**
   * Marks the service "rolling", atomically against the desired record as
   * read: a second rollout of the same service, started at the same moment,
   * fails here rather than interleaving. A record already "rolling" belongs
   * to a rollout that runs or was interrupted; only --force takes it over.
   */
  async #claim(): Promise<void> {
    const { service } = this.#options;
    const entry: KvEntry | null = await this.#stores.desired.get(service);
    const current = entry === null || entry.operation !== "PUT" ? null : decodeRecord<DesiredRecord>(entry.value, "desired version");
    if (current?.state === "rolling" && !this.#options.force) {
      throw new MoltError(
        ErrorCode.ROLLOUT_BUSY,
        `rollout ${current.rollout} of ${service} started at ${current.at} and has not ended (running, or interrupted); pass --force to take over from it`,
        { service },
      );
    }
    this.#revision = current?.revision ?? 0;
    this.#entryRevision = entry === null ? 0 : entry.revision;
    this.#lastSettled =
      current === null
        ? null
        : current.state === "settled"
          ? { version: current.version, semver: current.semver, entry: current.entry, rollout: current.rollout }
          : current.lastSettled;
    await this.#writeDesired(this.#desired("rolling", this.#bundle.hash, this.#bundle.entry, null, this.#record.id));
  }

  #desired(state: DesiredRecord["state"], version: string, entry: string, semver: string | null, rollout: string): DesiredRecord {
    return {
      service: this.#options.service,
      version,
      semver,
      entry,
      revision: this.#revision + 1,
      state,
      rollout,
      at: new Date().toISOString(),
      lastSettled: state === "rolling" ? this.#lastSettled : null,
    };
  }

  /** Writes the desired record against the revision this rollout last saw; another writer meanwhile is ERR_ROLLOUT_BUSY. */
  async #writeDesired(record: DesiredRecord): Promise<void> {
    const { service } = this.#options;
    const bytes = encodeRecord(record);
    try {
      this.#entryRevision = await this.#retrying("writing the desired version", async () => {
        try {
          return this.#entryRevision === 0
            ? await this.#stores.desired.create(service, bytes)
            : await this.#stores.desired.update(service, bytes, this.#entryRevision);
        } catch (err) {
          if (isStaleRevision(err)) {
            throw new MoltError(ErrorCode.ROLLOUT_BUSY, `another rollout of ${service} changed the desired version meanwhile`, { service, cause: err });
          }
          throw err;
        }
      });
      this.#revision = record.revision;
    } catch (err) {
      throw toMoltError(err);
    }
  }

  #broadcast(change: DesiredChange): void {
    try {
      this.#nc.publish(Subject.desired, encodeRecord(change));
    } catch {
      // Runtimes that miss it reconcile on their own period.
    }
  }

  async #saveRecord(): Promise<void> {
    const { service } = this.#options;
    // Read-modify-write against the revision read, so two rollouts' records never overwrite each other.
    await this.#retrying("writing the rollout's record", async () => {
      for (;;) {
        const entry = await this.#stores.rollouts.get(service);
        const history: RolloutHistory =
          entry === null || entry.operation !== "PUT" ? { service, rollouts: [] } : decodeRecord<RolloutHistory>(entry.value, "rollout history");
        const at = history.rollouts.findIndex((r) => r.id === this.#record.id);
        if (at === -1) history.rollouts.push(storedRollout(this.#record));
        else history.rollouts[at] = storedRollout(this.#record);
        history.rollouts = history.rollouts.slice(-ROLLOUT_HISTORY);
        // The whole history is one KV value: the oldest rollouts go first if it outgrows a NATS message.
        let bytes = encodeRecord(history);
        while (bytes.byteLength > maxPayload(this.#nc) && history.rollouts.length > 1) {
          history.rollouts.shift();
          bytes = encodeRecord(history);
        }
        try {
          if (entry === null) await this.#stores.rollouts.create(service, bytes);
          else await this.#stores.rollouts.update(service, bytes, entry.revision);
          return;
        } catch (err) {
          if (!isStaleRevision(err)) throw err;
        }
      }
    });
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#options.signal?.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve();
      }, { once: true });
    });
  }

  #emit(event: RolloutEvent): void {
    this.#options.onEvent?.(event);
  }
}

/**
 * A rollout's record as the history keeps it: at most ROLLOUT_NAMES_KEPT
 * runtimes per list and short messages, so that a rollout over 50,000
 * runtimes fits one KV value beside the ones before it. The full lists
 * are in the rollout's own output.
 */
export function storedRollout(record: RolloutRecord): RolloutRecord {
  const { swapped, failed, skipped } = record;
  const kept = {
    ...record,
    swapped: swapped.slice(0, ROLLOUT_NAMES_KEPT),
    failed: failed.slice(0, ROLLOUT_NAMES_KEPT).map((f) => ({ ...f, message: f.message.slice(0, HEARTBEAT_LIMITS.message) })),
    skipped: skipped.slice(0, ROLLOUT_NAMES_KEPT),
  };
  const cut = Math.max(swapped.length, failed.length, skipped.length) > ROLLOUT_NAMES_KEPT;
  return cut ? { ...kept, counts: { swapped: swapped.length, failed: failed.length, skipped: skipped.length } } : kept;
}

/** Runs `run` over every item, at most `width` at a time, in order of the items. */
async function eachWithin<T>(items: readonly T[], width: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await run(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}
