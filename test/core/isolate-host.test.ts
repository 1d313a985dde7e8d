// core/isolate-host.ts — own(): what enters an isolate owns its whole buffer, since isolated-vm
// copies a view's entire underlying buffer across.

import { describe, expect, it } from "vitest";
import { own } from "../../core/isolate-host.ts";

describe("own", () => {
  it("passes exact-size bytes as they are", () => {
    const bytes = new Uint8Array([1, 2, 3]);
    expect(own(bytes)).toBe(bytes);
  });

  it("copies a view of a larger buffer into bytes of its own, same content", () => {
    const big = new Uint8Array(1 << 20).fill(7);
    big.set([1, 2, 3], 100);
    const view = big.subarray(100, 103);
    const owned = own(view);
    expect(owned).not.toBe(view);
    expect(owned.buffer.byteLength).toBe(3);
    expect(Array.from(owned)).toEqual([1, 2, 3]);
    const pooled = Buffer.from("abc");
    expect(own(pooled).buffer.byteLength).toBe(3);
  });
});
