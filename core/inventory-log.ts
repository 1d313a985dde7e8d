// The inventory on disk: a base record (the whole inventory as of one
// sequence number) and an append-only log of the changes made since. A
// change costs one small frame appended and synced, however long the
// history; rewriting the whole inventory after every swap made each swap
// slower than the last. Once the log is long enough it is folded into a new
// base (compaction), so loading stays quick and the total cost stays linear.
//
// Files in dataDir:
//   inventory.msgpack       the base: record "inventory" { services, lastSeq } (disk.ts; a
//                           file written before the log existed has no lastSeq and reads as 0)
//   inventory.msgpack.prev  the base before it, used when the base is unreadable
//   inventory.log           frames after the base
//   inventory.log.prev      the frames the base folded in: what takes `.prev` up to the base
//   inventory.log.damaged   a log set aside after a damaged replay, kept to be looked at
// Each is created 0600 (disk.ts writes and appends nothing else), so the
// history of what ran is as private as the snapshots it describes.
//
// A frame is u32 LE payload length, the first 8 bytes of sha256(payload),
// then the payload: msgpack([LOG_FORMAT, seq, records]). A frame is one
// write: every record changed since the previous write, each whole, as it
// is after the change. The records a swap changes together (the old one
// replaced, the new one live) are in one frame and land together or not at
// all, as they did when the whole inventory was one file. `seq` numbers
// frames without gaps across every log file.
//
// Replay reads `inventory.log.prev` then `inventory.log`, skips the frames
// at or below the base's lastSeq and applies the rest, each of which must
// follow the last one applied. So a crash at any step of a compaction (new
// base written, old log not yet moved) replays to the same records. Replay
// stops at the first frame that is torn, fails its checksum, or does not
// follow: what comes before it is kept.

import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { rename, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Packr } from "msgpackr";
import { PACK_OPTIONS } from "../protocol/wire.ts";
import { appendDurably, readRecord, syncDirAsync, writeRecordAsync } from "./disk.ts";
import { ErrorCode, MoltError, toMoltError } from "./errors.ts";
import type { KernelLog } from "./log.ts";

export const LOG_FORMAT = 1;

const HEADER_BYTES = 12;
const SUM_BYTES = 8;
/** Larger than any version record: a length past it is corruption, not a record. */
const MAX_FRAME_BYTES = 16 << 20;

const packr = new Packr({ ...PACK_OPTIONS });

/** What the log knows of a record: which service's history it belongs to, and where. */
export interface LoggedRecord {
  service: string;
  /** Position in the service's history, from 1. */
  seq: number;
}

interface BaseFile<R> {
  services: Record<string, R[]>;
  /** The last frame folded into this base; absent in files written before the log. */
  lastSeq?: number;
}

export interface CompactionPolicy {
  /** Compact once the log holds at least this many frames… */
  minFrames: number;
  /** …and at least this fraction of the base's bytes, so that compactions get rarer as the history grows. */
  minBaseFraction: number;
}

export const DEFAULT_COMPACTION: CompactionPolicy = { minFrames: 1000, minBaseFraction: 0.25 };

export interface Frame<R> {
  seq: number;
  records: R[];
}

export class InventoryLog<R extends LoggedRecord> {
  readonly #base: string;
  readonly #log: string;
  readonly #policy: CompactionPolicy;
  #frames: number;
  #bytes: number;
  #baseBytes: number;
  /** Set after a damaged replay or a failed append: the log files to move aside before anything is appended. */
  #setAside: string[] | undefined;

  private constructor(dataDir: string, policy: CompactionPolicy, counts: { frames: number; bytes: number; baseBytes: number }, setAside?: string[]) {
    this.#base = join(dataDir, "inventory.msgpack");
    this.#log = join(dataDir, "inventory.log");
    this.#policy = policy;
    this.#frames = counts.frames;
    this.#bytes = counts.bytes;
    this.#baseBytes = counts.baseBytes;
    this.#setAside = setAside;
  }

  /**
   * Reads the base (its `.prev` if it is unreadable) and replays the log on
   * it. Damage in the log is reported in one log line and replay stops
   * there; nothing is written until the next change.
   */
  static load<R extends LoggedRecord>(
    dataDir: string,
    log: KernelLog | undefined,
    policy: CompactionPolicy = DEFAULT_COMPACTION,
  ): { files: InventoryLog<R>; services: Record<string, R[]>; lastSeq: number } {
    const basePath = join(dataDir, "inventory.msgpack");
    const logPath = join(dataDir, "inventory.log");
    const read = readRecord<BaseFile<R>>(basePath, "inventory");
    if (read?.recoveredFrom !== undefined) {
      log?.log("error", "inventory file corrupt; using the previous copy", { path: basePath, error: read.recoveredFrom.message });
    }
    const services = read?.value.services ?? {};
    let lastSeq = read?.value.lastSeq ?? 0;
    const counts = { frames: 0, bytes: 0, baseBytes: existsSync(basePath) ? statSync(basePath).size : 0 };
    const files = [`${logPath}.prev`, logPath].filter((f) => existsSync(f));
    for (const [i, path] of files.entries()) {
      const bytes = readFileSync(path);
      if (path === logPath) counts.bytes = bytes.byteLength;
      let offset = 0;
      let replayed = 0;
      while (offset < bytes.byteLength) {
        let frame: { value: Frame<R>; next: number };
        try {
          frame = readFrame<R>(bytes, offset, path);
          checkFollows(frame.value, lastSeq, services, path);
        } catch (err) {
          const damage = toMoltError(err, ErrorCode.CORRUPT);
          log?.log("error", "inventory log damaged; keeping the frames before it and ignoring the rest", {
            path,
            offset,
            frames: replayed,
            ignoredBytes: bytes.byteLength - offset,
            code: damage.code,
            error: damage.message,
          });
          return { files: new InventoryLog<R>(dataDir, policy, counts, files.slice(i)), services, lastSeq };
        }
        if (frame.value.seq > lastSeq) {
          for (const record of frame.value.records) apply(services, record);
          lastSeq = frame.value.seq;
          replayed++;
        }
        if (path === logPath) counts.frames++;
        offset = frame.next;
      }
    }
    return { files: new InventoryLog<R>(dataDir, policy, counts), services, lastSeq };
  }

  /** True when the log cannot take another frame: it ends in damage, or an append failed midway. Only a compaction clears it. */
  get damaged(): boolean {
    return this.#setAside !== undefined;
  }

  /** True when the log is long enough to be folded into a new base. */
  get due(): boolean {
    return this.#frames >= this.#policy.minFrames && this.#bytes >= this.#baseBytes * this.#policy.minBaseFraction;
  }

  /** Frames in the current log, for tests and benchmarks. */
  get frames(): number {
    return this.#frames;
  }

  /**
   * Appends a frame and syncs it. The frame is encoded before the first
   * await, so it holds its records as they are at the call. If the append
   * fails, the log may end torn: the next write compacts instead.
   */
  async append(frame: Frame<R>): Promise<void> {
    if (this.#setAside !== undefined) throw new MoltError(ErrorCode.INTERNAL, "the inventory log must be compacted before it is appended to");
    const bytes = encodeFrame(frame);
    try {
      await appendDurably(this.#log, bytes);
    } catch (err) {
      this.#setAside = [this.#log];
      throw err;
    }
    this.#frames++;
    this.#bytes += bytes.byteLength;
  }

  /**
   * Writes `services` as the new base and starts a fresh log. The base is
   * encoded before the first await, so it holds the records as they are at
   * the call. The old log becomes `.prev` (or, if it was damaged, is set
   * aside), and only after the new base is on disk: a crash in between
   * leaves a log whose frames the new base already holds, which replay skips.
   */
  async compact(services: Record<string, R[]>, lastSeq: number): Promise<void> {
    const setAside = this.#setAside;
    await writeRecordAsync(this.#base, "inventory", { services, lastSeq } satisfies BaseFile<R>);
    if (setAside !== undefined) {
      // Frames past the damage stay out of the replay path: a fresh log after them would never be reached.
      for (const path of setAside) if (existsSync(path)) await rename(path, `${path}.damaged`);
    } else if (existsSync(this.#log)) {
      await rename(this.#log, `${this.#log}.prev`);
    }
    await syncDirAsync(dirname(this.#base));
    this.#setAside = undefined;
    this.#frames = 0;
    this.#bytes = 0;
    this.#baseBytes = (await stat(this.#base)).size;
  }
}

function encodeFrame<R>(frame: Frame<R>): Buffer {
  const payload = packr.pack([LOG_FORMAT, frame.seq, frame.records]);
  const out = Buffer.allocUnsafe(HEADER_BYTES + payload.byteLength);
  out.writeUInt32LE(payload.byteLength, 0);
  createHash("sha256").update(payload).digest().copy(out, 4, 0, SUM_BYTES);
  payload.copy(out, HEADER_BYTES);
  return out;
}

/** The frame at `offset`; throws ERR_CORRUPT, saying why, if there is none to trust there. */
function readFrame<R>(bytes: Buffer, offset: number, path: string): { value: Frame<R>; next: number } {
  const corrupt = (why: string, cause?: unknown): MoltError => new MoltError(ErrorCode.CORRUPT, `${path} at byte ${offset}: ${why}`, { cause });
  if (offset + HEADER_BYTES > bytes.byteLength) throw corrupt("torn frame header (the file ends inside it)");
  const length = bytes.readUInt32LE(offset);
  if (length > MAX_FRAME_BYTES) throw corrupt(`frame length ${length} is not plausible`);
  const start = offset + HEADER_BYTES;
  if (start + length > bytes.byteLength) throw corrupt("torn frame (the file ends inside it)");
  const payload = bytes.subarray(start, start + length);
  const sum = createHash("sha256").update(payload).digest();
  if (!sum.subarray(0, SUM_BYTES).equals(bytes.subarray(offset + 4, start))) throw corrupt("frame fails its checksum");
  let envelope: unknown;
  try {
    envelope = packr.unpack(payload);
  } catch (cause) {
    throw corrupt("frame payload is not msgpack", cause);
  }
  if (
    !Array.isArray(envelope) ||
    envelope[0] !== LOG_FORMAT ||
    !Number.isInteger(envelope[1]) ||
    !Array.isArray(envelope[2]) ||
    !(envelope[2] as unknown[]).every(isLogged)
  ) {
    throw corrupt(`not an inventory frame of format ${LOG_FORMAT}`);
  }
  return { value: { seq: envelope[1] as number, records: envelope[2] as R[] }, next: start + length };
}

function isLogged(value: unknown): value is LoggedRecord {
  const r = value as Partial<LoggedRecord> | null;
  return typeof r === "object" && r !== null && typeof r.service === "string" && Number.isInteger(r.seq) && (r.seq as number) >= 1;
}

/** Throws ERR_CORRUPT unless the frame can be replayed after frame `lastSeq` (or is already in). */
function checkFollows<R extends LoggedRecord>(frame: Frame<R>, lastSeq: number, services: Record<string, R[]>, path: string): void {
  if (frame.seq <= lastSeq) return;
  if (frame.seq !== lastSeq + 1) {
    throw new MoltError(ErrorCode.CORRUPT, `${path}: frame ${frame.seq} does not follow frame ${lastSeq} (frames are missing)`);
  }
  const lengths = new Map<string, number>();
  for (const record of frame.records) {
    const known = lengths.get(record.service) ?? services[record.service]?.length ?? 0;
    if (record.seq > known + 1) {
      throw new MoltError(
        ErrorCode.CORRUPT,
        `${path}: frame ${frame.seq} holds record ${record.seq} of ${record.service}, which has ${known} (records are missing)`,
      );
    }
    lengths.set(record.service, Math.max(known, record.seq));
  }
}

/** Puts a record in its place: a new one at the end of its service's history, a changed one over its old self. */
function apply<R extends LoggedRecord>(services: Record<string, R[]>, record: R): void {
  const records = (services[record.service] ??= []);
  records[record.seq - 1] = record;
}
