// Bundling: a service entry becomes one script for an isolate, named by the
// sha256 of that script; `molt/service` resolves to the SDK wherever the
// service lives; with allowed roots, no file outside them is read, symlinks
// included; failures carry ERR_BUNDLE or ERR_PERMISSION.

import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, realpathSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runInNewContext } from "node:vm";
import { beforeAll, describe, expect, it } from "vitest";
import { bundleRuntime, bundleService, isInside, shortId } from "../../core/bundle.ts";

const fresh = (): string => mkdtempSync(join(tmpdir(), "molt-bundle-"));

async function rejectionCode(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

/** A folder of source files, written as given. */
function project(files: Record<string, string>): string {
  const dir = realpathSync(fresh());
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, ".."), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

/** Runs a bundle as an isolate would (no Node globals) and returns the module it sets. */
function load(code: string): Record<string, any> {
  const context: Record<string, unknown> = {};
  runInNewContext(code, context);
  return context.__molt_module as Record<string, any>;
}

const SERVICE = {
  "svc/index.ts": `import { defineService } from "molt/service";\nimport { greet } from "./greet.ts";\nexport default defineService({ version: "1.2.3", handlers: { hi: () => greet("molt") } });\n`,
  "svc/greet.ts": `export const greet = (name: string): string => "hello " + name;\n`,
};

describe("bundleService", () => {
  it("makes one script from an entry, its relative imports and the SDK, named by the sha256 of that script", async () => {
    const dir = project(SERVICE);
    const bundle = await bundleService(join(dir, "svc/index.ts"));
    expect(bundle.entry).toBe(join(dir, "svc/index.ts"));
    expect(bundle.hash).toBe(createHash("sha256").update(bundle.code).digest("hex"));
    const module = load(bundle.code);
    expect(module.default.version).toBe("1.2.3");
    expect(module.default.handlers.hi()).toBe("hello molt");
  });

  it("gives the same version id to the same code, and another to changed code", async () => {
    const dir = project(SERVICE);
    const first = await bundleService(join(dir, "svc/index.ts"));
    expect((await bundleService(join(dir, "svc/index.ts"))).hash).toBe(first.hash);
    writeFileSync(join(dir, "svc/greet.ts"), `export const greet = (name: string): string => "hi " + name;\n`);
    expect((await bundleService(join(dir, "svc/index.ts"))).hash).not.toBe(first.hash);
  });

  it("tells the truth to `typeof require` checks: an isolate has no require", async () => {
    const dir = project({ "svc/index.ts": `export default { handlers: { kind: () => typeof require } };\n` });
    expect(load((await bundleService(join(dir, "svc/index.ts"))).code).default.handlers.kind()).toBe("undefined");
  });

  it("fails with ERR_BUNDLE, naming the file and line, when the code does not compile or an import is missing", async () => {
    const dir = project({ "broken.ts": "export default { handlers: {\n", "missing.ts": `import "./nowhere.ts";\nexport default { handlers: {} };\n` });
    const broken = await bundleService(join(dir, "broken.ts")).catch((err: { code: string; message: string }) => err);
    expect(broken).toMatchObject({ code: "ERR_BUNDLE", message: expect.stringContaining(`${join(dir, "broken.ts")}:2:`) });
    await expect(bundleService(join(dir, "missing.ts"))).rejects.toMatchObject({ code: "ERR_BUNDLE" });
  });
});

describe("bundleService with allowedRoots", () => {
  let root: string;
  let outside: string;

  beforeAll(() => {
    const dir = fresh();
    root = join(dir, "root");
    outside = join(dir, "outside");
    mkdirSync(join(root, "lib"), { recursive: true });
    mkdirSync(outside);
    writeFileSync(join(outside, "secret.ts"), "export const secret = 'from outside';\n");
    writeFileSync(join(root, "lib", "inside.ts"), "export const inside = 'from inside';\n");
    writeFileSync(join(root, "good.ts"), 'import { defineService } from "molt/service";\nimport { inside } from "./lib/inside.ts";\nexport default defineService({ version: "1.0.0", stateVersion: 1, init: () => ({}), handlers: { get: () => inside } });\n');
    writeFileSync(join(root, "imports-outside.ts"), `import { secret } from ${JSON.stringify(join(outside, "secret.ts"))};\nexport default { version: "1", stateVersion: 1, init: () => ({}), handlers: { get: () => secret } };\n`);
    symlinkSync(join(outside, "secret.ts"), join(root, "lib", "linked.ts"));
    writeFileSync(join(root, "imports-link.ts"), 'import { secret } from "./lib/linked.ts";\nexport default { version: "1", stateVersion: 1, init: () => ({}), handlers: { get: () => secret } };\n');
    writeFileSync(join(root, "data.json"), '{ "a": 1 }\n');
    writeFileSync(join(root, "imports-json.ts"), 'import data from "./data.json";\nexport default { version: "1", stateVersion: 1, init: () => ({}), handlers: { get: () => data } };\n');
  });

  it("bundles code whose every file is inside the roots (molt's own SDK included) to the same bytes as without the check", async () => {
    for (const entry of ["good.ts", "imports-json.ts"]) {
      const confined = await bundleService(join(root, entry), { allowedRoots: [root] });
      const plain = await bundleService(join(root, entry));
      expect(confined.hash).toBe(plain.hash);
    }
  });

  it("allows packages from a node_modules folder of the root or of its ancestors (a monorepo hoists them), and nothing else beside the root", async () => {
    const mono = fresh();
    const app = join(mono, "app");
    mkdirSync(join(mono, "node_modules", "leftpad"), { recursive: true });
    mkdirSync(join(mono, "other"), { recursive: true });
    mkdirSync(app);
    writeFileSync(join(mono, "node_modules", "leftpad", "package.json"), '{ "name": "leftpad", "main": "index.js" }\n');
    writeFileSync(join(mono, "node_modules", "leftpad", "index.js"), "module.exports = (s, n) => String(s).padStart(n);\n");
    writeFileSync(join(mono, "other", "x.js"), "export const x = 1;\n");
    writeFileSync(join(app, "uses-package.ts"), 'import pad from "leftpad";\nexport default { handlers: { pad: (_s: unknown, n: number) => pad("x", n) } };\n');
    writeFileSync(join(app, "uses-sibling.ts"), 'import { x } from "../other/x.js";\nexport default { handlers: { x: () => x } };\n');
    expect(await rejectionCode(bundleService(join(app, "uses-package.ts"), { allowedRoots: [app] }))).toBeUndefined();
    expect(await rejectionCode(bundleService(join(app, "uses-sibling.ts"), { allowedRoots: [app] }))).toBe("ERR_PERMISSION");
  });

  it("refuses with ERR_PERMISSION an import outside the roots, directly or through a symlink", async () => {
    for (const entry of ["imports-outside.ts", "imports-link.ts"]) {
      expect(await rejectionCode(bundleService(join(root, entry), { allowedRoots: [root] })), entry).toBe("ERR_PERMISSION");
      // Without roots (a fleet rollout, a start) nothing is checked.
      expect(await rejectionCode(bundleService(join(root, entry)))).toBeUndefined();
    }
    // A root given through a symlink is its real folder.
    const linkedRoot = join(fresh(), "linked-root");
    symlinkSync(root, linkedRoot);
    expect(await rejectionCode(bundleService(join(linkedRoot, "good.ts"), { allowedRoots: [linkedRoot] }))).toBeUndefined();
    expect(await rejectionCode(bundleService(join(linkedRoot, "imports-link.ts"), { allowedRoots: [linkedRoot] }))).toBe("ERR_PERMISSION");
  });

  it("still reports code that does not compile as ERR_BUNDLE", async () => {
    writeFileSync(join(root, "broken.ts"), "export default {\n");
    expect(await rejectionCode(bundleService(join(root, "broken.ts"), { allowedRoots: [root] }))).toBe("ERR_BUNDLE");
    expect(await rejectionCode(bundleService(join(root, "missing.ts"), { allowedRoots: [root] }))).toBe("ERR_BUNDLE");
  });

  it("refuses an entry outside the roots with ERR_PERMISSION, and a file type it does not bundle with ERR_BUNDLE", async () => {
    const dir = project({ "a/index.ts": "export default { handlers: {} };\n", "b/index.ts": `import "./picture.png";\nexport default { handlers: {} };\n`, "b/picture.png": "x" });
    await expect(bundleService(join(dir, "a/index.ts"), { allowedRoots: [join(dir, "b")] })).rejects.toMatchObject({ code: "ERR_PERMISSION" });
    await expect(bundleService(join(dir, "b/index.ts"), { allowedRoots: [join(dir, "b")] })).rejects.toMatchObject({ code: "ERR_BUNDLE" });
  });
});

describe("bundleRuntime", () => {
  it("bundles the guest runtime once per process", async () => {
    const first = bundleRuntime();
    expect(bundleRuntime()).toBe(first);
    expect((await first).length).toBeGreaterThan(1000);
  });
});

describe("isInside and shortId", () => {
  it("counts a path inside a root only when it is strictly below it", () => {
    expect(isInside("/srv/app/svc/index.ts", ["/srv/app"])).toBe(true);
    expect(isInside("/srv/app", ["/srv/app"])).toBe(false);
    expect(isInside("/srv/application/x.ts", ["/srv/app"])).toBe(false);
    expect(isInside("/srv/x.ts", ["/srv/app", "/srv"])).toBe(true);
    expect(isInside("/etc/passwd", [])).toBe(false);
  });

  it("shortens a version id to its first 12 characters", () => {
    expect(shortId("0123456789abcdef")).toBe("0123456789ab");
  });
});
