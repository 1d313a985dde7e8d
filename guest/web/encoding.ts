// TextEncoder and TextDecoder for a bare V8 isolate, which has neither.
// Only UTF-8 is supported, as the WHATWG Encoding Standard requires of
// TextEncoder and as nearly every caller of TextDecoder expects. The decoder
// follows the standard's UTF-8 decoder algorithm step by step, so malformed
// input yields U+FFFD per "maximal subpart", exactly as browsers and Node do.

/** What `encodeInto` reports: UTF-16 code units read, bytes written. */
export interface TextEncoderEncodeIntoResult {
  read: number;
  written: number;
}

export interface TextDecoderOptions {
  fatal?: boolean | undefined;
  ignoreBOM?: boolean | undefined;
}

export interface TextDecodeOptions {
  stream?: boolean | undefined;
}

export type BufferSourceLike = ArrayBuffer | SharedArrayBuffer | ArrayBufferView;

const REPLACEMENT = 0xfffd;

// String.fromCharCode.apply takes its arguments on the stack, so long outputs
// are converted in slices: 4096 code units measured fastest in V8, where
// slices of 16384 and more were several times slower.
const APPLY_CHUNK = 0x1000;

/** Turns UTF-16 code units into a string, in slices the stack can take. */
function codeUnitsToString(units: Uint16Array, length: number): string {
  if (length <= APPLY_CHUNK) {
    return String.fromCharCode.apply(null, units.subarray(0, length) as unknown as number[]);
  }
  let out = "";
  for (let i = 0; i < length; i += APPLY_CHUNK) {
    const end = Math.min(i + APPLY_CHUNK, length);
    out += String.fromCharCode.apply(null, units.subarray(i, end) as unknown as number[]);
  }
  return out;
}

/** The number of UTF-8 bytes `s` encodes to, lone surrogates counting as U+FFFD. */
function utf8Length(s: string): number {
  let n = 0;
  const len = s.length;
  for (let i = 0; i < len; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < len) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else {
        n += 3;
      }
    } else n += 3;
  }
  return n;
}

/**
 * Writes the UTF-8 form of `s` into `out`, stopping before the first code
 * point that would not fit whole. Lone surrogates are written as U+FFFD,
 * because UTF-8 cannot carry them.
 */
function writeUtf8(s: string, out: Uint8Array): TextEncoderEncodeIntoResult {
  const len = s.length;
  const cap = out.length;
  let i = 0;
  let w = 0;
  while (i < len) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      if (w >= cap) break;
      out[w++] = c;
      i++;
      continue;
    }
    let units = 1;
    if (c >= 0xd800 && c <= 0xdfff) {
      const d = c <= 0xdbff && i + 1 < len ? s.charCodeAt(i + 1) : 0;
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        units = 2;
      } else {
        c = REPLACEMENT;
      }
    }
    if (c < 0x800) {
      if (w + 2 > cap) break;
      out[w++] = 0xc0 | (c >> 6);
      out[w++] = 0x80 | (c & 0x3f);
    } else if (c < 0x10000) {
      if (w + 3 > cap) break;
      out[w++] = 0xe0 | (c >> 12);
      out[w++] = 0x80 | ((c >> 6) & 0x3f);
      out[w++] = 0x80 | (c & 0x3f);
    } else {
      if (w + 4 > cap) break;
      out[w++] = 0xf0 | (c >> 18);
      out[w++] = 0x80 | ((c >> 12) & 0x3f);
      out[w++] = 0x80 | ((c >> 6) & 0x3f);
      out[w++] = 0x80 | (c & 0x3f);
    }
    i += units;
  }
  return { read: i, written: w };
}

/** Encodes a string as UTF-8 bytes; the only encoding the standard allows. */
export class TextEncoder {
  get encoding(): "utf-8" {
    return "utf-8";
  }

  encode(input: string = ""): Uint8Array {
    const s = String(input);
    const out = new Uint8Array(utf8Length(s));
    writeUtf8(s, out);
    return out;
  }

  encodeInto(source: string, destination: Uint8Array): TextEncoderEncodeIntoResult {
    if (!(destination instanceof Uint8Array)) {
      throw new TypeError("TextEncoder.encodeInto: destination must be a Uint8Array");
    }
    return writeUtf8(String(source), destination);
  }

  get [Symbol.toStringTag](): string {
    return "TextEncoder";
  }
}

// Every label the Encoding Standard maps to UTF-8; any other label names an
// encoding this isolate does not carry, which the standard says is a RangeError.
const UTF8_LABELS = new Set([
  "unicode-1-1-utf-8",
  "unicode11utf8",
  "unicode20utf8",
  "utf-8",
  "utf8",
  "x-unicode20utf8",
]);

/** Strips the ASCII whitespace the Encoding Standard allows around a label. */
function trimAsciiWhitespace(s: string): string {
  return s.replace(/^[\t\n\f\r ]+|[\t\n\f\r ]+$/g, "");
}

/** A byte view of any BufferSource, shared with the caller's memory, not copied. */
export function toBytes(input: BufferSourceLike): Uint8Array {
  if (input instanceof Uint8Array) return input;
  if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  // The tag check, unlike instanceof, also accepts buffers made in another realm.
  const tag = Object.prototype.toString.call(input);
  if (tag === "[object ArrayBuffer]" || tag === "[object SharedArrayBuffer]") {
    return new Uint8Array(input as ArrayBuffer);
  }
  throw new TypeError("The provided value is not of type '(ArrayBuffer or ArrayBufferView)'");
}

/** Decodes UTF-8 bytes, whole or as a stream of chunks. */
export class TextDecoder {
  readonly #fatal: boolean;
  readonly #ignoreBOM: boolean;
  // The state of the standard's UTF-8 decoder, carried between streamed chunks.
  #codePoint = 0;
  #bytesSeen = 0;
  #bytesNeeded = 0;
  #lower = 0x80;
  #upper = 0xbf;
  #bomSeen = false;
  #doNotFlush = false;

  constructor(label: string = "utf-8", options?: TextDecoderOptions | null) {
    const name = trimAsciiWhitespace(String(label)).toLowerCase();
    if (!UTF8_LABELS.has(name)) {
      throw new RangeError(`The encoding label provided ('${String(label)}') is not supported`);
    }
    // WebIDL reads a missing or null options dictionary as an empty one.
    this.#fatal = Boolean(options?.fatal);
    this.#ignoreBOM = Boolean(options?.ignoreBOM);
  }

  get encoding(): "utf-8" {
    return "utf-8";
  }

  get fatal(): boolean {
    return this.#fatal;
  }

  get ignoreBOM(): boolean {
    return this.#ignoreBOM;
  }

  decode(input?: BufferSourceLike, options?: TextDecodeOptions | null): string {
    // A call after a non-streaming one starts a fresh stream, as the standard says.
    if (!this.#doNotFlush) {
      this.#resetDecoder();
      this.#bomSeen = false;
    }
    this.#doNotFlush = Boolean(options?.stream);
    const bytes = input === undefined ? new Uint8Array(0) : toBytes(input);
    let text = this.#run(bytes, !this.#doNotFlush);
    // The standard drops one U+FEFF at the very start of the stream unless
    // told not to; "start" means the first code point or error produced.
    if (!this.#ignoreBOM && !this.#bomSeen && text.length > 0) {
      this.#bomSeen = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    return text;
  }

  get [Symbol.toStringTag](): string {
    return "TextDecoder";
  }

  #resetDecoder(): void {
    this.#codePoint = 0;
    this.#bytesSeen = 0;
    this.#bytesNeeded = 0;
    this.#lower = 0x80;
    this.#upper = 0xbf;
  }

  /** Feeds bytes through the decoder; `flush` marks the end of the stream. */
  #run(bytes: Uint8Array, flush: boolean): string {
    const fatal = this.#fatal;
    // The decoder state lives in locals while the loop runs, because private
    // field access in the hot loop is measurably slower; it is stored back
    // before returning or throwing.
    let codePoint = this.#codePoint;
    let bytesSeen = this.#bytesSeen;
    let bytesNeeded = this.#bytesNeeded;
    let lower = this.#lower;
    let upper = this.#upper;
    const len = bytes.length;
    // Each byte yields at most one code unit (a four-byte sequence yields
    // two), plus one U+FFFD for a sequence left over from the previous chunk
    // and one more for a sequence cut off by the end of the stream.
    const out = new Uint16Array(len + 2);
    let w = 0;
    let i = 0;
    let failed = false;
    while (i < len) {
      const byte = bytes[i] as number;
      if (bytesNeeded === 0) {
        i++;
        if (byte < 0x80) {
          out[w++] = byte;
        } else if (byte >= 0xc2 && byte <= 0xdf) {
          bytesNeeded = 1;
          codePoint = byte & 0x1f;
        } else if (byte >= 0xe0 && byte <= 0xef) {
          if (byte === 0xe0) lower = 0xa0;
          else if (byte === 0xed) upper = 0x9f;
          bytesNeeded = 2;
          codePoint = byte & 0x0f;
        } else if (byte >= 0xf0 && byte <= 0xf4) {
          if (byte === 0xf0) lower = 0x90;
          else if (byte === 0xf4) upper = 0x8f;
          bytesNeeded = 3;
          codePoint = byte & 0x07;
        } else {
          if (fatal) {
            failed = true;
            break;
          }
          out[w++] = REPLACEMENT;
        }
        continue;
      }
      if (byte < lower || byte > upper) {
        // The sequence so far is a maximal subpart: it becomes one U+FFFD,
        // and this byte is looked at again as the start of something new.
        codePoint = bytesSeen = bytesNeeded = 0;
        lower = 0x80;
        upper = 0xbf;
        if (fatal) {
          failed = true;
          break;
        }
        out[w++] = REPLACEMENT;
        continue;
      }
      i++;
      lower = 0x80;
      upper = 0xbf;
      codePoint = (codePoint << 6) | (byte & 0x3f);
      if (++bytesSeen !== bytesNeeded) continue;
      if (codePoint < 0x10000) {
        out[w++] = codePoint;
      } else {
        out[w++] = 0xd800 + ((codePoint - 0x10000) >> 10);
        out[w++] = 0xdc00 + ((codePoint - 0x10000) & 0x3ff);
      }
      codePoint = bytesSeen = bytesNeeded = 0;
    }
    if (!failed && flush && bytesNeeded !== 0) {
      // The stream ended inside a sequence: that truncated sequence is one error.
      codePoint = bytesSeen = bytesNeeded = 0;
      lower = 0x80;
      upper = 0xbf;
      if (fatal) failed = true;
      else out[w++] = REPLACEMENT;
    }
    if (failed) {
      // After an error in fatal mode the rest of the input is abandoned, and
      // the decoder starts clean on the next call.
      this.#resetDecoder();
      throw new TypeError("The encoded data was not valid for encoding utf-8");
    }
    this.#codePoint = codePoint;
    this.#bytesSeen = bytesSeen;
    this.#bytesNeeded = bytesNeeded;
    this.#lower = lower;
    this.#upper = upper;
    return codeUnitsToString(out, w);
  }
}
