import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, expectTypeOf, it } from "vitest";
import { bundleService } from "../../core/bundle.ts";
import { findConfig, loadConfig, resolveConfig, type ResolvedConfig, type ResolvedService } from "../../core/config.ts";
import type { MoltConfig, ServiceConfig } from "../../sdk/config.ts";

const code = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
};

/** The error resolving `raw` fails with; the test fails if it resolves. */
const refusal = (raw: unknown): { code: string; message: string } => {
  try {
    resolveConfig(raw, "/srv/app");
  } catch (err) {
    return err as { code: string; message: string };
  }
  throw new Error(`expected ${JSON.stringify(raw)} to be refused`);
};

const ok = { entry: "./a.ts" };
/** A valid config with one section changed: `at` is a path such as "services.a.limits". */
const withSection = (at: string, value: Record<string, unknown>): Record<string, unknown> => {
  const config: Record<string, unknown> = { services: { a: { ...ok } }, http: { port: 0, service: "a" }, admin: { port: 0 }, log: { service: "a" } };
  const keys = at.split(".");
  let parent = config;
  for (const key of keys.slice(0, -1)) parent = parent[key] as Record<string, unknown>;
  const last = keys.at(-1) ?? "";
  parent[last] = { ...(parent[last] as Record<string, unknown> | undefined), ...value };
  return config;
};

// The shapes the kernel was written against, spelt out by hand: the types
// inferred from the schema must stay exactly these.
interface DocumentedService {
  name: string;
  entry: string;
  bindings: Record<string, string>;
  config: unknown;
  limits: { memoryMb: number; timeoutMs: number; maxMessageBytes: number; timers: number; storageMb: number };
  concurrency: number;
  concurrencySet: boolean;
  queue: number;
  permissions: { net: string[]; env: string[]; stdout: boolean };
  isolation: "isolate" | "process";
}
interface DocumentedConfig {
  path: string | null;
  dir: string;
  services: Record<string, DocumentedService>;
  http: { port: number; host: string; service: string; maxBodyBytes: number; exposeErrors: "code" | "full" } | null;
  admin: { port: number; host: string; allowedRoots: string[] } | null;
  log: { service: string } | null;
  dataDir: string;
  swap: { drainTimeoutMs: number; blackoutTimeoutMs: number; probationMs: number; probationMaxErrors: number; verify: boolean; shadow: number; shadowTimeoutMs: number };
  snapshot: { everyMs: number };
  restart: { maxRestarts: number; windowMs: number };
  kernel: { standby: boolean; restart: { maxRestarts: number; windowMs: number } };
  fleet: { nats: string; node: string | null; heartbeatMs: number; reconcileMs: number } | null;
}

describe("config", () => {
  it("fills defaults and resolves entries and dataDir against the config's folder", () => {
    const c = resolveConfig({ services: { a: { entry: "./a.ts" } }, http: { port: 0, service: "a" } }, "/srv/app");
    expect(c.services.a).toMatchObject({
      entry: "/srv/app/a.ts",
      bindings: {},
      concurrency: 1,
      concurrencySet: false,
      queue: 1000,
      limits: { memoryMb: 128, timeoutMs: 5000, maxMessageBytes: 4 * 1024 * 1024, timers: 10_000, storageMb: 1024 },
      permissions: { net: [], env: [], stdout: false },
    });
    expect(c.http).toEqual({ port: 0, host: "127.0.0.1", service: "a", maxBodyBytes: 1024 * 1024, exposeErrors: "code" });
    expect(c.dataDir).toBe("/srv/app/.molt");
    expect(c.admin).toBeNull();
  });

  it("refuses what a typo or a missing service would turn into a surprise, with ERR_CONFIG", () => {
    const ok = { entry: "./a.ts" };
    expect(code(() => resolveConfig({ services: {} }, "/"))).toBe("ERR_CONFIG");
    expect(code(() => resolveConfig({ services: { a: { ...ok, bindings: { b: "ghost" } } } }, "/"))).toBe("ERR_CONFIG");
    expect(code(() => resolveConfig({ services: { a: { ...ok, limit: {} } } }, "/"))).toBe("ERR_CONFIG");
    expect(code(() => resolveConfig({ services: { a: ok }, htttp: {} }, "/"))).toBe("ERR_CONFIG");
    expect(code(() => resolveConfig({ services: { a: ok }, http: { port: 80, service: "b" } }, "/"))).toBe("ERR_CONFIG");
    expect(code(() => resolveConfig({ services: { a: ok }, http: { port: 70000, service: "a" } }, "/"))).toBe("ERR_CONFIG");
    expect(code(() => resolveConfig({ services: { a: { ...ok, limits: { memoryMb: 4 } } } }, "/"))).toBe("ERR_CONFIG");
    expect(code(() => resolveConfig({ services: { a: { ...ok, concurrency: 0 } } }, "/"))).toBe("ERR_CONFIG");
    expect(code(() => resolveConfig({ services: { "bad name": ok } }, "/"))).toBe("ERR_CONFIG");
    expect(code(() => resolveConfig({ services: { a: { entry: 3 } } }, "/"))).toBe("ERR_CONFIG");
  });

  it("takes a fleet section: defaults, checks, and bindings to services on other runtimes", () => {
    const ok = { entry: "./a.ts" };
    const alone = resolveConfig({ services: { a: ok } }, "/");
    expect(alone.fleet).toBeNull();
    const joined = resolveConfig({ services: { a: { ...ok, bindings: { b: "elsewhere" } } }, fleet: { nats: "nats://10.0.0.1:4222" } }, "/");
    expect(joined.fleet).toEqual({ nats: "nats://10.0.0.1:4222", node: null, heartbeatMs: 5000, reconcileMs: 60_000 });
    // In a fleet a binding may name a service that is not local; alone it may not.
    expect(joined.services.a?.bindings).toEqual({ b: "elsewhere" });
    const fleet = (f: unknown) => code(() => resolveConfig({ services: { a: ok }, fleet: f }, "/"));
    expect(fleet({ nats: "http://x:4222" })).toBe("ERR_CONFIG");
    expect(fleet({})).toBe("ERR_CONFIG");
    expect(fleet({ nats: "nats://x:4222", node: "has.dot" })).toBe("ERR_CONFIG");
    expect(fleet({ nats: "nats://x:4222", nodes: "a" })).toBe("ERR_CONFIG");
    expect(fleet({ nats: "nats://x:4222", heartbeatMs: 5 })).toBe("ERR_CONFIG");
    expect(fleet({ nats: "nats://a:4222, nats://b:4222", node: "edge-1" })).toBeUndefined();
    expect(code(() => resolveConfig({ services: { a: { ...ok, bindings: { b: "not a name" } } }, fleet: { nats: "nats://x:1" } }, "/"))).toBe(
      "ERR_CONFIG",
    );
  });

  it("loads a TypeScript config file and finds the default name", async () => {
    const dir = mkdtempSync(join(tmpdir(), "molt-config-"));
    writeFileSync(
      join(dir, "molt.config.ts"),
      `import { defineConfig } from "molt";\nconst port: number = 0;\nexport default defineConfig({ services: { a: { entry: "./a.ts" } }, http: { port, service: "a" } });\n`,
    );
    const path = findConfig(undefined, dir);
    expect(path).toBe(join(dir, "molt.config.ts"));
    const c = await loadConfig(path);
    expect(c.services.a?.entry).toBe(join(dir, "a.ts"));
    expect(c.path).toBe(path);
  });

  it("refuses an unknown key at any depth with ERR_CONFIG, naming its path", () => {
    // The config each row changes is valid as it stands, with or without a fleet.
    expect(resolveConfig(withSection("services.a", {}), "/srv/app").log).toEqual({ service: "a" });
    expect(resolveConfig(withSection("fleet", { nats: "nats://x:1" }), "/srv/app").fleet?.nats).toBe("nats://x:1");
    const rows: [Record<string, unknown>, string][] = [
      [withSection("services.a", { limit: {} }), "services.a.limit"],
      [withSection("services.a", { limits: { memoryMB: 64 } }), "services.a.limits.memoryMB"],
      [withSection("services.a", { permissions: { network: ["x"] } }), "services.a.permissions.network"],
      [withSection("http", { prot: 80 }), "http.prot"],
      [withSection("admin", { roots: [] }), "admin.roots"],
      [withSection("log", { level: "info" }), "log.level"],
      [withSection("swap", { drainTimeout: 5 }), "swap.drainTimeout"],
      [withSection("snapshot", { every: 5 }), "snapshot.every"],
      [withSection("restart", { max: 5 }), "restart.max"],
      [withSection("fleet", { nats: "nats://x:1", nodes: "a" }), "fleet.nodes"],
      [withSection("services", { b: { ...ok, entry_point: "./b.ts" } }), "services.b.entry_point"],
      [{ ...withSection("services.a", {}), htttp: {} }, "htttp"],
    ];
    for (const [raw, path] of rows) {
      const err = refusal(raw);
      expect(err.code, path).toBe("ERR_CONFIG");
      expect(err.message, path).toContain(path);
    }
  });

  it("checks every value, naming the path of the bad one", () => {
    const rows: [Record<string, unknown>, string][] = [
      [withSection("services.a", { entry: "" }), "services.a.entry"],
      [withSection("services.a", { bindings: { b: 3 } }), "services.a.bindings.b"],
      [withSection("services.a", { limits: { memoryMb: 7 } }), "services.a.limits.memoryMb"],
      [withSection("services.a", { limits: { timeoutMs: 2.5 } }), "services.a.limits.timeoutMs"],
      // setTimeout would turn this deadline into 1 ms.
      [withSection("services.a", { limits: { timeoutMs: 2 ** 31 } }), "services.a.limits.timeoutMs"],
      [withSection("services.a", { limits: { maxMessageBytes: 0 } }), "services.a.limits.maxMessageBytes"],
      [withSection("services.a", { limits: { timers: "many" } }), "services.a.limits.timers"],
      [withSection("services.a", { concurrency: 0 }), "services.a.concurrency"],
      [withSection("services.a", { queue: Number.NaN }), "services.a.queue"],
      [withSection("services.a", { isolation: "thread" }), "services.a.isolation"],
      [withSection("services.a", { permissions: { net: "example.com" } }), "services.a.permissions.net"],
      // A URL would never match a fetch, silently; a grant is a host or host:port.
      [withSection("services.a", { permissions: { net: ["https://example.com"] } }), "services.a.permissions.net[0]"],
      [withSection("services.a", { permissions: { net: ["example.com:70000"] } }), "services.a.permissions.net[0]"],
      [withSection("services.a", { permissions: { env: [""] } }), "services.a.permissions.env[0]"],
      [withSection("services.a", { permissions: { stdout: "yes" } }), "services.a.permissions.stdout"],
      [withSection("http", { port: -1 }), "http.port"],
      [withSection("http", { port: 65536 }), "http.port"],
      [withSection("http", { host: "" }), "http.host"],
      [withSection("http", { maxBodyBytes: 0 }), "http.maxBodyBytes"],
      [withSection("admin", { port: "8081" }), "admin.port"],
      [withSection("admin", { allowedRoots: "." }), "admin.allowedRoots"],
      [withSection("log", { service: 3 }), "log.service"],
      [{ ...withSection("services.a", {}), dataDir: 5 }, "dataDir"],
      [withSection("swap", { drainTimeoutMs: -1 }), "swap.drainTimeoutMs"],
      [withSection("swap", { blackoutTimeoutMs: 0 }), "swap.blackoutTimeoutMs"],
      [withSection("swap", { probationMs: 1.5 }), "swap.probationMs"],
      [withSection("swap", { probationMaxErrors: -1 }), "swap.probationMaxErrors"],
      [withSection("snapshot", { everyMs: "60s" }), "snapshot.everyMs"],
      [withSection("restart", { maxRestarts: -1 }), "restart.maxRestarts"],
      [withSection("restart", { windowMs: 0 }), "restart.windowMs"],
      [withSection("fleet", { nats: "nats://x:1", heartbeatMs: 99 }), "fleet.heartbeatMs"],
      [withSection("fleet", { nats: "nats://x:1", reconcileMs: "1m" }), "fleet.reconcileMs"],
    ];
    for (const [raw, path] of rows) {
      const err = refusal(raw);
      expect(err.code, path).toBe("ERR_CONFIG");
      expect(err.message, path).toContain(path);
    }
    expect(refusal(5).code).toBe("ERR_CONFIG");
    expect(refusal({ services: [ok] }).code).toBe("ERR_CONFIG");
  });

  it("refuses references to services that are not configured, echoing the name", () => {
    const http = refusal({ services: { counter: ok }, http: { port: 0, service: "countr" } });
    expect(http.code).toBe("ERR_CONFIG");
    expect(http.message).toContain('http.service must name a configured service (got "countr")');
    const log = refusal({ services: { counter: ok }, log: { service: "lg" } });
    expect(log.code).toBe("ERR_CONFIG");
    expect(log.message).toContain("log.service");
    const binding = refusal({ services: { counter: { ...ok, bindings: { store: "kv" } } } });
    expect(binding.code).toBe("ERR_CONFIG");
    expect(binding.message).toContain("services.counter.bindings.store");
    // A name an object inherits is not a configured service.
    expect(refusal({ services: { counter: { ...ok, bindings: { b: "constructor" } } } }).code).toBe("ERR_CONFIG");
  });

  it("fills every default of every section", () => {
    const c = resolveConfig(
      { services: { a: ok }, admin: { port: 0 }, log: { service: "a" }, fleet: { nats: "nats://127.0.0.1:4222" } },
      "/srv/app",
      "/srv/app/molt.config.ts",
    );
    expect(c).toEqual({
      path: "/srv/app/molt.config.ts",
      dir: "/srv/app",
      services: {
        a: {
          name: "a",
          entry: "/srv/app/a.ts",
          bindings: {},
          config: undefined,
          limits: { memoryMb: 128, timeoutMs: 5000, maxMessageBytes: 4 * 1024 * 1024, timers: 10_000, storageMb: 1024 },
          concurrency: 1,
          concurrencySet: false,
          queue: 1000,
          permissions: { net: [], env: [], stdout: false },
          isolation: "isolate",
        },
      },
      http: null,
      admin: { port: 0, host: "127.0.0.1", allowedRoots: ["/srv/app"] },
      log: { service: "a" },
      dataDir: "/srv/app/.molt",
      swap: { drainTimeoutMs: 2000, blackoutTimeoutMs: 2500, probationMs: 0, probationMaxErrors: 0, verify: true, shadow: 0, shadowTimeoutMs: 60_000 },
      snapshot: { everyMs: 5000 },
      restart: { maxRestarts: 5, windowMs: 60_000 },
      kernel: { standby: false, restart: { maxRestarts: 5, windowMs: 60_000 } },
      fleet: { nats: "nats://127.0.0.1:4222", node: null, heartbeatMs: 5000, reconcileMs: 60_000 },
    } satisfies DocumentedConfig);
    const set = resolveConfig({ services: { a: { ...ok, concurrency: 1, config: { level: "info" } } }, admin: { port: 1, allowedRoots: ["x", "/abs"] } }, "/srv/app");
    expect(set.services.a).toMatchObject({ concurrency: 1, concurrencySet: true, config: { level: "info" } });
    expect(set.admin?.allowedRoots).toEqual(["/srv/app/x", "/abs"]);
  });

  it("derives the SDK's types and the resolved types from the one schema", () => {
    // Checked by `tsc --noEmit -p .`: vitest only strips these.
    expectTypeOf<ResolvedConfig>().toEqualTypeOf<DocumentedConfig>();
    expectTypeOf<ResolvedService>().toEqualTypeOf<DocumentedService>();
    const service = { entry: "./a.ts", limits: { memoryMb: 64 }, permissions: { net: ["example.com:443"] }, isolation: "process" } satisfies ServiceConfig;
    const config = {
      services: { a: service },
      http: { port: 0, service: "a" },
      swap: { probationMs: 1000 },
      fleet: { nats: "nats://127.0.0.1:4222" },
    } satisfies MoltConfig;
    // @ts-expect-error: a misspelt key is a type error before it is a runtime one.
    const typo: ServiceConfig = { entry: "./a.ts", limits: { memoryMB: 64 } };
    // @ts-expect-error: http needs the service that answers it.
    const noService: MoltConfig = { services: { a: service }, http: { port: 0 } };
    // @ts-expect-error: isolation is one of two words.
    const thread: ServiceConfig = { entry: "./a.ts", isolation: "thread" };
    expect(resolveConfig(config, "/").services.a?.isolation).toBe("process");
    for (const wrong of [{ services: { a: typo } }, noService, { services: { a: thread } }]) expect(code(() => resolveConfig(wrong, "/"))).toBe("ERR_CONFIG");
  });

  it("bundles the SDK into a service or a config without the schema library", async () => {
    // Confined to the service's own folder (molt's sdk/ is always allowed), the
    // build fails if "molt" pulls in anything from node_modules.
    const dir = mkdtempSync(join(tmpdir(), "molt-config-"));
    writeFileSync(
      join(dir, "svc.ts"),
      `import { defineConfig, defineService } from "molt";\nexport const c = defineConfig({ services: { a: { entry: "./a.ts" } } });\nexport default defineService({ handlers: { ping: () => "pong" } });\n`,
    );
    const bundle = await bundleService(join(dir, "svc.ts"), { allowedRoots: [dir] });
    expect(bundle.code).toContain("pong");
  });

  it("says clearly when there is no config", () => {
    const dir = mkdtempSync(join(tmpdir(), "molt-config-"));
    expect(code(() => findConfig(undefined, dir))).toBe("ERR_CONFIG");
    expect(code(() => findConfig("missing.ts", dir))).toBe("ERR_CONFIG");
  });
});
