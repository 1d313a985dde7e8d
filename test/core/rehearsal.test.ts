// A swap's rehearsal (core/swap-prepare.ts): each side runs the path of its
// blackout step before the blackout, as `rehearse-quiesce` and
// `rehearse-resume` (protocol/control.ts), with what has effects left out.

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { bundleRuntime, bundleService } from "../../core/bundle.ts";
import { resolveConfig } from "../../core/config.ts";
import type { BootSpec, DumpOptions, Instance, RestoreOptions } from "../../core/instance.ts";
import type { Slot } from "../../core/slot.ts";
import { rehearse } from "../../core/swap-prepare.ts";
import { bootIsolate } from "../../core/isolate-host.ts";
import { decodeReply, encodeRequest } from "../../core/wire.ts";
import { aloneBridge } from "../support/bridge.ts";
import { FIXTURES } from "../support/runtime.ts";

async function boot(): Promise<Instance> {
  const config = resolveConfig({ dataDir: mkdtempSync(join(tmpdir(), "molt-rehearsal-")), services: { r: { entry: "./rehearsal.ts" } } }, FIXTURES);
  const service = config.services.r;
  if (service === undefined) throw new Error("the config lost its service");
  const bundle = await bundleService(join(FIXTURES, "rehearsal.ts"));
  const spec: BootSpec = { service, code: bundle.code, versionId: bundle.hash, env: {} };
  return bootIsolate(spec, aloneBridge, await bundleRuntime());
}

type Seen = { value: number; stops: number; starts: number; ticks: number };

async function read(instance: Instance): Promise<Seen> {
  return decodeReply((await instance.deliver("call", encodeRequest("read", null))) as Uint8Array) as Seen;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An instance booted, initialised, started and holding `value`: live, as the old side of a swap is. */
async function serving(value: number): Promise<Instance> {
  const instance = await boot();
  await instance.init();
  await instance.start();
  await instance.deliver("call", encodeRequest("set", value));
  return instance;
}

/** What a fresh instance restored from `dump` (and never started) reads; the instance goes with it. */
async function restoredFrom(dump: Uint8Array): Promise<Seen> {
  const instance = await boot();
  try {
    await instance.restore(dump, 1);
    return await read(instance);
  } finally {
    instance.dispose();
  }
}

describe("swap-prepare's rehearsal", () => {
  it("asks the old instance for the quiesce path and the new one for the resume path, on the same dump", async () => {
    const asked: string[] = [];
    const draft = new Uint8Array([1, 2, 3]);
    const old = {
      meta: { stateVersion: 4 },
      dump: async (options?: DumpOptions) => {
        asked.push(`old.dump ${JSON.stringify(options)}`);
        return draft;
      },
    } as unknown as Instance;
    const next = {
      restore: async (dump: Uint8Array, from: number, options?: RestoreOptions) => {
        asked.push(`next.restore ${dump === draft} ${from} ${JSON.stringify(options)}`);
      },
    } as unknown as Instance;
    const slot = {} as Slot;
    expect(await rehearse(slot, old, next, (_phase, err) => err as never)).toBe(draft);
    expect(asked).toEqual(['old.dump {"rehearse":true}', 'next.restore true 4 {"rehearse":true}']);
  });
});

describe("the rehearsal of a swap's blackout steps", () => {
  it("quiesce as a rehearsal dumps the state as it is, runs no stop hook, and leaves the instance serving with its timers", async () => {
    const old = await serving(7);
    try {
      const rehearsed = await old.dump({ rehearse: true });
      const before = await read(old);
      expect(before).toMatchObject({ value: 7, stops: 0, starts: 1 });
      // Its timer still runs, and it still answers.
      await sleep(30);
      const after = await read(old);
      expect(after.ticks).toBeGreaterThan(before.ticks);
      expect(after.stops).toBe(0);
      // The rehearsal's dump is the state the real one hands over.
      expect(await restoredFrom(rehearsed)).toMatchObject({ value: 7, stops: 0, starts: 1 });
      // The real quiesce runs the hook, once.
      expect(await restoredFrom(await old.dump({ stop: true }))).toMatchObject({ value: 7, stops: 1, starts: 1 });
    } finally {
      old.dispose();
    }
  });

  it("resume as a rehearsal restores the state and runs no start hook and arms no timer; the real resume runs it once", async () => {
    const old = await serving(3);
    const next = await boot();
    try {
      const draft = await old.dump({ rehearse: true });
      await next.restore(draft, 1, { rehearse: true });
      const rehearsed = await read(next);
      expect(rehearsed).toMatchObject({ value: 3, starts: 1 });
      await sleep(30);
      expect((await read(next)).ticks).toBe(rehearsed.ticks);
      await next.restore(await old.dump({ stop: true }), 1, { start: true });
      const live = await read(next);
      expect(live).toMatchObject({ value: 3, stops: 1, starts: 2 });
      await sleep(30);
      expect((await read(next)).ticks).toBeGreaterThan(live.ticks);
    } finally {
      old.dispose();
      next.dispose();
    }
  });
});
