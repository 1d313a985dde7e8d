// The two faults that broke the fleet from a few thousand runtimes
// (bench:fleet-scale), against a real nats-server: a reading of the
// heartbeats that chased writers and did not end while they wrote faster
// than it read, and a bundle fetch that created a JetStream consumer per
// runtime.

import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { ResolvedFleet } from "../../core/config.ts";
import { ErrorCode } from "../../core/errors.ts";
import { FleetMember, type MemberKernel } from "../../fleet/member.ts";
import { readHeartbeats } from "../../fleet/nodes.ts";
import { Bucket, decodeRecord, encodeRecord, Subject, type SwapAnswer, type SwapRequest } from "../../fleet/protocol.ts";
import type { SwapReport } from "../../protocol/admin.ts";
import { natsPerSuite } from "../support/fleet.ts";
import { heartbeat, stubKernel, V1 } from "./member-stubs.ts";

describe("the fleet at scale", () => {
  const nats = natsPerSuite();

  it("a reading of the heartbeats ends while many members sharing a connection keep rewriting theirs faster than it reads", async () => {
    const { nc, stores } = nats();
    const members = 2000;
    const key = (i: number): string => `m${String(i).padStart(5, "0")}`;
    await Promise.all(Array.from({ length: members }, (_, i) => stores.nodes.put(key(i), heartbeat(key(i)))));
    // Every member rewrites its heartbeat over and over on the one shared
    // connection, without waiting for acknowledgements: the bucket's tail
    // moves on as fast as the server stores, so a reading that stops only
    // when nothing is pending never stops.
    let writing = true;
    let beat = 0;
    const writer = (async () => {
      while (writing) {
        beat++;
        for (let i = 0; i < members; i++) nc.publish(`$KV.${Bucket.nodes}.${key(i)}`, heartbeat(key(i), { heartbeatAt: String(beat) }));
        await nc.flush();
      }
    })();
    try {
      await new Promise((resolve) => setTimeout(resolve, 50));
      const seen = await readHeartbeats(stores.nodes);
      // Every member, each once, though most were rewritten during the reading.
      expect(seen.size).toBe(members);
      expect([...seen.keys()].every((k) => k.startsWith("m"))).toBe(true);
    } finally {
      writing = false;
      await writer;
    }
  }, 30_000);

  it("a reading that NATS stops feeding fails with ERR_FLEET instead of waiting for ever", async () => {
    const { stores } = nats();
    await stores.nodes.put("m-stalled", heartbeat("m-stalled"));
    // The bucket says it holds records, but the watch the reading opens is
    // bent onto a key nobody writes: nothing ever arrives.
    const stalled = new Proxy(stores.nodes, {
      get(target, key, receiver) {
        const value = Reflect.get(target, key, receiver) as unknown;
        if (key === "watch") return () => target.watch({ key: "never-written" });
        return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    await expect(readHeartbeats(stalled, 200)).rejects.toMatchObject({ code: ErrorCode.FLEET });
  });

  it("a runtime fetches a bundle of one chunk or of several from the object store without creating a consumer", async () => {
    const { server, nc, stores } = nats();
    const jsm = await (await import("@nats-io/jetstream")).jetstreamManager(nc);
    // A consumer is created through a JetStream API request: listening on
    // that subject sees every creation, however briefly the consumer lives.
    const creations: string[] = [];
    const watch = nc.subscribe("$JS.API.CONSUMER.CREATE.>", { callback: (_err, msg) => void creations.push(msg.subject) });
    await nc.flush();

    const small = "export default { v: 2 };\n" + "// padding\n".repeat(2_000);
    const large = "export default { v: 3 };\n" + "// more padding, past one chunk of the store\n".repeat(8_000);
    const bundles = [small, large].map((code) => ({ code, hash: createHash("sha256").update(code).digest("hex") }));
    for (const b of bundles) await stores.bundles.putBlob({ name: b.hash }, new TextEncoder().encode(b.code));
    expect((await stores.bundles.info(bundles[1]?.hash ?? ""))?.chunks).toBeGreaterThan(1);

    // A kernel with no other version stored, so each swap fetches its bundle; it records what it was given.
    const swapped: { code: string; hash: string }[] = [];
    const swapBundle: MemberKernel["swapBundle"] = async (_service, bundle) => {
      swapped.push({ code: bundle.code, hash: bundle.hash });
      return { outcome: "committed", from: { version: V1 }, to: { version: bundle.hash }, blackoutMs: 1 } as unknown as SwapReport;
    };
    const fleet = { nats: server.url, node: "fetcher", heartbeatMs: 60_000, reconcileMs: 60_000 } as ResolvedFleet;
    const member = new FleetMember({ kernel: stubKernel([], swapBundle), fleet, dataDir: "/nonexistent", log: { log: () => undefined }, connection: { nc, stores } });
    member.join();
    await member.joined();
    try {
      for (const b of bundles) {
        const request: SwapRequest = { service: "api", version: b.hash, entry: "index.js", via: "swap", rollout: "r-test" };
        const answer = decodeRecord<SwapAnswer>((await nc.request(Subject.swap("fetcher"), encodeRecord(request), { timeout: 10_000 })).data, "answer");
        expect(answer.outcome).toBe("committed");
      }
      expect(swapped).toEqual(bundles);
      await nc.flush();
      expect(creations.filter((s) => s.includes(`OBJ_${Bucket.bundles}`))).toEqual([]);
      expect((await jsm.streams.info(`OBJ_${Bucket.bundles}`)).state.consumer_count).toBe(0);
    } finally {
      watch.unsubscribe();
      await member.leave();
    }
  });
});
