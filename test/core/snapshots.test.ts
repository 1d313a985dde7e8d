// The snapshot store: one record per service with the previous one kept,
// writes of one service landing in the order they were asked for, dumps
// taken between two messages of the instance serving when the job runs,
// one service's failure touching no other's, and bundles stored by their
// content hash and checked when loaded.

import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { resolveConfig } from "../../core/config.ts";
import { MoltError } from "../../core/errors.ts";
import type { Instance } from "../../core/instance.ts";
import { Slot } from "../../core/slot.ts";
import { SnapshotStore, type Snapshot } from "../../core/snapshots.ts";

const fresh = (): string => mkdtempSync(join(tmpdir(), "molt-snapshots-"));

function logged(): { lines: { level: string; msg: string; service?: unknown }[]; log: { log: (level: string, msg: string, fields?: Record<string, unknown>) => void } } {
  const lines: { level: string; msg: string; service?: unknown }[] = [];
  return { lines, log: { log: (level, msg, fields) => lines.push({ level, msg, ...fields }) } };
}

const snapshot = (service: string, n: number): Snapshot => ({
  service,
  version: "a".repeat(64),
  semver: "1.0.0",
  stateVersion: 1,
  time: new Date(n).toISOString(),
  dump: new Uint8Array([n]),
});

/** An instance whose dump is `[marker]`, or fails with `fails`. */
function instance(service: string, marker: number, fails?: MoltError): Instance {
  const noop = async (): Promise<void> => undefined;
  return {
    service,
    versionId: String(marker).repeat(64).slice(0, 64),
    meta: { semver: `${marker}.0.0`, stateVersion: marker, restoresFrom: null, hasRestore: false, handlers: [] },
    disposed: false,
    init: noop,
    restore: noop,
    start: noop,
    stop: noop,
    deliver: async () => undefined,
    dump: async () => {
      if (fails !== undefined) throw fails;
      return new Uint8Array([marker]);
    },
    dispose: () => undefined,
  };
}

function slots(...names: string[]): Slot[] {
  const config = resolveConfig({ services: Object.fromEntries(names.map((name) => [name, { entry: `${name}.ts` }])) }, "/");
  return names.map((name) => new Slot(config.services[name] as NonNullable<(typeof config.services)[string]>));
}

const bundle = { code: "", hash: "0".repeat(64), entry: "/s.ts" };

describe("writing and reading", () => {
  it("reads back the last snapshot written for each service, and nothing for a service never written", async () => {
    const store = new SnapshotStore(fresh());
    await store.write(snapshot("a", 1));
    await store.write(snapshot("a", 2));
    await store.write(snapshot("b", 3));
    expect([...(store.read("a")?.dump ?? [])]).toEqual([2]);
    expect(store.read("b")).toMatchObject({ service: "b", semver: "1.0.0", stateVersion: 1 });
    expect(store.read("c")).toBeUndefined();
  });

  it("lands a service's writes in the order they were asked for, even when they are not awaited", async () => {
    const store = new SnapshotStore(fresh());
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.write(snapshot("a", i))));
    expect([...(store.read("a")?.dump ?? [])]).toEqual([19]);
  });

  it("uses the previous snapshot when the latest is corrupt, and says so", async () => {
    const dir = fresh();
    const { lines, log } = logged();
    const store = new SnapshotStore(dir, log);
    await store.write(snapshot("a", 1));
    await store.write(snapshot("a", 2));
    const path = join(dir, "snapshots", "a.msgpack");
    const bytes = readFileSync(path);
    bytes[bytes.length - 40] = (bytes[bytes.length - 40] as number) ^ 0xff;
    writeFileSync(path, bytes);
    expect([...(store.read("a")?.dump ?? [])]).toEqual([1]);
    expect(lines).toContainEqual(expect.objectContaining({ level: "error", msg: "snapshot corrupt; using the previous one", service: "a" }));
  });

  it("gives nothing, and says so, when no copy is readable", async () => {
    const dir = fresh();
    const { lines, log } = logged();
    const store = new SnapshotStore(dir, log);
    await store.write(snapshot("a", 1));
    await store.write(snapshot("a", 2));
    writeFileSync(join(dir, "snapshots", "a.msgpack"), "garbage");
    writeFileSync(join(dir, "snapshots", "a.msgpack.prev"), "garbage");
    expect(store.read("a")).toBeUndefined();
    expect(lines).toContainEqual(expect.objectContaining({ msg: "no readable snapshot; starting from init", service: "a" }));
  });
});

describe("taking snapshots of live services", () => {
  it("dumps the instance serving when the job runs, not the one serving when it was queued", async () => {
    const store = new SnapshotStore(fresh());
    const [slot] = slots("a");
    if (slot === undefined) throw new Error("no slot");
    slot.attach(instance("a", 1), bundle);
    // A message in progress: the snapshot waits behind it, as it would behind a handler.
    let finish: () => void = () => undefined;
    const busy = slot.mailbox.push(() => new Promise<void>((resolve) => (finish = resolve)));
    const taking = store.take(slot);
    slot.attach(instance("a", 2), bundle);
    finish();
    await busy;
    expect(await taking).toMatchObject({ service: "a", version: "2".repeat(64), stateVersion: 2, bytes: 1 });
    expect(store.read("a")).toMatchObject({ version: "2".repeat(64), semver: "2.0.0", dump: new Uint8Array([2]) });
  });

  it("fails only the snapshot of a service that is down or cannot dump; every other one is written", async () => {
    const { lines, log } = logged();
    const store = new SnapshotStore(fresh(), log);
    const [ok, failing, down] = slots("ok", "failing", "down");
    if (ok === undefined || failing === undefined || down === undefined) throw new Error("no slots");
    ok.attach(instance("ok", 1), bundle);
    failing.attach(instance("failing", 1, new MoltError("ERR_SWAP_DUMP", "cannot dump")), bundle);
    down.attach(instance("down", 1), bundle);
    down.detach(new MoltError("ERR_SERVICE_DOWN", "gave up"));
    const results = await store.takeAll([ok, failing, down]);
    expect(results).toEqual([
      { service: "ok", version: "1".repeat(64), stateVersion: 1, bytes: 1 },
      { service: "failing", error: { code: "ERR_SWAP_DUMP", message: "cannot dump" } },
      { service: "down", error: { code: "ERR_SERVICE_DOWN", message: expect.any(String) } },
    ]);
    expect(store.read("ok")?.dump).toEqual(new Uint8Array([1]));
    expect(store.read("failing")).toBeUndefined();
    // A service that is down was logged when it went down; only the failed dump is logged here.
    expect(lines.filter((l) => l.msg === "snapshot failed").map((l) => l.service)).toEqual(["failing"]);
  });
});

describe("bundles", () => {
  it("stores a bundle by its hash and loads it back with the entry asked for", () => {
    const store = new SnapshotStore(fresh());
    const code = "globalThis.__molt_module = {};";
    const hash = createHash("sha256").update(code).digest("hex");
    store.saveBundle({ code, hash, entry: "/first.ts" });
    expect(store.loadBundle(hash, "/second.ts")).toEqual({ code, hash, entry: "/second.ts" });
  });

  it("refuses a version it never stored with ERR_NO_VERSION, and one whose file no longer matches its hash with ERR_CORRUPT", () => {
    const dir = fresh();
    const store = new SnapshotStore(dir);
    const code = "1";
    const hash = createHash("sha256").update(code).digest("hex");
    expect(() => store.loadBundle(hash, "/x.ts")).toThrow(expect.objectContaining({ code: "ERR_NO_VERSION" }));
    store.saveBundle({ code, hash, entry: "/x.ts" });
    writeFileSync(join(dir, "bundles", `${hash}.js`), "2");
    expect(() => store.loadBundle(hash, "/x.ts")).toThrow(expect.objectContaining({ code: "ERR_CORRUPT" }));
  });
});
