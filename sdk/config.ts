// The runtime's config: what `molt.config.ts` default-exports.
// Shapes only; core/config.ts validates a loaded config and fills defaults.

export interface ServiceLimits {
  /** Heap limit of the service's isolate, in MiB (minimum 8). Default 128. */
  memoryMb?: number;
  /** Deadline of one call, awaited continuations included, in ms. Default 5000. */
  timeoutMs?: number;
  /** Largest encoded message the service accepts or answers with, in bytes. Default 4 MiB. */
  maxMessageBytes?: number;
  /** Timers (setTimeout, setInterval) pending at once; past it `setTimeout` throws ERR_LIMIT. Default 10,000. */
  timers?: number;
}

export interface ServicePermissions {
  /** host:port pairs the service may `fetch` (port optional: then 80 and 443). */
  net?: string[];
  /** Environment variable names readable with `ctx.env.get`. */
  env?: string[];
  /** Allows `ctx.stdout.write`: for sink services such as `log`. */
  stdout?: boolean;
}

export interface ServiceConfig {
  /** Path of the service's entry module, relative to the config file. */
  entry: string;
  /** binding name → service name: what this service may call. */
  bindings?: Record<string, string>;
  /** Any msgpack-able value, given to the service as `ctx.config`. */
  config?: unknown;
  limits?: ServiceLimits;
  /** Handlers running at once. Default 1: a service's handlers never interleave. */
  concurrency?: number;
  /** Mailbox bound: messages waiting beyond those running. Default 1000. */
  queue?: number;
  permissions?: ServicePermissions;
  /**
   * Where the service's isolate lives. "isolate" (default): in the kernel's
   * process, the fastest. "process": in a cell, a child process of its own,
   * for services whose failure must never reach the kernel (some allocation
   * patterns abort V8 past any memory limit); each message then also
   * crosses a process boundary.
   */
  isolation?: "isolate" | "process";
}

export interface MoltConfig {
  services: Record<string, ServiceConfig>;
  /** The kernel owns the socket; the named service answers every request. */
  http?: { port: number; host?: string; service: string; maxBodyBytes?: number };
  /** The admin API the CLI talks to; write calls need the token in dataDir. */
  admin?: {
    port: number;
    host?: string;
    /** Folders a swapped-in entry must be inside (relative to the config file). Default: the config's folder. */
    allowedRoots?: string[];
  };
  /** The service that receives every service's console output; without one, the kernel prints it. */
  log?: { service: string };
  /** Snapshots, inventory, the admin token. Relative to the config file. Default ".molt". */
  dataDir?: string;
  swap?: {
    /** How long in-flight messages may take to finish once a swap pauses the mailbox. Default 2000. */
    drainTimeoutMs?: number;
    /**
     * The whole blackout's budget (drain, old stop and dump, new restore and
     * start); past it the swap rolls back. Keep it below the deadlines of the
     * service's callers, so a message queued behind a failing swap is answered
     * after the rollback instead of timing out. Default 2500.
     */
    blackoutTimeoutMs?: number;
    /** After cutover, how long the new version's errors are watched. Default 0 (no probation). */
    probationMs?: number;
    /** Errors of the new version during probation past which it rolls back. Default 0. */
    probationMaxErrors?: number;
  };
  snapshot?: { everyMs?: number };
  restart?: { maxRestarts?: number; windowMs?: number };
  /** Join a fleet of runtimes over NATS (see README, "The fleet"). */
  fleet?: { nats: string; node?: string; heartbeatMs?: number; reconcileMs?: number };
}

/** Gives a config its types; the object is returned unchanged. */
export function defineConfig(config: MoltConfig): MoltConfig {
  return config;
}
