// Issue 20, items 6 and 8: build errors that know where services run. A
// bundle that imports a Node built-in fails with its usual code (ERR_BUNDLE,
// or ERR_SWAP_COMPILE for a swap) and says that services have no Node APIs
// and what to use instead; a file outside the allowed roots is refused with
// ERR_PERMISSION naming the setting that allows it, `admin.allowedRoots`.
// These messages are the behaviour under test, so their words are checked.

import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminServer } from "../../core/admin.ts";
import { bundleService } from "../../core/bundle.ts";
import { rejection, startKernel, type TestKernel } from "../support/kernel.ts";
import { FIXTURES } from "../support/runtime.ts";

const NODE_IMPORT = join(FIXTURES, "i20c-node-import.ts");

describe("a bundle that imports a Node built-in", () => {
  it("fails with ERR_BUNDLE, naming the built-ins and the alternatives an isolate has", async () => {
    const e = await rejection(bundleService(NODE_IMPORT));
    expect(e.code).toBe("ERR_BUNDLE");
    expect(e.message).toMatch(/no Node APIs \(node:fs, crypto\)/);
    for (const alternative of ["ctx.call", "fetch", "permissions.net", "ctx.env", "tsconfig.service.json"]) expect(e.message).toContain(alternative);
  });

  it("a module that does not exist gets no such advice", async () => {
    const dir = mkdtempSync(join(tmpdir(), "molt-i20c-"));
    writeFileSync(join(dir, "entry.ts"), `import x from "./missing.ts";\nexport default { handlers: { x: () => x } };\n`);
    const e = await rejection(bundleService(join(dir, "entry.ts")));
    expect(e.code).toBe("ERR_BUNDLE");
    expect(e.message).not.toContain("Node APIs");
  });
});

describe("swaps refused by where their code lives or what it imports", () => {
  let t: TestKernel;
  let server: AdminServer;
  let port: number;
  const token = "0123456789abcdef".repeat(4);
  let root: string;
  let outside: string;

  beforeAll(async () => {
    t = await startKernel({ services: { probe: { entry: "./probe.ts" } } });
    root = mkdtempSync(join(tmpdir(), "molt-i20c-root-"));
    outside = mkdtempSync(join(tmpdir(), "molt-i20c-outside-"));
    writeFileSync(join(outside, "helper.ts"), "export const helper = 1;\n");
    writeFileSync(join(root, "entry.ts"), `import { helper } from ${JSON.stringify(join(outside, "helper.ts"))};\nexport default { handlers: { x: () => helper } };\n`);
    writeFileSync(join(outside, "entry.ts"), "export default { handlers: { x: () => 1 } };\n");
    server = new AdminServer(t.admin, { port: 0, host: "127.0.0.1", token, allowedRoots: [root] });
    port = (await server.listen()).port;
  });

  afterAll(async () => {
    await server?.close();
    await t?.kernel.stop();
  });

  it("a swap to code importing a Node built-in fails with ERR_SWAP_COMPILE and the same advice", async () => {
    const e = await rejection(t.kernel.swap("probe", NODE_IMPORT));
    expect(e.code).toBe("ERR_SWAP_COMPILE");
    expect(e.message).toContain("no Node APIs");
  });

  it("the bundler's refusal of a file outside the roots names admin.allowedRoots", async () => {
    const e = await rejection(bundleService(join(root, "entry.ts"), { allowedRoots: [root] }));
    expect(e.code).toBe("ERR_PERMISSION");
    expect(e.message).toContain("admin.allowedRoots");
  });

  it("the admin API's refusal of an entry outside the roots names admin.allowedRoots", async () => {
    const res = await fetch(`http://127.0.0.1:${port}/v1/services/probe/swap`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ entry: join(outside, "entry.ts") }),
    });
    expect(res.status).toBe(403);
    const { error } = (await res.json()) as { error: { code: string; message: string } };
    expect(error.code).toBe("ERR_PERMISSION");
    expect(error.message).toContain("admin.allowedRoots");
  });

  it("so does the refusal of an entry inside the roots whose bundle reads a file outside them", async () => {
    const res = await fetch(`http://127.0.0.1:${port}/v1/services/probe/swap`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ entry: join(root, "entry.ts") }),
    });
    expect(res.status).toBe(403);
    const { error } = (await res.json()) as { error: { code: string; message: string } };
    expect(error.code).toBe("ERR_PERMISSION");
    expect(error.message).toContain("admin.allowedRoots");
  });
});
