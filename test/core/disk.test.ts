// Durable files: atomic writes that leave the old file or the new one, record
// files that detect a torn or corrupted copy and fall back to the previous
// one, and appends that keep what was appended before. Modes and symlinks
// are in disk-modes.test.ts.

import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { appendDurably, readRecord, writeAtomic, writeAtomicAsync, writeRecord, writeRecordAsync } from "../../core/disk.ts";
import { codeOf } from "../support/codes.ts";

const fresh = (): string => mkdtempSync(join(tmpdir(), "molt-disk-"));


/** Flips bytes in the middle of a file, as a bad sector or a stray write would. */
function corrupt(path: string): void {
  const bytes = readFileSync(path);
  const mid = Math.floor(bytes.length / 2);
  bytes.writeUInt16BE(bytes.readUInt16BE(mid) ^ 0xffff, mid);
  writeFileSync(path, bytes);
}

describe("writeAtomic", () => {
  it("replaces a file whole, keeps the previous one only when asked, and leaves no temporary file behind", async () => {
    const dir = fresh();
    const path = join(dir, "sub", "file.bin");
    writeAtomic(path, "first");
    writeAtomic(path, "second", { keepPrevious: true });
    expect(readFileSync(path, "utf8")).toBe("second");
    expect(readFileSync(`${path}.prev`, "utf8")).toBe("first");
    writeAtomic(path, new Uint8Array([0x74, 0x68, 0x69, 0x72, 0x64]));
    expect(readFileSync(path, "utf8")).toBe("third");
    expect(readFileSync(`${path}.prev`, "utf8")).toBe("first");
    await writeAtomicAsync(path, new TextEncoder().encode("fourth"), { keepPrevious: true });
    expect(readFileSync(path, "utf8")).toBe("fourth");
    expect(readFileSync(`${path}.prev`, "utf8")).toBe("third");
    expect(readdirSync(join(dir, "sub")).sort()).toEqual(["file.bin", "file.bin.prev"]);
  });
});

describe("appendDurably", () => {
  it("creates the file and its folder, and appends after what is there", async () => {
    const path = join(fresh(), "logs", "a.log");
    await appendDurably(path, new TextEncoder().encode("one "));
    await appendDurably(path, new TextEncoder().encode("two"));
    expect(readFileSync(path, "utf8")).toBe("one two");
  });
});

describe("record files", () => {
  it("read back what was written, Maps, dates and bytes included", async () => {
    const dir = fresh();
    const value = { n: 1, map: new Map([["k", [1, 2]]]), when: new Date(5), bytes: new Uint8Array([7, 8]) };
    writeRecord(join(dir, "sync.msgpack"), "thing", value);
    await writeRecordAsync(join(dir, "async.msgpack"), "thing", value);
    for (const name of ["sync.msgpack", "async.msgpack"]) {
      const read = readRecord<typeof value>(join(dir, name), "thing");
      expect(read?.recoveredFrom).toBeUndefined();
      expect(read?.value.n).toBe(1);
      expect(read?.value.map.get("k")).toEqual([1, 2]);
      expect(read?.value.when.getTime()).toBe(5);
      expect([...(read?.value.bytes ?? [])]).toEqual([7, 8]);
    }
  });

  it("give undefined for a record never written", () => {
    expect(readRecord(join(fresh(), "none.msgpack"), "thing")).toBeUndefined();
  });

  it("fall back to the previous copy when the current one fails its checksum, saying why with ERR_CORRUPT", () => {
    const path = join(fresh(), "r.msgpack");
    writeRecord(path, "thing", { version: 1, pad: "x".repeat(200) });
    writeRecord(path, "thing", { version: 2, pad: "x".repeat(200) });
    corrupt(path);
    const read = readRecord<{ version: number }>(path, "thing");
    expect(read?.value.version).toBe(1);
    expect(read?.recoveredFrom?.code).toBe("ERR_CORRUPT");
  });

  it("fall back to the previous copy when the current one is torn (cut short) or is not a record", () => {
    const path = join(fresh(), "r.msgpack");
    writeRecord(path, "thing", { version: 1 });
    writeRecord(path, "thing", { version: 2 });
    writeFileSync(path, readFileSync(path).subarray(0, 12));
    expect(readRecord<{ version: number }>(path, "thing")?.value.version).toBe(1);
    writeFileSync(path, "plain text");
    expect(readRecord<{ version: number }>(path, "thing")?.value.version).toBe(1);
  });

  it("refuse a record of another kind, and throw ERR_CORRUPT when no copy is good", () => {
    const path = join(fresh(), "r.msgpack");
    writeRecord(path, "snapshot", { version: 1 });
    expect(codeOf(() => readRecord(path, "inventory"))).toBe("ERR_CORRUPT");
    writeRecord(path, "thing", { version: 2 });
    corrupt(path);
    corrupt(`${path}.prev`);
    expect(codeOf(() => readRecord(path, "thing"))).toBe("ERR_CORRUPT");
  });

  it("read the previous copy when the current one is missing, as a crash between the two renames leaves it", () => {
    const path = join(fresh(), "r.msgpack");
    writeRecord(path, "thing", { version: 1 });
    writeRecord(path, "thing", { version: 2 });
    rmSync(path);
    expect(readRecord<{ version: number }>(path, "thing")).toEqual({ value: { version: 1 } });
  });
});
