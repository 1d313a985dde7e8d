// Crash safety by default: with no `snapshot` in the config, a runtime
// killed with SIGKILL comes back with what it was told before its last
// periodic snapshot, losing at most one interval.

import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { ROOT, startRuntime, writeConfig, type RunningRuntime } from "../support/runtime.ts";

describe("snapshots by default", () => {
  const running: RunningRuntime[] = [];
  afterAll(async () => {
    for (const rt of running) await rt.stop("SIGKILL");
  });

  it("keeps a write made before the last periodic snapshot across a kill -9, with no snapshot setting in the config", async () => {
    const configPath = writeConfig("");
    const dir = join(configPath, "..");
    const dataDir = join(dir, "data");
    writeFileSync(
      configPath,
      `export default ${JSON.stringify({
        services: { counter: { entry: join(ROOT, "services/counter/index.ts") } },
        http: { port: 0, service: "counter" },
        admin: { port: 0 },
        dataDir,
      })};\n`,
    );
    const first = await startRuntime(configPath);
    running.push(first);
    for (let i = 0; i < 3; i++) expect((await fetch(`${first.url}/incr`, { method: "POST" })).status).toBe(200);

    // A snapshot is written by atomic rename, so each one is a new file. The
    // first to land after the writes may have dumped the state before the
    // last of them was answered; the second one was dumped after it.
    const snapshot = join(dataDir, "snapshots", "counter.msgpack");
    const fileId = (): string => {
      try {
        const s = statSync(snapshot);
        return `${s.ino}:${s.mtimeMs}`;
      } catch {
        return "none";
      }
    };
    const seen = new Set([fileId()]);
    await vi.waitFor(
      () => {
        seen.add(fileId());
        expect(seen.size).toBeGreaterThanOrEqual(3);
      },
      { timeout: 20_000, interval: 50 },
    );

    const { pid } = JSON.parse(readFileSync(join(dataDir, "admin.json"), "utf8")) as { pid: number };
    process.kill(pid, "SIGKILL");
    await first.stop();

    const second = await startRuntime(configPath);
    running.push(second);
    expect((await (await fetch(`${second.url}/`)).text()).trim()).toBe("3");
  }, 60_000);
});
