// How a dump is encoded (guest/dump-codec.ts): a state in which no object is
// reached twice is written without reference tracking, one with a shared
// object or a cycle with it, and both, like every dump written before there
// was a choice, read back the same way. An instance assumes its state is as
// its last dump, written or read, found it. First the codec alone, in this
// process; then the same states through real isolates, swapped by a kernel.

import { join } from "node:path";
import { Packr } from "msgpackr";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { SnapshotStore } from "../../core/snapshots.ts";
import { decodeDump, DumpCodec, encodeDump, warmDumpCodec } from "../../guest/dump-codec.ts";
import { ErrorCode } from "../../protocol/errors.ts";
import { DUMP_VERSION } from "../../protocol/wire.ts";
import { startKernel, type TestKernel } from "../support/kernel.ts";

/** The code a call threw, or a test failure if it returned. */
function codeOf(run: () => unknown): string {
  try {
    run();
  } catch (err) {
    return (err as { code: string }).code;
  }
  throw new Error("expected a throw");
}

/** How every dump was written before the codec choice: structured clone, three elements. */
const before = new Packr({ structuredClone: true });

/** Plain data of every kind a dump carries, no object in it twice. */
function tree(): Record<string, unknown> {
  const dictionary = Object.create(null) as Record<string, number>;
  dictionary.a = 1;
  return {
    map: new Map<unknown, unknown>([["k", new Set([1, "two", new Date(3)])], [2, { nested: [new Uint8Array([1, 2, 3]), new Float64Array([0.5])] }]]),
    when: new Date(1_700_000_000_000),
    bytes: new Uint8Array([9, 8, 7]),
    buffer: new ArrayBuffer(4),
    deep: { a: { b: { c: [null, true, 7n, -1.5, "x".repeat(300)] } } },
    dictionary,
    error: new TypeError("kept as data"),
    pattern: /x+/g,
    records: Array.from({ length: 100 }, (_, i) => ({ id: i, name: "item", value: i * 3 })),
  };
}

class Session {
  constructor(readonly user: string) {}
}

/** A dump of a state that shares nothing: reading it makes this process assume the next state shares nothing either. */
const treeDump = encodeDump(1, { n: 1 }, "state", "svc");
const shared = (): object => {
  const record = { id: 1 };
  return { a: record, b: record };
};

describe("the dump codec", () => {
  beforeEach(() => {
    decodeDump(treeDump);
  });

  it("writes a state with no object in it twice without reference tracking, and reads it back whole", () => {
    const state = tree();
    const dump = decodeDump(encodeDump(4, state, "state", "svc"));
    expect(dump.codec).toBe(DumpCodec.TREE);
    expect(dump.stateVersion).toBe(4);
    expect(dump.value).toEqual(state);
    const value = dump.value as ReturnType<typeof tree>;
    expect(value.when).toBeInstanceOf(Date);
    expect(value.bytes).toBeInstanceOf(Uint8Array);
    expect(value.map).toBeInstanceOf(Map);
    expect(((value.map as Map<unknown, unknown>).get(2) as { nested: unknown[] }).nested[1]).toBeInstanceOf(Float64Array);
  });

  it("writes a large state whole, into a buffer sized by the last dump, when it has grown past that size or shrunk", () => {
    const large = (records: number): object => ({
      records: Array.from({ length: records }, (_, i) => ({ id: i, name: `record ${i} `.repeat(8), tags: new Set([i % 7]), at: new Date(i) })),
    });
    for (const records of [2_000, 2_000, 20_000, 500, 3_000]) {
      const state = large(records);
      expect(decodeDump(encodeDump(1, state, "state", "svc")).value).toEqual(state);
    }
  });

  it("writes the bytes structured clone writes for such a state, so that any reader of dumps reads it", () => {
    const state = tree();
    const bytes = encodeDump(1, state, "state", "svc");
    expect(Buffer.from(bytes).equals(Buffer.from(before.pack([DUMP_VERSION, 1, state, DumpCodec.TREE])))).toBe(true);
    // A reader from before the choice takes the first three elements and never looks at the fourth.
    const [envelope, stateVersion, value] = before.unpack(bytes) as [number, number, unknown];
    expect([envelope, stateVersion]).toEqual([DUMP_VERSION, 1]);
    expect(value).toEqual(state);
  });

  it("keeps an object held in two places one object, through reference tracking", () => {
    const record = { id: 1, name: "ada" };
    const dump = decodeDump(encodeDump(1, { ...tree(), list: [record], byId: new Map([[1, record]]) }, "state", "svc"));
    expect(dump.codec).toBe(DumpCodec.TRACKED);
    const value = dump.value as { list: object[]; byId: Map<number, object> };
    expect(value.list[0]).toEqual(record);
    expect(value.byId.get(1)).toBe(value.list[0]);
  });

  it("keeps a cycle a cycle, through reference tracking", () => {
    const state: Record<string, unknown> = tree();
    const node: Record<string, unknown> = { name: "a" };
    node.next = { back: node };
    state.node = node;
    state.self = state;
    const dump = decodeDump(encodeDump(1, state, "state", "svc"));
    expect(dump.codec).toBe(DumpCodec.TRACKED);
    const value = dump.value as { self: unknown; node: { next: { back: unknown } } };
    expect(value.self).toBe(value);
    expect(value.node.next.back).toBe(value.node);
  });

  it("tracks references for a shared Date or binary too: structured clone keeps any object one object", () => {
    const when = new Date(5);
    const bytes = new Uint8Array(2);
    const dump = decodeDump(encodeDump(1, { a: when, b: when, c: [bytes, bytes] }, "state", "svc"));
    expect(dump.codec).toBe(DumpCodec.TRACKED);
    const value = dump.value as { a: Date; b: Date; c: Uint8Array[] };
    expect(value.b).toBe(value.a);
    expect(value.c[1]).toBe(value.c[0]);
  });

  it("reads a dump written before the choice (structured clone, [DUMP_VERSION, stateVersion, value]), shared objects and all", () => {
    const record = { id: 1 };
    const state = { ...tree(), list: [record], byId: new Map([[1, record]]) };
    const dump = decodeDump(before.pack([DUMP_VERSION, 3, state]));
    expect(dump.codec).toBe(DumpCodec.TRACKED);
    expect(dump.stateVersion).toBe(3);
    expect(dump.value).toEqual(state);
    const value = dump.value as { list: object[]; byId: Map<number, object> };
    expect(value.byId.get(1)).toBe(value.list[0]);
  });

  it("refuses a class instance with ERR_STATE_NOT_PLAIN, on either path and under either assumption", () => {
    expect(codeOf(() => encodeDump(1, { sessions: new Map([["ada", new Session("ada")]]) }, "state", "svc"))).toBe(ErrorCode.STATE_NOT_PLAIN);
    const session = new Session("ada");
    expect(codeOf(() => encodeDump(1, { a: session, b: session }, "state", "svc"))).toBe(ErrorCode.STATE_NOT_PLAIN);
    const record = { id: 1 };
    expect(codeOf(() => encodeDump(1, { a: record, b: record, c: [new Session("bob")] }, "state", "svc"))).toBe(ErrorCode.STATE_NOT_PLAIN);
    // Assuming sharing (the last dump shared an object), the walk without a Set still refuses it.
    encodeDump(1, shared(), "state", "svc");
    expect(codeOf(() => encodeDump(1, { sessions: new Map([["ada", new Session("ada")]]) }, "state", "svc"))).toBe(ErrorCode.STATE_NOT_PLAIN);
  });

  it("writes a state as its last dump found it: after one that shared an object, with tracking, whatever it holds now", () => {
    expect(decodeDump(encodeDump(1, shared(), "state", "svc")).codec).toBe(DumpCodec.TRACKED);
    const record = { id: 2 };
    const after = decodeDump(encodeDump(1, { list: [record], byId: new Map([[2, record]]) }, "state", "svc"));
    expect(after.codec).toBe(DumpCodec.TRACKED);
    expect((after.value as { byId: Map<number, object> }).byId.get(2)).toBe((after.value as { list: object[] }).list[0]);
    // What was read counts as much as what was written: a tracked dump restored, then a tree dump restored.
    expect(decodeDump(encodeDump(1, { n: 2 }, "state", "svc")).codec).toBe(DumpCodec.TRACKED);
    decodeDump(treeDump);
    expect(decodeDump(encodeDump(1, { n: 2 }, "state", "svc")).codec).toBe(DumpCodec.TREE);
  });

  it("checks a state restored from a dump written before the choice for sharing, rather than assume it", () => {
    decodeDump(before.pack([DUMP_VERSION, 1, { n: 1 }]));
    expect(decodeDump(encodeDump(1, tree(), "state", "svc")).codec).toBe(DumpCodec.TREE);
  });

  it("warms up without changing what it assumes of the state", () => {
    warmDumpCodec({ n: 1 });
    expect(decodeDump(encodeDump(1, { n: 2 }, "state", "svc")).codec).toBe(DumpCodec.TREE);
    warmDumpCodec({ n: 1 });
    expect(decodeDump(encodeDump(1, shared(), "state", "svc")).codec).toBe(DumpCodec.TRACKED);
    warmDumpCodec({ n: 1 });
    expect(decodeDump(encodeDump(1, { n: 2 }, "state", "svc")).codec).toBe(DumpCodec.TRACKED);
  });

  it("refuses a function with ERR_UNENCODABLE, on either path", () => {
    expect(codeOf(() => encodeDump(1, { f: () => 1 }, "state", "svc"))).toBe(ErrorCode.UNENCODABLE);
    const record = { id: 1 };
    expect(codeOf(() => encodeDump(1, { a: record, b: record, f: () => 1 }, "state", "svc"))).toBe(ErrorCode.UNENCODABLE);
  });

  it("refuses with ERR_BAD_MESSAGE what is not a dump: another envelope, an unknown codec, not an envelope at all", () => {
    expect(codeOf(() => decodeDump(before.pack([DUMP_VERSION + 1, 1, {}])))).toBe(ErrorCode.BAD_MESSAGE);
    expect(codeOf(() => decodeDump(before.pack([DUMP_VERSION, 1, {}, 9])))).toBe(ErrorCode.BAD_MESSAGE);
    expect(codeOf(() => decodeDump(before.pack("state")))).toBe(ErrorCode.BAD_MESSAGE);
  });
});

describe("the dump codec in a swap", () => {
  let t: TestKernel;
  const fixture = (name: string): string => join(t.kernel.config.dir, "dump-codec", `${name}.ts`);
  beforeAll(async () => {
    t = await startKernel({
      services: {
        tree: { entry: "./dump-codec/shapes.ts" },
        shared: { entry: "./dump-codec/shapes.ts" },
        cycle: { entry: "./dump-codec/shapes.ts" },
      },
    });
    for (const shape of ["tree", "shared", "cycle"]) await t.kernel.call(shape, "shape", shape);
  });
  afterAll(() => t.kernel.stop());

  const common = { set: [1, "two"], date: 5, bytes: [1, 2, 3], floats: [0.5, 1.5], bigint: "7" };

  it.each([
    ["tree", DumpCodec.TREE, { sharedKept: null, cycleKept: null, list: 50 }],
    ["shared", DumpCodec.TRACKED, { sharedKept: true, cycleKept: null, list: 1 }],
    ["cycle", DumpCodec.TRACKED, { sharedKept: null, cycleKept: true, list: 50 }],
  ] as const)("a %s state comes back from a swap and a swap back as it went, written by the codec it needs", async (shape, codec, facts) => {
    const expected = { shape, ...common, ...facts };
    expect(await t.kernel.call(shape, "facts")).toEqual(expected);
    for (const version of ["shapes-v2", "shapes"]) {
      const report = await t.kernel.swap(shape, fixture(version));
      expect(report.error).toBeUndefined();
      expect(report.outcome).toBe("committed");
      expect(await t.kernel.call(shape, "facts")).toEqual(expected);
    }
    await t.kernel.snapshot(shape);
    const snapshot = new SnapshotStore(t.kernel.config.dataDir).read(shape);
    expect((before.unpack(snapshot?.dump as Uint8Array) as unknown[])[3]).toBe(codec);
  });
});
