// Behaviour: kv keeps its entries in storage, so a PUT it acknowledged over
// HTTP is there after the runtime process is killed with SIGKILL and started
// again on the same dataDir (by its keeper, as `molt run` does). Periodic snapshots are a minute apart and none
// exists when the process dies: what comes back is storage's doing.

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { ROOT, startRuntime, writeConfig, type RunningRuntime } from "../support/runtime.ts";

const N = 200;
/** Keys as a user might pick them, some needing percent-encoding. */
const keyOf = (i: number): string => (i % 3 === 0 ? `user ${i}/naïve ✓` : `k-${i}`);
const path = (key: string): string => `/kv/${encodeURIComponent(key)}`;

describe("kv under SIGKILL", () => {
  const running: RunningRuntime[] = [];
  afterAll(async () => {
    for (const rt of running) await rt.stop("SIGKILL");
  });

  it("has every acknowledged PUT and DELETE after the runtime process is killed and started again", async () => {
    const configPath = writeConfig("");
    const dataDir = join(configPath, "..", "data");
    writeFileSync(
      configPath,
      `export default ${JSON.stringify({
        services: {
          gateway: { entry: join(ROOT, "services/gateway/index.ts"), bindings: { kv: "kv" }, config: { routes: { "/kv": "kv" } } },
          kv: { entry: join(ROOT, "services/kv/index.ts") },
        },
        http: { port: 0, service: "gateway" },
        // For admin.json, which names the process that runs the kernel.
        admin: { port: 0 },
        dataDir,
        snapshot: { everyMs: 60_000 },
      })};\n`,
    );
    const start = async (): Promise<RunningRuntime> => {
      const rt = await startRuntime(configPath);
      running.push(rt);
      return rt;
    };
    const runtimePid = (): number => (JSON.parse(readFileSync(join(dataDir, "admin.json"), "utf8")) as { pid: number }).pid;
    /**
     * SIGKILL to the runtime process itself (bin/molt.js is only its
     * launcher, the keeper its parent), then waits for the keeper's new
     * runtime to serve on the same sockets.
     */
    const kill = async (rt: RunningRuntime): Promise<RunningRuntime> => {
      // No snapshot of kv exists to bring anything back.
      expect(existsSync(join(dataDir, "snapshots", "kv.msgpack"))).toBe(false);
      const pid = runtimePid();
      expect(pid).not.toBe(rt.process.pid);
      process.kill(pid, "SIGKILL");
      await vi.waitFor(() => expect(runtimePid()).not.toBe(pid), { timeout: 60_000, interval: 50 });
      return rt;
    };
    const send = async (base: string, method: string, key: string, body?: string): Promise<{ status: number; text: string }> => {
      const res = await fetch(`${base}${path(key)}`, { method, ...(body === undefined ? {} : { body }) });
      return { status: res.status, text: await res.text() };
    };

    // A stream of PUTs, each acknowledged before the next, and the kill right after the last.
    const first = await start();
    for (let i = 0; i < N; i++) expect((await send(first.url, "PUT", keyOf(i), `value ${i}`)).status, keyOf(i)).toBe(200);
    const second = await kill(first);
    const missing: string[] = [];
    for (let i = 0; i < N; i++) {
      const answer = await send(second.url, "GET", keyOf(i));
      if (answer.status !== 200 || answer.text !== `value ${i}`) missing.push(`${keyOf(i)}: ${answer.status} ${answer.text}`);
    }
    expect(missing, `${missing.length} of ${N} acknowledged PUTs lost`).toEqual([]);

    // Overwrites and deletes are as durable as the first writes.
    for (let i = 0; i < 50; i++) expect((await send(second.url, "PUT", keyOf(i), `again ${i}`)).status).toBe(200);
    for (let i = 50; i < 100; i++) expect((await send(second.url, "DELETE", keyOf(i))).status).toBe(200);
    const third = await kill(second);
    const wrong: string[] = [];
    for (let i = 0; i < N; i++) {
      const answer = await send(third.url, "GET", keyOf(i));
      const expected = i < 50 ? { status: 200, text: `again ${i}` } : i < 100 ? { status: 404 } : { status: 200, text: `value ${i}` };
      if (answer.status !== expected.status || (expected.text !== undefined && answer.text !== expected.text)) wrong.push(`${keyOf(i)}: ${answer.status} ${answer.text}`);
    }
    expect(wrong).toEqual([]);
    const listed = JSON.parse(await (await fetch(`${third.url}/kv/`)).text()) as { key: string }[];
    expect(listed).toHaveLength(N - 50);
    // Three runtimes, each a Node process with its isolates: 10-20 s on a busy 2-core machine.
  }, 90_000);
});
