// A runtime's membership in the fleet. It answers calls for the services it
// runs, carries its own services' calls to other runtimes, announces itself
// with a heartbeat, swaps when a rollout asks it to, and converges on its own
// to the version the fleet should run. Loaded only when the config has
// `fleet`: a runtime alone never loads NATS code.
//
// Built for many thousands of runtimes: no JetStream watch per runtime; a
// change of desired version is a plain broadcast, acted on after a random
// delay; every runtime also reconciles on a jittered period, which is what
// brings back one that missed the broadcast (down, partitioned, late).

import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { headers, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import type { Bundle } from "../core/bundle.ts";
import type { ResolvedFleet } from "../core/config.ts";
import { writeAtomic } from "../core/disk.ts";
import { ErrorCode, MoltError, toMoltError } from "../core/errors.ts";
import { Via } from "../core/inventory.ts";
import type { Kernel } from "../core/kernel.ts";

/** What a fleet member may do to its runtime's kernel, and nothing more. */
export type MemberKernel = Pick<Kernel, "useRemote" | "status" | "history" | "recorded" | "has" | "running" | "deliver" | "swapBundle" | "storedBundle">;
import type { KernelLog } from "../core/log.ts";
import type { RemoteServices } from "../core/router.ts";
import { encodeErrorReply } from "../core/wire.ts";
import { fetchBundleBytes } from "./bundles.ts";
import { connectFleet, maxPayload, openStores, requestFailure, type FleetStores } from "./connection.ts";
import { readNode } from "./nodes.ts";
import {
  CHAIN_LENGTH,
  decodeRecord,
  encodeRecord,
  Header,
  HEARTBEAT_LIMITS,
  Subject,
  type DesiredChange,
  type DesiredRecord,
  type KernelInfo,
  type NodeRecord,
  type NodeService,
  type SwapAnswer,
  type SwapRequest,
} from "./protocol.ts";

export interface MemberOptions {
  kernel: MemberKernel;
  fleet: ResolvedFleet;
  dataDir: string;
  log: KernelLog;
  /**
   * A NATS connection and stores that are already open, shared with other
   * members (the fleet-scale benchmark packs thousands of members into one
   * process on a few connections). The member uses them and never closes
   * them; without it, it opens a connection of its own.
   */
  connection?: { nc: NatsConnection; stores: FleetStores };
  /** The molt kernel this runtime runs, carried in its heartbeat (cli/run.ts knows it). */
  runtimeKernel?: KernelInfo;
}

export class FleetMember implements RemoteServices {
  readonly node: string;
  readonly #kernel: MemberKernel;
  readonly #fleet: ResolvedFleet;
  readonly #log: KernelLog;
  readonly #startedAt = new Date().toISOString();
  #nc: NatsConnection | undefined;
  #stores: FleetStores | undefined;
  readonly #subscriptions: Subscription[] = [];
  /** One queue-group subscription per local service that is up. */
  readonly #offered = new Map<string, Subscription>();
  /** Deliveries from other runtimes still running here. */
  readonly #inFlight = new Set<Promise<unknown>>();
  readonly #timers = new Set<NodeJS.Timeout>();
  /** Reconciles and requested swaps run one at a time. */
  #serial: Promise<unknown> = Promise.resolve();
  /** Desired revisions this runtime tried and could not run: not tried again until the next decision. */
  readonly #refused = new Map<string, number>();
  #lastError: NodeRecord["lastError"] = null;
  #leaving = false;
  /** True while the connection is down and the client reconnects. */
  #disconnected = false;
  #connected: Promise<void> | undefined;
  readonly #instance = randomBytes(8).toString("hex");
  readonly #dataDir: string;
  readonly #host = hostname();
  readonly #shared: { nc: NatsConnection; stores: FleetStores } | undefined;
  readonly #runtimeKernel: KernelInfo | null;
  /** The connection's status events as this member follows them: stopped when it leaves a connection it shares. */
  #statuses: AsyncIterable<unknown> | undefined;

  /** Plugs the fleet into the kernel's routing; call before the kernel starts, then `join`. */
  constructor(options: MemberOptions) {
    this.#kernel = options.kernel;
    this.#fleet = options.fleet;
    this.#log = options.log;
    this.#dataDir = options.dataDir;
    this.#shared = options.connection;
    this.#runtimeKernel = options.runtimeKernel ?? null;
    this.node = options.fleet.node ?? stableNodeId(options.dataDir);
    this.#kernel.useRemote(this);
  }

  /**
   * Connects in the background and returns at once: a runtime serves its own
   * services whether or not NATS is up, and joins as soon as it is.
   */
  join(): void {
    this.#connected = this.#connect().catch((err: unknown) => {
      if (!this.#leaving) this.#log.log("error", "fleet: could not join", { node: this.node, error: String(err) });
    });
  }

  /** Resolves once the runtime has joined (for tests and tools; `join` does not wait). */
  async joined(): Promise<void> {
    await this.#connected;
    if (this.#stores === undefined) throw new MoltError(ErrorCode.FLEET, `${this.node} has not joined the fleet`);
  }

  async call(service: string, request: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    const nc = this.#nc;
    const subject = Subject.service(service);
    if (nc === undefined || nc.isClosed()) {
      return encodeErrorReply(new MoltError(ErrorCode.NO_SERVICE, `"${service}" does not run here and this runtime is not connected to the fleet`));
    }
    if (request.byteLength > maxPayload(nc)) {
      return encodeErrorReply(
        new MoltError(ErrorCode.MESSAGE_TOO_LARGE, `a call of ${request.byteLength} bytes to "${service}" on another runtime exceeds what NATS carries (${maxPayload(nc)})`),
      );
    }
    const h = headers();
    h.set(Header.kind, "call");
    h.set(Header.from, this.node);
    try {
      const reply = await nc.request(subject, request, { timeout: timeoutMs, headers: h });
      return reply.data;
    } catch (err) {
      return encodeErrorReply(requestFailure(err, subject, timeoutMs));
    }
  }

  send(service: string, request: Uint8Array): void {
    const nc = this.#nc;
    if (nc === undefined || nc.isClosed()) {
      this.#log.log("warn", "fleet: send dropped, not connected", { to: service });
      return;
    }
    const h = headers();
    h.set(Header.kind, "send");
    h.set(Header.from, this.node);
    try {
      nc.publish(Subject.service(service), request, { headers: h });
    } catch (err) {
      this.#log.log("warn", "fleet: send dropped", { to: service, error: String(err) });
    }
  }

  /**
   * Stops answering for this runtime's services, lets deliveries from other
   * runtimes finish, writes a last heartbeat that says it stopped, and closes
   * the connection; a swap a rollout queued here is answered ERR_STOPPING.
   * Bounded: with NATS away the goodbye is skipped, and after a few seconds
   * the connection is closed whatever is left, so a graceful stop of the
   * runtime is never held up by the fleet. The kernel stops after this.
   */
  async leave(): Promise<void> {
    this.#leaving = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    const nc = this.#nc;
    if (nc === undefined) {
      this.#kernel.useRemote(undefined);
      return;
    }
    const subscriptions = [...this.#subscriptions, ...this.#offered.values()];
    const goodbye = async (): Promise<void> => {
      if (this.#disconnected) return;
      await Promise.allSettled(subscriptions.map((s) => s.drain()));
      await Promise.allSettled([...this.#inFlight, this.#serial]);
      await this.#heartbeat(true).catch(() => undefined);
      if (this.#shared === undefined) await nc.drain().catch(() => undefined);
    };
    await Promise.race([goodbye(), delay(LEAVE_BOUND_MS)]);
    this.#kernel.useRemote(undefined);
    // A shared connection belongs to whoever opened it: only this member's subscriptions end.
    if (this.#shared !== undefined) {
      for (const s of subscriptions) if (!s.isClosed()) s.unsubscribe();
      // The client's status iterator has a stop(); its type does not say so.
      (this.#statuses as { stop?: () => void } | undefined)?.stop?.();
    } else if (!nc.isClosed()) {
      await nc.close().catch(() => undefined);
    }
  }

  async #connect(): Promise<void> {
    const nc = this.#shared?.nc ?? (await connectFleet({ servers: this.#fleet.nats, name: this.node, waitOnFirstConnect: true }));
    if (this.#leaving) {
      if (this.#shared === undefined) await nc.close();
      return;
    }
    this.#nc = nc;
    this.#stores = this.#shared?.stores;
    this.#safely("watching the connection", this.#watchStatus(nc));
    // The stores need JetStream, which a server that has just come up may
    // not offer yet: try until it does.
    for (let attempt = 0; this.#stores === undefined && !this.#leaving; attempt++) {
      try {
        this.#stores = await openStores(nc);
      } catch (err) {
        if (attempt === 0) this.#log.log("warn", "fleet: JetStream not ready, retrying", { node: this.node, error: String(err) });
        await delay(1000 + Math.random() * 1000);
      }
    }
    if (this.#leaving || this.#stores === undefined) return;
    // Two live runtimes with one node id would both act on every swap request
    // and overwrite each other's heartbeat: the second one stays out.
    const holder = await readNode(this.#stores.nodes, this.node).catch(() => null);
    if (holder !== null && holder.live && holder.instance !== this.#instance && (holder.host !== this.#host || holder.dataDir !== this.#dataDir)) {
      this.#log.log("error", "fleet: node id already in use by a live runtime; not joining", {
        node: this.node,
        holder: { host: holder.host, pid: holder.pid, dataDir: holder.dataDir },
      });
      this.#stores = undefined;
      if (this.#shared === undefined) await nc.close();
      return;
    }
    this.#offer(nc);
    this.#subscriptions.push(
      nc.subscribe(Subject.swap(this.node), { callback: (err, msg) => void (err === null && this.#onSwapRequest(msg)) }),
      nc.subscribe(Subject.desired, { callback: (err, msg) => void (err === null && this.#onDesired(msg)) }),
    );
    await nc.flush();
    await this.#heartbeat(false).catch(() => undefined);
    this.#log.log("info", "fleet: joined", { node: this.node, nats: this.#fleet.nats, services: this.#kernel.status().map((s) => s.name) });
    this.#every(this.#fleet.heartbeatMs, 0.1, async () => {
      this.#offer(nc);
      await this.#heartbeat(false);
    });
    this.#every(this.#fleet.reconcileMs, 0.25, () => this.#reconcileAll());
    // A runtime that was down during a rollout converges as it comes up.
    this.#safely("reconciling", this.#reconcileAll());
  }

  /**
   * Keeps this runtime in the queue group of each of its services that is
   * up, and out of it while one is down (past its restart limit): a down
   * service would otherwise take its share of the fleet's calls and fail
   * them while other runtimes could answer. Checked at every heartbeat.
   */
  #offer(nc: NatsConnection): void {
    if (this.#leaving) return;
    for (const { name, state } of this.#kernel.status()) {
      const offered = this.#offered.get(name);
      if (state === "down" && offered !== undefined) {
        offered.unsubscribe();
        this.#offered.delete(name);
        this.#log.log("warn", "fleet: service down, no longer answering for it", { node: this.node, service: name });
      } else if (state !== "down" && offered === undefined) {
        const subject = Subject.service(name);
        this.#offered.set(name, nc.subscribe(subject, { queue: subject, callback: (err, msg) => void (err === null && this.#serve(name, msg)) }));
      }
    }
  }

  async #watchStatus(nc: NatsConnection): Promise<void> {
    const statuses = nc.status();
    this.#statuses = statuses;
    for await (const status of statuses) {
      if (status.type === "disconnect") {
        this.#disconnected = true;
        this.#log.log("warn", "fleet: disconnected from NATS, reconnecting", { node: this.node });
      } else if (status.type === "reconnect") {
        this.#disconnected = false;
        this.#log.log("info", "fleet: reconnected to NATS", { node: this.node });
        // Announce itself again soon, but not in the same instant as every
        // other runtime that reconnected to a restarted server: spread over
        // one period, the burst costs what a steady period does.
        this.#after(Math.random() * this.#fleet.heartbeatMs, () => this.#heartbeat(false));
      }
    }
  }

  /** A call or send from another runtime to one of this runtime's services. */
  #serve(service: string, msg: Msg): void {
    const kind = msg.headers?.get(Header.kind) === "send" ? "send" : "call";
    const delivery = this.#kernel
      .deliver(service, kind, msg.data)
      .then(
        (reply) => {
          if (kind === "call" && reply !== undefined) this.#respond(msg, reply, service);
        },
        (err: unknown) => {
          if (kind === "call") this.#respond(msg, encodeErrorReply(toMoltError(err)), service);
        },
      )
      .catch((err: unknown) => this.#log.log("error", "fleet: delivery from another runtime failed", { service, error: String(err) }));
    this.#inFlight.add(delivery);
    void delivery.finally(() => this.#inFlight.delete(delivery));
  }

  /**
   * Answers a request from another runtime. A reply NATS cannot carry is
   * answered with ERR_MESSAGE_TOO_LARGE instead; a connection that closed
   * meanwhile loses the answer (the caller's deadline covers it). Never throws.
   */
  #respond(msg: Msg, reply: Uint8Array, service: string): void {
    const nc = this.#nc;
    try {
      if (nc !== undefined && reply.byteLength > maxPayload(nc)) {
        reply = encodeErrorReply(
          new MoltError(ErrorCode.MESSAGE_TOO_LARGE, `${service}'s reply of ${reply.byteLength} bytes exceeds what NATS carries (${maxPayload(nc)})`, {
            service,
          }),
        );
      }
      msg.respond(reply);
    } catch (err) {
      this.#log.log("warn", "fleet: could not answer a request", { service, error: String(err) });
    }
  }

  #onSwapRequest(msg: Msg): void {
    let request: SwapRequest;
    try {
      request = decodeRecord<SwapRequest>(msg.data, "swap request");
    } catch (err) {
      this.#respond(msg, encodeRecord(this.#answerError(toMoltError(err))), "-");
      return;
    }
    const what = `${request.via} by rollout ${request.rollout}`;
    const via = request.via === "rollback" ? Via.ROLLBACK : Via.SWAP;
    // A rollback takes the version back under the entry it was recorded with here.
    const entry = (request.via === "rollback" ? this.#kernel.recorded(request.service, request.version)?.entry : undefined) ?? request.entry;
    void this.#queue(() =>
      this.#leaving
        ? Promise.resolve(this.#answerError(new MoltError(ErrorCode.STOPPING, `${this.node} is stopping`)))
        : this.#swapTo(request.service, request.version, entry, via),
    )
      .then((answer) => {
        this.#log.log(answer.outcome === "error" ? "warn" : "info", `fleet: ${what}: ${answer.outcome}`, { service: request.service, code: answer.code });
        this.#respond(msg, encodeRecord(answer), request.service);
      })
      .catch((err: unknown) => this.#log.log("error", "fleet: swap request failed", { service: request.service, error: String(err) }));
  }

  #onDesired(msg: Msg): void {
    let change: DesiredChange;
    try {
      change = decodeRecord<DesiredChange>(msg.data, "desired-version broadcast");
    } catch {
      return;
    }
    if (!this.#kernel.has(change.service)) return;
    // A runtime already on the version has nothing to read.
    if (change.state === "settled" && this.#running(change.service) === change.version) return;
    // The others read the desired record after a random delay, so that a
    // whole fleet does not read it in the same instant.
    const spread = Math.min(BROADCAST_SPREAD_MS, this.#fleet.reconcileMs / 2);
    this.#after(Math.random() * spread, () => this.#queue(() => this.#reconcile(change.service)));
  }

  #reconcileAll(): Promise<unknown> {
    return this.#queue(async () => {
      for (const { name } of this.#kernel.status()) await this.#reconcile(name);
    });
  }

  /** Converges one service to its desired version, when the fleet has settled on one. */
  async #reconcile(service: string): Promise<void> {
    const stores = this.#stores;
    if (stores === undefined || this.#leaving) return;
    let desired: DesiredRecord;
    try {
      const entry = await stores.desired.get(service);
      if (entry === null || entry.operation !== "PUT") return;
      desired = decodeRecord<DesiredRecord>(entry.value, "desired version");
    } catch (err) {
      this.#log.log("warn", "fleet: cannot read the desired version", { service, error: String(err) });
      return;
    }
    if (desired.state !== "settled") return;
    const running = this.#running(service);
    if (running === desired.version) {
      if (this.#lastError?.service === service) this.#lastError = null;
      return;
    }
    if (this.#refused.get(service) === desired.revision) return;
    this.#log.log("info", "fleet: converging", { service, from: running?.slice(0, 12), to: desired.version.slice(0, 12), rollout: desired.rollout });
    const answer = await this.#swapTo(service, desired.version, desired.entry, Via.SWAP);
    // A version that fails here is not tried again until the fleet decides
    // anew; a failure that may pass (busy, NATS away, stopping) is retried at
    // the next reconcile.
    if (answer.outcome === "rolled-back" || answer.outcome === "unhealthy" || (answer.code !== undefined && DETERMINISTIC.has(answer.code))) {
      this.#refused.set(service, desired.revision);
    }
  }

  async #swapTo(service: string, version: string, entry: string, via: Via): Promise<SwapAnswer> {
    if (!this.#kernel.has(service)) return this.#answerError(new MoltError(ErrorCode.NO_SERVICE, `${this.node} runs no service "${service}"`));
    const from = this.#running(service);
    if (from === version) return { node: this.node, outcome: "unchanged", from, to: version, blackoutMs: null };
    try {
      const bundle = await this.#bundle(version, entry);
      const report = await this.#kernel.swapBundle(service, bundle, via);
      const answer: SwapAnswer = {
        node: this.node,
        outcome: report.outcome,
        from: report.from.version,
        to: report.to?.version ?? null,
        blackoutMs: report.blackoutMs,
        ...(report.error === undefined ? {} : { code: report.error.code, message: report.error.message }),
      };
      if (report.error !== undefined) this.#noteError(service, version, report.error);
      return answer;
    } catch (err) {
      const e = toMoltError(err);
      this.#noteError(service, version, e);
      return { ...this.#answerError(e), from };
    } finally {
      // Announce the change at once rather than at the next heartbeat.
      await this.#heartbeat(false).catch(() => undefined);
    }
  }

  /** The bundle of a version: from this runtime's own store if it ran here, else from the fleet's. */
  async #bundle(version: string, entry: string): Promise<Bundle> {
    try {
      return this.#kernel.storedBundle(version, entry);
    } catch {
      // Not here: fetch it.
    }
    const stores = this.#stores;
    if (stores === undefined) throw new MoltError(ErrorCode.FLEET, "not connected to the fleet");
    const bytes = await this.#fetchBundle(stores, version);
    if (bytes === null) throw new MoltError(ErrorCode.NO_VERSION, `no bundle ${version.slice(0, 12)} in the fleet's object store`);
    const code = new TextDecoder().decode(bytes);
    if (createHash("sha256").update(code).digest("hex") !== version) {
      throw new MoltError(ErrorCode.CORRUPT, `bundle ${version.slice(0, 12)} from the fleet does not match its content hash`);
    }
    return { code, hash: version, entry };
  }

  /**
   * Fetches a bundle, trying again after a short random wait when NATS does
   * not answer: under a broadcast thousands of runtimes fetch within seconds,
   * and one slow answer should not fail a swap (and halt a rollout).
   */
  async #fetchBundle(stores: FleetStores, version: string): Promise<Uint8Array | null> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fetchBundleBytes(stores.direct, stores.bundles, version);
      } catch (err) {
        if (attempt >= BUNDLE_FETCH_ATTEMPTS || !(err instanceof MoltError && err.code === ErrorCode.FLEET)) throw err;
        await delay(500 + Math.random() * 1000 * attempt);
      }
    }
  }

  async #heartbeat(stopped: boolean): Promise<void> {
    const stores = this.#stores;
    if (stores === undefined) return;
    // Advisory ids share one budget per heartbeat; a service past it says
    // null ("not carried") rather than an empty list ("fixes nothing").
    let fixChars = HEARTBEAT_LIMITS.fixChars;
    const fixesWithin = (fixes: readonly string[]): string[] | null => {
      const size = fixes.reduce((n, id) => n + id.length, 0);
      if (size > fixChars) return null;
      fixChars -= size;
      return [...fixes];
    };
    const record: NodeRecord = {
      node: this.node,
      instance: this.#instance,
      dataDir: this.#dataDir,
      pid: process.pid,
      host: this.#host,
      startedAt: this.#startedAt,
      heartbeatAt: new Date().toISOString(),
      heartbeatMs: this.#fleet.heartbeatMs,
      kernel: this.#runtimeKernel,
      services: this.#kernel.status().slice(0, HEARTBEAT_LIMITS.services).map((s): NodeService => ({
        name: s.name,
        state: s.state,
        version: s.version,
        semver: s.semver,
        stateVersion: s.stateVersion,
        fixes: fixesWithin(s.fixes ?? []),
        chain: this.#kernel
          .history(s.name)
          .slice(-CHAIN_LENGTH)
          .reverse()
          .map((r) => ({
            version: r.version,
            semver: r.semver,
            stateVersion: r.stateVersion,
            parent: r.parent,
            via: r.via,
            outcome: r.outcome,
            startedAt: r.startedAt,
          })),
      })),
      lastError: this.#lastError,
      stoppedAt: stopped ? new Date().toISOString() : null,
    };
    await stores.nodes.put(this.node, encodeRecord(record));
  }

  #running(service: string): string | null {
    return this.#kernel.has(service) ? this.#kernel.running(service) : null;
  }

  #noteError(service: string, version: string, error: { code: string; message: string }): void {
    this.#lastError = { service, version, code: error.code, message: error.message.slice(0, HEARTBEAT_LIMITS.message), at: new Date().toISOString() };
  }

  #answerError(e: MoltError): SwapAnswer {
    return { node: this.node, outcome: "error", from: null, to: null, blackoutMs: null, code: e.code, message: e.message };
  }

  #queue<T>(run: () => Promise<T>): Promise<T> {
    const next = this.#serial.then(run, run);
    this.#serial = next.catch(() => undefined);
    return next;
  }

  #every(periodMs: number, jitter: number, run: () => Promise<unknown>): void {
    const schedule = (): void =>
      this.#after(periodMs * (1 - jitter + Math.random() * 2 * jitter), async () => {
        await run().catch(() => undefined);
        if (!this.#leaving) schedule();
      });
    schedule();
  }

  /** Logs instead of leaving a rejection unhandled: nothing in the fleet may take the runtime down. */
  #safely(what: string, promise: Promise<unknown>): void {
    promise.catch((err: unknown) => this.#log.log("error", `fleet: ${what} failed`, { node: this.node, error: String(err) }));
  }

  #after(ms: number, run: () => unknown): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (!this.#leaving) this.#safely("a timed task", Promise.resolve().then(run));
    }, ms);
    timer.unref();
    this.#timers.add(timer);
  }
}

/** How long `leave` may take before the connection is closed whatever is left. */
const LEAVE_BOUND_MS = 3000;

/** How often a runtime tries to fetch a bundle before its swap fails. */
const BUNDLE_FETCH_ATTEMPTS = 3;

/** The longest random delay before a runtime acts on a broadcast. */
const BROADCAST_SPREAD_MS = 5000;

/** Failures that will happen again with the same version: not retried until the fleet decides anew. */
const DETERMINISTIC = new Set<string>([ErrorCode.CORRUPT, ErrorCode.STATE_VERSION, ErrorCode.SWAP_COMPILE, ErrorCode.NO_VERSION]);

/** A name for this runtime that survives restarts: made once, kept in dataDir. */
function stableNodeId(dataDir: string): string {
  const path = join(dataDir, "fleet-node");
  if (existsSync(path)) {
    const id = readFileSync(path, "utf8").trim();
    if (/^[A-Za-z0-9][\w-]*$/.test(id)) return id;
  }
  const host = hostname().replace(/[^\w-]/g, "-").replace(/^[^A-Za-z0-9]+/, "") || "molt";
  const id = `${host}-${randomBytes(3).toString("hex")}`;
  writeAtomic(path, `${id}\n`);
  return id;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
