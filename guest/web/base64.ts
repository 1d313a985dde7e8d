// atob and btoa as the HTML Standard defines them, plus byte-level helpers,
// for a bare V8 isolate that has none of them. atob uses the standard's
// "forgiving-base64 decode", so it accepts exactly what browsers and Node do.

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Maps a character code to its six-bit value, or 0xff for anything that is
// not in the base64 alphabet.
const DECODE = new Uint8Array(128).fill(0xff);
for (let i = 0; i < ALPHABET.length; i++) DECODE[ALPHABET.charCodeAt(i)] = i;

// Names of the DOMException kinds these web APIs raise, with their legacy
// numeric codes, which some callers still compare against.
const DOM_EXCEPTION_CODES: Record<string, number> = {
  IndexSizeError: 1,
  NotFoundError: 8,
  NotSupportedError: 9,
  InvalidStateError: 11,
  SyntaxError: 12,
  InvalidCharacterError: 5,
  NetworkError: 19,
  AbortError: 20,
  TimeoutError: 23,
  DataCloneError: 25,
};

/**
 * A stand-in for the web's DOMException, which a bare isolate lacks. It lives
 * here because atob and btoa are the first APIs in this set that must throw
 * one; code that tests `err.name` behaves as it would in a browser.
 */
export class DOMException extends Error {
  readonly code: number;

  constructor(message: string = "", name: string = "Error") {
    super(message);
    // A plain assignment would make `name` an own property, as it is for
    // Error subclasses elsewhere; DOMException exposes it the same way.
    Object.defineProperty(this, "name", { value: name, writable: true, configurable: true, enumerable: false });
    this.code = DOM_EXCEPTION_CODES[name] ?? 0;
  }

  get [Symbol.toStringTag](): string {
    return "DOMException";
  }
}

function invalidCharacter(message: string): DOMException {
  return new DOMException(message, "InvalidCharacterError");
}

// String.fromCharCode.apply takes its arguments on the stack, so long outputs
// are converted in slices: 4096 code units measured fastest in V8, where
// slices of 16384 and more were several times slower.
const APPLY_CHUNK = 0x1000;

/** A string with one character (U+0000 to U+00FF) per byte. */
function bytesToBinaryString(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += APPLY_CHUNK) {
    out += String.fromCharCode.apply(null, bytes.subarray(i, i + APPLY_CHUNK) as unknown as number[]);
  }
  return out;
}

/** Encodes bytes as base64 with `=` padding. */
export function bytesToBase64(bytes: Uint8Array): string {
  const len = bytes.length;
  // The output is built as ASCII codes first, because one conversion of a
  // typed array is much cheaper than growing a string four characters a time.
  const out = new Uint8Array(Math.ceil(len / 3) * 4);
  let w = 0;
  let i = 0;
  for (; i + 2 < len; i += 3) {
    const n = ((bytes[i] as number) << 16) | ((bytes[i + 1] as number) << 8) | (bytes[i + 2] as number);
    out[w++] = ALPHABET.charCodeAt(n >> 18);
    out[w++] = ALPHABET.charCodeAt((n >> 12) & 63);
    out[w++] = ALPHABET.charCodeAt((n >> 6) & 63);
    out[w++] = ALPHABET.charCodeAt(n & 63);
  }
  const rest = len - i;
  if (rest > 0) {
    const n = ((bytes[i] as number) << 16) | (rest === 2 ? (bytes[i + 1] as number) << 8 : 0);
    out[w++] = ALPHABET.charCodeAt(n >> 18);
    out[w++] = ALPHABET.charCodeAt((n >> 12) & 63);
    out[w++] = rest === 2 ? ALPHABET.charCodeAt((n >> 6) & 63) : 0x3d;
    out[w++] = 0x3d;
  }
  return bytesToBinaryString(out);
}

/**
 * Decodes base64 by the HTML Standard's forgiving-base64 rules: ASCII
 * whitespace anywhere is ignored, padding may be left off, and the unused low
 * bits of the last character are ignored. Returns null where the standard
 * says "failure".
 */
function forgivingDecode(input: string): Uint8Array | null {
  // Whitespace is removed first, so the length checks below see only data.
  let data = /[\t\n\f\r ]/.test(input) ? input.replace(/[\t\n\f\r ]+/g, "") : input;
  let len = data.length;
  if (len % 4 === 0 && len > 0 && data.charCodeAt(len - 1) === 0x3d) {
    len -= data.charCodeAt(len - 2) === 0x3d ? 2 : 1;
    data = data.slice(0, len);
  }
  if (len % 4 === 1) return null;
  const out = new Uint8Array(Math.floor((len * 3) / 4));
  let w = 0;
  let buffer = 0;
  let bits = 0;
  for (let i = 0; i < len; i++) {
    const c = data.charCodeAt(i);
    const v = c < 128 ? (DECODE[c] as number) : 0xff;
    if (v === 0xff) return null;
    buffer = ((buffer << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[w++] = (buffer >> bits) & 0xff;
    }
  }
  return out;
}

/**
 * Decodes base64 (padded or not, whitespace ignored) into bytes.
 * Throws an InvalidCharacterError DOMException, as atob does, on bad input.
 */
export function base64ToBytes(input: string): Uint8Array {
  const bytes = forgivingDecode(String(input));
  if (bytes === null) throw invalidCharacter("The string to be decoded is not correctly encoded.");
  return bytes;
}

/** Encodes a binary string (every character U+0000 to U+00FF) as base64. */
export function btoa(data: string): string {
  if (arguments.length === 0) throw new TypeError("btoa: 1 argument required, but only 0 present.");
  const s = String(data);
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) throw invalidCharacter("The string to be encoded contains characters outside of the Latin1 range.");
    bytes[i] = c;
  }
  return bytesToBase64(bytes);
}

/** Decodes base64 into a binary string, one character per byte. */
export function atob(data: string): string {
  if (arguments.length === 0) throw new TypeError("atob: 1 argument required, but only 0 present.");
  return bytesToBinaryString(base64ToBytes(String(data)));
}

// whatwg-url-minimum, which url.ts re-exports, calls the global atob while
// its module is first evaluated, to unpack its IDNA tables, and a bare
// isolate has no atob. url.ts imports this module before that package, so
// this runs first and lends our atob; url.ts takes it back once the package
// has loaded, which leaves the isolate's globals as they were.
const globals = globalThis as { atob?: unknown };
let lentAtob = false;
if (typeof globals.atob !== "function") {
  Object.defineProperty(globals, "atob", { value: atob, writable: true, configurable: true, enumerable: false });
  lentAtob = true;
}

/** Removes the atob this module lent to globalThis for the URL package, if it did. */
export function returnLentAtob(): void {
  if (lentAtob && globals.atob === atob) delete globals.atob;
  lentAtob = false;
}
