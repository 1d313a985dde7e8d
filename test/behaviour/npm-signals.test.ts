// Behaviour: `npm start` stopped by a signal sent to npm (as a process
// manager, an IDE's stop button or `kill -INT` does; a terminal's Ctrl-C
// signals every process of the group instead) stops the runtime cleanly,
// rather than leaving it serving as an orphan that holds its ports.

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FIXTURES, ROOT } from "../support/runtime.ts";

const PROBE = join(FIXTURES, "behaviour", "probe.ts");

let cleanups: (() => void)[] = [];

afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

describe("npm start and SIGINT", () => {
  it("SIGINT to the npm process drains and stops the runtime, and npm exits", async () => {
    const dir = mkdtempSync(join(tmpdir(), "molt-i20b-npm-"));
    const dataDir = join(dir, "data");
    const config = join(dir, "molt.config.ts");
    writeFileSync(
      config,
      `export default {\n  services: { probe: { entry: ${JSON.stringify(PROBE)} } },\n  http: { port: 0, service: "probe" },\n  admin: { port: 0 },\n  dataDir: ${JSON.stringify(dataDir)},\n};\n`,
    );
    const env = { ...process.env };
    delete env.INIT_CWD;
    const npm: ChildProcess = spawn("npm", ["start", "--", config], { cwd: ROOT, env });
    let stdout = "";
    npm.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
    const npmExited = new Promise((resolve) => npm.once("exit", resolve));
    // Whatever this test leaves running (the runtime, if it did not stop) is killed by its pid.
    cleanups.push(() => {
      if (npm.exitCode === null && npm.signalCode === null) npm.kill("SIGKILL");
      const address = join(dataDir, "admin.json");
      if (!existsSync(address)) return;
      try {
        process.kill((JSON.parse(readFileSync(address, "utf8")) as { pid: number }).pid, "SIGKILL");
      } catch {
        // Gone already.
      }
    });
    await vi.waitFor(() => expect(stdout).toMatch(/molt: ready/), { timeout: 30_000, interval: 50 });
    const url = /http listening on (http:\/\/\S+)/.exec(stdout)?.[1];
    expect((await fetch(`${url}/ok`)).status).toBe(200);

    npm.kill("SIGINT");
    await vi.waitFor(() => expect(stdout).toMatch(/molt: stopped/), { timeout: 15_000, interval: 50 });
    await npmExited;
    await expect(fetch(`${url}/ok`)).rejects.toThrow();
  });
});
