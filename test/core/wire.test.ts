// The kernel's side of the wire format: what it hands to isolated-vm must
// be exact-size, because isolated-vm copies a view's whole underlying buffer.

import { describe, expect, it } from "vitest";
import { decode, encode, encodeRequest } from "../../core/wire.ts";

const exact = (bytes: Uint8Array): boolean => bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;

describe("encode", () => {
  it("returns bytes that own their buffer, also after a large value grew the encoder's working buffer", () => {
    expect(exact(encode({ small: 1 }))).toBe(true);
    const big = encode({ blob: "x".repeat(4 << 20) });
    expect(exact(big)).toBe(true);
    const small = encodeRequest("incr", 1);
    expect(exact(small)).toBe(true);
    expect(small.buffer.byteLength).toBeLessThan(64);
    expect(decode(small)).toEqual([expect.any(Number), "incr", 1]);
  });

  it("returns bytes no other encode shares, so handing them to an isolate (or transferring them) touches nothing else", () => {
    const first = encode(["first", 1]);
    const second = encode(["second", 2]);
    expect(first.buffer).not.toBe(second.buffer);
    // Transferring a result's buffer detaches it; a buffer shared with the
    // encoder would take the encoder's working buffer, and every later result, with it.
    structuredClone(first.buffer, { transfer: [first.buffer as ArrayBuffer] });
    expect(first.byteLength).toBe(0);
    expect(decode(second)).toEqual(["second", 2]);
    expect(decode(encode(["third", 3]))).toEqual(["third", 3]);
  });
});
