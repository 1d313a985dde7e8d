// Durable files: what molt writes to dataDir (inventory, snapshots, bundles,
// the admin token). Every write is atomic (temporary file, fsync, rename,
// fsync of the folder), and every record file is msgpack in a versioned
// envelope with a checksum, so a torn or corrupted file is detected on read
// and the previous good copy (kept as `<name>.prev`) is used instead.
//
// Everything here is private to the user molt runs as: files are created
// 0600 and folders 0700, because snapshots hold services' state and bundles
// their code, and neither is other local users' business. Files are opened
// for writing with O_NOFOLLOW (temporary files and appended logs alike), so
// a symlink planted at their name is never written through.

import { createHash } from "node:crypto";
import {
  chmodSync,
  closeSync,
  constants,
  existsSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeSync,
} from "node:fs";
import { mkdir, open, rename } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Packr } from "msgpackr";
import { PACK_OPTIONS } from "../protocol/wire.ts";
import { ErrorCode, MoltError } from "./errors.ts";

export const FILE_FORMAT = 1;

/** The mode of every file molt writes to dataDir. */
export const FILE_MODE = 0o600;
/** The mode of every folder molt creates in dataDir (and of dataDir itself). */
export const DIR_MODE = 0o700;

/** The sticky bit: a folder shared by several users (like /tmp), which is not molt's to make private. */
const STICKY = 0o1000;

/** Create or truncate, write only, and never through a symlink at the name. */
const WRITE_NEW = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;
/** Append, creating the file if needed, never through a symlink at the name. */
const APPEND = constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_NOFOLLOW;

const packr = new Packr({ ...PACK_OPTIONS });

/** Writes bytes so that a crash leaves either the old file or the new one, never a mix. */
export function writeAtomic(path: string, bytes: Uint8Array | string, options: { mode?: number; keepPrevious?: boolean } = {}): void {
  mkdirSync(dirname(path), { recursive: true, mode: DIR_MODE });
  const temp = `${path}.${process.pid}.tmp`;
  const fd = openSync(temp, WRITE_NEW, options.mode ?? FILE_MODE);
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
  await mkdir(dirname(path), { recursive: true, mode: DIR_MODE });
  const temp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  const file = await open(temp, WRITE_NEW, FILE_MODE);
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
  if (created) await mkdir(dirname(path), { recursive: true, mode: DIR_MODE });
  const file = await open(path, APPEND, FILE_MODE);
  try {
    await file.writeFile(bytes);
    await file.datasync();
  } finally {
    await file.close();
  }
  if (created) await syncDirAsync(dirname(path));
}

/**
 * Makes an existing dataDir private, as molt now creates it: the folder and
 * its subfolders 0700, the files in them 0600. Versions before this wrote
 * 0644 files in 0755 folders, and a rename keeps the new file's mode but
 * an append keeps the old one, so the files already there are fixed too.
 * Only what the current user owns is changed, symlinks are never followed,
 * and a shared folder (one with the sticky bit, like /tmp) is left alone:
 * dataDir may be a folder molt did not create. Creates dataDir (0700) when
 * it does not exist. Returns the paths whose mode it changed.
 */
export function tightenDataDir(dataDir: string): string[] {
  mkdirSync(dataDir, { recursive: true, mode: DIR_MODE });
  const changed: string[] = [];
  const uid = process.getuid?.();
  const tighten = (path: string, follow: boolean, depth: number): void => {
    let stat;
    try {
      stat = follow ? statSync(path) : lstatSync(path);
    } catch {
      return;
    }
    if (uid !== undefined && stat.uid !== uid) return;
    if (stat.isDirectory()) {
      if ((stat.mode & STICKY) !== 0) return;
      if ((stat.mode & 0o077) !== 0) {
        chmodSync(path, DIR_MODE);
        changed.push(path);
      }
      // Two levels reach every file molt writes: dataDir's own folders (snapshots/, bundles/) hold only files.
      if (depth < 2) for (const name of readdirSync(path)) tighten(join(path, name), false, depth + 1);
    } else if (stat.isFile() && (stat.mode & 0o077) !== 0) {
      chmodSync(path, FILE_MODE);
      changed.push(path);
    }
  };
  // dataDir itself may be a symlink to a folder elsewhere: the user chose it, so it is followed; nothing under it is.
  tighten(dataDir, true, 0);
  return changed;
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
