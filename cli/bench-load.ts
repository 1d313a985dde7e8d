// The HTTP load `molt bench swap --load` drives: autocannon's Node API, in
// this process, C keep-alive connections each sending its next request as
// soon as the last is answered. Every answer is kept with its start and end
// time on this process's clock (performance.now), so the benchmark can tell
// the requests that overlapped a swap from the others. Failures are kept by
// status code, or by what went wrong on the socket.

import { createRequire } from "node:module";

/** The part of autocannon's API used here (the package ships no types). */
interface AutocannonRun extends PromiseLike<unknown> {
  on(event: "response", listener: (client: unknown, statusCode: number, bytes: number, responseTimeMs: number) => void): void;
  on(event: "reqError", listener: (error: Error & { code?: string }) => void): void;
  stop(): void;
}
type Autocannon = (options: Record<string, unknown>) => AutocannonRun;

export interface LoadOptions {
  url: string;
  connections: number;
  method: string;
  body?: string;
}

/** Answered requests, column by column: a benchmark of a few minutes keeps hundreds of thousands. */
export interface Answers {
  start: number[];
  end: number[];
  status: number[];
}

export interface Load {
  readonly answers: Answers;
  /** Requests that got no answer, by what went wrong ("timeout", "ECONNRESET", …). */
  readonly errors: Map<string, number>;
  stop(): Promise<void>;
}

/** How often autocannon looks at its stop flag: a benchmark that ends should not wait a second for it. */
const SAMPLE_MS = 100;
/** A request unanswered this long counts as failed ("timeout"); a blackout is far shorter. */
const TIMEOUT_S = 30;

export function startLoad(options: LoadOptions): Load {
  const autocannon = createRequire(import.meta.url)("autocannon") as Autocannon;
  const answers: Answers = { start: [], end: [], status: [] };
  const errors = new Map<string, number>();
  const run = autocannon({
    url: options.url,
    connections: options.connections,
    method: options.method,
    ...(options.body === undefined ? {} : { body: options.body }),
    pipelining: 1,
    timeout: TIMEOUT_S,
    // It runs until stopped; the duration only bounds a run nobody stops.
    duration: 24 * 3600,
    sampleInt: SAMPLE_MS,
  });
  run.on("response", (_client, status, _bytes, ms) => {
    const end = performance.now();
    answers.start.push(end - ms);
    answers.end.push(end);
    answers.status.push(status);
  });
  run.on("reqError", (error) => {
    // Socket errors carry their code; autocannon's own timeout is the one error without one.
    const kind = error.code ?? "timeout";
    errors.set(kind, (errors.get(kind) ?? 0) + 1);
  });
  const done = Promise.resolve(run);
  return {
    answers,
    errors,
    async stop() {
      run.stop();
      await done;
    },
  };
}
