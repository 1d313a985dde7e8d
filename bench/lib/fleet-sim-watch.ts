// The bench's own view of the fleet's heartbeats in bench:fleet-scale: one
// KV watch on the nodes bucket, held by the bench alone, keeping the version
// each runtime last announced for one service. It is how the bench tells
// "every heartbeat shows version X" without asking the tools it measures.

import type { KV } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/transport-node";
import { decodeRecord, type NodeRecord } from "../../fleet/protocol.ts";

export class HeartbeatWatch {
  readonly #versions = new Map<string, string | null>();
  readonly #service: string;
  #iterator: QueuedIterator<unknown> | undefined;
  #done: Promise<void> | undefined;

  private constructor(service: string) {
    this.#service = service;
  }

  static async start(nodes: KV, service: string): Promise<HeartbeatWatch> {
    const watch = new HeartbeatWatch(service);
    const iterator = await nodes.watch();
    watch.#iterator = iterator;
    watch.#done = (async () => {
      for await (const entry of iterator) {
        if (entry.operation !== "PUT") {
          watch.#versions.delete(entry.key);
          continue;
        }
        try {
          const record = decodeRecord<NodeRecord>(entry.value, "heartbeat");
          watch.#versions.set(entry.key, record.services.find((s) => s.name === service)?.version ?? null);
        } catch {
          // A record this bench cannot read counts as not on any version.
          watch.#versions.set(entry.key, null);
        }
      }
    })();
    return watch;
  }

  get service(): string {
    return this.#service;
  }

  /** How many runtimes' last heartbeat shows `version`. */
  count(version: string): number {
    let n = 0;
    for (const v of this.#versions.values()) if (v === version) n++;
    return n;
  }

  /**
   * Resolves with the time it took until `n` heartbeats show `version`, or
   * NaN once `timeoutMs` passed without (`count` then says how many did).
   */
  async until(version: string, n: number, timeoutMs: number, since = performance.now()): Promise<number> {
    for (;;) {
      if (this.count(version) >= n) return performance.now() - since;
      if (performance.now() - since > timeoutMs) return Number.NaN;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async stop(): Promise<void> {
    this.#iterator?.stop();
    await this.#done;
  }
}
