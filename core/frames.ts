// Checksummed msgpack frames, the layout of molt's append-only files (the
// inventory's log lays its frames out the same way): u32 LE payload length,
// the first 8 bytes of sha256(payload), then the payload, msgpack. A frame is
// one write, so a crash leaves at worst a torn last frame, and the checksum
// tells a torn or flipped frame from a good one.
//
// A reader chooses what a damaged frame means. The inventory stops there
// (what follows may depend on it). A file of independent events can skip
// it instead: `scanFrames` looks for the next offset where a whole frame
// passes its checksum, which a stretch of damage cannot fake (one chance in
// 2^64 per offset), and counts each damaged stretch once.

import { createHash } from "node:crypto";
import { Packr } from "msgpackr";
import { PACK_OPTIONS } from "../protocol/wire.ts";

const HEADER_BYTES = 12;
const SUM_BYTES = 8;

const packr = new Packr({ ...PACK_OPTIONS });

/** One frame holding `value`. */
export function encodeFrame(value: unknown): Buffer {
  const payload = packr.pack(value);
  const out = Buffer.allocUnsafe(HEADER_BYTES + payload.byteLength);
  out.writeUInt32LE(payload.byteLength, 0);
  createHash("sha256").update(payload).digest().copy(out, 4, 0, SUM_BYTES);
  payload.copy(out, HEADER_BYTES);
  return out;
}

/** What a scan found: every value `accept` took, in order, and how many damaged stretches were skipped. */
export interface Scan<T> {
  values: T[];
  corrupt: number;
}

/**
 * Reads every frame of `bytes`, skipping damage. `accept` checks a decoded
 * payload and returns what to keep, or undefined for a frame that is whole
 * but not one of the reader's (counted as damage, like a torn one).
 */
export function scanFrames<T>(bytes: Uint8Array, maxFrameBytes: number, accept: (value: unknown) => T | undefined): Scan<T> {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const values: T[] = [];
  let corrupt = 0;
  let damaged = false;
  let offset = 0;
  while (offset < buffer.byteLength) {
    const frame = frameAt(buffer, offset, maxFrameBytes);
    const value = frame === undefined ? undefined : accept(frame.value);
    if (frame === undefined || value === undefined) {
      if (!damaged) corrupt++;
      damaged = true;
      offset++;
      continue;
    }
    damaged = false;
    values.push(value);
    offset = frame.next;
  }
  return { values, corrupt };
}

/** The frame at `offset` if a whole one is there and passes its checksum. */
function frameAt(bytes: Buffer, offset: number, maxFrameBytes: number): { value: unknown; next: number } | undefined {
  if (offset + HEADER_BYTES > bytes.byteLength) return undefined;
  const length = bytes.readUInt32LE(offset);
  const start = offset + HEADER_BYTES;
  if (length === 0 || length > maxFrameBytes || start + length > bytes.byteLength) return undefined;
  const payload = bytes.subarray(start, start + length);
  const sum = createHash("sha256").update(payload).digest();
  if (!sum.subarray(0, SUM_BYTES).equals(bytes.subarray(offset + 4, start))) return undefined;
  try {
    return { value: packr.unpack(payload), next: start + length };
  } catch {
    return undefined;
  }
}
