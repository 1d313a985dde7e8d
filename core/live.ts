// The live view behind the dashboard: once a second, per service, the
// request rate, the error count and the p99 latency of that second, and
// every swap as it ends. Subscribers (the admin API's server-sent events)
// get the same ticks; nothing is computed while nobody listens.

import type { LiveEvent, ServiceStatus, ServiceTick, SwapReport } from "../protocol/admin.ts";

export type { LiveEvent, ServiceTick } from "../protocol/admin.ts";

interface Window {
  latencies: number[];
  errors: number;
}

export class Live {
  readonly #status: () => ServiceStatus[];
  readonly #listeners = new Set<(event: LiveEvent) => void>();
  #timer: NodeJS.Timeout | undefined;
  #last = performance.now();
  /** Latencies (ms) and errors per service since the last tick; collected only while someone watches. */
  readonly #windows = new Map<string, Window>();
  #watching = false;

  constructor(status: () => ServiceStatus[]) {
    this.#status = status;
  }

  /** An observer for the kernel: what each message took, kept only while someone watches. */
  observer(): { delivery(service: string): (ms: number, failure: unknown) => void; swapped(report: SwapReport): void } {
    return {
      delivery: (service) => (ms, failure) => {
        if (!this.#watching) return;
        let window = this.#windows.get(service);
        if (window === undefined) this.#windows.set(service, (window = { latencies: [], errors: 0 }));
        window.latencies.push(ms);
        if (failure !== undefined) window.errors++;
      },
      swapped: (report) => this.swapped(report),
    };
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
        this.#watching = false;
        this.#windows.clear();
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
    const services = this.#status().map((status): ServiceTick => {
      const window = this.#windows.get(status.name) ?? { latencies: [], errors: 0 };
      if (reset) this.#windows.delete(status.name);
      const latencies = reset ? window.latencies : [...window.latencies];
      const { errors } = window;
      latencies.sort((a, b) => a - b);
      return {
        name: status.name,
        version: status.version,
        semver: status.semver,
        stateVersion: status.stateVersion,
        uptimeMs: status.uptimeMs,
        queueDepth: status.queueDepth,
        inFlight: status.inFlight,
        rps: Math.round((latencies.length / seconds) * 10) / 10,
        errors,
        p99Ms: latencies.length === 0 ? null : Math.round((latencies[Math.min(latencies.length - 1, Math.ceil(latencies.length * 0.99) - 1)] as number) * 1000) / 1000,
      };
    });
    return { type: "tick", time: Date.now(), services };
  }

  #reset(): void {
    this.#last = performance.now();
    this.#windows.clear();
    this.#watching = true;
  }

  #emit(event: LiveEvent): void {
    for (const listener of this.#listeners) listener(event);
  }
}
