// The live view behind the dashboard: once a second, per service, the
// request rate, the error count and the p99 latency of that second, and
// every swap as it ends. Subscribers (the admin API's server-sent events)
// get the same ticks; nothing is computed while nobody listens.

import type { Slot } from "./slot.ts";
import type { SwapReport } from "./swap.ts";

export interface ServiceTick {
  name: string;
  version: string | null;
  semver: string | null;
  stateVersion: number | null;
  uptimeMs: number;
  queueDepth: number;
  inFlight: number;
  rps: number;
  errors: number;
  p99Ms: number | null;
}

export type LiveEvent =
  | { type: "tick"; time: number; services: ServiceTick[] }
  | { type: "swap"; time: number; report: SwapReport };

export class Live {
  readonly #slots: () => Iterable<Slot>;
  readonly #listeners = new Set<(event: LiveEvent) => void>();
  #timer: NodeJS.Timeout | undefined;
  #last = performance.now();

  constructor(slots: () => Iterable<Slot>) {
    this.#slots = slots;
  }

  subscribe(listener: (event: LiveEvent) => void): () => void {
    this.#listeners.add(listener);
    if (this.#timer === undefined) {
      this.#reset();
      this.#timer = setInterval(() => this.#emit(this.tick()), 1000);
      this.#timer.unref();
    }
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) {
        clearInterval(this.#timer);
        this.#timer = undefined;
        // Nobody watches: stop collecting.
        for (const slot of this.#slots()) slot.window = undefined;
      }
    };
  }

  /** The services as they are now, for a new subscriber; leaves the shared window alone. */
  peek(): LiveEvent {
    return this.#measure(false);
  }

  swapped(report: SwapReport): void {
    this.#emit({ type: "swap", time: Date.now(), report });
  }

  /** The numbers since the last tick; resets the window. */
  tick(): LiveEvent {
    return this.#measure(true);
  }

  #measure(reset: boolean): LiveEvent {
    const now = performance.now();
    const seconds = Math.max((now - this.#last) / 1000, 1e-3);
    if (reset) this.#last = now;
    const services = [...this.#slots()].map((slot): ServiceTick => {
      const window = slot.window ?? { latencies: [], errors: 0 };
      if (reset && slot.window !== undefined) slot.window = { latencies: [], errors: 0 };
      const latencies = reset ? window.latencies : [...window.latencies];
      const { errors } = window;
      latencies.sort((a, b) => a - b);
      const instance = slot.instance;
      return {
        name: slot.name,
        version: instance?.versionId ?? null,
        semver: instance?.meta.semver ?? null,
        stateVersion: instance?.meta.stateVersion ?? null,
        uptimeMs: instance === undefined ? 0 : Date.now() - slot.startedAt,
        queueDepth: slot.mailbox.depth,
        inFlight: slot.mailbox.inFlight,
        rps: Math.round((latencies.length / seconds) * 10) / 10,
        errors,
        p99Ms: latencies.length === 0 ? null : Math.round((latencies[Math.min(latencies.length - 1, Math.ceil(latencies.length * 0.99) - 1)] as number) * 1000) / 1000,
      };
    });
    return { type: "tick", time: Date.now(), services };
  }

  #reset(): void {
    this.#last = performance.now();
    for (const slot of this.#slots()) slot.window = { latencies: [], errors: 0 };
  }

  #emit(event: LiveEvent): void {
    for (const listener of this.#listeners) listener(event);
  }
}
