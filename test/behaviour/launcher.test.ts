// Behaviour: bin/launch.js, which starts the CLI (bin/molt.js) and the soak
// in a child Node with --no-node-snapshot and tsx.

import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FIXTURES, ROOT } from "../support/runtime.ts";

const REPORT = join(FIXTURES, "launcher", "report.ts");

function launch(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, "bin", "launch.js"), ...args], { cwd: ROOT });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("bin/launch.js", () => {
  it("starts the script in a child Node with molt's flags, the caller's flags and its arguments", async () => {
    const { code, stdout } = await launch(["--expose-gc", REPORT, "0", "a", "--b"]);
    expect(code).toBe(0);
    const seen = JSON.parse(stdout) as { execArgv: string[]; args: string[]; launcher: string | null; gc: string };
    expect(seen.execArgv).toContain("--no-node-snapshot");
    expect(seen.gc).toBe("function");
    expect(seen.args).toEqual(["a", "--b"]);
    expect(seen.launcher).toBe("1");
  });

  it("passes on the child's exit code", async () => {
    expect((await launch([REPORT, "7"])).code).toBe(7);
  });

  it("exits 2 with its usage when no script is given", async () => {
    const bad = await launch(["--expose-gc"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/usage/);
  });
});
