// The fleet's heartbeats held in memory by one tool for as long as it runs
// (a rollout): read once, then kept current by a single watch on the nodes
// bucket. One watcher in the whole fleet, held by the tool alone, instead of
// a listing of every runtime before every step: a step reads memory.
//
// Only a tool holds one. Runtimes never watch (tens of thousands of
// watchers overload a JetStream server; fleet/member.ts says how runtimes
// learn of changes instead).

import type { KV, KvWatchEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/transport-node";
import { applyEntry, readHeartbeatsAt, seenNode, seenNodes, type Heartbeat, type HeartbeatReading, type SeenNode } from "./nodes.ts";

export class NodesView {
  readonly #nodes: KV;
  readonly #seen: Map<string, Heartbeat>;
  /** Runtimes that appeared or restarted since the last `takeNew`, in the order they did. */
  #fresh: string[] = [];
  #watch: QueuedIterator<KvWatchEntry> | undefined;
  #closed = false;
  /** Highest revision applied: a watch that has to start again resumes after it. */
  #revision = 0;
  readonly #onError: (err: unknown) => void;

  private constructor(nodes: KV, { seen, revision }: HeartbeatReading, onError: (err: unknown) => void) {
    this.#nodes = nodes;
    this.#seen = seen;
    this.#onError = onError;
    this.#revision = revision;
  }

  /**
   * Reads every heartbeat (a reading bounded by the bucket as it was when it
   * began, see readHeartbeatsAt), then watches for changes from the revision
   * the reading reached.
   */
  static async open(nodes: KV, onError: (err: unknown) => void = () => undefined): Promise<NodesView> {
    const view = new NodesView(nodes, await readHeartbeatsAt(nodes), onError);
    await view.#startWatch();
    return view;
  }

  /** Every runtime as of now, sorted by node id. */
  nodes(now = Date.now()): SeenNode[] {
    return seenNodes(this.#seen.values(), now);
  }

  get(node: string, now = Date.now()): SeenNode | null {
    const heartbeat = this.#seen.get(node);
    return heartbeat === undefined ? null : seenNode(heartbeat, now);
  }

  /** The runtimes that joined or restarted since the last call (none since the view opened, at first). */
  takeNew(): string[] {
    const fresh = this.#fresh;
    this.#fresh = [];
    return fresh;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#watch?.stop();
  }

  /**
   * Watches from the revision after the last one applied, so nothing written
   * between the reading and the watch is missed. The client's ordered
   * consumer starts again by itself across reconnects; should the watch end
   * anyway (its consumer lost with the server's state), it is opened again.
   */
  async #startWatch(): Promise<void> {
    const watch = await this.#nodes.watch({ resumeFromRevision: this.#revision + 1 });
    this.#watch = watch;
    void (async () => {
      try {
        for await (const entry of watch) this.#apply(entry);
      } catch (err) {
        this.#onError(err);
      }
      while (!this.#closed) {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        try {
          await this.#startWatch();
          return;
        } catch (err) {
          this.#onError(err);
        }
      }
    })();
  }

  /** Applies a change; a runtime that is new, or that restarted (another process id), is offered to `takeNew`. */
  #apply(entry: KvWatchEntry): void {
    const before = this.#seen.get(entry.key)?.record.instance;
    applyEntry(this.#seen, entry);
    this.#revision = Math.max(this.#revision, entry.revision);
    const after = this.#seen.get(entry.key)?.record.instance;
    if (after !== undefined && after !== before) this.#fresh.push(entry.key);
  }
}
