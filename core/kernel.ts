// The kernel: the registry of services and their lifecycle, and the routing
// of messages between them through declared bindings. It knows nothing of
// HTTP routing, log formats, timers' semantics or storage: those are services.

import { bundleRuntime, bundleService, shortId } from "./bundle.ts";
import type { ResolvedConfig } from "./config.ts";
import { ErrorCode, MoltError, toMoltError } from "./errors.ts";
import type { Boot, InstanceBridge } from "./instance.ts";
import { bootIsolate } from "./isolate-host.ts";
import { jsonLog, type KernelLog } from "./log.ts";
import { grantedEnv, permittedFetch } from "./permissions.ts";
import { Slot } from "./slot.ts";
import { decodeReply, encodeErrorReply, encodeRequest } from "./wire.ts";

export interface KernelOptions {
  /** How instances are hosted; default: an isolate in this process. */
  boot?: Boot;
  log?: KernelLog;
  /** Where service output goes when no log service is configured, and permitted stdout writes. */
  stdout?: (text: string) => void;
}

export interface ServiceStatus {
  name: string;
  state: "running" | "down" | "starting";
  version: string | null;
  semver: string | null;
  stateVersion: number | null;
  uptimeMs: number;
  queueDepth: number;
  inFlight: number;
  restarts: number;
  error: { code: string; message: string } | null;
}

export class Kernel {
  readonly config: ResolvedConfig;
  readonly #slots = new Map<string, Slot>();
  readonly #log: KernelLog;
  readonly #stdout: (text: string) => void;
  #boot: Boot | undefined;
  readonly #bootOverride: Boot | undefined;
  #stopping = false;

  constructor(config: ResolvedConfig, options: KernelOptions = {}) {
    this.config = config;
    this.#log = options.log ?? jsonLog();
    this.#stdout = options.stdout ?? ((text) => process.stdout.write(text));
    this.#bootOverride = options.boot;
    for (const spec of Object.values(config.services)) this.#slots.set(spec.name, new Slot(spec));
  }

  /**
   * Bundles and boots every service. Each service goes live as soon as it is
   * ready, so a `start` hook that calls another service waits for that one
   * rather than failing.
   */
  async start(): Promise<void> {
    const runtime = await bundleRuntime();
    this.#boot = this.#bootOverride ?? ((spec, bridge) => bootIsolate(spec, bridge, runtime));
    const results = await Promise.allSettled([...this.#slots.values()].map((slot) => this.#launch(slot)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed !== undefined) {
      await this.stop();
      throw failed.reason;
    }
  }

  /** Calls a service's handler from the host, as the HTTP ingress does. */
  async call(service: string, method: string, payload?: unknown): Promise<unknown> {
    const reply = await this.#slot(service).deliver("call", encodeRequest(method, payload));
    return decodeReply(reply as Uint8Array);
  }

  /** Sends a one-way message to a service from the host. */
  send(service: string, method: string, payload?: unknown): Promise<void> {
    return this.#slot(service).deliver("send", encodeRequest(method, payload)).then(() => undefined);
  }

  status(): ServiceStatus[] {
    return [...this.#slots.values()].map((slot) => {
      const instance = slot.instance;
      return {
        name: slot.name,
        state: instance !== undefined ? "running" : slot.failure !== undefined ? "down" : "starting",
        version: instance?.versionId ?? null,
        semver: instance?.meta.semver ?? null,
        stateVersion: instance?.meta.stateVersion ?? null,
        uptimeMs: instance === undefined ? 0 : Date.now() - slot.startedAt,
        queueDepth: slot.mailbox.depth,
        inFlight: slot.mailbox.inFlight,
        restarts: slot.restarts.length,
        error: slot.failure === undefined ? null : { code: slot.failure.code, message: slot.failure.message },
      };
    });
  }

  /** Refuses new messages, lets every queued one finish, runs each `stop`, and disposes the isolates. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    const slots = [...this.#slots.values()];
    // The log service closes last, so the others' final output still reaches it.
    const logName = this.config.log?.service;
    const ordered = [...slots.filter((s) => s.name !== logName), ...slots.filter((s) => s.name === logName)];
    for (const slot of ordered) {
      await slot.mailbox.close();
      const instance = slot.instance;
      if (instance === undefined) continue;
      try {
        await instance.stop();
      } catch (err) {
        this.#log.log("warn", "stop hook failed", { service: slot.name, code: toMoltError(err).code, error: String(err) });
      }
      instance.dispose();
    }
  }

  async #launch(slot: Slot): Promise<void> {
    slot.bundle = await bundleService(slot.spec.entry);
    await this.#startInstance(slot);
  }

  async #startInstance(slot: Slot): Promise<void> {
    const bundle = slot.bundle as NonNullable<Slot["bundle"]>;
    const boot = this.#boot as Boot;
    const instance = await boot(
      { service: slot.spec, code: bundle.code, versionId: bundle.hash, env: grantedEnv(slot.spec.permissions) },
      this.#bridge(slot),
    );
    try {
      await instance.init();
      await instance.start();
    } catch (err) {
      instance.dispose();
      throw err;
    }
    slot.attach(instance);
    slot.mailbox.resume();
    this.#log.log("info", "service started", {
      service: slot.name,
      version: shortId(instance.versionId),
      semver: instance.meta.semver,
    });
  }

  /** What one instance may reach: its own bindings, and nothing else. */
  #bridge(slot: Slot): InstanceBridge {
    const route = (binding: string): Slot => {
      const target = Object.hasOwn(slot.spec.bindings, binding) ? slot.spec.bindings[binding] : undefined;
      if (target === undefined) {
        throw new MoltError(ErrorCode.NO_BINDING, `service "${slot.name}" has no binding "${binding}"`, { service: slot.name });
      }
      return this.#slot(target);
    };
    return {
      call: async (binding, request) => {
        try {
          const reply = (await route(binding).deliver("call", request)) as Uint8Array;
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
      },
      send: (binding, request) => {
        this.#sendFrom(slot, () => route(binding), request);
      },
      console: (level, text) => this.#console(slot, level, text),
      fetch: (request) => permittedFetch(slot.name, slot.spec.permissions.net, request, slot.spec.limits.timeoutMs),
      stdout: (text) => {
        if (slot.spec.permissions.stdout) this.#stdout(text);
      },
      exited: (reason) => void this.#restart(slot, reason),
    };
  }

  #sendFrom(slot: Slot, target: () => Slot, request: Uint8Array): void {
    let to: Slot;
    try {
      to = target();
    } catch (err) {
      this.#log.log("warn", "send refused", { service: slot.name, code: toMoltError(err).code });
      return;
    }
    to.deliver("send", request).catch((err: unknown) => {
      const e = toMoltError(err);
      this.#log.log("warn", "send failed", { service: slot.name, to: to.name, code: e.code, error: e.message });
    });
  }

  /**
   * Service output goes to the configured log service as a one-way message;
   * the kernel adds who said it and leaves the format to that service. The
   * log service's own output, and output it cannot take, is printed here.
   */
  #console(slot: Slot, level: string, message: string): void {
    const record = {
      time: new Date().toISOString(),
      level,
      service: slot.name,
      version: slot.instance?.meta.semver ?? null,
      versionId: slot.instance === undefined ? null : shortId(slot.instance.versionId),
      message,
    };
    const sink = this.config.log === null ? undefined : this.#slots.get(this.config.log.service);
    if (sink === undefined || sink === slot || this.#stopping && sink.instance === undefined) {
      this.#stdout(`${JSON.stringify(record)}\n`);
      return;
    }
    sink.deliver("send", encodeRequest("write", record)).catch(() => {
      this.#stdout(`${JSON.stringify(record)}\n`);
    });
  }

  /**
   * An instance died on its own (memory limit, a loop past its deadline).
   * Queued messages stay queued while a fresh instance boots, within the
   * restart policy; past it the service is down until an operator acts.
   */
  async #restart(slot: Slot, reason: MoltError): Promise<void> {
    slot.mailbox.pause();
    slot.detach(reason);
    if (this.#stopping) return;
    const now = Date.now();
    const { maxRestarts, windowMs } = this.config.restart;
    while (slot.restarts.length > 0 && (slot.restarts[0] ?? 0) < now - windowMs) slot.restarts.shift();
    if (slot.restarts.length >= maxRestarts) {
      const down = new MoltError(ErrorCode.SERVICE_DOWN, `${slot.name} restarted ${maxRestarts} times in ${windowMs} ms; it stays down`, {
        service: slot.name,
        cause: reason,
      });
      slot.detach(down);
      slot.mailbox.resume();
      this.#log.log("error", "service down", { service: slot.name, code: reason.code, error: reason.message });
      return;
    }
    slot.restarts.push(now);
    this.#log.log("error", "instance died; restarting with fresh state", { service: slot.name, code: reason.code, error: reason.message });
    try {
      await this.#startInstance(slot);
    } catch (err) {
      const e = toMoltError(err);
      this.#log.log("error", "restart failed", { service: slot.name, code: e.code, error: e.message });
      slot.detach(e);
      slot.mailbox.resume();
    }
  }

  #slot(name: string): Slot {
    const slot = this.#slots.get(name);
    if (slot === undefined) throw new MoltError(ErrorCode.NO_SERVICE, `no service named "${name}"`);
    return slot;
  }
}
