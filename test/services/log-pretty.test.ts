import { prettyFactory } from "pino-pretty";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { jsonLog } from "../../core/log.ts";
import { startKernel, type TestKernel } from "../support/kernel.ts";
import { ROOT } from "../support/runtime.ts";

describe("log lines are pino's shape", () => {
  let t: TestKernel;
  beforeAll(async () => {
    t = await startKernel(
      {
        services: {
          log: { entry: "./services/log/index.ts", permissions: { stdout: true } },
          chatty: { entry: "./test/fixtures/probe.ts" },
        },
        log: { service: "log" },
      },
      ROOT,
    );
  });
  afterAll(() => t.kernel.stop());

  it("pino-pretty reads the log service's lines and the kernel's own", async () => {
    const pretty = prettyFactory({ colorize: false });
    await t.kernel.call("chatty", "console", "hello pretty");
    const serviceLine = await vi.waitFor(() => {
      const line = t.out.find((l) => l.includes("hello pretty"));
      expect(line).toBeDefined();
      return line as string;
    }, { timeout: 10_000, interval: 50 });
    expect(pretty(serviceLine)).toMatch(/INFO.*hello pretty/);

    const lines: string[] = [];
    jsonLog("info", { write: (line) => lines.push(line) }).log("warn", "kernel says hi", { service: "x" });
    expect(lines).toHaveLength(1);
    expect(pretty(lines[0] as string)).toMatch(/WARN.*kernel says hi/);
  });
});
