// Issue 20, item 6: types that know where services run. sdk/tsconfig.service.json
// type-checks service code against the globals an isolate has and nothing of
// Node: `Buffer`, `process` and `node:*` imports are errors there (they fail
// every request at run time), while a service using every isolate global,
// and molt's own services, pass. tsc runs as a user would run it, on a
// tsconfig that extends the shipped one; errors are checked by their TS code.

import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FIXTURES, ROOT } from "../support/runtime.ts";

const TSC = join(ROOT, "node_modules", "typescript", "bin", "tsc");
const SERVICE_TSCONFIG = join(ROOT, "sdk", "tsconfig.service.json");
const HERE = join(FIXTURES, "i20c-tsc");

/** Runs tsc on a user's tsconfig that extends the shipped one and names `files`. */
function tsc(files: string[]): Promise<{ code: number; errors: { file: string; code: string }[]; output: string }> {
  const dir = mkdtempSync(join(tmpdir(), "molt-i20c-tsc-"));
  const config = join(dir, "tsconfig.json");
  writeFileSync(config, JSON.stringify({ extends: SERVICE_TSCONFIG, include: files }));
  return new Promise((resolve) => {
    execFile(process.execPath, [TSC, "-p", config, "--pretty", "false"], { cwd: dir }, (err, stdout) => {
      const errors = [...stdout.matchAll(/^(.+?)\(\d+,\d+\): error (TS\d+):/gm)].map((m) => ({ file: (m[1] as string).split("/").pop() as string, code: m[2] as string }));
      resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : -1, errors, output: stdout });
    });
  });
}

describe("sdk/tsconfig.service.json", () => {
  it("rejects Buffer, process and node:* imports in service code", async () => {
    const result = await tsc([join(HERE, "uses-buffer.ts"), join(HERE, "uses-process.ts"), join(HERE, "imports-node.ts")]);
    expect(result.code, result.output).not.toBe(0);
    // TS2580/TS2591: "cannot find name" with a hint to install Node's types; TS2307: cannot find module.
    expect(result.errors.find((e) => e.file === "uses-buffer.ts")?.code, result.output).toMatch(/^TS(2304|2580|2591)$/);
    expect(result.errors.find((e) => e.file === "uses-process.ts")?.code, result.output).toMatch(/^TS(2304|2580|2591)$/);
    expect(result.errors.find((e) => e.file === "imports-node.ts")?.code, result.output).toBe("TS2307");
  }, 60_000);

  it("accepts a service using every global an isolate has, restore's ctx included, and molt's own services", async () => {
    const result = await tsc([join(HERE, "clean.ts"), join(ROOT, "services")]);
    expect(result.errors, result.output).toEqual([]);
    expect(result.code, result.output).toBe(0);
  }, 60_000);
});
