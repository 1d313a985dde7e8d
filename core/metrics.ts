// Prometheus metrics (prom-client), served by the admin API at GET /metrics.
// Everything is named molt_*. Counting happens where messages and swaps
// already pass (Slot.deliver, the swap's report), so a scrape reads numbers
// and never touches an isolate except for heap sizes.
//
// Every label value comes from a bounded set: service names come from the
// config, outcomes from the kernel, and error codes, which a service chooses,
// pass through ErrorCounter. Each label value is a series that lives as long
// as the process and is printed on every scrape.

import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { SwapOutcome } from "../protocol/admin.ts";
import { ERROR_CODE_PATTERN, ErrorCode } from "./errors.ts";

/** Seconds; from 10 µs (an idle round trip) to 10 s (a deadline). */
const LATENCY_BUCKETS = [0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];
/** Seconds; from 50 µs (a small state) to 10 s (a very large one). */
const BLACKOUT_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1, 2.5, 10];

/**
 * Well-formed codes of a service's own (not the kernel's) that get their own
 * series, per service: enough for a service's real failure modes, few enough
 * that a service inventing codes adds at most this many series.
 */
export const CUSTOM_CODES_PER_SERVICE = 32;

/** The kernel's codes are a fixed set, so each always keeps its own series. */
const KERNEL_CODES: ReadonlySet<string> = new Set(Object.values(ErrorCode));

/**
 * molt_errors_total. Callers pass the code as raised; it becomes a label only
 * if it is one of the kernel's codes, or a well-formed code among the first
 * CUSTOM_CODES_PER_SERVICE distinct ones a service used. Anything else counts
 * as ERR_OTHER, so neither a code's length nor the number of distinct codes
 * is up to the service.
 */
export class ErrorCounter {
  readonly #counter: Counter<"service" | "code">;
  /** The custom codes admitted so far, per service (service names come from the config). */
  readonly #custom = new Map<string, Set<string>>();

  constructor(counter: Counter<"service" | "code">) {
    this.#counter = counter;
  }

  inc(labels: { service: string; code: string }, value?: number): void {
    this.#counter.inc({ service: labels.service, code: this.label(labels.service, labels.code) }, value);
  }

  /** The label `code` is counted under for `service`; admits it if there is room. */
  label(service: string, code: string): string {
    if (typeof code !== "string") return ErrorCode.OTHER;
    if (KERNEL_CODES.has(code)) return code;
    if (!ERROR_CODE_PATTERN.test(code)) return ErrorCode.OTHER;
    let admitted = this.#custom.get(service);
    if (admitted === undefined) {
      admitted = new Set();
      this.#custom.set(service, admitted);
    }
    if (admitted.has(code)) return code;
    if (admitted.size >= CUSTOM_CODES_PER_SERVICE) return ErrorCode.OTHER;
    admitted.add(code);
    return code;
  }
}

export interface ServiceGauges {
  name: string;
  queueDepth: number;
  inFlight: number;
  heapUsedBytes?: number | undefined;
}

/** The outcomes a swap is counted under (an "unchanged" swap is not reported). */
const SWAP_OUTCOMES = ["committed", "rolled-back", "unhealthy"] as const satisfies readonly SwapOutcome[];

/** What the metrics are told by the kernel they watch (see KernelObserver in kernel.ts). */
export interface MetricsObserver {
  delivery(service: string): (ms: number, failure: { code: string } | undefined) => void;
  swapped(report: { service: string; outcome: string; blackoutMs: number | null; rollbackBlackoutMs?: number }): void;
  restarted(service: string): void;
}

export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<"service" | "outcome">;
  readonly errors: ErrorCounter;
  readonly latency: Histogram<"service">;
  readonly swaps: Counter<"service" | "outcome">;
  readonly blackout: Histogram<"service">;
  readonly restarts: Counter<"service">;
  readonly #queue: Gauge<"service">;
  readonly #inFlight: Gauge<"service">;
  readonly #heap: Gauge<"service">;

  constructor(collect: () => Promise<ServiceGauges[]>) {
    const registers = [this.registry];
    this.requests = new Counter({ name: "molt_requests_total", help: "Messages delivered to a service, by outcome (ok or error).", labelNames: ["service", "outcome"], registers });
    this.errors = new ErrorCounter(
      new Counter({
        name: "molt_errors_total",
        help: `Messages a service answered with an error, by error code (ERR_OTHER: malformed codes, and a service's own codes past its first ${CUSTOM_CODES_PER_SERVICE}).`,
        labelNames: ["service", "code"],
        registers,
      }),
    );
    this.latency = new Histogram({ name: "molt_handler_duration_seconds", help: "Time from delivery to reply, queueing excluded.", labelNames: ["service"], buckets: LATENCY_BUCKETS, registers });
    this.swaps = new Counter({ name: "molt_swaps_total", help: "Swaps and rollbacks, by outcome.", labelNames: ["service", "outcome"], registers });
    this.blackout = new Histogram({ name: "molt_swap_blackout_seconds", help: "How long a swap kept a service's mailbox paused.", labelNames: ["service"], buckets: BLACKOUT_BUCKETS, registers });
    this.restarts = new Counter({ name: "molt_restarts_total", help: "Instances restarted after they died.", labelNames: ["service"], registers });
    this.#queue = new Gauge({ name: "molt_queue_depth", help: "Messages waiting in a service's mailbox.", labelNames: ["service"], registers });
    this.#inFlight = new Gauge({ name: "molt_in_flight", help: "Messages a service is running now.", labelNames: ["service"], registers });
    this.#heap = new Gauge({ name: "molt_isolate_heap_used_bytes", help: "Heap used by a service's isolate.", labelNames: ["service"], registers });
    // Gauges are read at scrape time.
    const refresh = async (): Promise<void> => {
      for (const s of await collect()) {
        this.#queue.set({ service: s.name }, s.queueDepth);
        this.#inFlight.set({ service: s.name }, s.inFlight);
        if (s.heapUsedBytes !== undefined) this.#heap.set({ service: s.name }, s.heapUsedBytes);
      }
    };
    this.#refresh = refresh;
  }

  readonly #refresh: () => Promise<void>;

  /** An observer for the kernel: counts where messages and swaps already pass, label children bound once per service. */
  observer(): MetricsObserver {
    return {
      delivery: (service) => {
        // Called once per service when the metrics start watching: the series
        // of rare events exist at 0 from then on, so a query (a rate, an
        // alert on `increase(...) > 0`) sees the service before its first
        // swap or restart instead of no series at all.
        for (const outcome of SWAP_OUTCOMES) this.swaps.labels(service, outcome).inc(0);
        this.blackout.zero({ service });
        this.restarts.labels(service).inc(0);
        // Bound once: the hot path increments, it does not hash labels.
        const ok = this.requests.labels(service, "ok");
        const error = this.requests.labels(service, "error");
        const latency = this.latency.labels(service);
        return (ms, failure) => {
          latency.observe(ms / 1000);
          if (failure === undefined) ok.inc();
          else {
            error.inc();
            this.errors.inc({ service, code: failure.code });
          }
        };
      },
      swapped: (report) => {
        this.swaps.inc({ service: report.service, outcome: report.outcome });
        if (report.blackoutMs !== null) this.blackout.observe({ service: report.service }, report.blackoutMs / 1000);
        if (report.rollbackBlackoutMs !== undefined) this.blackout.observe({ service: report.service }, report.rollbackBlackoutMs / 1000);
      },
      restarted: (service) => this.restarts.inc({ service }),
    };
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition of every metric. */
  async text(): Promise<string> {
    await this.#refresh();
    return this.registry.metrics();
  }
}
