// Runs a hostile act beside a healthy service under continuous load, for the
// suites in test/hostile: the healthy service must answer every call.
import { expect } from "vitest";
import type { TestKernel } from "./kernel.ts";

export interface Load<T> {
  value: T;
  answered: number;
  failed: number;
  errors: string[];
}

/**
 * Runs `hostile` while loops call `healthy.echo` (and, when `beside` is
 * given, `beside.get`, which must answer `beside.value`) back to back;
 * counts the calls answered with the right value and the calls that failed.
 */
export async function underLoad<T>(t: TestKernel, hostile: () => Promise<T>, beside?: { service: string; value: unknown }): Promise<Load<T>> {
  let going = true;
  let answered = 0;
  const errors: string[] = [];
  const loop = async (call: (i: number) => Promise<unknown>, expected: (i: number) => unknown): Promise<void> => {
    for (let i = 0; (going || answered === 0) && errors.length < 100; i++) {
      try {
        const got = await call(i);
        if (got !== expected(i)) throw Object.assign(new Error("wrong answer"), { code: `WRONG_ANSWER ${String(got)} for ${i}` });
        answered++;
      } catch (err) {
        errors.push(String((err as { code?: unknown }).code ?? err));
      }
    }
  };
  const loops = [loop((i) => t.kernel.call("healthy", "echo", i), (i) => i)];
  if (beside !== undefined) loops.push(loop(() => t.kernel.call(beside.service, "get"), () => beside.value));
  let value: T;
  try {
    value = await hostile();
  } finally {
    going = false;
    await Promise.all(loops);
  }
  return { value, answered, failed: errors.length, errors };
}

export function expectHealthy(load: Load<unknown>): void {
  expect(load.errors).toEqual([]);
  expect(load.failed).toBe(0);
  expect(load.answered).toBeGreaterThan(0);
}

export const restarts = (t: TestKernel, name: string): number => t.kernel.status().find((s) => s.name === name)?.restarts ?? -1;
