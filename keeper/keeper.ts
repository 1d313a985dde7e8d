// The keeper: the small parent process `molt run` becomes. It never loads
// service code, isolated-vm or NATS: it holds the listening sockets and
// starts the runtime (kernel + isolates) as its child, replaces it on
// `molt upgrade` (the old runtime's state handed to the new one) and when it
// dies (the new one resumes from the snapshots), so the sockets never close.
//
// It accepts every connection itself, paused, and hands it to the serving
// runtime (Node cluster's round-robin way: a parent that listened without
// accepting would race its child for connections). While no runtime serves,
// in a crash or an upgrade's blackout, connections wait here instead of
// being refused.

import { spawn, type ChildProcess } from "node:child_process";
import { createServer, type Server, type Socket } from "node:net";
import { hostname } from "node:os";
import { fileURLToPath } from "node:url";
import type { ErrorJson, FromRuntime, HandedState, KernelSettings, ListenerName, ListenerSpec, ToRuntime, UpgradePhase, Via } from "./protocol.ts";
import { KEEPER_ENV } from "./protocol.ts";

const RUNTIME_ENTRY = fileURLToPath(new URL("../cli/runtime.ts", import.meta.url));
/** Connections that may wait for a runtime; past it, new ones are closed (a runtime that never comes back must not exhaust the keeper). */
const MAX_WAITING = 10_000;
/** How long a new runtime may take to boot every service before an upgrade gives up on it. */
const BOOT_DEADLINE_MS = 60_000;
/** How long the new runtime may take to restore every service and serve. */
const STEP_DEADLINE_MS = 30_000;
/**
 * How long the old runtime may take to hand out: longer than its own
 * deadline for the drain and the dumps (cli/run.ts, HAND_OUT_DEADLINE_MS,
 * after leaving the fleet, at most 3 s), so that it always answers first.
 */
const HAND_OUT_WAIT_MS = 20_000;

/** One line of log in the kernel's own pino shape (core/log.ts), so one reader reads both. */
function log(level: "info" | "warn" | "error", msg: string, fields: Record<string, unknown> = {}): void {
  const n = level === "info" ? 30 : level === "warn" ? 40 : 50;
  process.stderr.write(`${JSON.stringify({ ...fields, level: n, time: Date.now(), pid: process.pid, hostname: hostname(), component: "keeper", msg })}\n`);
}

/** What a runtime says, beside the exit code it may announce. */
type Said = Exclude<FromRuntime, { exitCode: number }>;

class Runtime {
  readonly child: ChildProcess;
  readonly via: Via;
  stage: "starting" | "prepared" | "ready" | "retired" = "starting";
  everReady = false;
  /** Set once it said which exit code it meant (it may have to kill itself to exit: cli/run.ts). */
  meant: number | undefined;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly #waiters = new Set<(m: Said) => void>();
  /** Connections sent to this runtime and not written yet: Node queues a handle behind one the runtime has not acknowledged, and never calls back if the runtime dies. */
  readonly handing = new Set<{ listener: ListenerName; socket: Socket }>();

  constructor(args: readonly string[], via: Via, onMessage: (runtime: Runtime, message: Said) => void) {
    this.via = via;
    const tsx = import.meta.resolve("tsx");
    this.child = spawn(process.execPath, ["--no-node-snapshot", "--import", tsx, RUNTIME_ENTRY, ...args], {
      stdio: ["inherit", "inherit", "inherit", "ipc"],
      serialization: "advanced",
      env: { ...process.env, [KEEPER_ENV]: "1" },
    });
    this.exited = new Promise((resolve) => this.child.once("exit", (code, signal) => resolve({ code, signal })));
    this.child.on("message", (message: FromRuntime) => {
      if (typeof message !== "object" || message === null) return;
      if (!("t" in message)) {
        this.meant = message.exitCode;
        return;
      }
      for (const waiter of [...this.#waiters]) waiter(message);
      onMessage(this, message);
    });
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  send(message: ToRuntime, handle?: Socket): Promise<void> {
    return new Promise((resolve, reject) => {
      if (!this.child.connected) return reject(new Error("the runtime's channel is closed"));
      const done = (err: Error | null): void => (err === null ? resolve() : reject(err));
      if (handle === undefined) this.child.send(message, done);
      else {
        // The keeper keeps its own descriptor until the message is written, then closes it
        // (the runtime's is in flight): Node's own close waits for an acknowledgement that
        // a runtime killed meanwhile never sends, and the connection would hang in the keeper.
        const entry = { listener: (message as { listener: ListenerName }).listener, socket: handle };
        this.handing.add(entry);
        this.child.send(message, handle, { keepOpen: true }, (err) => {
          this.handing.delete(entry);
          if (err === null) handle.destroy();
          done(err);
        });
      }
    });
  }

  /** The first message of one of `types`, or a rejection when the runtime exits or the deadline passes first. */
  next<T extends Said["t"]>(types: readonly T[], deadlineMs: number): Promise<Extract<Said, { t: T }>> {
    return new Promise((resolve, reject) => {
      const finish = (): void => {
        this.#waiters.delete(waiter);
        clearTimeout(timer);
      };
      const waiter = (m: Said): void => {
        if ((types as readonly string[]).includes(m.t)) {
          finish();
          resolve(m as Extract<Said, { t: T }>);
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no ${types.join(" or ")} within ${deadlineMs} ms`));
      }, deadlineMs);
      this.#waiters.add(waiter);
      void this.exited.then(({ code, signal }) => {
        if (!this.#waiters.has(waiter)) return;
        finish();
        reject(new Error(`the runtime exited (${signal ?? `code ${code}`}) before ${types.join(" or ")}`));
      });
    });
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    if (this.alive) this.child.kill(signal);
  }
}

class UpgradeFailure extends Error {
  readonly phase: UpgradePhase;
  readonly code: string;
  constructor(phase: UpgradePhase, message: string, code = `ERR_KERNEL_UPGRADE_${phase.toUpperCase()}`) {
    super(message);
    this.phase = phase;
    this.code = code;
  }
}

export class Keeper {
  readonly #args: readonly string[];
  readonly #listeners = new Map<ListenerName, { spec: ListenerSpec; server: Server; url: string }>();
  readonly #waiting: { listener: ListenerName; socket: Socket }[] = [];
  /** The runtime connections go to (none while one is being replaced). */
  #serving: Runtime | undefined;
  /** A second runtime kept booted, without state, to take over after a crash (`kernel.standby`). */
  #standby: Runtime | undefined;
  /** During an upgrade, the runtime being replaced: if it dies in the blackout, a crash's recovery takes over. */
  #handing: Runtime | undefined;
  /** A stop asked for during an upgrade, carried out once the upgrade has settled. */
  #stopAfterUpgrade: NodeJS.Signals | undefined;
  #settings: KernelSettings | undefined;
  #restarts: number[] = [];
  /** When the serving runtime last died (epoch ms): a restart's blackout runs from here. */
  #diedAt: number | null = null;
  #stopping = false;
  #upgrading = false;
  /** Forwarded requests in flight: the keeper's id → where the answer goes. */
  readonly #forwards = new Map<number, { from: Runtime; to: Runtime; id: number }>();
  #forwardIds = 0;
  #exit: (code: number) => void = () => undefined;

  constructor(args: readonly string[]) {
    this.#args = args;
  }

  /** Runs until the runtime stops for good; resolves with the exit code `molt run` should end with. */
  run(): Promise<number> {
    const done = new Promise<number>((resolve) => (this.#exit = resolve));
    for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => this.#stop(signal));
    const first = this.#spawn("start");
    this.#serving = first;
    void first.exited.then(() => undefined);
    return done;
  }

  #spawn(via: Via): Runtime {
    const runtime = new Runtime(this.#args, via, (r, m) => this.#onMessage(r, m));
    void runtime.exited.then(({ code, signal }) => this.#onExit(runtime, code, signal));
    return runtime;
  }

  #onMessage(runtime: Runtime, message: Said): void {
    switch (message.t) {
      case "hello":
        this.#settings = message.kernel;
        void this.#listen(runtime, message.listeners);
        return;
      case "prepared":
        runtime.stage = "prepared";
        if (runtime === this.#standby) log("info", "standby runtime booted", { runtime: runtime.pid });
        // A first start and a restart without a standby activate at once; an upgrade's runtime and a standby wait.
        if (runtime === this.#serving && !runtime.everReady) void runtime.send({ t: "activate", via: runtime.via, states: null, since: runtime.via === "start" ? null : this.#diedAt }).catch(() => undefined);
        return;
      case "ready":
        runtime.stage = "ready";
        runtime.everReady = true;
        if (runtime === this.#serving) {
          this.#flush();
          if (runtime.via === "start") this.#ensureStandby();
        }
        return;
      case "upgrade":
        void this.#upgrade(runtime);
        return;
      case "forward":
        return this.#forward(runtime, message);
      case "forwarded": {
        const back = this.#forwards.get(message.id);
        if (back === undefined) return;
        this.#forwards.delete(message.id);
        void back.from.send({ ...message, id: back.id }).catch(() => undefined);
        return;
      }
      default:
        return;
    }
  }

  async #listen(runtime: Runtime, specs: ListenerSpec[]): Promise<void> {
    const answer: { name: ListenerName; url: string }[] = [];
    for (const spec of specs) {
      const held = this.#listeners.get(spec.name);
      if (held !== undefined) {
        // A runtime after the first (an upgrade, a restart) takes the sockets held, which cannot move.
        if (held.spec.port !== spec.port && spec.port !== 0) {
          await runtime.send({ t: "listen-failed", name: spec.name, port: spec.port, host: spec.host, code: "ERR_KERNEL_UPGRADE_SOCKETS", message: `${spec.name} is held on ${held.url}; a new port takes a restart of molt` }).catch(() => undefined);
          return;
        }
        answer.push({ name: spec.name, url: held.url });
        continue;
      }
      try {
        const server = await this.#bind(spec);
        const a = server.address();
        if (a === null || typeof a === "string") throw new Error("no address");
        const url = `http://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}`;
        this.#listeners.set(spec.name, { spec, server, url });
        answer.push({ name: spec.name, url });
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        await runtime.send({ t: "listen-failed", name: spec.name, port: spec.port, host: spec.host, code: e.code ?? "ERR_LISTEN", message: e.message }).catch(() => undefined);
        return;
      }
    }
    await runtime.send({ t: "listening", listeners: answer }).catch(() => undefined);
  }

  #bind(spec: ListenerSpec): Promise<Server> {
    return new Promise((resolve, reject) => {
      const server = createServer({ pauseOnConnect: true }, (socket) => this.#accept(spec.name, socket));
      server.once("error", reject);
      server.listen({ port: spec.port, host: spec.host, exclusive: true, backlog: 4096 }, () => {
        server.off("error", reject);
        server.on("error", (err) => log("error", "listener failed", { listener: spec.name, error: err.message }));
        resolve(server);
      });
    });
  }

  #accept(listener: ListenerName, socket: Socket): void {
    socket.on("error", () => undefined);
    const serving = this.#serving;
    if (serving !== undefined && serving.stage === "ready" && this.#waiting.length === 0) {
      serving.send({ t: "conn", listener }, socket).catch(() => this.#wait(listener, socket));
      return;
    }
    this.#wait(listener, socket);
  }

  #wait(listener: ListenerName, socket: Socket): void {
    if (socket.destroyed) return;
    if (this.#waiting.length >= MAX_WAITING) {
      socket.destroy();
      return;
    }
    this.#waiting.push({ listener, socket });
  }

  /** Hands every waiting connection to the runtime now serving, in the order they came. */
  #flush(): void {
    const serving = this.#serving;
    if (serving === undefined || serving.stage !== "ready") return;
    const waiting = this.#waiting.splice(0);
    for (const { listener, socket } of waiting) {
      if (socket.destroyed) continue;
      serving.send({ t: "conn", listener }, socket).catch(() => this.#wait(listener, socket));
    }
  }

  #forward(from: Runtime, message: Extract<FromRuntime, { t: "forward" }>): void {
    const to = this.#serving;
    if (to === undefined || to === from || to.stage !== "ready") {
      void from.send({ t: "forwarded", id: message.id, ok: false, value: { code: "ERR_STOPPING", message: "no runtime serves" } }).catch(() => undefined);
      return;
    }
    const id = ++this.#forwardIds;
    this.#forwards.set(id, { from, to, id: message.id });
    to.send({ ...message, id }).catch(() => {
      this.#forwards.delete(id);
      void from.send({ t: "forwarded", id: message.id, ok: false, value: { code: "ERR_STOPPING", message: "the serving runtime is gone" } }).catch(() => undefined);
    });
  }

  /** Keeps a second runtime booted, without state, so that a crash resumes without the boot. */
  #ensureStandby(): void {
    if (this.#settings?.standby !== true || this.#stopping || this.#standby !== undefined) return;
    this.#standby = this.#spawn("restart");
  }

  async #upgrade(old: Runtime): Promise<void> {
    if (this.#upgrading || old !== this.#serving || this.#stopping) {
      // Only the one who asked is told: nothing else changes.
      const error = { code: "ERR_KERNEL_UPGRADE_BUSY", message: this.#stopping ? "molt is stopping" : "an upgrade is already under way" };
      await old.send({ t: "resume", phase: "boot", error }).catch(() => undefined);
      return;
    }
    this.#upgrading = true;
    let next: Runtime | undefined;
    let handed = false;
    try {
      const bootStarted = performance.now();
      next = this.#spawn("upgrade");
      try {
        await next.next(["prepared"], BOOT_DEADLINE_MS);
      } catch (err) {
        throw new UpgradeFailure("boot", `the new runtime did not boot: ${(err as Error).message}`);
      }
      await old.send({ t: "phase", phase: "boot", ms: performance.now() - bootStarted });
      // The blackout: connections wait here from now until the new runtime serves.
      this.#serving = undefined;
      this.#handing = old;
      const since = Date.now();
      await old.send({ t: "hand-out" });
      const out = await old.next(["states", "hand-out-failed"], HAND_OUT_WAIT_MS).catch((err: unknown) => {
        throw new UpgradeFailure("handover", (err as Error).message);
      });
      if (out.t === "hand-out-failed") throw new UpgradeFailure(out.phase, `${out.error.code}: ${out.error.message}`, out.error.code);
      const handStarted = performance.now();
      await next.send({ t: "activate", via: "upgrade", states: out.states as HandedState[], since });
      const up = await next.next(["ready", "activate-failed"], STEP_DEADLINE_MS).catch((err: unknown) => {
        throw new UpgradeFailure("restore", (err as Error).message);
      });
      if (up.t === "activate-failed") throw new UpgradeFailure("restore", `${up.error.code}: ${up.error.message}`);
      const socketsStarted = performance.now();
      this.#serving = next;
      this.#handing = undefined;
      old.stage = "retired";
      handed = true;
      this.#flush();
      const phases = [
        { phase: "handover" as const, ms: socketsStarted - handStarted - up.restoreMs },
        { phase: "restore" as const, ms: up.restoreMs },
        { phase: "sockets" as const, ms: performance.now() - socketsStarted },
      ];
      await old.send({ t: "handed", pid: next.pid, kernel: up.kernel, phases }).catch(() => undefined);
      log("info", "kernel upgraded", { from: old.pid, to: next.pid });
      // The standby booted the old code: one from the new code replaces it.
      this.#standby?.kill();
      this.#standby = undefined;
    } catch (err) {
      const failure = err instanceof UpgradeFailure ? err : new UpgradeFailure("handover", (err as Error).message);
      next?.kill();
      log("warn", "kernel upgrade refused", { phase: failure.phase, code: failure.code, error: failure.message });
      this.#handing = undefined;
      if (old.alive) {
        await old.send({ t: "resume", phase: failure.phase, error: { code: failure.code, message: failure.message } }).catch(() => undefined);
        if (this.#serving === undefined) {
          this.#serving = old;
          this.#flush();
        }
      } else if (this.#serving === undefined) {
        // The old runtime died in the blackout: recovered as any crash is.
        this.#recover(old, null, null);
      }
    } finally {
      this.#upgrading = false;
      if (handed) this.#ensureStandby();
      if (this.#stopAfterUpgrade !== undefined) this.#stop(this.#stopAfterUpgrade, true);
    }
  }

  #onExit(runtime: Runtime, code: number | null, signal: NodeJS.Signals | null): void {
    // Connections that never left the keeper wait for the next runtime.
    for (const { listener, socket } of runtime.handing) this.#wait(listener, socket);
    runtime.handing.clear();
    const exitCode = runtime.meant ?? code ?? 1;
    // Requests forwarded to it are answered with an error rather than never.
    for (const [id, f] of this.#forwards) {
      if (f.to !== runtime) continue;
      this.#forwards.delete(id);
      void f.from.send({ t: "forwarded", id: f.id, ok: false, value: { code: "ERR_STOPPING", message: "the runtime answering it ended" } }).catch(() => undefined);
    }
    if (runtime === this.#standby) {
      this.#standby = undefined;
      if (!this.#stopping) log("warn", "standby runtime exited", { runtime: runtime.pid, code, signal });
      return;
    }
    // The runtime an upgrade is replacing: the upgrade sees it go and recovers (#upgrade).
    if (runtime === this.#handing) return;
    if (runtime !== this.#serving || runtime.stage === "retired") return;
    if (this.#stopping || (!runtime.everReady && runtime.via === "start")) {
      // A stop, or a first start that failed (a bad config, a taken port: the runtime said why).
      this.#finish(exitCode);
      return;
    }
    this.#recover(runtime, code, signal);
  }

  /** The serving runtime died: the keeper's reason to exist. A new one takes over from the snapshots. */
  #recover(dead: Runtime, code: number | null, signal: NodeJS.Signals | null): void {
    this.#serving = undefined;
    const now = Date.now();
    this.#diedAt = now;
    const { maxRestarts, windowMs } = this.#settings?.restart ?? { maxRestarts: 5, windowMs: 60_000 };
    this.#restarts = this.#restarts.filter((t) => now - t < windowMs);
    if (this.#restarts.length >= maxRestarts) {
      log("error", `the runtime died ${this.#restarts.length + 1} times within ${windowMs} ms (kernel.restart.maxRestarts ${maxRestarts}); molt gives up`, { runtime: dead.pid, code, signal });
      this.#finish(1);
      return;
    }
    this.#restarts.push(now);
    log("error", "the runtime died; starting a new one", { runtime: dead.pid, code, signal, standby: this.#standby?.stage === "prepared" });
    const standby = this.#standby;
    this.#standby = undefined;
    if (standby !== undefined && standby.stage === "prepared") {
      this.#serving = standby;
      void standby.send({ t: "activate", via: "restart", states: null, since: now }).catch(() => undefined);
      void standby.next(["ready"], STEP_DEADLINE_MS).then(
        () => this.#ensureStandby(),
        () => undefined,
      );
    } else {
      standby?.kill();
      const next = this.#spawn("restart");
      this.#serving = next;
      // Activated as soon as it is prepared (#onMessage), like a first start.
      void next.next(["ready"], BOOT_DEADLINE_MS).then(
        () => this.#ensureStandby(),
        () => undefined,
      );
    }
  }

  #stop(signal: NodeJS.Signals, deferred = false): void {
    if (this.#stopping && !deferred) return;
    this.#stopping = true;
    // An upgrade settles first (resumed, or handed over), so that the runtime that stops is the one holding the state.
    if (this.#upgrading) {
      this.#stopAfterUpgrade = signal;
      return;
    }
    this.#standby?.kill("SIGTERM");
    const serving = this.#serving;
    if (serving === undefined || !serving.alive) {
      this.#finish(signal === "SIGINT" ? 130 : 143);
      return;
    }
    // The runtime drains, snapshots every service and exits; the keeper goes with it.
    serving.kill(signal);
  }

  #finish(code: number): void {
    for (const { server } of this.#listeners.values()) server.close();
    for (const { socket } of this.#waiting.splice(0)) socket.destroy();
    this.#standby?.kill();
    this.#exit(code);
  }
}

/** `molt run` under a keeper: resolves with the exit code once the runtime has stopped for good. */
export function keep(args: readonly string[]): Promise<number> {
  return new Keeper(args).run();
}
