// The in-isolate half of bench/dump-codec.ts, bundled into a bare isolate:
// one state shaped like bench/services/stateful.ts, and each step of a dump
// and a restore run on it alone, timed inside the isolate. `now` is the
// host's clock, reached through a synchronous callback (its own round trip,
// tens of microseconds, is measured by `clockFloor` and taken off).

import { Packr } from "msgpackr";
import { DUMP_VERSION, PACK_OPTIONS } from "../../protocol/wire.ts";
import { decodeDump, encodeDump, warmDumpCodec } from "../../guest/dump-codec.ts";
import { inspectState } from "../../guest/plain-state.ts";

declare const now: () => number;
/** guest/plain-state.ts as it was before (bench/dump-codec.ts bundles it from git, ahead of this script). */
declare const __oldPlainState: { findNonPlain(value: unknown, root: string): unknown };
const { findNonPlain } = __oldPlainState;

/** The codec every dump was written with before: structured clone, as in protocol/wire.ts. */
const tracked = new Packr({ ...PACK_OPTIONS });
const PACKRS: Record<string, Packr> = {
  tracked,
  tree: new Packr({ ...PACK_OPTIONS, structuredClone: false, moreTypes: true }),
  "tree, useRecords: false": new Packr({ ...PACK_OPTIONS, structuredClone: false, moreTypes: true, useRecords: false }),
  "tree, sequential": new Packr({ ...PACK_OPTIONS, structuredClone: false, moreTypes: true, sequential: true }),
  "tree, bundleStrings": new Packr({ ...PACK_OPTIONS, structuredClone: false, moreTypes: true, bundleStrings: true }),
};

let state: unknown;
let held: Uint8Array | undefined;

/** stateful.ts's `fill`: records of about 32 bytes each, `bytes` worth; `shared`, one of them held a second time, after the rest. */
function fill(bytes: number, shared: boolean): void {
  const items = Array.from({ length: Math.max(1, Math.floor(bytes / 32)) }, (_, i) => ({ id: i, name: "item", value: i * 3 }));
  state = shared ? { count: 0, items, first: items[0] } : { count: 0, items };
}

function timed(run: () => unknown): number {
  const t0 = now();
  run();
  return now() - t0;
}

/**
 * What the guest runtime's warmCodecs did for the dump codec when an
 * instance booted, before ("before": one round trip through structured
 * clone) and now ("after": guest/dump-codec.ts's warmDumpCodec), 20 times.
 */
function bootWarm(mode: "before" | "after"): void {
  const sample = [1, "warm", { s: "text", n: 1.5, i: 7, a: [1, "x", null], m: new Map([["k", new Set([1])]]), d: new Date(0), b: new Uint8Array(4) }];
  for (let i = 0; i < 20; i++) {
    if (mode === "after") warmDumpCodec(sample);
    else tracked.unpack(tracked.pack([DUMP_VERSION, 1, sample]));
  }
}

const steps: Record<string, () => unknown> = {
  "walk before": () => findNonPlain(state, "state"),
  "walk after": () => inspectState(state, "state"),
  "dump before": () => {
    findNonPlain(state, "state");
    return tracked.pack([DUMP_VERSION, 1, state]).slice();
  },
  "dump after": () => encodeDump(1, state, "state", "bench"),
};
for (const [name, packr] of Object.entries(PACKRS)) steps[`pack ${name}`] = () => packr.pack([DUMP_VERSION, 1, state]).slice();

const g = globalThis as Record<string, unknown>;
g.bootWarm = (mode: "before" | "after"): number => timed(() => bootWarm(mode));
g.fill = fill;
g.clockFloor = (): number => timed(() => undefined);
/** One step, once: the first time this isolate runs it, as in a blackout. */
g.step = (name: string): number => timed(steps[name] as () => unknown);
/** One step, `times` over: the median, once V8 has compiled it. */
g.warmStep = (name: string, times: number): number => {
  const run = steps[name] as () => unknown;
  const all: number[] = [];
  for (let i = 0; i < times; i++) all.push(timed(run));
  all.sort((a, b) => a - b);
  return all[Math.floor(all.length / 2)] as number;
};
/** Packs the state with one codec and keeps the bytes for `give`; returns their size. */
g.packAs = (name: string): number => {
  held = name === "encodeDump" ? encodeDump(1, state, "state", "bench") : (PACKRS[name] as Packr).pack([DUMP_VERSION, 1, state]).slice();
  return held.byteLength;
};
g.give = (): Uint8Array | undefined => held;
g.take = (bytes: Uint8Array): void => {
  held = bytes;
};
/** Unpacks what `take` was given, as restore does, and keeps the result as the state. */
g.unpack = (name: string): number =>
  timed(() => {
    const bytes = held as Uint8Array;
    state = name === "decodeDump" ? decodeDump(bytes).value : ((PACKRS[name] as Packr).unpack(bytes) as unknown[])[2];
  });
/** Packs into a buffer the size of the whole dump plus an eighth, allocated in the timed part, instead of msgpackr's growing one. */
g.packPreallocated = (size: number): number => {
  const packr = PACKRS.tree as Packr;
  return timed(() => {
    packr.useBuffer(new Uint8Array(size + (size >> 3) + 1024));
    packr.pack([DUMP_VERSION, 1, state]).slice();
  });
};
