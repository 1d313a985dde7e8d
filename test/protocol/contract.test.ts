// protocol/ is the one contract between the guest and the host, and between
// the runtime and whoever talks to its admin API. Each test here fails when
// the two sides disagree: a code the guest can give that the contract does
// not list, a control op whose failure reaches the host under another code
// (in this process or through a cell), a MoltError that loses its code or
// its bounds on the way out of an isolate, an admin answer carrying fields
// the contract does not name. (That the host's values have the contract's
// types is checked at compile time: core/admin.ts sends each answer as its
// protocol/admin.ts type, so `npm run typecheck` fails on a mismatch.)

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminServer } from "../../core/admin.ts";
import { bundleRuntime, bundleService } from "../../core/bundle.ts";
import { bootCell } from "../../core/cell-host.ts";
import { resolveConfig, type ResolvedService } from "../../core/config.ts";
import type { BootSpec, Instance } from "../../core/instance.ts";
import { bootIsolate } from "../../core/isolate-host.ts";
import { decodeReply, encodeRequest } from "../../core/wire.ts";
import { AdminPath, type ServiceStatus, type SwapProgress, type SwapReport, type VersionRecord } from "../../protocol/admin.ts";
import { CONTROL_FAILURE, type LifecycleOp } from "../../protocol/control.ts";
import { ErrorCode, MAX_MESSAGE_CHARS, MoltError } from "../../protocol/errors.ts";
import { startKernel, type TestKernel } from "../support/kernel.ts";
import { aloneBridge } from "../support/bridge.ts";
import { FIXTURES } from "../support/runtime.ts";

const CODES: ReadonlySet<string> = new Set(Object.values(ErrorCode));

/** What a failed promise was rejected with: its code, or a test failure if it resolved. */
async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    return (err as { code: string }).code;
  }
  throw new Error("expected a rejection");
}

const bridge = aloneBridge;

function contractService(): ResolvedService {
  const config = resolveConfig({ dataDir: mkdtempSync(join(tmpdir(), "molt-contract-")), services: { contract: { entry: "./contract.ts" } } }, FIXTURES);
  const service = config.services.contract;
  if (service === undefined) throw new Error("the config lost its service");
  return service;
}

async function contractSpec(): Promise<BootSpec> {
  const bundle = await bundleService(join(FIXTURES, "contract.ts"));
  return { service: contractService(), code: bundle.code, versionId: bundle.hash, env: {} };
}

async function call(instance: Instance, method: string, payload?: unknown): Promise<unknown> {
  return decodeReply((await instance.deliver("call", encodeRequest(method, payload))) as Uint8Array);
}

describe("error codes", () => {
  it("every code-shaped string in the guest runtime's bundle is a code of protocol/errors.ts, none built at run time", async () => {
    const runtime = await bundleRuntime();
    // A code built from pieces (`ERR_${op}_FAILED`) shows up as a bare "ERR_", which no list can check.
    const unknown = [...new Set(runtime.match(/ERR_[A-Z0-9_]*/g) ?? [])].filter((code) => !CODES.has(code));
    expect(unknown).toEqual([]);
  });

  it("a MoltError the guest runtime builds reaches the host as a MoltError with its code, service and version", async () => {
    const spec = await contractSpec();
    const instance = await bootIsolate(spec, bridge, await bundleRuntime());
    try {
      await instance.init();
      let caught: unknown;
      try {
        await call(instance, "denied");
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(MoltError);
      expect(caught).toMatchObject({ code: ErrorCode.PERMISSION, service: "contract", version: spec.versionId });
    } finally {
      instance.dispose();
    }
  });

  it("inside an isolate, a MoltError is the contract's class: named MoltError, coded, and bounded like the host's", async () => {
    const instance = await bootIsolate(await contractSpec(), bridge, await bundleRuntime());
    try {
      await instance.init();
      const seen = (await call(instance, "unbound", "b".repeat(3 * MAX_MESSAGE_CHARS))) as { name: string; code: string; length: number };
      expect(seen.name).toBe("MoltError");
      expect(seen.code).toBe(ErrorCode.NO_BINDING);
      expect(seen.length).toBeLessThan(MAX_MESSAGE_CHARS + 100);
    } finally {
      instance.dispose();
    }
  });

  it("a module that is not a service fails activate with the code the guest gave it", async () => {
    const spec: BootSpec = { ...(await contractSpec()), code: "var __molt_module = { default: 42 };" };
    expect(await codeOf(bootIsolate(spec, bridge, await bundleRuntime()))).toBe(ErrorCode.BAD_SERVICE);
  });
});

/**
 * Each lifecycle op with a hook that throws a plain Error: the code the host
 * sees is the one protocol/control.ts names for the step that failed.
 * `quiesce` and `resume` are two steps each, and name the one that failed.
 */
const LIFECYCLE: { op: LifecycleOp; hook: string; expected: string; run: (instance: Instance, dump: Uint8Array) => Promise<unknown> }[] = [
  { op: "init", hook: "init", expected: CONTROL_FAILURE.init, run: (i) => i.init() },
  { op: "start", hook: "start", expected: CONTROL_FAILURE.start, run: (i) => i.start() },
  { op: "stop", hook: "stop", expected: CONTROL_FAILURE.stop, run: (i) => i.stop() },
  { op: "dump", hook: "dump", expected: CONTROL_FAILURE.dump, run: (i) => i.dump() },
  { op: "restore", hook: "restore", expected: CONTROL_FAILURE.restore, run: (i, dump) => i.restore(dump, 1) },
  { op: "quiesce", hook: "stop", expected: CONTROL_FAILURE.stop, run: (i) => i.dump({ stop: true }) },
  { op: "quiesce", hook: "dump", expected: CONTROL_FAILURE.dump, run: (i) => i.dump({ stop: true }) },
  { op: "resume", hook: "restore", expected: CONTROL_FAILURE.restore, run: (i, dump) => i.restore(dump, 1, { start: true }) },
  { op: "resume", hook: "start", expected: CONTROL_FAILURE.start, run: (i, dump) => i.restore(dump, 1, { start: true }) },
  { op: "rehearse-quiesce", hook: "dump", expected: CONTROL_FAILURE.dump, run: (i) => i.dump({ rehearse: true }) },
  { op: "rehearse-resume", hook: "restore", expected: CONTROL_FAILURE.restore, run: (i, dump) => i.restore(dump, 1, { rehearse: true }) },
];

describe.each([
  { host: "an isolate in this process", boot: bootIsolate },
  { host: "a cell", boot: bootCell },
])("control ops in $host", ({ boot }) => {
  let instance: Instance;
  let dump: Uint8Array;
  beforeAll(async () => {
    instance = await boot(await contractSpec(), bridge, await bundleRuntime());
    await instance.init();
    await instance.start();
    dump = await instance.dump();
  }, 30_000);
  afterAll(() => instance?.dispose());

  it("names every lifecycle op's failure code, each one in protocol/errors.ts", () => {
    for (const code of Object.values(CONTROL_FAILURE)) expect(CODES.has(code)).toBe(true);
  });

  it.each(LIFECYCLE)("$op with a failing $hook hook reaches the host as $expected", async ({ hook, expected, run }) => {
    await call(instance, "failNext", { op: hook });
    expect(await codeOf(run(instance, dump))).toBe(expected);
  });

  it("runs no stop or start hook in a rehearsal: one told to fail is still waiting for the real op", async () => {
    await call(instance, "failNext", { op: "stop" });
    await instance.dump({ rehearse: true });
    expect(await codeOf(instance.stop())).toBe(CONTROL_FAILURE.stop);
    await call(instance, "failNext", { op: "start" });
    await instance.restore(dump, 1, { rehearse: true });
    expect(await codeOf(instance.start())).toBe(CONTROL_FAILURE.start);
  });

  it("keeps a hook's own code for an op of one step", async () => {
    await call(instance, "failNext", { op: "stop", code: "ERR_MINE" });
    expect(await codeOf(instance.stop())).toBe("ERR_MINE");
  });
});

/** Each field of T, and whether an answer must carry it: written out so that the compiler checks the list against the type. */
type Fields<T> = { [K in keyof T]-?: object extends Pick<T, K> ? "optional" : "required" };

/** The answer carries every required field of the contract's type, and none the type does not name. */
function expectFields<T>(answer: unknown, fields: Fields<T>): void {
  const named = Object.keys(fields);
  const carried = Object.keys(answer as object);
  expect(carried.filter((key) => !named.includes(key))).toEqual([]);
  expect(named.filter((key) => fields[key as keyof T] === "required" && !carried.includes(key))).toEqual([]);
}

const VERSION_RECORD: Fields<VersionRecord> = {
  fixes: "optional",
  seq: "required",
  service: "required",
  version: "required",
  semver: "required",
  stateVersion: "required",
  entry: "required",
  parent: "required",
  via: "required",
  requestedAt: "required",
  startedAt: "required",
  replacedAt: "required",
  outcome: "required",
  code: "optional",
  message: "optional",
  blackoutMs: "optional",
  phases: "optional",
  freshState: "optional",
  verify: "optional",
  shadow: "optional",
};

describe("the admin API's answers", () => {
  let t: TestKernel;
  let server: AdminServer;
  let base: string;
  const token = "0123456789abcdef".repeat(4);

  beforeAll(async () => {
    t = await startKernel({ services: { contract: { entry: "./contract.ts" } } });
    server = new AdminServer(t.admin, { port: 0, host: "127.0.0.1", token, allowedRoots: [FIXTURES] });
    base = `http://127.0.0.1:${(await server.listen()).port}`;
  });
  afterAll(async () => {
    await server?.close();
    await t?.kernel.stop();
  });

  it("carry exactly the fields protocol/admin.ts names: status, history, and a swap's progress and report", async () => {
    const swap = await fetch(`${base}${AdminPath.swap("contract")}`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ entry: join(FIXTURES, "counter.ts") }),
    });
    const lines = (await swap.text())
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as SwapProgress);
    expect(lines.map((line) => line.event)).toContain("report");
    for (const line of lines) {
      if (line.event === "phase") expectFields<typeof line>(line, { event: "required", phase: "required", ms: "required" });
      if (line.event === "report") {
        expectFields<SwapReport>(line.report, {
          service: "required",
          outcome: "required",
          via: "required",
          from: "required",
          to: "required",
          blackoutMs: "required",
          phases: "required",
          error: "optional",
          freshState: "optional",
          stopError: "optional",
          rollbackBlackoutMs: "optional",
          verify: "optional",
          shadow: "optional",
        });
      }
    }

    const { services } = (await (await fetch(`${base}${AdminPath.status}`)).json()) as { services: ServiceStatus[] };
    expect(services).toHaveLength(1);
    expectFields<ServiceStatus>(services[0], {
      fixes: "required",
      name: "required",
      state: "required",
      version: "required",
      semver: "required",
      stateVersion: "required",
      uptimeMs: "required",
      queueDepth: "required",
      inFlight: "required",
      paused: "required",
      restarts: "required",
      isolation: "required",
      error: "required",
      lastSwap: "required",
    });
    expectFields<VersionRecord>(services[0]?.lastSwap, VERSION_RECORD);

    const history = (await (await fetch(`${base}${AdminPath.history("contract")}`)).json()) as { service: string; records: VersionRecord[] };
    expect(Object.keys(history).sort()).toEqual(["records", "service"]);
    expect(history.records.length).toBeGreaterThan(1);
    for (const record of history.records) expectFields<VersionRecord>(record, VERSION_RECORD);
  });
});
