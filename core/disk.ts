// Durable files: what molt writes to dataDir (inventory, snapshots, bundles,
// the admin token). Every write is atomic (temporary file, fsync, rename,
// fsync of the folder), and every record file is msgpack in a versioned
// envelope with a checksum, so a torn or corrupted file is detected on read
// and the previous good copy (kept as `<name>.prev`) is used instead.

import { createHash } from "node:crypto";
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { mkdir, open, rename } from "node:fs/promises";
import { dirname } from "node:path";
import { Packr } from "msgpackr";
import { PACK_OPTIONS } from "../protocol/wire.ts";
import { ErrorCode, MoltError } from "./errors.ts";

export const FILE_FORMAT = 1;

const packr = new Packr({ ...PACK_OPTIONS });

/** Writes bytes so that a crash leaves either the old file or the new one, never a mix. */
export function writeAtomic(path: string, bytes: Uint8Array | string, options: { mode?: number; keepPrevious?: boolean } = {}): void {
  mkdirSync(dirname(path), { recursive: true });
  const temp = `${path}.${process.pid}.tmp`;
  const fd = openSync(temp, "w", options.mode ?? 0o644);
  try {
    const data = typeof bytes === "string" ? Buffer.from(bytes) : bytes;
    let written = 0;
    while (written < data.byteLength) written += writeSync(fd, data, written);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  if (options.keepPrevious === true && existsSync(path)) renameSync(path, `${path}.prev`);
  renameSync(temp, path);
  syncDir(dirname(path));
}

/**
 * The same as writeAtomic, without blocking the event loop: for snapshots,
 * which can be megabytes and are written while every service keeps serving.
 */
export async function writeAtomicAsync(path: string, bytes: Uint8Array, options: { keepPrevious?: boolean } = {}): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  const file = await open(temp, "w", 0o644);
  try {
    await file.writeFile(bytes);
    await file.sync();
  } finally {
    await file.close();
  }
  if (options.keepPrevious === true && existsSync(path)) await rename(path, `${path}.prev`);
  await rename(temp, path);
  const dir = await open(dirname(path), "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/**
 * Appends bytes to a file and waits until they are on disk (fdatasync: the
 * data and the file's new size). A file this call creates also has its
 * folder synced, so that its name survives a crash as well as its content.
 * A crash during the append can leave a torn tail: readers of an
 * append-only file must detect it (see inventory-log.ts).
 */
export async function appendDurably(path: string, bytes: Uint8Array): Promise<void> {
  const created = !existsSync(path);
  if (created) await mkdir(dirname(path), { recursive: true });
  const file = await open(path, "a", 0o644);
  try {
    await file.writeFile(bytes);
    await file.datasync();
  } finally {
    await file.close();
  }
  if (created) await syncDirAsync(dirname(path));
}

/** Makes the renames, creations and removals in a folder durable. */
export async function syncDirAsync(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function syncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** A record file: msgpack([FILE_FORMAT, kind, body, sha256(body)]), the previous copy kept. */
export function writeRecord(path: string, kind: string, value: unknown): void {
  writeAtomic(path, encodeRecord(kind, value), { keepPrevious: true });
}

export function writeRecordAsync(path: string, kind: string, value: unknown): Promise<void> {
  return writeAtomicAsync(path, encodeRecord(kind, value), { keepPrevious: true });
}

function encodeRecord(kind: string, value: unknown): Uint8Array {
  const body = packr.pack(value).slice();
  const sum = createHash("sha256").update(body).digest();
  return packr.pack([FILE_FORMAT, kind, body, sum]).slice();
}

export interface ReadResult<T> {
  value: T;
  /** Set when the current file was unreadable and the previous copy was used. */
  recoveredFrom?: MoltError;
}

/**
 * Reads a record file. A missing file gives undefined; a corrupt one falls
 * back to the previous copy, reporting why; if both are bad, ERR_CORRUPT.
 */
export function readRecord<T>(path: string, kind: string): ReadResult<T> | undefined {
  if (!existsSync(path) && !existsSync(`${path}.prev`)) return undefined;
  let failure: MoltError | undefined;
  for (const candidate of [path, `${path}.prev`]) {
    if (!existsSync(candidate)) continue;
    try {
      const value = decodeRecord<T>(readFileSync(candidate), kind, candidate);
      return failure === undefined ? { value } : { value, recoveredFrom: failure };
    } catch (err) {
      failure ??= err as MoltError;
    }
  }
  throw failure ?? new MoltError(ErrorCode.CORRUPT, `${path} is unreadable`);
}

function decodeRecord<T>(bytes: Uint8Array, kind: string, path: string): T {
  let envelope: unknown;
  try {
    envelope = packr.unpack(bytes);
  } catch (cause) {
    throw new MoltError(ErrorCode.CORRUPT, `${path} is not a molt record (truncated or overwritten)`, { cause });
  }
  if (!Array.isArray(envelope) || envelope[0] !== FILE_FORMAT || envelope[1] !== kind) {
    throw new MoltError(ErrorCode.CORRUPT, `${path} is not a ${kind} record of format ${FILE_FORMAT}`);
  }
  const [, , body, sum] = envelope as [number, string, Uint8Array, Uint8Array];
  const actual = createHash("sha256").update(body).digest();
  if (!(sum instanceof Uint8Array) || !actual.equals(sum)) {
    throw new MoltError(ErrorCode.CORRUPT, `${path} fails its checksum`);
  }
  return packr.unpack(body) as T;
}
