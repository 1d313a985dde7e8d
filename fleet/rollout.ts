// A rollout: one service to a new version across the fleet, a canary first,
// then batches, each runtime swapping live (the same swap as `molt swap`,
// with its rollback on failure). Failures past the threshold halt it and
// take every runtime it swapped back to the version it ran before. The
// desired version is settled only when the rollout completes, so runtimes
// that were down or joined late converge to it on their own.

import { randomBytes } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { bundleService, shortId, type Bundle } from "../core/bundle.ts";
import { ErrorCode, MoltError, toMoltError } from "../core/errors.ts";
import { connectFleet, openStores, requestFailure, type FleetStores } from "./connection.ts";
import { readNodes, runningVersion, type SeenNode } from "./nodes.ts";
import {
  decodeRecord,
  encodeRecord,
  ROLLOUT_HISTORY,
  Subject,
  type DesiredRecord,
  type RolloutHistory,
  type RolloutRecord,
  type SwapAnswer,
  type SwapRequest,
} from "./protocol.ts";

export interface RolloutOptions {
  nats: string;
  service: string;
  entry: string;
  /** Runtimes swapped first, alone (default 1). */
  canary?: number;
  /** Runtimes swapped at once after the canary (default 1). */
  batch?: number;
  /** Failed swaps tolerated; one more halts the rollout (default 0). */
  maxFailures?: number;
  /** How long one runtime may take to answer a swap (default 60 s). */
  swapTimeoutMs?: number;
  /** How long to wait for a lost NATS connection before halting (default 30 s). */
  reconnectWaitMs?: number;
  onEvent?: (event: RolloutEvent) => void;
}

export type RolloutEvent =
  | { type: "start"; id: string; service: string; version: string; runtimes: string[]; canary: number; batch: number; maxFailures: number }
  | { type: "runtime"; stage: string; node: string; outcome: SwapAnswer["outcome"] | "skipped"; blackoutMs: number | null; code?: string; message?: string }
  | { type: "waiting"; message: string }
  | { type: "halt"; message: string }
  | { type: "rollback"; node: string; outcome: SwapAnswer["outcome"] | "skipped"; code?: string }
  | { type: "end"; outcome: "completed" | "halted"; swapped: number; failed: number; skipped: number; ms: number };

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
    return await new Rollout(nc, stores, bundle, options).run();
  } finally {
    await nc.drain().catch(() => undefined);
  }
}

type Result = { node: string; answer: SwapAnswer | "skipped" };

class Rollout {
  readonly #nc: NatsConnection;
  readonly #stores: FleetStores;
  readonly #bundle: Bundle;
  readonly #options: Required<Omit<RolloutOptions, "onEvent">> & Pick<RolloutOptions, "onEvent">;
  readonly #record: RolloutRecord;
  /** What each runtime ran before this rollout touched it. */
  readonly #from = new Map<string, string | null>();
  #disconnected = false;
  readonly #reconnected = new Set<() => void>();
  readonly #started = performance.now();

  constructor(nc: NatsConnection, stores: FleetStores, bundle: Bundle, options: RolloutOptions) {
    this.#nc = nc;
    this.#stores = stores;
    this.#bundle = bundle;
    this.#options = {
      canary: 1,
      batch: 1,
      maxFailures: 0,
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
    const { service, canary, batch, maxFailures } = this.#options;
    void this.#watchConnection();
    const runtimes = (await readNodes(this.#stores.nodes)).filter((n) => n.live && runningVersion(n, service) !== undefined);
    if (runtimes.length === 0) throw new MoltError(ErrorCode.NO_SERVICE, `no live runtime in the fleet runs "${service}"`, { service });
    for (const n of runtimes) this.#from.set(n.node, runningVersion(n, service) ?? null);
    this.#record.from = [...new Set([...this.#from.values()].filter((v): v is string => v !== null))];

    if ((await this.#stores.bundles.info(this.#bundle.hash)) === null) {
      await this.#stores.bundles.putBlob({ name: this.#bundle.hash, description: this.#bundle.entry }, new TextEncoder().encode(this.#bundle.code));
    }
    const previous = await this.#desired();
    await this.#setDesired("rolling", previous);
    await this.#saveRecord();
    this.#emit({ type: "start", id: this.#record.id, service, version: this.#bundle.hash, runtimes: runtimes.map((n) => n.node), canary, batch, maxFailures });

    const attempted = new Set<string>();
    let stage = 0;
    let halted: string | undefined;
    while (halted === undefined) {
      // The plan is re-read before each batch: a runtime that joined meanwhile is included.
      const pending = await this.#pending(attempted);
      if (pending.length === 0) break;
      const size = stage === 0 ? canary : batch;
      const group = pending.slice(0, Math.max(1, size));
      const label = stage === 0 ? "canary" : `batch ${stage}`;
      stage++;
      for (const n of group) attempted.add(n.node);
      const results = await Promise.all(group.map((n) => this.#swapOne(n.node, { via: "swap", version: this.#bundle.hash })));
      for (const { node, answer } of results) {
        if (answer === "skipped") {
          this.#record.skipped.push(node);
          this.#emit({ type: "runtime", stage: label, node, outcome: "skipped", blackoutMs: null, message: "not reachable; it converges when it comes back" });
          continue;
        }
        const ok = answer.outcome === "committed" || answer.outcome === "unchanged";
        if (ok) this.#record.swapped.push(node);
        else this.#record.failed.push({ node, code: answer.code ?? "ERR_SWAP", message: answer.message ?? answer.outcome });
        this.#emit({
          type: "runtime",
          stage: label,
          node,
          outcome: answer.outcome,
          blackoutMs: answer.blackoutMs,
          ...(answer.code === undefined ? {} : { code: answer.code }),
          ...(answer.message === undefined ? {} : { message: answer.message }),
        });
      }
      if (this.#record.failed.length > maxFailures) {
        halted = `${this.#record.failed.length} failed swap${this.#record.failed.length === 1 ? "" : "s"} (at most ${maxFailures} allowed)`;
      }
    }
    if (halted !== undefined) return this.#halt(halted, previous);

    await this.#setDesired("settled", previous);
    this.#nc.publish(Subject.desired, encodeRecord({ service, revision: this.#revision }));
    await this.#nc.flush();
    return this.#end("completed");
  }

  /**
   * Runtimes not yet tried that run the service on another version: those
   * the rollout started with, even if their heartbeat lapsed meanwhile (a
   * NATS restart makes every heartbeat late; one that is really gone is
   * skipped when it does not answer), and live ones that joined since.
   */
  async #pending(attempted: Set<string>): Promise<SeenNode[]> {
    const { service } = this.#options;
    const nodes = await this.#retrying("reading the fleet's runtimes", () => readNodes(this.#stores.nodes));
    return nodes.filter((n) => {
      if (attempted.has(n.node) || n.stoppedAt !== null) return false;
      const running = runningVersion(n, service);
      if (running === undefined) return false;
      if (!this.#from.has(n.node)) {
        if (!n.live) return false;
        this.#from.set(n.node, running);
      }
      return running !== this.#bundle.hash;
    });
  }

  async #halt(reason: string, previous: DesiredRecord | null): Promise<never> {
    this.#emit({ type: "halt", message: `halting: ${reason}; taking ${this.#record.swapped.length} runtime(s) back` });
    for (const node of this.#record.swapped) {
      const from = this.#from.get(node);
      if (from === null || from === undefined || from === this.#bundle.hash) continue;
      const { answer } = await this.#swapOne(node, { via: "rollback", version: from });
      this.#emit({
        type: "rollback",
        node,
        outcome: answer === "skipped" ? "skipped" : answer.outcome,
        ...(answer !== "skipped" && answer.code !== undefined ? { code: answer.code } : {}),
      });
    }
    // The fleet goes back to what it was told before; with no earlier decision, to none.
    if (previous === null) await this.#retrying("clearing the desired version", () => this.#stores.desired.delete(this.#options.service));
    else await this.#setDesired("settled", previous, previous.version);
    this.#record.message = reason;
    await this.#end("halted");
    const failures = this.#record.failed.map((f) => `${f.node}: ${f.code} ${f.message}`).join("; ");
    throw new MoltError(ErrorCode.ROLLOUT_HALTED, `rollout ${this.#record.id} of ${this.#options.service} halted: ${reason} — ${failures}`, {
      service: this.#options.service,
    });
  }

  async #end(outcome: "completed" | "halted"): Promise<RolloutRecord> {
    this.#record.outcome = outcome;
    this.#record.endedAt = new Date().toISOString();
    await this.#saveRecord();
    const { swapped, failed, skipped } = this.#record;
    this.#emit({ type: "end", outcome, swapped: swapped.length, failed: failed.length, skipped: skipped.length, ms: performance.now() - this.#started });
    return this.#record;
  }

  /**
   * Asks one runtime to swap. The request is idempotent (a runtime already
   * on the version answers "unchanged"), so it is asked again after a lost
   * connection comes back. A runtime that no longer answers at all is
   * skipped: it converges once the rollout settles.
   */
  async #swapOne(node: string, target: { via: "swap" | "rollback"; version: string }): Promise<Result> {
    const request: SwapRequest = { service: this.#options.service, version: target.version, entry: this.#bundle.entry, via: target.via, rollout: this.#record.id };
    for (let attempt = 1; ; attempt++) {
      await this.#connected();
      try {
        const reply = await this.#request(Subject.swap(node), encodeRecord(request));
        return { node, answer: decodeRecord<SwapAnswer>(reply, `swap answer of ${node}`) };
      } catch (err) {
        const e = toMoltError(err);
        // Nobody answers for it: gone, or still reconnecting after a NATS restart. Asked again a little later, then skipped.
        if (e.code === ErrorCode.NO_SERVICE && attempt >= 3) return { node, answer: "skipped" };
        if (attempt >= 3) return { node, answer: { node, outcome: "error", from: null, to: null, blackoutMs: null, code: e.code, message: e.message } };
        this.#emit({ type: "waiting", message: `${node}: ${e.message}; asking again` });
        if (e.code === ErrorCode.NO_SERVICE) await new Promise((r) => setTimeout(r, 1000 * attempt));
      }
    }
  }

  /** A request that fails at once when the connection drops, rather than at its timeout. */
  #request(subject: string, data: Uint8Array): Promise<Uint8Array> {
    const timeout = this.#options.swapTimeoutMs;
    return new Promise((resolve, reject) => {
      const dropped = (): void => reject(new MoltError(ErrorCode.FLEET, "the NATS connection dropped while waiting for the answer"));
      this.#onDisconnect.add(dropped);
      this.#nc.request(subject, data, { timeout }).then(
        (msg) => resolve(msg.data),
        (err: unknown) => reject(requestFailure(err, subject, timeout)),
      ).finally(() => this.#onDisconnect.delete(dropped));
    });
  }

  readonly #onDisconnect = new Set<() => void>();

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

  /** Waits for a lost connection to come back; halts with ERR_FLEET when it does not in time. */
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
          `The desired version stays "rolling" (runtimes do not act on it); run the rollout again to finish it.`,
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
        if (attempt >= 3) throw new MoltError(ErrorCode.FLEET, `${what} failed: ${(err as Error).message}`, { cause: err });
        this.#emit({ type: "waiting", message: `${what} failed (${(err as Error).message}); trying again` });
        await new Promise((r) => setTimeout(r, 500 * attempt));
      }
    }
  }

  #revision = 0;

  async #desired(): Promise<DesiredRecord | null> {
    const entry = await this.#stores.desired.get(this.#options.service);
    if (entry === null || entry.operation !== "PUT") return null;
    const record = decodeRecord<DesiredRecord>(entry.value, "desired version");
    this.#revision = record.revision;
    return record;
  }

  async #setDesired(state: DesiredRecord["state"], previous: DesiredRecord | null, version = this.#bundle.hash): Promise<void> {
    this.#revision++;
    const back = previous !== null && version === previous.version;
    const record: DesiredRecord = {
      service: this.#options.service,
      version,
      semver: back ? previous.semver : null,
      entry: back ? previous.entry : this.#bundle.entry,
      revision: this.#revision,
      state,
      rollout: back ? previous.rollout : this.#record.id,
      at: new Date().toISOString(),
    };
    await this.#retrying("writing the desired version", () => this.#stores.desired.put(this.#options.service, encodeRecord(record)));
  }

  async #saveRecord(): Promise<void> {
    const { service } = this.#options;
    await this.#retrying("writing the rollout's record", async () => {
      const entry = await this.#stores.rollouts.get(service);
      const history: RolloutHistory =
        entry === null || entry.operation !== "PUT" ? { service, rollouts: [] } : decodeRecord<RolloutHistory>(entry.value, "rollout history");
      const at = history.rollouts.findIndex((r) => r.id === this.#record.id);
      if (at === -1) history.rollouts.push({ ...this.#record });
      else history.rollouts[at] = { ...this.#record };
      history.rollouts = history.rollouts.slice(-ROLLOUT_HISTORY);
      await this.#stores.rollouts.put(service, encodeRecord(history));
    });
  }

  #emit(event: RolloutEvent): void {
    this.#options.onEvent?.(event);
  }
}
