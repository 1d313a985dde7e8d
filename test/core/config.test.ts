import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { findConfig, loadConfig, resolveConfig } from "../../core/config.ts";

const code = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
};

describe("config", () => {
  it("fills defaults and resolves entries and dataDir against the config's folder", () => {
    const c = resolveConfig({ services: { a: { entry: "./a.ts" } }, http: { port: 0, service: "a" } }, "/srv/app");
    expect(c.services.a).toMatchObject({
      entry: "/srv/app/a.ts",
      bindings: {},
      concurrency: 1,
      concurrencySet: false,
      queue: 1000,
      limits: { memoryMb: 128, timeoutMs: 5000, maxMessageBytes: 4 * 1024 * 1024, timers: 10_000 },
      permissions: { net: [], env: [], stdout: false },
    });
    expect(c.http).toEqual({ port: 0, host: "127.0.0.1", service: "a", maxBodyBytes: 1024 * 1024 });
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

  it("says clearly when there is no config", () => {
    const dir = mkdtempSync(join(tmpdir(), "molt-config-"));
    expect(code(() => findConfig(undefined, dir))).toBe("ERR_CONFIG");
    expect(code(() => findConfig("missing.ts", dir))).toBe("ERR_CONFIG");
  });
});
