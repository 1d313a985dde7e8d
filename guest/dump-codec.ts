// How a dump is encoded and decoded: a service's state on its way from one
// instance to the next (a swap, a rollback, a snapshot on disk).
//
// A dump is msgpack([DUMP_VERSION, stateVersion, value, codec]). msgpackr's
// structured clone keeps an object that the state holds in two places, or in
// a cycle, one object in the next version. It does so by remembering every
// object it writes, which made it two to four times slower than the same
// encoding without it on a large state. A state in which no object is reached
// twice, the common case, is written without that tracking. Its bytes are
// then the ones structured clone writes for it (there is nothing to refer
// back to), so one decoder reads both, and so does every reader of dumps:
// the kernel's, and a runtime from before the choice, which reads the first
// three elements. Dumps from before the choice have three elements and were
// all written with references tracked.
//
// Knowing that no object is reached twice takes a Set of every object
// (guest/plain-state.ts), which costs less than the tracking it spares but
// is wasted on a state that does share one. So a state is assumed to be as
// its last dump found it: one that shared an object is written as before
// (the cheaper plain-data walk, then structured clone) and never checked
// for sharing again in this instance; any other is checked on every dump.

import { Packr } from "msgpackr";
import { DUMP_VERSION, PACK_OPTIONS } from "../protocol/wire.ts";
import { ErrorCode, MoltError } from "./errors.ts";
import { findNonPlain, inspectState, type NonPlain } from "./plain-state.ts";

/** Which codec wrote a dump's value: the envelope's fourth element. */
export const DumpCodec = {
  /** msgpackr's structured clone: an object reached twice is written once and referred back to. */
  TRACKED: 0,
  /** Plain msgpack with the same types, for a state in which no object is reached twice. */
  TREE: 1,
} as const;
export type DumpCodec = (typeof DumpCodec)[keyof typeof DumpCodec];

/** A dump as restore reads it. */
export interface Dump {
  stateVersion: number;
  value: unknown;
  codec: DumpCodec;
}

const tracked = new Packr({ ...PACK_OPTIONS, writeFunction: unencodable });
// The same types as structured clone (which turns moreTypes on), without its reference tracking.
const tree = new Packr({ ...PACK_OPTIONS, structuredClone: false, moreTypes: true, writeFunction: unencodable });

function unencodable(): never {
  throw new MoltError(ErrorCode.UNENCODABLE, "functions cannot cross an isolate boundary");
}

// msgpackr writes into Buffers on Node (where the tests run this file), and
// calls their own methods, and into Uint8Arrays in an isolate: a buffer
// handed to it must be of its kind. Buffer's constructor is deprecated, so
// a Buffer is made by its `alloc`; Uint8Array has none.
const ByteArray = (tracked.pack(null) as Uint8Array).constructor as { new (length: number): Uint8Array; alloc?: unknown };
const allocate: (length: number) => Uint8Array =
  typeof ByteArray.alloc === "function" ? (ByteArray.alloc.bind(ByteArray) as (length: number) => Uint8Array) : (length) => new ByteArray(length);

// Captured when the runtime script runs, before any service code exists.
const reflectApply = Reflect.apply;
const bytesSlice = Uint8Array.prototype.slice;
const isArray = Array.isArray;

/** Whether this instance's state shared an object at its last dump, written or restored (see above). */
let lastShared = false;
/**
 * The size of this instance's last dump, written or restored. The next dump
 * is packed into a buffer that size and an eighth, allocated at once:
 * msgpackr's own buffer starts at 8 KB and grows fourfold, copying what it
 * wrote each time, which took half the pack's time at 10 MB (bench/README.md).
 */
let lastBytes = 0;

/**
 * The dump of `value`, written at `stateVersion`. A class instance would
 * reach the next version as its fields without its methods: it is refused
 * with ERR_STATE_NOT_PLAIN, naming where it is (`root` names the value), so
 * a swap rolls back, in its rehearsal when it has one, before anything
 * pauses, instead of committing a state every handler then fails on.
 */
export function encodeDump(stateVersion: number, value: unknown, root: string, service: string): Uint8Array {
  const { bytes, codec } = write(stateVersion, value, root, service, lastShared, lastBytes);
  lastShared = codec === DumpCodec.TRACKED;
  lastBytes = bytes.byteLength;
  return bytes;
}

/** Reads a dump written by either codec, or before there was a choice; ERR_BAD_MESSAGE for anything else. */
export function decodeDump(bytes: Uint8Array): Dump {
  const dump = read(bytes);
  // A dump from before the choice says nothing of sharing: the next dump checks.
  lastShared = dump.codec === DumpCodec.TRACKED && dump.marked;
  lastBytes = bytes.byteLength;
  return { stateVersion: dump.stateVersion, value: dump.value, codec: dump.codec };
}

/** How many times warmDumpCodec ran: each run takes the next of its four ways. */
let warmings = 0;

/**
 * One round trip of `sample` through the next of the four ways a dump can
 * be written (as it is or held twice, checked for sharing or assumed
 * shared), so that over a few calls V8 has compiled every path before a
 * dump or a restore needs it: the first run of a function in a fresh
 * isolate is interpreted. One way a call, so that an instance's boot pays
 * what it paid for one codec. What this instance assumes of its state is
 * left as it was.
 */
export function warmDumpCodec(sample: unknown): void {
  const way = warmings++ % 4;
  read(write(1, way < 2 ? sample : [sample, sample], "state", "", way % 2 === 1, 0).bytes);
}

function write(
  stateVersion: number,
  value: unknown,
  root: string,
  service: string,
  assumeShared: boolean,
  sizeHint: number,
): { bytes: Uint8Array; codec: DumpCodec } {
  let nonPlain: NonPlain | undefined;
  let codec: DumpCodec;
  if (assumeShared) {
    nonPlain = findNonPlain(value, root);
    codec = DumpCodec.TRACKED;
  } else {
    const shape = inspectState(value, root);
    nonPlain = shape.nonPlain;
    codec = shape.shared ? DumpCodec.TRACKED : DumpCodec.TREE;
  }
  if (nonPlain !== undefined) {
    throw new MoltError(
      ErrorCode.STATE_NOT_PLAIN,
      `${nonPlain.path} is an instance of ${nonPlain.className}: a dump carries plain data (objects, arrays, Map, Set, Date, binary), ` +
        "so its methods would be gone in the next version; keep plain data in the state, or turn it into plain data in `dump` and rebuild it in `restore`",
      { service },
    );
  }
  return { bytes: encode(codec === DumpCodec.TREE ? tree : tracked, [DUMP_VERSION, stateVersion, value, codec], sizeHint), codec };
}

function read(bytes: Uint8Array): Dump & { marked: boolean } {
  const decoded = tracked.unpack(bytes) as unknown;
  if (!isArray(decoded) || decoded[0] !== DUMP_VERSION) {
    throw new MoltError(ErrorCode.BAD_MESSAGE, `unknown dump envelope ${isArray(decoded) ? String(decoded[0]) : typeof decoded}`);
  }
  const marked = decoded.length >= 4;
  const codec = marked ? decoded[3] : DumpCodec.TRACKED;
  // A codec this runtime does not know may have written values it would read wrongly.
  if (codec !== DumpCodec.TRACKED && codec !== DumpCodec.TREE) throw new MoltError(ErrorCode.BAD_MESSAGE, `unknown dump codec ${String(codec)}`);
  return { stateVersion: decoded[1] as number, value: decoded[2], codec, marked };
}

/** Below this, msgpackr's own buffer (8 KB to start with) grows once or not at all. */
const PREALLOCATE_FROM = 64 * 1024;

/**
 * Encodes to an exact-size copy: isolated-vm copies a view's whole buffer,
 * and msgpackr reuses its own. With a `sizeHint` past PREALLOCATE_FROM, into
 * a buffer of that size and an eighth, which msgpackr still grows if the
 * state grew more than that.
 */
function encode(packr: Packr, envelope: unknown[], sizeHint: number): Uint8Array {
  try {
    if (sizeHint >= PREALLOCATE_FROM) packr.useBuffer(allocate(sizeHint + (sizeHint >> 3) + 1024));
    return reflectApply(bytesSlice, packr.pack(envelope), []) as Uint8Array;
  } catch (err) {
    if (err instanceof MoltError) throw err;
    throw new MoltError(ErrorCode.UNENCODABLE, `value cannot be encoded: ${(err as Error).message}`);
  }
}
