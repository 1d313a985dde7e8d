// The log sink: every service's console output arrives here as a `write`
// message, and leaves as one JSON line on stdout in pino's shape (numeric
// `level`, `time` in epoch ms, `msg`) with the service and its version, so
// pino-pretty reads it like the kernel's own log. Lines below the configured
// level are dropped. Config: { level: "debug" | "info" | "warn" | "error" }.

import { defineService } from "molt/service";

const LEVELS = ["debug", "info", "warn", "error"] as const;
/** pino's numbers for the same levels. */
const PINO_LEVELS = [20, 30, 40, 50] as const;
type Level = (typeof LEVELS)[number];
export type Record_ = { time: string; level: string; service: string; version: string | null; versionId?: string | null; message: string };
export type State = { level: Level; written: number; dropped: number };

function rank(level: string): number {
  const i = LEVELS.indexOf(level as Level);
  return i === -1 ? LEVELS.indexOf("info") : i;
}

function checkLevel(level: unknown): Level {
  if (typeof level !== "string" || !LEVELS.includes(level as Level)) {
    throw Object.assign(new TypeError(`level must be one of ${LEVELS.join(", ")}`), { code: "ERR_BAD_LEVEL" });
  }
  return level as Level;
}

/** Counts a record and returns its line, or undefined when it is below the level. */
export function accept(state: State, record: Record_): Record<string, unknown> | undefined {
  if (rank(record.level) < rank(state.level)) {
    state.dropped++;
    return undefined;
  }
  state.written++;
  return {
    level: PINO_LEVELS[rank(record.level)],
    time: Date.parse(record.time),
    service: record.service,
    version: record.version,
    ...(record.versionId ? { versionId: record.versionId } : {}),
    msg: record.message,
  };
}

export default defineService<State, { level?: Level }>({
  version: "1.0.0",
  stateVersion: 1,
  init: (ctx) => ({ level: checkLevel(ctx.config?.level ?? "info"), written: 0, dropped: 0 }),
  handlers: {
    write: (state, record: Record_, ctx) => {
      const line = accept(state, record);
      if (line !== undefined) ctx.stdout.write(`${JSON.stringify(line)}\n`);
    },
    setLevel: (state, level: string) => {
      state.level = checkLevel(level);
      return state.level;
    },
    stats: (state) => ({ level: state.level, written: state.written, dropped: state.dropped }),
  },
});
