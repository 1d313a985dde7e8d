// bench:dump-codec — where a swap's in-heap dump spends its time (issue 15, item 5).
//
// Two parts, each at 64 KB, 1 MB and 10 MB of state shaped like
// bench/services/stateful.ts (records of about 32 bytes):
//
// 1. Each step alone, in bare isolates running the bundled guest code
//    (bench/lib/dump-codec-guest.ts): the plain-data walk and the pack on
//    the old side, the copies out and in, the unpack on the new side. The
//    state is always one that came out of an unpack, as after a swap. "cold"
//    is a step's first run in its isolate (each in an isolate of its own,
//    after the runtime's boot warm-up), which is what a blackout pays;
//    "warm" is the median once V8 has compiled it. "before" is the code as
//    it was (the walk from git at OLD_COMMIT, structured clone), "after"
//    today's guest/plain-state.ts and guest/dump-codec.ts.
// 2. The whole thing through molt's own code: a kernel in this process
//    swaps the stateful service back and forth, idle, and reports its
//    blackout and its dump and restore phases. This part uses nothing but
//    the kernel's API, so it runs on an older checkout as well.
//
//   node --no-node-snapshot --import tsx bench/dump-codec.ts
//   (BENCH_QUICK=1 for fewer rounds; BENCH_PART=steps or swaps for one part)
// It writes bench/results/dump-codec.json; bench/README.md, "In-heap dump", has the figures.

import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import ivm from "isolated-vm";
import { resolveConfig } from "../core/config.ts";
import { Kernel } from "../core/kernel.ts";
import { localBoot } from "../core/local-boot.ts";
import { median, printTable } from "./lib/stats.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const QUICK = process.env.BENCH_QUICK === "1";
const SIZES = [65_536, 1 << 20, 10 << 20];
/** Cold samples per step and size: each is an isolate of its own. */
const COLD = (bytes: number): number => (QUICK ? 3 : bytes > 5e6 ? 5 : 9);
const WARM_TIMES = (bytes: number): number => (bytes > 5e6 ? 5 : bytes > 5e5 ? 15 : 60);
/** Swaps per size in part 2. */
const SWAPS = (bytes: number): number => (QUICK ? 5 : bytes > 5e6 ? 8 : 20);
/** The commit whose guest/plain-state.ts is "before". */
const OLD_COMMIT = "608c45abcbb4e46b5abcdfe1f8914ac44260a6eb";

const round = (x: number, digits = 2): number => Math.round(x * 10 ** digits) / 10 ** digits;
const human = (bytes: number): string => (bytes >= 1 << 20 ? `${bytes / (1 << 20)} MB` : `${bytes / 1024} KB`);

interface Guest {
  isolate: ivm.Isolate;
  /** How long the boot warm-up of the dump codec took in this isolate. */
  warmMs: number;
  call<T>(name: string, ...args: unknown[]): Promise<T>;
}

/** The guest half, after guest/plain-state.ts as it was at OLD_COMMIT (as `__oldPlainState`). */
async function bundleGuest(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "molt-bench-dump-codec-"));
  const oldWalk = join(dir, "old-plain-state.ts");
  const source = execFileSync("git", ["show", `${OLD_COMMIT}:guest/plain-state.ts`], { cwd: ROOT, encoding: "utf8" });
  writeFileSync(oldWalk, source.replace(`from "../protocol/state-path.ts"`, `from ${JSON.stringify(join(ROOT, "protocol/state-path.ts"))}`));
  const build = async (entry: string, globalName?: string): Promise<string> => {
    const result = await esbuild.build({
      entryPoints: [entry],
      bundle: true,
      write: false,
      format: "iife",
      ...(globalName === undefined ? {} : { globalName }),
      platform: "neutral",
      mainFields: ["browser", "module", "main"],
      conditions: ["worker", "browser", "import", "default"],
      target: "es2022",
      logLevel: "silent",
    });
    return result.outputFiles[0]?.text ?? "";
  };
  try {
    return `${await build(oldWalk, "__oldPlainState")}\n${await build(join(ROOT, "bench/lib/dump-codec-guest.ts"))}`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

type Mode = "before" | "after";

/** A bare isolate as large as the benchmark's service (memoryMb 1024), with the guest half loaded and warmed as an instance's boot warms it. */
async function boot(code: string, mode: Mode): Promise<Guest> {
  const isolate = new ivm.Isolate({ memoryLimit: 1024 });
  const context = await isolate.createContext();
  await context.global.set("now", new ivm.Callback(() => performance.now()));
  await (await isolate.compileScript(code)).run(context);
  const refs = new Map<string, ivm.Reference>();
  const guest: Guest = {
    isolate,
    warmMs: 0,
    call: async <T>(name: string, ...args: unknown[]): Promise<T> => {
      let ref = refs.get(name);
      if (ref === undefined) refs.set(name, (ref = (await context.global.get(name, { reference: true })) as ivm.Reference));
      return (await ref.apply(undefined, args, { arguments: { copy: true }, result: { copy: true } })) as T;
    },
  };
  guest.warmMs = await guest.call<number>("bootWarm", mode);
  return guest;
}

/**
 * An isolate holding the state as a restore left it: filled in one isolate,
 * dumped, copied and restored in this one, by the code of `mode` (after: by
 * encodeDump and decodeDump, so that the isolate assumes of the state what
 * the dump said). With `legacy`, restored from a dump written before the
 * codec choice, which says nothing of sharing.
 */
async function holding(code: string, mode: Mode, bytes: number, shared: boolean, legacy = false): Promise<Guest> {
  const codec = mode === "after" && !legacy ? "encodeDump" : "tracked";
  const source = await boot(code, mode);
  await source.call("fill", bytes, shared);
  await source.call("packAs", codec);
  const dump = await source.call<Uint8Array>("give");
  source.isolate.dispose();
  const guest = await boot(code, mode);
  await guest.call("take", dump);
  await guest.call("unpack", mode === "after" ? "decodeDump" : "tracked");
  return guest;
}

interface StepRow {
  size: string;
  step: string;
  cold: number;
  warm: number | null;
  mbPerS: number;
}

/** The steps of the old side: each is timed cold in isolates of its own (booted as its side boots), then warm in one. */
const OLD_SIDE: { step: string; mode: Mode; shared?: true; legacy?: true; warm?: false }[] = [
  { step: "walk before", mode: "before" },
  { step: "walk after", mode: "after" },
  { step: "pack tracked", mode: "before" },
  { step: "pack tree", mode: "after" },
  { step: "dump before", mode: "before" },
  { step: "dump after", mode: "after" },
  { step: "dump before", mode: "before", shared: true },
  { step: "dump after", mode: "after", shared: true },
  // The first dump of a shared state that came from a dump that said nothing of sharing: the Set is paid for nothing.
  { step: "dump after", mode: "after", shared: true, legacy: true },
  { step: "pack tree, useRecords: false", mode: "after" },
  // Not warm: `sequential` keeps record definitions from one pack to the next, so a later pack is no dump that decodes alone.
  { step: "pack tree, sequential", mode: "after", warm: false },
  { step: "pack tree, bundleStrings", mode: "after" },
];

async function steps(code: string): Promise<{ rows: StepRow[]; dumpBytes: Record<string, number> }> {
  const rows: StepRow[] = [];
  const dumpBytes: Record<string, number> = {};
  const floorGuest = await boot(code, "after");
  const floor = median(await Promise.all(Array.from({ length: 20 }, () => floorGuest.call<number>("clockFloor"))));
  floorGuest.isolate.dispose();
  const clock = (ms: number): number => Math.max(0, ms - floor);
  // What every instance's boot pays to warm the dump codec (guest/runtime.ts's warmCodecs), before and after.
  for (const mode of ["before", "after"] as const) {
    const warm: number[] = [];
    for (let i = 0; i < 9; i++) {
      const guest = await boot(code, mode);
      warm.push(clock(guest.warmMs));
      guest.isolate.dispose();
    }
    rows.push({ size: "—", step: `boot warm-up ${mode}`, cold: round(median(warm)), warm: null, mbPerS: 0 });
  }
  for (const bytes of SIZES) {
    const probes = { before: await holding(code, "before", bytes, false), after: await holding(code, "after", bytes, false) };
    const sharedProbes = { before: await holding(code, "before", bytes, true), after: await holding(code, "after", bytes, true) };
    const size = await probes.after.call<number>("packAs", "tracked");
    dumpBytes[human(bytes)] = size;
    const row = (step: string, cold: number, warm: number | null): void => {
      rows.push({ size: human(bytes), step, cold: round(cold), warm: warm === null ? null : round(warm), mbPerS: round(size / 1e6 / (cold / 1e3), 0) });
    };

    for (const { step, mode, shared, legacy, warm } of OLD_SIDE) {
      const cold: number[] = [];
      for (let i = 0; i < COLD(bytes); i++) {
        const guest = await holding(code, mode, bytes, shared === true, legacy === true);
        cold.push(clock(await guest.call<number>("step", step)));
        guest.isolate.dispose();
      }
      const probe = (shared === true ? sharedProbes : probes)[mode];
      const name = `${step}${shared === true ? ", one shared record" : ""}${legacy === true ? ", restored from an older dump" : ""}`;
      // Warm, the legacy case is the case before it: the first dump already changed what the isolate assumes.
      row(name, median(cold), warm === false || legacy === true ? null : clock(await probe.call<number>("warmStep", step, WARM_TIMES(bytes))));
    }
    {
      const cold: number[] = [];
      for (let i = 0; i < COLD(bytes); i++) {
        const guest = await holding(code, "after", bytes, false);
        cold.push(clock(await guest.call<number>("packPreallocated", size)));
        guest.isolate.dispose();
      }
      row("pack tree, preallocated buffer", median(cold), null);
    }

    // The crossing: the dump's bytes out of the old isolate and into the new one.
    const probe = probes.after;
    await probe.call("packAs", "tree");
    const out: number[] = [];
    const into: number[] = [];
    let dump: Uint8Array = new Uint8Array();
    for (let i = 0; i < COLD(bytes); i++) {
      let t0 = performance.now();
      dump = await probe.call<Uint8Array>("give");
      out.push(performance.now() - t0);
      const fresh = await boot(code, "after");
      t0 = performance.now();
      await fresh.call("take", dump);
      into.push(performance.now() - t0);
      fresh.isolate.dispose();
    }
    row("copy out (apply, result copied)", median(out), null);
    row("copy in (apply, argument copied)", median(into), null);

    // The new side: each decoder once in a fresh isolate, on the bytes its codec wrote.
    for (const [step, packedBy, unpackAs, mode] of [
      ["unpack tracked (before)", "tracked", "tracked", "before"],
      ["unpack decodeDump (after)", "tree", "decodeDump", "after"],
      ["unpack tree, useRecords: false", "tree, useRecords: false", "tree, useRecords: false", "after"],
      ["unpack tree, bundleStrings", "tree, bundleStrings", "tree, bundleStrings", "after"],
    ] as const) {
      await probe.call("packAs", packedBy);
      const packed = await probe.call<Uint8Array>("give");
      const cold: number[] = [];
      for (let i = 0; i < COLD(bytes); i++) {
        const fresh = await boot(code, mode);
        await fresh.call("take", packed);
        cold.push(clock(await fresh.call<number>("unpack", unpackAs)));
        fresh.isolate.dispose();
      }
      row(step, median(cold), null);
    }
    for (const guest of [probes.before, probes.after, sharedProbes.before, sharedProbes.after]) guest.isolate.dispose();
    console.log(`  steps: ${human(bytes)} done`);
  }
  return { rows, dumpBytes };
}

interface SwapRow {
  size: string;
  swaps: number;
  blackout: number;
  dump: number;
  restore: number;
}

/** Part 2: swaps through a kernel in this process, idle. */
async function swaps(): Promise<SwapRow[]> {
  const dataDir = mkdtempSync(join(tmpdir(), "molt-bench-dump-codec-data-"));
  const config = resolveConfig(
    {
      dataDir,
      snapshot: { everyMs: 0 },
      services: { bench: { entry: join(ROOT, "bench/services/stateful.ts"), limits: { memoryMb: 1024, timeoutMs: 60_000 } } },
    },
    ROOT,
  );
  const kernel = new Kernel(config, { boot: localBoot, stdout: () => undefined, log: { log: () => undefined } });
  await kernel.start();
  const entries = [join(ROOT, "bench/services/stateful-v2.ts"), join(ROOT, "bench/services/stateful.ts")];
  const rows: SwapRow[] = [];
  let n = 0;
  try {
    for (const bytes of SIZES) {
      await kernel.call("bench", "fill", bytes);
      const samples: { blackout: number; dump: number; restore: number }[] = [];
      for (let i = 0; i < SWAPS(bytes); i++) {
        // As bench:swap does: the snapshot a commit writes goes to disk in the background.
        await new Promise((resolve) => setTimeout(resolve, 20));
        const report = await kernel.swap("bench", entries[n++ % 2] as string);
        if (report.outcome !== "committed" || report.blackoutMs === null) throw new Error(`swap ${n} ended ${report.outcome}: ${JSON.stringify(report.error)}`);
        samples.push({ blackout: report.blackoutMs, dump: report.phases.dump ?? Number.NaN, restore: report.phases.restore ?? Number.NaN });
      }
      rows.push({
        size: human(bytes),
        swaps: samples.length,
        blackout: round(median(samples.map((s) => s.blackout))),
        dump: round(median(samples.map((s) => s.dump))),
        restore: round(median(samples.map((s) => s.restore))),
      });
      console.log(`  swaps: ${human(bytes)} done`);
    }
  } finally {
    await kernel.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
  return rows;
}

async function main(): Promise<void> {
  const only = process.env.BENCH_PART;
  let stepResult: Awaited<ReturnType<typeof steps>> | undefined;
  if (only !== "swaps") {
    stepResult = await steps(await bundleGuest());
    printTable(
      ["state", "step", "cold ms", "warm ms", "cold MB/s of dump"],
      stepResult.rows.map((r) => [r.size, r.step, r.cold, r.warm ?? "—", r.mbPerS]),
    );
    console.log(`dump sizes: ${JSON.stringify(stepResult.dumpBytes)}`);
  }
  let swapRows: SwapRow[] | undefined;
  if (only !== "steps") {
    swapRows = await swaps();
    printTable(["state", "swaps", "blackout p50", "dump p50", "restore p50"], swapRows.map((r) => [r.size, r.swaps, r.blackout, r.dump, r.restore]));
  }
  mkdirSync(join(ROOT, "bench/results"), { recursive: true });
  writeFileSync(
    join(ROOT, "bench/results/dump-codec.json"),
    `${JSON.stringify({ steps: stepResult ?? null, swaps: swapRows ?? null, quick: QUICK, old_commit: OLD_COMMIT, node: process.version, date: new Date().toISOString() }, null, 2)}\n`,
  );
  console.log("wrote bench/results/dump-codec.json");
}

await main();
