// Builds a kernel from an inline config for tests that drive it directly.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveConfig } from "../../core/config.ts";
import { Kernel } from "../../core/kernel.ts";
import type { MoltConfig } from "../../sdk/config.ts";
import { FIXTURES } from "./runtime.ts";

export interface TestKernel {
  kernel: Kernel;
  /** Everything the kernel printed for services (console fallback, stdout grants). */
  out: string[];
  /** The kernel's own log lines, parsed. */
  logs: Record<string, unknown>[];
}

export async function startKernel(config: MoltConfig, dir: string = FIXTURES): Promise<TestKernel> {
  const out: string[] = [];
  const logs: Record<string, unknown>[] = [];
  // Each kernel gets its own dataDir unless the test names one.
  const withData = { dataDir: mkdtempSync(join(tmpdir(), "molt-data-")), ...config };
  const kernel = new Kernel(resolveConfig(withData, dir), {
    stdout: (text) => out.push(text),
    log: { log: (level, msg, fields) => logs.push({ level, msg, ...fields }) },
  });
  await kernel.start();
  return { kernel, out, logs };
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

export async function eventually<T>(probe: () => Promise<T> | T, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await probe();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
