// Behaviour: bin/launch.js, which starts the CLI (bin/molt.js) and the soak
// in a child Node with --no-node-snapshot, tsx and molt's allocator settings.

import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
// @ts-expect-error: plain JavaScript launcher, no declarations.
import { MMAP_THRESHOLD, mallocEnv } from "../../bin/launch.js";
import { FIXTURES, ROOT } from "../support/runtime.ts";

const REPORT = join(FIXTURES, "launcher", "report.ts");

function launch(args: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const merged = { ...process.env, ...env };
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete merged[k];
    const child = spawn(process.execPath, [join(ROOT, "bin", "launch.js"), ...args], { cwd: ROOT, env: merged });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("mallocEnv", () => {
  it("leaves glibc's defaults by default and with MOLT_MALLOC=system", () => {
    expect(mallocEnv({})).toEqual({});
    expect(mallocEnv({ MOLT_MALLOC: "system" })).toEqual({});
  });

  it("fixes glibc's mmap threshold with MOLT_MALLOC=compact", () => {
    expect(mallocEnv({ MOLT_MALLOC: "compact" })).toEqual({ GLIBC_TUNABLES: MMAP_THRESHOLD });
  });

  it("adds to the user's tunables and keeps a threshold the user chose", () => {
    const env = { MOLT_MALLOC: "compact" };
    expect(mallocEnv({ ...env, GLIBC_TUNABLES: "glibc.malloc.arena_max=2" })).toEqual({ GLIBC_TUNABLES: `glibc.malloc.arena_max=2:${MMAP_THRESHOLD}` });
    expect(mallocEnv({ ...env, GLIBC_TUNABLES: "glibc.malloc.mmap_threshold=65536" })).toEqual({});
    expect(mallocEnv({ ...env, GLIBC_TUNABLES: "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=65536" })).toEqual({});
  });

  it("refuses any other MOLT_MALLOC", () => {
    expect(() => mallocEnv({ MOLT_MALLOC: "jemalloc" })).toThrow(/MOLT_MALLOC/);
  });
});

describe("bin/launch.js", () => {
  it("starts the script in a child Node with molt's flags, the caller's flags, its arguments and the allocator asked for", async () => {
    const { code, stdout } = await launch(["--expose-gc", REPORT, "0", "a", "--b"], { GLIBC_TUNABLES: undefined, MOLT_MALLOC: "compact" });
    expect(code).toBe(0);
    const seen = JSON.parse(stdout) as { execArgv: string[]; args: string[]; tunables: string | null; launcher: string | null; gc: string };
    expect(seen.execArgv).toContain("--no-node-snapshot");
    expect(seen.gc).toBe("function");
    expect(seen.args).toEqual(["a", "--b"]);
    expect(seen.tunables).toBe(MMAP_THRESHOLD);
    expect(seen.launcher).toBe("1");
  });

  it("passes on the child's exit code", async () => {
    expect((await launch([REPORT, "7"])).code).toBe(7);
  });

  it("gives glibc's defaults unless asked", async () => {
    const { code, stdout } = await launch([REPORT, "0"], { GLIBC_TUNABLES: undefined, MOLT_MALLOC: undefined });
    expect(code).toBe(0);
    expect((JSON.parse(stdout) as { tunables: string | null }).tunables).toBeNull();
  });

  it("exits 2 with ERR_USAGE on an unknown MOLT_MALLOC, and without a script", async () => {
    const bad = await launch([REPORT, "0"], { MOLT_MALLOC: "fast" });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/ERR_USAGE/);
    expect(bad.stdout).toBe("");
    expect((await launch([])).code).toBe(2);
  });
});
