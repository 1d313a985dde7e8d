// dataDir is private to the user molt runs as (issue 12, item 11): every
// file molt writes is 0600, every folder it makes 0700, a dataDir an older
// version left readable is tightened when the store opens, and a symlink
// planted in dataDir is never written through.

import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { appendDurably, tightenDataDir, writeAtomic, writeAtomicAsync, writeRecord, writeRecordAsync } from "../../core/disk.ts";
import { InventoryLog } from "../../core/inventory-log.ts";
import { SnapshotStore } from "../../core/snapshots.ts";

const fresh = (): string => mkdtempSync(join(tmpdir(), "molt-modes-"));
const mode = (path: string): number => statSync(path).mode & 0o777;

describe("files molt writes", () => {
  it("are 0600, in folders it creates 0700, whichever way they are written", async () => {
    const dir = fresh();
    writeAtomic(join(dir, "a", "sync.bin"), "x");
    await writeAtomicAsync(join(dir, "b", "c", "async.bin"), new Uint8Array([1]));
    await appendDurably(join(dir, "d", "append.log"), new Uint8Array([1]));
    writeRecord(join(dir, "record.msgpack"), "test", { a: 1 });
    writeRecord(join(dir, "record.msgpack"), "test", { a: 2 });
    await writeRecordAsync(join(dir, "e", "record.msgpack"), "test", { a: 1 });
    await writeRecordAsync(join(dir, "e", "record.msgpack"), "test", { a: 2 });
    for (const file of ["a/sync.bin", "b/c/async.bin", "d/append.log", "record.msgpack", "record.msgpack.prev", "e/record.msgpack", "e/record.msgpack.prev"]) {
      expect(mode(join(dir, file)), file).toBe(0o600);
    }
    for (const folder of ["a", "b", "b/c", "d", "e"]) expect(mode(join(dir, folder)), folder).toBe(0o700);
  });

  it("replace a file another version left 0644 with a 0600 one", async () => {
    const dir = fresh();
    const path = join(dir, "old.bin");
    writeFileSync(path, "old");
    chmodSync(path, 0o644);
    writeAtomic(path, "new");
    expect(mode(path)).toBe(0o600);
    chmodSync(path, 0o644);
    await writeAtomicAsync(path, new Uint8Array([2]));
    expect(mode(path)).toBe(0o600);
  });

  it("are never written through a symlink planted at a temporary or appended file's name", async () => {
    const dir = fresh();
    const victim = join(fresh(), "victim.txt");
    writeFileSync(victim, "untouched");
    symlinkSync(victim, join(dir, `state.bin.${process.pid}.tmp`));
    expect(() => writeAtomic(join(dir, "state.bin"), "overwritten")).toThrow(expect.objectContaining({ code: "ELOOP" }));
    symlinkSync(victim, join(dir, "inventory.log"));
    await expect(appendDurably(join(dir, "inventory.log"), new Uint8Array([0x41]))).rejects.toMatchObject({ code: "ELOOP" });
    expect(readFileSync(victim, "utf8")).toBe("untouched");
  });

  it("include the inventory log's frames and bases, and snapshots and bundles", async () => {
    const dir = fresh();
    const { files } = InventoryLog.load(dir, undefined);
    await files.append({ seq: 1, records: [{ service: "s", seq: 1 }] });
    await files.compact({ s: [{ service: "s", seq: 1 }] }, 1);
    await files.append({ seq: 2, records: [{ service: "s", seq: 1 }] });
    const store = new SnapshotStore(dir);
    await store.write({ service: "s", version: "v", semver: "1.0.0", stateVersion: 1, time: new Date(0).toISOString(), dump: new Uint8Array([1]) });
    store.saveBundle({ code: "1", hash: "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b", entry: "/x.ts" });
    for (const file of ["inventory.log", "inventory.log.prev", "inventory.msgpack", "snapshots/s.msgpack", "bundles/6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b.js"]) {
      expect(mode(join(dir, file)), file).toBe(0o600);
    }
    for (const folder of [".", "snapshots", "bundles"]) expect(mode(join(dir, folder)), folder).toBe(0o700);
  });
});

describe("tightenDataDir", () => {
  it("makes a dataDir an older molt left readable private: the folder, its folders and their files", () => {
    const dir = join(fresh(), "data");
    mkdirSync(join(dir, "snapshots"), { recursive: true });
    mkdirSync(join(dir, "bundles"));
    for (const [file, content] of [["inventory.log", "x"], ["admin.json", "{}"], ["snapshots/s.msgpack", "x"], ["bundles/h.js", "1"]]) {
      writeFileSync(join(dir, file as string), content as string);
      chmodSync(join(dir, file as string), 0o644);
    }
    for (const folder of [dir, join(dir, "snapshots"), join(dir, "bundles")]) chmodSync(folder, 0o755);

    const changed = tightenDataDir(dir);
    expect(changed.length).toBe(7);
    for (const folder of [".", "snapshots", "bundles"]) expect(mode(join(dir, folder)), folder).toBe(0o700);
    for (const file of ["inventory.log", "admin.json", "snapshots/s.msgpack", "bundles/h.js"]) expect(mode(join(dir, file)), file).toBe(0o600);
    // Once private, nothing more to do.
    expect(tightenDataDir(dir)).toEqual([]);
  });

  it("creates a missing dataDir 0700", () => {
    const dir = join(fresh(), "new", "data");
    tightenDataDir(dir);
    expect(existsSync(dir)).toBe(true);
    expect(mode(dir)).toBe(0o700);
  });

  it("does not follow a symlink inside dataDir, and leaves a shared (sticky) folder alone", () => {
    const dir = fresh();
    const elsewhere = join(fresh(), "shared.txt");
    writeFileSync(elsewhere, "x");
    chmodSync(elsewhere, 0o644);
    symlinkSync(elsewhere, join(dir, "link"));
    tightenDataDir(dir);
    expect(mode(elsewhere)).toBe(0o644);

    const sticky = fresh();
    chmodSync(sticky, 0o1777);
    writeFileSync(join(sticky, "other.txt"), "x");
    chmodSync(join(sticky, "other.txt"), 0o644);
    expect(tightenDataDir(sticky)).toEqual([]);
    expect(statSync(sticky).mode & 0o7777).toBe(0o1777);
    expect(mode(join(sticky, "other.txt"))).toBe(0o644);
  });

  it("runs when the kernel opens its snapshot store", () => {
    const dir = fresh();
    chmodSync(dir, 0o755);
    new SnapshotStore(dir);
    expect(mode(dir)).toBe(0o700);
  });
});
