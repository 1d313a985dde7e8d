// Why load requests failed, by kind, without touching the load generator:
// node:http publishes every client request's start and error on diagnostics
// channels, so a benchmark can tell a refused connection (nobody listening)
// from a reset one (the process serving it died) or a request that hung
// until the client gave up. `fetch` is undici and does not publish here, so
// a benchmark's own admin calls and probes are not counted.

import { subscribe } from "node:diagnostics_channel";
import type { ClientRequest } from "node:http";

export interface Failure {
  /** performance.now() when the request failed. */
  at: number;
  /** The socket error's code (ECONNREFUSED, ECONNRESET, …), or "timeout" for a request that outlived `timeoutMs`. */
  kind: string;
}

export interface FailureLog {
  readonly failures: readonly Failure[];
  /** Failures between `from` and `to` (performance.now()), counted by kind. */
  between(from: number, to: number): Record<string, number>;
}

/**
 * Starts recording. A request that failed after `timeoutMs` or more is
 * counted as "timeout" whatever its socket said: bench/lib/load.ts destroys
 * a request after 30 s, which surfaces as a reset.
 */
export function recordFailures(timeoutMs = 29_000): FailureLog {
  const failures: Failure[] = [];
  const started = new WeakMap<ClientRequest, number>();
  subscribe("http.client.request.start", (message) => {
    started.set((message as { request: ClientRequest }).request, performance.now());
  });
  subscribe("http.client.request.error", (message) => {
    const { request, error } = message as { request: ClientRequest; error: NodeJS.ErrnoException };
    const at = performance.now();
    const since = started.get(request);
    failures.push({ at, kind: since !== undefined && at - since >= timeoutMs ? "timeout" : (error.code ?? error.name) });
  });
  return {
    failures,
    between(from, to) {
      const kinds: Record<string, number> = {};
      for (const f of failures) if (f.at >= from && f.at < to) kinds[f.kind] = (kinds[f.kind] ?? 0) + 1;
      return kinds;
    },
  };
}
