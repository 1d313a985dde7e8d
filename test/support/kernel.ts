// Builds a kernel from an inline config for tests that drive it directly.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, vi } from "vitest";
import { adminRuntime, type AdminRuntime } from "../../core/admin.ts";
import { resolveConfig } from "../../core/config.ts";
import { Kernel } from "../../core/kernel.ts";
import { Live } from "../../core/live.ts";
import { localBoot } from "../../core/local-boot.ts";
import { lmdbStorage } from "../../core/lmdb-store.ts";
import { Metrics } from "../../core/metrics.ts";
import type { MoltConfig } from "../../sdk/config.ts";
import { FIXTURES } from "./runtime.ts";

export interface TestKernel {
  kernel: Kernel;
  /** The kernel's metrics and live view, watching it as in `molt run`. */
  metrics: Metrics;
  live: Live;
  /** What an AdminServer is given in `molt run`. */
  admin: AdminRuntime;
  /** Everything the kernel printed for services (console fallback, stdout grants). */
  out: string[];
  /** The kernel's own log lines, parsed. */
  logs: Record<string, unknown>[];
}

export async function startKernel(config: MoltConfig, dir: string = FIXTURES): Promise<TestKernel> {
  const out: string[] = [];
  const logs: Record<string, unknown>[] = [];
  // Each kernel gets its own dataDir unless the test names one.
  // Periodic snapshots are off unless a test asks for them, so that what a restart resumes from is the test's own doing.
  const withData = { dataDir: mkdtempSync(join(tmpdir(), "molt-data-")), snapshot: { everyMs: 0 }, ...config };
  const resolved = resolveConfig(withData, dir);
  const log = { log: (level: string, msg: string, fields?: Record<string, unknown>) => logs.push({ level, msg, ...fields }) };
  const kernel = new Kernel(resolved, { boot: localBoot, stdout: (text) => out.push(text), log, storage: lmdbStorage(resolved.dataDir, log) });
  const metrics = new Metrics(() => kernel.loads());
  const live = new Live(() => kernel.status());
  kernel.observe(metrics.observer());
  kernel.observe(live.observer());
  await kernel.start();
  return { kernel, metrics, live, admin: adminRuntime(kernel, metrics, live), out, logs };
}

/**
 * A kernel of its own for each test of the enclosing describe, started
 * before the test and stopped after it, so that no test depends on what
 * another left behind. Call the returned function inside a test.
 */
export function kernelPerTest(config: MoltConfig, dir: string = FIXTURES): () => TestKernel {
  let current: TestKernel | undefined;
  beforeEach(async () => {
    current = await startKernel(config, dir);
  });
  afterEach(async () => {
    await current?.kernel.stop();
    current = undefined;
  });
  return () => {
    if (current === undefined) throw new Error("kernelPerTest: the kernel exists only inside a test");
    return current;
  };
}

/** Resolves with the error a promise rejects with; fails if it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<{ code: string; message: string; service?: string }> {
  let value: unknown;
  try {
    value = await promise;
  } catch (err) {
    return err as { code: string; message: string };
  }
  throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
}

/**
 * Retries `probe` until it returns without throwing, as `vi.waitFor` does,
 * with a default deadline that fits a kernel restarting a service (5 s
 * rather than waitFor's 1 s).
 */
export function eventually<T>(probe: () => Promise<T> | T, timeoutMs = 5000): Promise<T> {
  return vi.waitFor(probe, { timeout: timeoutMs, interval: 50 });
}
