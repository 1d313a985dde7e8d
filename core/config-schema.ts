// The config's one definition. What a user writes in molt.config.ts (the
// SDK's types) and the resolved shape the kernel runs on are both inferred
// from the schema below, with its checks and defaults, so the three cannot
// drift apart. Every object in it is strict: a key it does not know is
// refused, at any depth, because a typo such as `memoryMB` would otherwise
// fall back to the default without a word.

import { isAbsolute, resolve } from "node:path";
import * as z from "zod";
import { ErrorCode, MoltError } from "./errors.ts";

export const DEFAULTS = {
  memoryMb: 128,
  timeoutMs: 5000,
  maxMessageBytes: 4 * 1024 * 1024,
  // Each pending timer costs host memory outside the isolate's heap limit.
  timers: 10_000,
  // What one service keeps in ctx.storage, keys and values counted, in MiB.
  storageMb: 1024,
  concurrency: 1,
  queue: 1000,
  maxBodyBytes: 1024 * 1024,
  host: "127.0.0.1",
  dataDir: ".molt",
  exposeErrors: "code",
  // A crash of the whole runtime loses at most this much of every service's
  // state. Each snapshot costs one dump through the service's mailbox and
  // one atomic write (fsync) per service: for the small states services
  // keep, well under a millisecond of the service's time and a few fsyncs
  // every five seconds, against losing every change since the last swap.
  // A service with a large state (a dump of tens of ms) may want it longer.
  snapshotEveryMs: 5000,
} as const;

const SERVICE_NAME = /^[A-Za-z][\w-]*$/;
// Node names become NATS subject tokens: no dots, spaces or wildcards.
const NODE_NAME = /^[A-Za-z0-9][\w-]*$/;
const NATS_URL = /^(nats|tls):\/\/[^\s/]+$/;
// What `netAllows` (core/permissions.ts) can match: a host name, an IPv4
// address or a bracketed IPv6 address, then an optional port. Anything else
// (a URL, a path, a wildcard) would never match a request, silently.
const NET_GRANT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]+)(:(6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]?\d{1,4}))?$/;
// setTimeout and setInterval turn a delay past 2^31 - 1 ms into 1 ms.
const MAX_DELAY_MS = 2 ** 31 - 1;

const serviceName = z.string().regex(SERVICE_NAME, { error: "must be a letter then letters, digits, _ or -" });
const count = (min: number) => z.int().min(min);
const delay = (min: number) => z.int().min(min).max(MAX_DELAY_MS);
const port = () => {
  const error = "must be a port number from 0 to 65535, 0 picking a free one";
  return z.int({ error }).min(0, { error }).max(65535, { error });
};
const text = () => z.string().min(1);

const limits = z.strictObject({
  /** Heap limit of the service's isolate, in MiB (minimum 8). Default 128. */
  memoryMb: count(8).default(DEFAULTS.memoryMb),
  /** Deadline of one call, awaited continuations included, in ms. Default 5000. */
  timeoutMs: delay(1).default(DEFAULTS.timeoutMs),
  /** Largest encoded message the service accepts or answers with, in bytes. Default 4 MiB. */
  maxMessageBytes: count(1).default(DEFAULTS.maxMessageBytes),
  /** Timers (setTimeout, setInterval) pending at once; past it `setTimeout` throws ERR_LIMIT. Default 10,000. */
  timers: count(1).default(DEFAULTS.timers),
  /** What the service may keep in ctx.storage, keys and values counted, in MiB; past it a write fails with ERR_STORAGE_FULL. Default 1024. */
  storageMb: count(1).default(DEFAULTS.storageMb),
});

const permissions = z.strictObject({
  /** Hosts the service may `fetch`: "host:port" grants one port, a bare "host" every port. */
  net: z.array(z.string().regex(NET_GRANT, { error: 'must be "host" or "host:port"' })).default(() => []),
  /** Environment variable names readable with `ctx.env.get`. */
  env: z.array(z.string().regex(/^[^=\0]+$/, { error: "must be an environment variable name" })).default(() => []),
  /** Allows `ctx.stdout.write`: for sink services such as `log`. */
  stdout: z.boolean().default(false),
});

const service = (dir: string) =>
  z
    .strictObject({
      /** Path of the service's entry module, relative to the config file. */
      entry: text().transform((entry) => (isAbsolute(entry) ? entry : resolve(dir, entry))),
      /** binding name → service name: what this service may call. */
      bindings: z.record(text(), serviceName).default(() => ({})),
      /** Any msgpack-able value, given to the service as `ctx.config`. */
      config: z.unknown().optional(),
      limits: limits.prefault({}),
      /** Handlers running at once. Default 1: a service's handlers never interleave. */
      concurrency: count(1).optional(),
      /** Mailbox bound: messages waiting beyond those running. Default 1000. */
      queue: count(1).default(DEFAULTS.queue),
      permissions: permissions.prefault({}),
      /**
       * Where the service's isolate lives. "isolate" (default): in the kernel's
       * process, the fastest. "process": in a cell, a child process of its own,
       * for services whose failure must never reach the kernel (some allocation
       * patterns abort V8 past any memory limit); each message then also
       * crosses a process boundary.
       */
      isolation: z.enum(["isolate", "process"]).default("isolate"),
    })
    .transform(({ concurrency, config, ...rest }) => ({
      ...rest,
      config,
      concurrency: concurrency ?? DEFAULTS.concurrency,
      /** Whether the config set `concurrency` (otherwise the module may declare its own). */
      concurrencySet: concurrency !== undefined,
    }));

const fleet = z
  .strictObject({
    /** NATS server URL(s), comma-separated as NATS clients take them. */
    nats: z.string().refine((urls) => urls.split(",").every((url) => NATS_URL.test(url.trim())), {
      error: 'must be a NATS URL such as "nats://127.0.0.1:4222" (several separated by commas)',
    }),
    /** This runtime's name in the fleet. Default: a stable id kept in dataDir. */
    node: z.string().regex(NODE_NAME, { error: "must be letters, digits, _ or - (it names the runtime in NATS subjects)" }).optional(),
    /** How often the runtime announces itself (with ±10% jitter). Default 5000. */
    heartbeatMs: delay(100).default(5000),
    /** How often it checks the desired versions on its own (with ±25% jitter). Default 60000. */
    reconcileMs: delay(100).default(60_000),
  })
  .transform(({ node, ...rest }) => ({ ...rest, node: node ?? null }));

// The schema of a config whose relative paths are anchored at `dir`, loaded
// from `path`: resolving them is part of the definition, so the resolved
// types say what the kernel really gets.
function configSchema(dir: string, path: string | null) {
  return z
    .strictObject({
      services: z
        .record(serviceName, service(dir))
        .refine((services) => Object.keys(services).length > 0, { error: "must name at least one service" })
        .transform((services) => Object.fromEntries(Object.entries(services).map(([name, svc]) => [name, { name, ...svc }]))),
      /** The kernel owns the socket; the named service answers every request. */
      http: z
        .strictObject({
          port: port(),
          host: text().default(DEFAULTS.host),
          service: z.string(),
          /** Bodies larger than this get 413. Default 1 MiB. */
          maxBodyBytes: count(1).default(DEFAULTS.maxBodyBytes),
          /**
           * What an error body tells an HTTP client. "code" (default): the code, a
           * generic message and the service, nothing of the service's internals
           * (its error message, its version); the kernel's log has the rest.
           * "full": the error's own message and the version too.
           */
          exposeErrors: z.enum(["code", "full"]).default(DEFAULTS.exposeErrors),
        })
        .optional(),
      /** The admin API the CLI talks to; write calls need the token in dataDir. */
      admin: z
        .strictObject({
          port: port(),
          host: text().default(DEFAULTS.host),
          /** Folders a swapped-in entry must be inside (relative to the config file). Default: the config's folder. */
          allowedRoots: z.array(text()).default(() => [dir]),
        })
        .optional(),
      /** The service that receives every service's console output; without one, the kernel prints it. */
      log: z.strictObject({ service: z.string() }).optional(),
      /** Snapshots, inventory, the admin token. Relative to the config file. Default ".molt". */
      dataDir: text().default(DEFAULTS.dataDir),
      swap: z
        .strictObject({
          /** How long in-flight messages may take to finish once a swap pauses the mailbox. Default 2000. */
          drainTimeoutMs: delay(0).default(2000),
          /**
           * The whole blackout's budget (drain, old stop and dump, new restore and
           * start); past it the swap rolls back. Keep it below the deadlines of the
           * service's callers, so a message queued behind a failing swap is answered
           * after the rollback instead of timing out. Default 2500.
           */
          blackoutTimeoutMs: delay(1).default(2500),
          /** After cutover, how long the new version's errors are watched. Default 0 (no probation). */
          probationMs: delay(0).default(0),
          /** Errors of the new version during probation past which it rolls back. Default 0. */
          probationMaxErrors: count(0).default(0),
          /**
           * Verify each transfer in prepare: the state goes to the new version
           * and back into a scratch instance of the old one, and a swap whose
           * state comes back different is refused (ERR_SWAP_ROUNDTRIP). Costs
           * a boot of the old version per swap. Default true.
           */
          verify: z.boolean().default(true),
          /**
           * Shadow traffic for every swap that does not say: the next N messages
           * run by the new version too, beside the old one, before the cutover,
           * and a swap whose new version answers differently is refused
           * (ERR_SWAP_SHADOW). Default 0: none.
           */
          shadow: count(0).default(0),
          /** The longest a shadow waits for its N messages; it ends early (reported incomplete) past it. Default 60000. */
          shadowTimeoutMs: delay(1).default(60_000),
        })
        .prefault({}),
      /**
       * How often every service's state is written to dataDir, bounding what a
       * crash of the whole runtime (kill -9, a power cut) loses. 0: only after
       * swaps, on `molt snapshot` and at a graceful stop. Default 5000.
       */
      snapshot: z.strictObject({ everyMs: delay(0).default(DEFAULTS.snapshotEveryMs) }).prefault({}),
      /** A service that dies more than `maxRestarts` times in `windowMs` stays down. Defaults 5 in 60000. */
      restart: z.strictObject({ maxRestarts: count(0).default(5), windowMs: count(1).default(60_000) }).prefault({}),
      /**
       * The runtime itself, under its keeper (`molt run`): `standby` keeps a
       * second runtime booted (bundles compiled, isolates created, no state)
       * so that a crash resumes without the boot; past `restart` (default 5
       * deaths of the runtime in 60000 ms) the keeper gives up and exits 1.
       */
      kernel: z
        .strictObject({
          standby: z.boolean().default(false),
          restart: z.strictObject({ maxRestarts: count(0).default(5), windowMs: count(1).default(60_000) }).prefault({}),
        })
        .prefault({}),
      /** Join a fleet of runtimes over NATS (see README, "The fleet"). */
      fleet: fleet.optional(),
    })
    .superRefine((config, ctx) => {
      const configured = (name: string): boolean => Object.hasOwn(config.services, name);
      const refuse = (where: PropertyKey[], input: string, message: string): void => {
        ctx.addIssue({ code: "custom", path: where, input, message });
      };
      for (const svc of Object.values(config.services)) {
        for (const [binding, target] of Object.entries(svc.bindings)) {
          // In a fleet, a binding may name a service that runs on another runtime.
          if (config.fleet === undefined && !configured(target)) {
            refuse(["services", svc.name, "bindings", binding], target, "must name a configured service (or join a fleet to reach one on another runtime)");
          }
        }
      }
      if (config.http !== undefined && !configured(config.http.service)) {
        refuse(["http", "service"], config.http.service, "must name a configured service");
      }
      if (config.log !== undefined && !configured(config.log.service)) {
        refuse(["log", "service"], config.log.service, "must name a configured service");
      }
    })
    .transform((config) => ({
      /** Absolute path of the config file, or null for a config built in code. */
      path,
      /** The folder entry paths and dataDir are relative to. */
      dir,
      services: config.services,
      http: config.http ?? null,
      admin: config.admin === undefined ? null : { ...config.admin, allowedRoots: config.admin.allowedRoots.map((root) => resolve(dir, root)) },
      log: config.log ?? null,
      dataDir: resolve(dir, config.dataDir),
      swap: config.swap,
      snapshot: config.snapshot,
      restart: config.restart,
      kernel: config.kernel,
      /** Membership of a fleet of runtimes over NATS; null when the runtime runs alone. */
      fleet: config.fleet ?? null,
    }));
}

type ConfigSchema = ReturnType<typeof configSchema>;

/** What `molt.config.ts` default-exports (the SDK's `MoltConfig`). */
export type ConfigInput = z.input<ConfigSchema>;
/** A checked config with every default filled and every path absolute. */
export type ResolvedConfig = z.output<ConfigSchema>;
export type ResolvedService = ResolvedConfig["services"][string];
export type ResolvedLimits = ResolvedService["limits"];
export type ResolvedPermissions = ResolvedService["permissions"];
export type ResolvedFleet = NonNullable<ResolvedConfig["fleet"]>;

/**
 * Checks a config value against the schema and fills defaults; `dir` anchors
 * relative paths. Throws ERR_CONFIG naming the path of every problem found.
 */
export function resolveConfig(raw: unknown, dir: string, path: string | null = null): ResolvedConfig {
  // The schema is built for one config and parses it once: compiling it
  // (zod's fast path for a schema that parses many values) would cost more
  // than it saves.
  const result = configSchema(dir, path).safeParse(raw, { error: generic, reportInput: true, jitless: true });
  if (result.success) return result.data;
  const problems = result.error.issues.flatMap(describe);
  const message = `${problems.slice(0, MAX_PROBLEMS).join("; ")}${problems.length > MAX_PROBLEMS ? ` (and ${problems.length - MAX_PROBLEMS} more)` : ""}`;
  throw new MoltError(ErrorCode.CONFIG, path === null ? message : `${path}: ${message}`);
}

const MAX_PROBLEMS = 8;

// Messages for the checks the schema leaves to zod's own words; the schema
// names its own where a rule needs explaining (ports, names, URLs).
function generic(issue: z.core.$ZodRawIssue): string | undefined {
  switch (issue.code) {
    case "invalid_type":
      if (issue.input === undefined) return "is required";
      return `must be ${TYPE_NAMES[issue.expected] ?? `a ${issue.expected}`}`;
    case "too_small":
      if (issue.origin === "string" || issue.origin === "array") return "must not be empty";
      return `must be ≥ ${String(issue.minimum)}`;
    case "too_big":
      return issue.maximum === MAX_DELAY_MS ? `must be at most ${MAX_DELAY_MS}, the longest delay a timer takes` : `must be ≤ ${String(issue.maximum)}`;
    case "invalid_value":
      return `must be one of ${issue.values.map((value) => JSON.stringify(value)).join(", ")}`;
    default:
      return undefined;
  }
}

const TYPE_NAMES: Partial<Record<string, string>> = {
  int: "an integer",
  number: "a number",
  string: "a string",
  boolean: "true or false",
  object: "an object",
  record: "an object",
  array: "a list",
};

function describe(issue: z.core.$ZodIssue): string[] {
  if (issue.code === "unrecognized_keys") return issue.keys.map((key) => `${where([...issue.path, key])} is not a known key`);
  // A record's key that fails its check: the key's own message says why.
  const message = issue.code === "invalid_key" ? (issue.issues[0]?.message ?? issue.message) : issue.message;
  // An object or a list is echoed only as its kind, and only where its kind is what is wrong.
  const echo = issue.input !== undefined && (issue.code === "invalid_type" || typeof issue.input !== "object" || issue.input === null);
  const got = echo ? ` (got ${show(issue.input)})` : "";
  return [`${where(issue.path)} ${message}${got}`];
}

/** `services.counter.limits.memoryMb`, or `services.a.bindings["not an id"]`. */
function where(path: readonly PropertyKey[]): string {
  if (path.length === 0) return "the config";
  return path
    .map((key, i) => {
      if (typeof key === "number") return `[${key}]`;
      const name = String(key);
      if (/^[A-Za-z_$][\w$-]*$/.test(name)) return i === 0 ? name : `.${name}`;
      return `[${JSON.stringify(name)}]`;
    })
    .join("");
}

function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  if (Array.isArray(value)) return "a list";
  if (value === null) return "null";
  if (typeof value === "object") return "an object";
  if (typeof value === "function") return "a function";
  return String(value);
}
