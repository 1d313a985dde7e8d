// A handler that throws: the operator sees the failure in the kernel's log
// (service, version, method, stack), under a per-service budget; the HTTP
// client sees only the code and a generic message unless the config says
// `http.exposeErrors: "full"`.

import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { FIXTURES, startRuntime, writeConfig, type RunningRuntime } from "../support/runtime.ts";

const ANSWERS = join(FIXTURES, "i20a-answers.ts");

function config(http: Record<string, unknown>): string {
  return writeConfig(`export default ${JSON.stringify({ services: { answers: { entry: ANSWERS } }, http: { port: 0, service: "answers", ...http } })};\n`);
}

/** The kernel's log lines (pino JSON on stderr) with message `msg`. */
function logLines(rt: RunningRuntime, msg: string): Record<string, unknown>[] {
  return rt
    .stderr()
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => line.msg === msg);
}

describe("a handler that throws", () => {
  let rt: RunningRuntime;
  beforeAll(async () => {
    rt = await startRuntime(config({}));
  });
  afterAll(() => rt?.stop());

  it("answers the client with the code and a generic message only, and logs service, version, method and stack on the server", async () => {
    const res = await fetch(`${rt.url}/throw`);
    const text = await res.text();
    expect(res.status).toBe(500);
    const body = JSON.parse(text) as { error: Record<string, unknown> };
    expect(Object.keys(body.error).sort()).toEqual(["code", "message", "service"]);
    expect(body.error).toMatchObject({ code: "ERR_HANDLER", service: "answers" });
    // Nothing of the service's own: its error text, its version, its stack.
    expect(text).not.toContain("kaboom");
    expect(text).not.toContain("1.2.3");

    const failure = await vi.waitFor(() => {
      const [line] = logLines(rt, "handler failed");
      expect(line).toBeDefined();
      return line as Record<string, unknown>;
    }, { timeout: 10_000, interval: 50 });
    expect(failure).toMatchObject({ level: 50, service: "answers", version: "1.2.3", method: "fetch", code: "ERR_HANDLER", versionId: expect.stringMatching(/^[0-9a-f]{12}$/) });
    // The stack as the service's isolate saw it: the error, then frames in the service's bundle.
    expect(failure.stack).toEqual(expect.stringContaining("kaboom"));
    expect(failure.stack).toMatch(/\n\s+at .*molt:\/\/answers\//);
  });

  it("logs a flood of failures within the service's budget, and counts every one it did not log", async () => {
    const before = logLines(rt, "handler failed").length;
    // Far past the budget's burst (60 lines, then 20 a second), in batches of 20 at once.
    const failures = 300;
    for (let i = 0; i < failures; i += 20) {
      const statuses = await Promise.all(Array.from({ length: 20 }, async () => (await fetch(`${rt.url}/throw`)).status));
      expect(statuses.every((status) => status === 500)).toBe(true);
    }
    await vi.waitFor(
      () => {
        const logged = logLines(rt, "handler failed").length - before;
        const dropped = logLines(rt, "handler failures not logged").reduce((sum, line) => sum + (line.dropped as number), 0);
        expect({ all: logged + dropped, someDropped: dropped > 0 }).toEqual({ all: failures, someDropped: true });
      },
      { timeout: 5000, interval: 100 },
    );
  });
});

describe('http.exposeErrors: "full"', () => {
  let rt: RunningRuntime;
  beforeAll(async () => {
    rt = await startRuntime(config({ exposeErrors: "full" }));
  });
  afterAll(() => rt?.stop());

  it("answers the client with the error as the kernel holds it: its message and version", async () => {
    const res = await fetch(`${rt.url}/throw`);
    const body = (await res.json()) as { error: Record<string, unknown> };
    expect(res.status).toBe(500);
    expect(body.error).toMatchObject({ code: "ERR_HANDLER", service: "answers", message: expect.stringContaining("kaboom"), version: expect.any(String) });
    expect(body.error.stack).toBeUndefined();
  });
});
