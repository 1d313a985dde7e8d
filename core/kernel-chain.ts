// The kernel's own version chain: every runtime that ran on this dataDir,
// which build of molt it was, how it came (start, upgrade, restart) and how
// it ended (replaced, crashed, stopped), as the inventory keeps a service's
// versions. `molt history --kernel` and `molt status` read it.
//
// It is a file of events, not of records (`<dataDir>/kernel.log`, frames as
// core/frames.ts lays them out, each msgpack([CHAIN_FORMAT, event])):
//   start   a runtime began serving: its build, pid, via, blackout, parent
//   stop    a runtime stopped gracefully
//   failed  an upgrade tried from a runtime did not take (it kept serving)
// Two runtimes write to it around an upgrade, the old one and the new one,
// each from its own process: appending independent events, each tagged
// with its writer's pid, keeps either from overwriting what the other wrote,
// and a record's end is derived when the file is read (the next start says
// whether it was replaced or the runtime before it crashed), so nobody has
// to write for a process that died. Damaged frames are skipped and counted,
// never fatal: the chain is history, and a runtime must start without it.
//
// The file is bounded: a start that finds `maxRecords` runtimes in it first
// rewrites it (atomically) with the newest ones and their last few failed
// upgrades. An event another runtime appended during that rewrite would be
// lost; a runtime records its start only once the one before it has handed
// over or died, when nobody else writes.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  KernelOutcome,
  KernelVia,
  type KernelIdentity,
  type KernelInfo,
  type KernelRecord,
  type KernelUpgradeFailure,
} from "../protocol/kernel.ts";
import { appendDurably, writeAtomic } from "./disk.ts";
import { ErrorCode, MAX_CODE_CHARS, MoltError } from "./errors.ts";
import { encodeFrame, scanFrames } from "./frames.ts";
import { kernelIdentity } from "./kernel-version.ts";
import type { KernelLog } from "./log.ts";

export const CHAIN_FORMAT = 1;
export const CHAIN_FILE = "kernel.log";
export const MAX_RECORDS = 1000;
/** Failed upgrades kept per runtime: the latest say what is wrong now. */
export const MAX_FAILURES = 10;
const MAX_FAILURE_MESSAGE = 1000;
/** Far larger than any event: a length past it is damage. */
const MAX_FRAME_BYTES = 64 * 1024;

type StartEvent = { kind: "start"; pid: number; at: string; version: string; semver: string; parent: string | null; via: KernelVia; blackoutMs: number | null };
type StopEvent = { kind: "stop"; pid: number; at: string };
type FailedEvent = { kind: "failed"; pid: number; at: string; code: string; message: string; tried: KernelIdentity };
type ChainEvent = StartEvent | StopEvent | FailedEvent;

export interface KernelChainOptions {
  log?: KernelLog;
  /** Defaults to this process's: a test plays several runtimes on one file by giving each its own. */
  identity?: () => KernelIdentity;
  pid?: number;
  now?: () => Date;
  maxRecords?: number;
}

export interface KernelChainList {
  records: KernelRecord[];
  /** Damaged stretches of the file skipped on reading. */
  corrupt: number;
}

export class KernelChain {
  readonly #path: string;
  readonly #log: KernelLog | undefined;
  readonly #identity: () => KernelIdentity;
  readonly #pid: number;
  readonly #now: () => Date;
  readonly #maxRecords: number;
  #info: KernelInfo | undefined;
  #started = false;
  /** Writes from this process, one after another, so its own events land in the order they were made. */
  #writing: Promise<void> = Promise.resolve();

  constructor(dataDir: string, options: KernelChainOptions = {}) {
    this.#path = join(dataDir, CHAIN_FILE);
    this.#log = options.log;
    this.#identity = options.identity ?? kernelIdentity;
    this.#pid = options.pid ?? process.pid;
    this.#now = options.now ?? ((): Date => new Date());
    this.#maxRecords = Math.max(2, options.maxRecords ?? MAX_RECORDS);
  }

  /**
   * Records this runtime as serving: call it once the runtime serves (after
   * a handover, once it holds the sockets), with how it came and, for an
   * upgrade or a restart, how long nothing was served.
   */
  async started(how: { via: KernelVia; blackoutMs?: number | null }): Promise<KernelRecord> {
    if (this.#started) throw new MoltError(ErrorCode.INTERNAL, "this runtime is already in the kernel chain");
    if (!Object.values(KernelVia).includes(how.via)) throw new MoltError(ErrorCode.INTERNAL, `"${String(how.via)}" is not a way a runtime starts`);
    const blackoutMs = how.via === KernelVia.START ? null : (how.blackoutMs ?? null);
    const { version, semver } = this.#identity();
    this.#started = true;
    return this.#write(async () => {
      const { events, corrupt } = this.#read();
      const kept = bounded(events, this.#maxRecords - 1);
      if (kept.length < events.length) {
        writeAtomic(this.#path, Buffer.concat(kept.map(frame)));
        this.#log?.log("info", "kernel chain compacted", { path: this.#path, events: events.length, kept: kept.length, corruptSkipped: corrupt });
      }
      const previous = kept.findLast((e): e is StartEvent => e.kind === "start");
      const event: StartEvent = { kind: "start", pid: this.#pid, at: this.#now().toISOString(), version, semver, parent: previous?.version ?? null, via: how.via, blackoutMs };
      await appendDurably(this.#path, frame(event));
      const records = fold([...kept, event]);
      const record = records.at(-1) as KernelRecord;
      // Since the last `molt run`: from the newest start on (all of the chain if compaction dropped it).
      const sinceRun = records.slice(Math.max(0, records.findLastIndex((r) => r.via === KernelVia.START)));
      this.#info = {
        version,
        semver,
        pid: this.#pid,
        startedAt: event.at,
        upgrades: sinceRun.filter((r) => r.via === KernelVia.UPGRADE).length,
        restarts: sinceRun.filter((r) => r.via === KernelVia.RESTART).length,
      };
      return record;
    });
  }

  /** Records a graceful stop of this runtime. Not after a handover: the next runtime's start says this one was replaced. */
  stopped(): Promise<void> {
    return this.#write(() => appendDurably(this.#path, frame({ kind: "stop", pid: this.#pid, at: this.#now().toISOString() })));
  }

  /** Records an upgrade tried from this runtime that did not take: its code, and the build it tried to start. */
  upgradeFailed(failure: { code: string; message: string; tried: KernelIdentity }): Promise<void> {
    const event: FailedEvent = {
      kind: "failed",
      pid: this.#pid,
      at: this.#now().toISOString(),
      code: failure.code.slice(0, MAX_CODE_CHARS),
      message: failure.message.slice(0, MAX_FAILURE_MESSAGE),
      tried: { version: failure.tried.version, semver: failure.tried.semver },
    };
    return this.#write(() => appendDurably(this.#path, frame(event)));
  }

  /** The chain as it is on disk now, oldest first, every record's end derived from what came after it. */
  list(): KernelChainList {
    const { events, corrupt } = this.#read();
    return { records: fold(events), corrupt };
  }

  /** The newest runtime in the chain: this one, once it has started. */
  current(): KernelRecord | undefined {
    return this.list().records.at(-1);
  }

  /**
   * This runtime, as `molt status` shows it, once `started` has recorded it
   * (undefined before, or if the disk refused the record). Counts are since
   * the last `molt run`, this runtime included.
   */
  info(): KernelInfo | undefined {
    return this.#info;
  }

  #write<T>(op: () => Promise<T>): Promise<T> {
    const result = this.#writing.then(op);
    this.#writing = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /** Every event that reads whole; a file that cannot be read at all is an empty chain, said once in the log. */
  #read(): { events: ChainEvent[]; corrupt: number } {
    let bytes: Buffer;
    try {
      bytes = readFileSync(this.#path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { events: [], corrupt: 0 };
      this.#log?.log("error", "kernel chain unreadable; treating it as empty", { path: this.#path, error: (err as Error).message });
      return { events: [], corrupt: 1 };
    }
    const { values, corrupt } = scanFrames(bytes, MAX_FRAME_BYTES, asEvent);
    if (corrupt > 0) this.#log?.log("warn", "kernel chain has damaged frames; skipped", { path: this.#path, corrupt });
    return { events: values, corrupt };
  }
}

function frame(event: ChainEvent): Buffer {
  return encodeFrame([CHAIN_FORMAT, event]);
}

/** The records the events describe, in order. Events of a pid with no start before them are ignored. */
function fold(events: readonly ChainEvent[]): KernelRecord[] {
  const records: (KernelRecord & { stoppedAt: string | null })[] = [];
  const byPid = new Map<number, KernelRecord & { stoppedAt: string | null }>();
  for (const event of events) {
    if (event.kind === "start") {
      const record = {
        seq: records.length + 1,
        version: event.version,
        semver: event.semver,
        parent: event.parent,
        via: event.via,
        pid: event.pid,
        startedAt: event.at,
        blackoutMs: event.blackoutMs,
        replacedAt: null,
        outcome: KernelOutcome.LIVE,
        failedUpgrades: [],
        stoppedAt: null,
      };
      records.push(record);
      byPid.set(event.pid, record);
      continue;
    }
    const record = byPid.get(event.pid);
    if (record === undefined) continue;
    if (event.kind === "stop") record.stoppedAt ??= event.at;
    else {
      const failure: KernelUpgradeFailure = { at: event.at, code: event.code, message: event.message, tried: event.tried };
      record.failedUpgrades = [...record.failedUpgrades, failure].slice(-MAX_FAILURES);
    }
  }
  return records.map(({ stoppedAt, ...record }, i) => {
    const next = records[i + 1];
    // An upgrade's new runtime says the old one was replaced, even if the old one also wrote a stop on its way out.
    if (next?.via === KernelVia.UPGRADE) return { ...record, replacedAt: next.startedAt, outcome: KernelOutcome.REPLACED };
    if (stoppedAt !== null) return { ...record, replacedAt: stoppedAt, outcome: KernelOutcome.STOPPED };
    if (next !== undefined) return { ...record, replacedAt: next.startedAt, outcome: KernelOutcome.CRASHED };
    return record;
  });
}

/**
 * The events of the newest `keep` runtimes, with their stops and their last
 * few failed upgrades: what a compaction writes. The same events when
 * nothing is over the bound.
 */
function bounded(events: readonly ChainEvent[], keep: number): ChainEvent[] {
  const starts: number[] = [];
  for (const [i, e] of events.entries()) if (e.kind === "start") starts.push(i);
  const from = starts.length > keep ? (starts[starts.length - keep] as number) : 0;
  const tail = events.slice(from);
  // Count failures per runtime from the newest back, and keep the last MAX_FAILURES of each.
  const failures = new Map<number, number>();
  const kept: ChainEvent[] = [];
  for (let i = tail.length - 1; i >= 0; i--) {
    const e = tail[i] as ChainEvent;
    if (e.kind === "failed") {
      const n = (failures.get(e.pid) ?? 0) + 1;
      failures.set(e.pid, n);
      if (n > MAX_FAILURES) continue;
    }
    if (e.kind === "start") failures.delete(e.pid);
    kept.push(e);
  }
  return kept.reverse();
}

/** A decoded frame as an event of this chain, or undefined if it is not one. */
function asEvent(value: unknown): ChainEvent | undefined {
  if (!Array.isArray(value) || value[0] !== CHAIN_FORMAT) return undefined;
  const e = value[1] as Partial<Record<string, unknown>> | null;
  if (typeof e !== "object" || e === null || !Number.isSafeInteger(e.pid) || typeof e.at !== "string") return undefined;
  switch (e.kind) {
    case "start":
      return typeof e.version === "string" &&
        typeof e.semver === "string" &&
        (e.parent === null || typeof e.parent === "string") &&
        Object.values(KernelVia).includes(e.via as KernelVia) &&
        (e.blackoutMs === null || typeof e.blackoutMs === "number")
        ? (e as StartEvent)
        : undefined;
    case "stop":
      return e as StopEvent;
    case "failed":
      return typeof e.code === "string" && typeof e.message === "string" && isIdentity(e.tried) ? (e as FailedEvent) : undefined;
    default:
      return undefined;
  }
}

function isIdentity(value: unknown): value is KernelIdentity {
  const v = value as Partial<KernelIdentity> | null;
  return typeof v === "object" && v !== null && typeof v.version === "string" && typeof v.semver === "string";
}
