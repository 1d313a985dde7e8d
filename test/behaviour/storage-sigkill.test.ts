// The output gate under SIGKILL (issue 15): a write acknowledged to an HTTP
// client is on disk. Eight clients write distinct keys through a real
// runtime's HTTP listener; the process that runs the kernel is killed with
// writes in flight; a new runtime on the same dataDir must hold every
// acknowledged key with its value. Unacknowledged writes may or may not be
// there. Snapshots are slow, so nothing but storage can bring a key back.

import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FIXTURES, startRuntime, writeConfig, type RunningRuntime } from "../support/runtime.ts";

const CLIENTS = 8;
/** Acknowledged writes before the kill: about a second or two of load on a busy 2-core machine. */
const ACKNOWLEDGED = 600;

describe("SIGKILL under write load", () => {
  const started: RunningRuntime[] = [];
  afterAll(async () => {
    for (const rt of started) await rt.stop("SIGKILL");
  });

  it("loses no acknowledged write", async () => {
    const configPath = writeConfig("");
    const dataDir = join(configPath, "..", "data");
    writeFileSync(
      configPath,
      `export default ${JSON.stringify({
        services: { store: { entry: join(FIXTURES, "storage/sk-store.ts") } },
        http: { port: 0, service: "store" },
        // Only for admin.json, which names the pid of the process that runs the kernel.
        admin: { port: 0 },
        dataDir,
        snapshot: { everyMs: 60_000 },
      })};\n`,
    );
    const first = await startRuntime(configPath);
    started.push(first);

    // The process that runs the kernel and holds the store: the launcher's child, not the launcher.
    const { pid } = JSON.parse(readFileSync(join(dataDir, "admin.json"), "utf8")) as { pid: number };
    expect(pid).not.toBe(first.process.pid);

    // Killed the moment the ACKNOWLEDGED-th write is acknowledged, with the
    // other clients' writes under way: the writes acknowledged last are the
    // ones a reply sent ahead of its commit would lose.
    const acknowledged = new Map<string, string>();
    let inFlight = 0;
    let inFlightAtKill = -1;
    let gone = false;
    const kill = (): void => {
      if (inFlightAtKill >= 0) return;
      inFlightAtKill = inFlight;
      process.kill(pid, "SIGKILL");
    };
    const loadStarted = performance.now();
    const clients = Array.from({ length: CLIENTS }, async (_, c) => {
      for (let n = 0; inFlightAtKill < 0 && !gone; n++) {
        const key = `c${c}/${String(n).padStart(6, "0")}`;
        // About 2 KB each, so that each group commit writes many pages and takes
        // long enough that a reply sent ahead of it would be caught by the kill.
        const value = `${key}=${"v".repeat(2000 + (n % 50))}`;
        inFlight++;
        try {
          const res = await fetch(`${first.url}/w/${encodeURIComponent(key)}`, { method: "POST", body: value });
          await res.arrayBuffer();
          inFlight--;
          if (res.status >= 200 && res.status < 300) acknowledged.set(key, value);
          if (acknowledged.size >= ACKNOWLEDGED) kill();
        } catch {
          // The runtime is gone: this write was never acknowledged.
          inFlight--;
          gone = true;
        }
      }
    });
    await Promise.all(clients);
    const loadMs = Math.round(performance.now() - loadStarted);
    await first.stop();
    // The runtime lived until the kill, which came with writes under way, not between them.
    expect(inFlightAtKill).toBeGreaterThan(0);

    const second = await startRuntime(configPath);
    started.push(second);
    const all = (await (await fetch(`${second.url}/all`)).json()) as Record<string, string>;
    const lost = [...acknowledged].filter(([key, value]) => all[key] !== value).map(([key]) => key);
    console.log(`after SIGKILL: ${acknowledged.size} acknowledged writes, ${Object.keys(all).length} stored, ${lost.length} lost, ${inFlightAtKill} in flight at the kill, after ${loadMs} ms of load`);
    expect(lost).toEqual([]);
    // One read the way a client reads a key, to check the read path too.
    const [someKey, someValue] = [...acknowledged].at(-1) as [string, string];
    expect(await (await fetch(`${second.url}/r/${encodeURIComponent(someKey)}`)).text()).toBe(someValue);
    // Two runtimes and the load between them: 20-30 s on a busy 2-core machine.
  }, 90_000);
});
