// Behaviour: the `molt` command line, run as a user runs it (bin/molt.js in
// its own process). Failures are checked by exit status and the error code
// printed on stderr, never by message text.

import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FIXTURES, killLeftovers, runCli, runUntilExit, startRuntime, writeConfig, type RunningRuntime } from "../support/runtime.ts";

const PROBE = join(FIXTURES, "behaviour", "probe.ts");

let runtimes: RunningRuntime[] = [];

afterEach(async () => {
  killLeftovers();
  await Promise.all(runtimes.map((rt) => rt.stop()));
  runtimes = [];
});

async function start(configPath: string): Promise<RunningRuntime> {
  const rt = await startRuntime(configPath);
  runtimes.push(rt);
  return rt;
}

/** Waits until `count` lines matching `pattern` appeared on the runtime's stdout (up to 10 s). */
async function waitForLines(rt: RunningRuntime, pattern: RegExp, count: number): Promise<void> {
  const seen = (): number => rt.stdout().split("\n").filter((line) => pattern.test(line)).length;
  await vi.waitFor(() => expect(seen(), `stdout:\n${rt.stdout()}\nstderr:\n${rt.stderr()}`).toBeGreaterThanOrEqual(count), { timeout: 10_000, interval: 20 });
}

describe("molt help and commands", () => {
  it("`molt --help` exits 0 and prints usage", async () => {
    const result = await runCli(["--help"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/usage/i);
    expect(result.stdout).toMatch(/\brun\b/);
  });

  it("`molt run --help` exits 0 and prints the usage of run", async () => {
    const result = await runCli(["run", "--help"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/usage/i);
    expect(result.stdout).toMatch(/molt run/);
  });

  it("`molt fleet --help` explains rollout and status; without NATS the fleet commands fail with a code", async () => {
    const help = await runCli(["fleet", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/molt fleet rollout <service> <entry> --nats/);
    expect(help.stdout).toMatch(/molt fleet status --nats/);
    const noUrl = await runCli(["fleet", "status"]);
    expect(noUrl.code).toBe(1);
    expect(noUrl.stderr).toMatch(/ERR_USAGE/);
    // Nothing listens on port 1: a clear ERR_FLEET, not a hang or a stack trace.
    const unreachable = await runCli(["fleet", "status", "--nats", "nats://127.0.0.1:1"]);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/ERR_FLEET: cannot connect to NATS/);
    const badCount = await runCli(["fleet", "rollout", "counter", "services/counter/v2.ts", "--nats", "nats://127.0.0.1:1", "--batch", "0"]);
    expect(badCount.code).toBe(1);
    expect(badCount.stderr).toMatch(/ERR_USAGE: --batch must be an integer/);
  });

  it("an unknown command exits non-zero", async () => {
    const result = await runCli(["no-such-command"]);
    expect(result.code).not.toBe(0);
    expect(result.code).not.toBeNull();
  });
});

describe("molt run refuses a broken config", () => {
  it("exits non-zero with ERR_BUNDLE when a service does not compile", async () => {
    const config = writeConfig("");
    const broken = join(dirname(config), "broken.ts");
    writeFileSync(broken, `export default {\n  handlers: {\n    fetch: () => ({ status: 200 ,\n  },\n};\n`);
    writeFileSync(
      config,
      `export default {
  services: {
    good: { entry: ${JSON.stringify(PROBE)} },
    broken: { entry: ${JSON.stringify(broken)} },
  },
  http: { port: 0, service: "good" },
};
`,
    );
    const result = await runUntilExit(["run", config]);
    expect(result.killed, `still running; stdout:\n${result.stdout}`).toBe(false);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("ERR_BUNDLE");
    expect(result.stdout).not.toMatch(/molt: ready/);
  });

  it("exits non-zero with ERR_CONFIG when the config file does not exist", async () => {
    const missing = join(dirname(writeConfig("")), "no-such-config.ts");
    const result = await runUntilExit(["run", missing]);
    expect(result.killed).toBe(false);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("ERR_CONFIG");
  });

  it("exits non-zero with ERR_CONFIG when a binding names a missing service", async () => {
    const config = writeConfig(`export default {
  services: {
    caller: { entry: ${JSON.stringify(PROBE)}, bindings: { kv: "no-such-service" } },
  },
  http: { port: 0, service: "caller" },
};
`);
    const result = await runUntilExit(["run", config]);
    expect(result.killed, `still running; stdout:\n${result.stdout}`).toBe(false);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("ERR_CONFIG");
    expect(result.stdout).not.toMatch(/molt: ready/);
  });
});

describe("molt run stops cleanly on a signal", () => {
  const config = (): string =>
    writeConfig(`export default {
  services: {
    slow: { entry: ${JSON.stringify(PROBE)}, concurrency: 10 },
  },
  http: { port: 0, service: "slow" },
};
`);

  it("SIGTERM lets the requests in flight complete with 200, then exits 0", async () => {
    const rt = await start(config());
    const inFlight = [1, 2, 3].map(async (i) => {
      const res = await fetch(`${rt.url}/slow?ms=300&announce=${i}`);
      return { status: res.status, body: (await res.json()) as unknown };
    });
    // Every request has reached its handler before the signal.
    await waitForLines(rt, /slow-started \d/, 3);
    const code = await rt.stop("SIGTERM");
    const answers = await Promise.all(inFlight);
    expect(answers).toEqual([1, 2, 3].map(() => ({ status: 200, body: { slept: 300 } })));
    expect(code).toBe(0);
  });

  it("SIGINT exits 0", async () => {
    const rt = await start(config());
    const answer = await fetch(`${rt.url}/ok`);
    expect(answer.status).toBe(200);
    await answer.text();
    expect(await rt.stop("SIGINT")).toBe(0);
  });
});
