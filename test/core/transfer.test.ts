// The transfer and its drivers (the swap, probation's way back), driven with
// scripted instances so that each hazard is reached deterministically: a
// drain that times out, a start that fails, a restart in the middle of a
// blackout.

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Packr } from "msgpackr";
import { describe, expect, it, vi } from "vitest";
import type { Bundle } from "../../core/bundle.ts";
import { resolveConfig } from "../../core/config.ts";
import { MoltError } from "../../core/errors.ts";
import type { Instance, ServiceMeta } from "../../core/instance.ts";
import { Inventory, Via } from "../../core/inventory.ts";
import type { KernelLog } from "../../core/log.ts";
import { Slot } from "../../core/slot.ts";
import { Supervisor, type SupervisorOptions } from "../../core/supervisor.ts";
import { swap, type SwapRequest } from "../../core/swap.ts";
import type { State } from "../../core/transfer.ts";
import { encode, encodeErrorReply, encodeOkReply, encodeRequest } from "../../core/wire.ts";
import { DUMP_VERSION } from "../../protocol/wire.ts";
import { startKernel } from "../support/kernel.ts";
import { FIXTURES } from "../support/runtime.ts";

const packr = new Packr({ structuredClone: true });
const quiet: KernelLog = { log: () => undefined };

interface Script {
  /** What a message does: its reply, or a promise of it (one that never settles holds the message in flight). */
  deliver?: (instance: Fake) => Promise<Uint8Array>;
  restore?: () => Promise<void>;
  start?: () => Promise<void>;
}

/** An instance whose every step is scripted, counting what was done to it. */
class Fake implements Instance {
  readonly service = "svc";
  readonly versionId: string;
  readonly meta: ServiceMeta;
  disposed = false;
  /** start hooks run: by start(), or by a restore with `start`. */
  starts = 0;
  stopped = false;
  state = 0;
  readonly delivered: number[] = [];
  readonly #script: Script;

  constructor(version: string, script: Script = {}) {
    this.versionId = version;
    this.meta = { semver: version, stateVersion: 1, restoresFrom: null, hasRestore: true, handlers: ["incr"], concurrency: null };
    this.#script = script;
  }

  async init(): Promise<void> {}

  async restore(dump: Uint8Array, _from: number, options?: { start?: boolean }): Promise<void> {
    await this.#script.restore?.();
    this.state = (packr.unpack(dump) as [number, number, number])[2];
    if (options?.start === true) await this.start();
  }

  async start(): Promise<void> {
    await this.#script.start?.();
    this.stopped = false;
    this.starts++;
  }

  async deliver(): Promise<Uint8Array> {
    if (this.stopped) throw new Error(`${this.versionId} got a message while stopped`);
    this.delivered.push(++this.state);
    return this.#script.deliver === undefined ? encodeOkReply(this.state) : this.#script.deliver(this);
  }

  async stop(): Promise<void> {
    this.stopped = true;
  }

  async dump(options?: { stop?: boolean }): Promise<Uint8Array> {
    if (options?.stop === true) this.stopped = true;
    return new Uint8Array(packr.pack([DUMP_VERSION, 1, this.state]));
  }

  dispose(): void {
    this.disposed = true;
  }
}

const never = new Promise<Uint8Array>(() => undefined);
const failing = (instance: Fake): Promise<Uint8Array> =>
  Promise.resolve(encodeErrorReply(new MoltError("ERR_BROKEN", "v2 is broken", { service: instance.service })));

function bundle(version: string): Bundle {
  return { code: "", hash: version, entry: `/services/${version}.ts` };
}

/** A slot with `old` live behind its mailbox, as the supervisor leaves it. */
function slotWith(old: Fake, concurrency = 2): Slot {
  const spec = resolveConfig({ services: { svc: { entry: "./probe.ts", concurrency } } }, FIXTURES).services.svc;
  if (spec === undefined) throw new Error("no spec");
  const slot = new Slot(spec);
  slot.attach(old, bundle(old.versionId));
  return slot;
}

function request(slot: Slot, next: Fake, settings: Partial<SwapRequest["settings"]> = {}, lost: SwapRequest["lost"] = () => undefined): SwapRequest {
  return {
    slot,
    bundle: bundle(next.versionId),
    via: Via.SWAP,
    boot: async () => next,
    inventory: Inventory.open(mkdtempSync(join(tmpdir(), "molt-transfer-")), quiet),
    log: quiet,
    settings: { drainTimeoutMs: 200, blackoutTimeoutMs: 1000, probationMs: 0, probationMaxErrors: 0, ...settings },
    lost,
    settled: async () => undefined,
  };
}

const call = (slot: Slot): Promise<Uint8Array | undefined> => slot.deliver("call", encodeRequest("incr", null));

describe("the transfer", () => {
  it("moves the state and the mailbox to the new instance, and measures the blackout", async () => {
    const old = new Fake("v1");
    const slot = slotWith(old);
    await call(slot);
    await call(slot);
    const next = new Fake("v2");
    const report = await swap(request(slot, next));
    expect(report.outcome).toBe("committed");
    expect(typeof report.blackoutMs).toBe("number");
    expect(slot.instance).toBe(next);
    expect(next.state).toBe(2);
    await call(slot);
    expect(next.delivered).toEqual([3]);
    expect(old.disposed).toBe(true);
  });

  it("probation's way back after a drain timeout leaves the new version running, its start hook run once", async () => {
    const old = new Fake("v1");
    const slot = slotWith(old);
    // The first message under v2 never finishes (the drain of the way back times out); the second fails.
    let n = 0;
    const next = new Fake("v2", { deliver: (self) => (++n === 1 ? never : failing(self)) });
    const swapping = swap(request(slot, next, { probationMs: 5000, probationMaxErrors: 0, drainTimeoutMs: 50 }));
    await vi.waitFor(() => expect(slot.instance).toBe(next));
    void call(slot);
    void call(slot);
    const report = await swapping;
    expect(report.outcome).toBe("unhealthy");
    expect(slot.instance).toBe(next);
    expect(next.starts).toBe(1);
    expect(old.disposed).toBe(true);
  });

  it("measures probation's way back as a blackout, in the report and in the rollback's record", async () => {
    const old = new Fake("v1");
    const slot = slotWith(old);
    const next = new Fake("v2", { deliver: failing });
    const req = request(slot, next, { probationMs: 5000, probationMaxErrors: 0 });
    const swapping = swap(req);
    await vi.waitFor(() => expect(slot.instance).toBe(next));
    await call(slot);
    await call(slot);
    const report = await swapping;
    expect(report.outcome).toBe("rolled-back");
    expect(slot.instance).toBe(old);
    expect(report.rollbackBlackoutMs).toEqual(expect.any(Number));
    const back = req.inventory.history("svc").at(-1);
    expect(back?.via).toBe(Via.ROLLBACK);
    expect(back?.blackoutMs).toEqual(expect.any(Number));
  });

  it("hands an old instance that cannot start again over to be replaced, with the state it dumped, instead of leaving it stopped behind the mailbox", async () => {
    const old = new Fake("v1", { start: () => Promise.reject(new MoltError("ERR_START_FAILED", "start threw")) });
    const slot = slotWith(old);
    await call(slot);
    const next = new Fake("v2", { restore: () => Promise.reject(new MoltError("ERR_RESTORE_FAILED", "restore threw")) });
    const lost: [MoltError, State | undefined][] = [];
    const req = request(slot, next, {}, (reason, state) => lost.push([reason, state]));
    // The rehearsal would fail the swap before anything is stopped: let it pass, and fail the real restore.
    let restores = 0;
    const restore = next.restore.bind(next);
    next.restore = (dump, from, options) => (++restores === 1 ? Promise.resolve() : restore(dump, from, options));
    const report = await swap(req);
    expect(report.outcome).toBe("rolled-back");
    expect(report.error?.code).toBe("ERR_SWAP_RESTORE");
    expect(old.disposed).toBe(true);
    expect(next.disposed).toBe(true);
    expect(lost).toHaveLength(1);
    expect(lost[0]?.[0].code).toBe("ERR_START_FAILED");
    expect(lost[0]?.[1]?.dump).toBeInstanceOf(Uint8Array);
    expect((packr.unpack(lost[0]?.[1]?.dump as Uint8Array) as unknown[])[2]).toBe(1);
  });

  it("keeps the mailbox held through the blackout even when a restart brings an instance up meanwhile", async () => {
    const old = new Fake("v1");
    const slot = slotWith(old);
    let letRestoreGo: () => void = () => undefined;
    let restores = 0;
    const next = new Fake("v2", {
      // The rehearsal passes; the real restore waits, holding the blackout open.
      restore: () => (++restores === 1 ? Promise.resolve() : new Promise<void>((resolve) => (letRestoreGo = resolve))),
    });
    const swapping = swap(request(slot, next));
    await vi.waitFor(() => expect(restores).toBe(2));
    expect(slot.mailbox.paused).toBe(true);
    // What the supervisor does to bring an instance up (after a death, or on request).
    const supervisor = new Supervisor({ snapshots: { read: () => undefined } } as unknown as SupervisorOptions);
    await supervisor.bringUp(slot, new Fake("v1"), bundle("v1"));
    expect(slot.mailbox.paused).toBe(true);
    letRestoreGo();
    expect((await swapping).outcome).toBe("committed");
    expect(slot.mailbox.paused).toBe(false);
  });

  it("does not pass a new version whose instance dies during its probation: its state goes back to the old version", async () => {
    const t = await startKernel({
      services: { c: { entry: "./swap/counter-v1.ts", limits: { memoryMb: 16 } } },
      swap: { probationMs: 10_000, probationMaxErrors: 0 },
    });
    try {
      await t.kernel.call("c", "incr", 5);
      const swapping = t.kernel.swap("c", join(FIXTURES, "swap/crashy-v2.ts"));
      await vi.waitFor(() => expect(t.kernel.status()[0]?.semver).toBe("1.1.0-crashy"), { timeout: 10_000, interval: 20 });
      await t.kernel.call("c", "incr", 1);
      await expect(t.kernel.call("c", "hog")).rejects.toMatchObject({ code: "ERR_OOM" });
      const report = await swapping;
      expect(report.outcome).toBe("rolled-back");
      expect(report.error?.code).toBe("ERR_SWAP_PROBATION");
      expect(await t.kernel.call("c", "which")).toBe("v1");
      // The restarted instance resumed from the snapshot written at commit (count 5): the increment after it died with the instance.
      expect(await t.kernel.call("c", "get")).toBe(5);
    } finally {
      await t.kernel.stop();
    }
  });

  it("fails messages waiting for a next instance when a restart fails, instead of holding them and the stop for good", async () => {
    const old = new Fake("v1");
    const slot = slotWith(old, 1);
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    // The instance takes one message, then ends before starting the second: that one is given back to wait for the next instance.
    old.deliver = async () => {
      await gate;
      throw new MoltError("ERR_REDELIVER", "given back");
    };
    const waiting = call(slot);
    slot.detach(new MoltError("ERR_SERVICE_CRASHED", "died"));
    release();
    // The supervisor's restart failed: no instance follows.
    slot.detach(new MoltError("ERR_START_FAILED", "the restart failed too"), true);
    await expect(waiting).rejects.toMatchObject({ code: "ERR_START_FAILED" });
  });

  it("counts against a version on probation its own errors that name a service it has no binding to", async () => {
    const old = new Fake("v1");
    const slot = slotWith(old);
    const disowning = (): Promise<Uint8Array> => Promise.resolve(encode([1, 0, "ERR_MINE", "someone-else", { code: "ERR_MINE", message: "not me", service: "someone-else" }]));
    const next = new Fake("v2", { deliver: disowning });
    const swapping = swap(request(slot, next, { probationMs: 5000, probationMaxErrors: 0 }));
    await vi.waitFor(() => expect(slot.instance).toBe(next));
    await call(slot);
    await call(slot);
    expect((await swapping).outcome).toBe("rolled-back");
  });
});
