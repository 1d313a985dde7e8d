// What `molt bench swap` measured, turned into its figures: the blackout and
// each phase over the committed swaps, client latency in steady state and
// for requests that overlapped a swap, and failed requests by status. The
// same object is printed as a table, given as --json and drawn by --report.

import { summarize, type Summary } from "./stats.ts";
import { Phase, type SwapReport } from "../protocol/admin.ts";
import type { Answers } from "./bench-load.ts";

/** One swap the benchmark asked for, with when it was asked and answered on this process's clock. */
export interface SwapRun {
  /** 1, 2, …: the order the swaps were asked for. */
  n: number;
  entry: string;
  sentAt: number;
  endedAt: number;
  /** When the line saying the cutover ended arrived: the blackout's end, as near as this side can tell. */
  cutoverAt: number | null;
  report: SwapReport;
}

/** Everything a benchmark run gathered, raw. */
export interface BenchRun {
  service: string;
  entries: [string, string];
  /** When the run began (this process's clock) and its wall-clock time then. */
  startedAt: number;
  date: string;
  /** Requests before this time warmed up the service and count as neither steady nor during a swap. */
  warmUntil: number;
  endedAt: number;
  swaps: SwapRun[];
  load: { url: string; connections: number; method: string; answers: Answers; errors: Map<string, number> } | null;
  /** Why the run ended before its last swap, if it did. */
  stopped: "interrupted" | "failure" | null;
  /** The version the service runs at the end, and the entry it came from when it was one of the two. */
  leftOn: { version: string; semver: string; entry: string | null } | null;
}

/** The figures, in the shape `--json` prints (snake_case, ms). */
export interface BenchResult {
  service: string;
  swaps: number;
  committed: number;
  failed_swaps: number;
  blackout_ms: Summary;
  phases_ms: Record<string, Summary>;
  latency_ms: { steady: Summary; during_swap: Summary } | null;
  requests: { ok: number; failed: number; failed_by_status: Record<string, number> } | null;
  failures: { swap: number; entry: string; code: string; phase: string; message: string; blackout_ms: number | null }[];
  stopped: "interrupted" | "failure" | null;
  left_on: { version: string; semver: string; entry: string | null } | null;
}

/** Sub-microsecond phases (a cutover) must not round to 0. */
const DIGITS = 4;

export function benchResult(run: BenchRun): BenchResult {
  const committed = run.swaps.filter((s) => s.report.outcome === "committed");
  const failed = run.swaps.filter((s) => s.report.outcome !== "committed");
  const phases: Record<string, Summary> = {};
  for (const phase of Object.values(Phase)) {
    const times = committed.map((s) => s.report.phases[phase]).filter((t): t is number => t !== undefined);
    if (times.length > 0) phases[phase] = summarize(times, DIGITS);
  }
  return {
    service: run.service,
    swaps: run.swaps.length,
    committed: committed.length,
    failed_swaps: failed.length,
    blackout_ms: summarize(blackouts(run), DIGITS),
    phases_ms: phases,
    latency_ms: run.load === null ? null : latencies(run),
    requests: run.load === null ? null : requests(run.load.answers, run.load.errors),
    failures: failed.map((s) => ({
      swap: s.n,
      entry: s.entry,
      code: s.report.error?.code ?? s.report.outcome,
      phase: s.report.error?.phase ?? "commit",
      message: s.report.error?.message ?? "",
      blackout_ms: s.report.blackoutMs,
    })),
    stopped: run.stopped,
    left_on: run.leftOn,
  };
}

/** The blackout of every committed swap. */
export function blackouts(run: Pick<BenchRun, "swaps">): number[] {
  return run.swaps.flatMap((s) => (s.report.outcome === "committed" && s.report.blackoutMs !== null ? [s.report.blackoutMs] : []));
}

function isOk(status: number): boolean {
  return status >= 200 && status < 300;
}

/**
 * A request overlapped a swap when it was in flight at any moment between
 * the swap being asked for and its report arriving: the windows are sorted
 * and apart, so the first window ending after the request started is the
 * only one to look at.
 */
export function overlapsSwap(windows: readonly SwapRun[], start: number, end: number): boolean {
  let lo = 0;
  let hi = windows.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((windows[mid] as SwapRun).endedAt <= start) lo = mid + 1;
    else hi = mid;
  }
  const w = windows[lo];
  return w !== undefined && w.sentAt < end;
}

function latencies(run: BenchRun): { steady: Summary; during_swap: Summary } {
  const answers = run.load?.answers ?? { start: [], end: [], status: [] };
  const steady: number[] = [];
  const during: number[] = [];
  for (let i = 0; i < answers.start.length; i++) {
    const start = answers.start[i] as number;
    const end = answers.end[i] as number;
    if (start < run.warmUntil || !isOk(answers.status[i] as number)) continue;
    (overlapsSwap(run.swaps, start, end) ? during : steady).push(end - start);
  }
  return { steady: summarize(steady, DIGITS), during_swap: summarize(during, DIGITS) };
}

function requests(answers: Answers, errors: Map<string, number>): NonNullable<BenchResult["requests"]> {
  const byStatus: Record<string, number> = {};
  let ok = 0;
  for (const status of answers.status) {
    if (isOk(status)) ok++;
    else byStatus[status] = (byStatus[status] ?? 0) + 1;
  }
  for (const [kind, count] of errors) byStatus[kind] = (byStatus[kind] ?? 0) + count;
  const failed = Object.values(byStatus).reduce((a, b) => a + b, 0);
  return { ok, failed, failed_by_status: byStatus };
}

/** Client latency over time: one point per bucket of the run, for the report's timeline. */
export interface TimelinePoint {
  /** Seconds since the run began. */
  t: number;
  p50: number | null;
  p99: number | null;
  max: number | null;
  failed: number;
}

/** At most this many points, so a long run's report stays small. */
const POINTS = 400;

export function timeline(run: BenchRun): { bucketMs: number; points: TimelinePoint[] } {
  const span = Math.max(1, run.endedAt - run.startedAt);
  const bucketMs = Math.max(50, Math.ceil(span / POINTS / 50) * 50);
  const count = Math.ceil(span / bucketMs);
  const latency: number[][] = Array.from({ length: count }, () => []);
  const failed = new Array<number>(count).fill(0);
  const answers = run.load?.answers ?? { start: [], end: [], status: [] };
  for (let i = 0; i < answers.end.length; i++) {
    const end = answers.end[i] as number;
    const at = Math.min(count - 1, Math.max(0, Math.floor((end - run.startedAt) / bucketMs)));
    if (isOk(answers.status[i] as number)) (latency[at] as number[]).push(end - (answers.start[i] as number));
    else failed[at] = (failed[at] as number) + 1;
  }
  const points = latency.map((values, i) => {
    const s = values.length === 0 ? null : summarize(values, DIGITS);
    return { t: ((i + 0.5) * bucketMs) / 1000, p50: s?.p50 ?? null, p99: s?.p99 ?? null, max: s?.max ?? null, failed: failed[i] as number };
  });
  return { bucketMs, points };
}
