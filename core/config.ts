// Loads a runtime config file, checks it, and fills in defaults, so the rest
// of the kernel works on one fully resolved shape with absolute paths.

import { existsSync, rmSync, writeFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import * as esbuild from "esbuild";
import type { MoltConfig } from "../sdk/config.ts";
import { SDK_ALIASES } from "./bundle.ts";
import { ErrorCode, MoltError } from "./errors.ts";

export interface ResolvedLimits {
  memoryMb: number;
  timeoutMs: number;
  maxMessageBytes: number;
  /** Timers (setTimeout, setInterval) one instance may have pending at once. */
  timers: number;
}

export interface ResolvedPermissions {
  net: string[];
  env: string[];
  stdout: boolean;
}

export interface ResolvedService {
  name: string;
  /** Absolute path of the entry module. */
  entry: string;
  bindings: Record<string, string>;
  config: unknown;
  limits: ResolvedLimits;
  concurrency: number;
  /** Whether the config set `concurrency` (otherwise the module may declare its own). */
  concurrencySet: boolean;
  queue: number;
  permissions: ResolvedPermissions;
  /** "isolate": an isolate in the kernel's process; "process": an isolate in a cell of its own. */
  isolation: "isolate" | "process";
}

export interface ResolvedConfig {
  /** Absolute path of the config file, or null for a config built in code. */
  path: string | null;
  /** The folder entry paths and dataDir are relative to. */
  dir: string;
  services: Record<string, ResolvedService>;
  http: { port: number; host: string; service: string; maxBodyBytes: number } | null;
  admin: { port: number; host: string; allowedRoots: string[] } | null;
  log: { service: string } | null;
  dataDir: string;
  swap: { drainTimeoutMs: number; blackoutTimeoutMs: number; probationMs: number; probationMaxErrors: number };
  snapshot: { everyMs: number };
  restart: { maxRestarts: number; windowMs: number };
  /** Membership of a fleet of runtimes over NATS; null when the runtime runs alone. */
  fleet: ResolvedFleet | null;
}

export interface ResolvedFleet {
  /** NATS server URL(s), comma-separated as NATS clients take them. */
  nats: string;
  /** This runtime's name in the fleet; null: a stable id kept in dataDir. */
  node: string | null;
  /** How often the runtime announces itself (with ±10% jitter). */
  heartbeatMs: number;
  /** How often it checks the desired versions on its own (with ±25% jitter). */
  reconcileMs: number;
}

export const DEFAULTS = {
  memoryMb: 128,
  timeoutMs: 5000,
  maxMessageBytes: 4 * 1024 * 1024,
  // Each pending timer costs host memory outside the isolate's heap limit.
  timers: 10_000,
  concurrency: 1,
  queue: 1000,
  maxBodyBytes: 1024 * 1024,
  host: "127.0.0.1",
  dataDir: ".molt",
} as const;

export const CONFIG_FILES = ["molt.config.ts", "molt.config.mjs", "molt.config.js"] as const;

/** Finds the config file: the given path, or the first default name in `cwd`. */
export function findConfig(given: string | undefined, cwd: string = process.cwd()): string {
  if (given !== undefined) {
    const path = resolve(cwd, given);
    if (!existsSync(path)) throw new MoltError(ErrorCode.CONFIG, `config file not found: ${path}`);
    return path;
  }
  for (const name of CONFIG_FILES) {
    const path = resolve(cwd, name);
    if (existsSync(path)) return path;
  }
  throw new MoltError(ErrorCode.CONFIG, `no ${CONFIG_FILES.join(", ")} in ${cwd}; pass a config path`);
}

/**
 * Imports a config module (TypeScript or JavaScript) and resolves it.
 *
 * The file is compiled with esbuild first, as vite does with its config:
 * that way `import { defineConfig } from "molt"` works from any folder, also
 * one where molt is not installed as a package, and TypeScript needs no
 * loader. The compiled module is written beside the config, so its own
 * relative and package imports resolve as they would from the original.
 */
export async function loadConfig(path: string): Promise<ResolvedConfig> {
  const absolute = resolve(path);
  const compiled = `${absolute}.${process.pid}.${Date.now()}.mjs`;
  let mod: { default?: unknown };
  try {
    const result = await esbuild.build({
      entryPoints: [absolute],
      bundle: true,
      write: false,
      format: "esm",
      platform: "node",
      packages: "external",
      alias: SDK_ALIASES,
      logLevel: "silent",
    });
    writeFileSync(compiled, result.outputFiles[0]?.text ?? "");
    mod = (await import(pathToFileURL(compiled).href)) as { default?: unknown };
  } catch (cause) {
    throw new MoltError(ErrorCode.CONFIG, `cannot load config ${absolute}: ${describe(cause)}`, { cause });
  } finally {
    rmSync(compiled, { force: true });
  }
  if (mod.default === undefined) {
    throw new MoltError(ErrorCode.CONFIG, `config ${absolute} has no default export`);
  }
  return resolveConfig(mod.default, dirname(absolute), absolute);
}

function describe(err: unknown): string {
  const failure = err as Partial<esbuild.BuildFailure>;
  if (Array.isArray(failure.errors) && failure.errors.length > 0) {
    return failure.errors
      .map((e) => (e.location ? `${e.location.file}:${e.location.line}:${e.location.column}: ${e.text}` : e.text))
      .join("; ");
  }
  return err instanceof Error ? err.message : String(err);
}

const SERVICE_KEYS = new Set(["entry", "bindings", "config", "limits", "concurrency", "queue", "permissions", "isolation"]);
const TOP_KEYS = new Set(["services", "http", "admin", "log", "dataDir", "swap", "snapshot", "restart", "fleet"]);

/** Checks a config value and fills defaults; `dir` anchors relative paths. */
export function resolveConfig(raw: unknown, dir: string, path: string | null = null): ResolvedConfig {
  const fail = (message: string): never => {
    throw new MoltError(ErrorCode.CONFIG, path === null ? message : `${path}: ${message}`);
  };
  if (!isObject(raw)) fail("the config must be an object");
  const config = raw as MoltConfig & Record<string, unknown>;
  for (const key of Object.keys(config)) if (!TOP_KEYS.has(key)) fail(`unknown top-level key "${key}"`);
  if (!isObject(config.services) || Object.keys(config.services).length === 0) {
    fail("`services` must name at least one service");
  }

  const services: Record<string, ResolvedService> = {};
  for (const [name, svc] of Object.entries(config.services)) {
    if (!SERVICE_NAME.test(name)) fail(`service name "${name}" must be a letter then letters, digits, _ or -`);
    if (!isObject(svc)) fail(`services.${name} must be an object`);
    for (const key of Object.keys(svc)) if (!SERVICE_KEYS.has(key)) fail(`services.${name}: unknown key "${key}"`);
    if (typeof svc.entry !== "string" || svc.entry === "") fail(`services.${name}.entry must be a path`);
    const limits = svc.limits ?? {};
    const permissions = svc.permissions ?? {};
    services[name] = {
      name,
      entry: isAbsolute(svc.entry) ? svc.entry : resolve(dir, svc.entry),
      bindings: stringRecord(svc.bindings ?? {}, `services.${name}.bindings`, fail),
      config: svc.config,
      limits: {
        memoryMb: positiveInt(limits.memoryMb ?? DEFAULTS.memoryMb, `services.${name}.limits.memoryMb`, fail, 8),
        timeoutMs: positiveInt(limits.timeoutMs ?? DEFAULTS.timeoutMs, `services.${name}.limits.timeoutMs`, fail),
        maxMessageBytes: positiveInt(
          limits.maxMessageBytes ?? DEFAULTS.maxMessageBytes,
          `services.${name}.limits.maxMessageBytes`,
          fail,
        ),
        timers: positiveInt(limits.timers ?? DEFAULTS.timers, `services.${name}.limits.timers`, fail),
      },
      concurrency: positiveInt(svc.concurrency ?? DEFAULTS.concurrency, `services.${name}.concurrency`, fail),
      concurrencySet: svc.concurrency !== undefined,
      queue: positiveInt(svc.queue ?? DEFAULTS.queue, `services.${name}.queue`, fail),
      isolation: oneOf(svc.isolation ?? "isolate", ["isolate", "process"] as const, `services.${name}.isolation`, fail),
      permissions: {
        net: stringList(permissions.net ?? [], `services.${name}.permissions.net`, fail),
        env: stringList(permissions.env ?? [], `services.${name}.permissions.env`, fail),
        stdout: permissions.stdout === true,
      },
    };
  }
  const fleet = config.fleet === undefined ? null : resolveFleet(config.fleet, fail);
  for (const svc of Object.values(services)) {
    for (const [binding, target] of Object.entries(svc.bindings)) {
      // In a fleet, a binding may name a service that runs on another runtime.
      if (services[target] === undefined && fleet === null) {
        fail(`services.${svc.name}.bindings.${binding} names "${target}", which is not a service (or join a fleet to reach one on another runtime)`);
      }
      if (fleet !== null && !SERVICE_NAME.test(target)) fail(`services.${svc.name}.bindings.${binding}: "${target}" is not a service name`);
    }
  }

  const named = (value: unknown, where: string): string => {
    if (typeof value !== "string" || services[value] === undefined) fail(`${where} must name a configured service`);
    return value as string;
  };
  const http = config.http === undefined ? null : config.http;
  const admin = config.admin === undefined ? null : config.admin;
  return {
    path,
    dir,
    services,
    http:
      http === null
        ? null
        : {
            port: port(http.port, "http.port", fail),
            host: http.host ?? DEFAULTS.host,
            service: named(http.service, "http.service"),
            maxBodyBytes: positiveInt(http.maxBodyBytes ?? DEFAULTS.maxBodyBytes, "http.maxBodyBytes", fail),
          },
    admin:
      admin === null
        ? null
        : {
            port: port(admin.port, "admin.port", fail),
            host: admin.host ?? DEFAULTS.host,
            allowedRoots: stringList(admin.allowedRoots ?? [dir], "admin.allowedRoots", fail).map((root) => resolve(dir, root)),
          },
    log: config.log === undefined ? null : { service: named(config.log.service, "log.service") },
    dataDir: resolve(dir, config.dataDir ?? DEFAULTS.dataDir),
    swap: {
      drainTimeoutMs: config.swap?.drainTimeoutMs ?? 2000,
      blackoutTimeoutMs: config.swap?.blackoutTimeoutMs ?? 2500,
      probationMs: config.swap?.probationMs ?? 0,
      probationMaxErrors: config.swap?.probationMaxErrors ?? 0,
    },
    snapshot: { everyMs: config.snapshot?.everyMs ?? 0 },
    restart: { maxRestarts: config.restart?.maxRestarts ?? 5, windowMs: config.restart?.windowMs ?? 60_000 },
    fleet,
  };
}

const SERVICE_NAME = /^[A-Za-z][\w-]*$/;
const FLEET_KEYS = new Set(["nats", "node", "heartbeatMs", "reconcileMs"]);

function resolveFleet(raw: unknown, fail: (m: string) => never): ResolvedFleet {
  if (!isObject(raw)) fail("fleet must be an object");
  const fleet = raw as Record<string, unknown>;
  for (const key of Object.keys(fleet)) if (!FLEET_KEYS.has(key)) fail(`fleet: unknown key "${key}"`);
  const nats = fleet.nats;
  if (typeof nats !== "string" || !nats.split(",").every((url) => /^(nats|tls):\/\/[^\s/]+$/.test(url.trim()))) {
    fail('fleet.nats must be a NATS URL such as "nats://127.0.0.1:4222" (several separated by commas)');
  }
  // Node names become NATS subject tokens: no dots, spaces or wildcards.
  if (fleet.node !== undefined && (typeof fleet.node !== "string" || !/^[A-Za-z0-9][\w-]*$/.test(fleet.node))) {
    fail("fleet.node must be letters, digits, _ or - (it names the runtime in NATS subjects)");
  }
  return {
    nats: nats as string,
    node: (fleet.node as string | undefined) ?? null,
    heartbeatMs: positiveInt(fleet.heartbeatMs ?? 5000, "fleet.heartbeatMs", fail, 100),
    reconcileMs: positiveInt(fleet.reconcileMs ?? 60_000, "fleet.reconcileMs", fail, 100),
  };
}

function isObject(value: unknown): value is Record<string, any> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function positiveInt(value: unknown, where: string, fail: (m: string) => never, min = 1): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min) fail(`${where} must be an integer ≥ ${min}`);
  return value as number;
}

function port(value: unknown, where: string, fail: (m: string) => never): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 65535) {
    fail(`${where} must be a port number (0 picks a free one)`);
  }
  return value as number;
}

function oneOf<T extends string>(value: unknown, options: readonly T[], where: string, fail: (m: string) => never): T {
  if (!options.includes(value as T)) fail(`${where} must be one of ${options.map((o) => `"${o}"`).join(", ")}`);
  return value as T;
}

function stringList(value: unknown, where: string, fail: (m: string) => never): string[] {
  if (!Array.isArray(value) || value.some((v) => typeof v !== "string")) fail(`${where} must be a list of strings`);
  return [...(value as string[])];
}

function stringRecord(value: unknown, where: string, fail: (m: string) => never): Record<string, string> {
  if (!isObject(value) || Object.values(value).some((v) => typeof v !== "string")) {
    fail(`${where} must map names to service names`);
  }
  return { ...(value as Record<string, string>) };
}
