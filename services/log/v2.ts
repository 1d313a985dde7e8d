// The log sink, version 1.1: the same pino-shaped JSON lines as index.ts
// (numeric `level`, `time` in epoch ms, `msg`, the service and its version),
// each now numbered with `seq`, the sink's running line count. The count is
// part of the state (stateVersion 1, as in 1.0), so it carries on across a
// swap: a gap in `seq` is a line lost, a repeat is a line written twice.
// Config: { level: "debug" | "info" | "warn" | "error" }.

import { defineService } from "molt/service";

const LEVELS = ["debug", "info", "warn", "error"] as const;
/** pino's numbers for the same levels. */
const PINO_LEVELS = [20, 30, 40, 50] as const;
type Level = (typeof LEVELS)[number];
type Record_ = { time: string; level: string; service: string; version: string | null; versionId?: string | null; message: string };
type State = { level: Level; written: number; dropped: number };

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

export default defineService<State, { level?: Level }>({
  version: "1.1.0",
  stateVersion: 1,
  init: (ctx) => ({ level: checkLevel(ctx.config?.level ?? "info"), written: 0, dropped: 0 }),
  handlers: {
    write: (state, record: Record_, ctx) => {
      if (rank(record.level) < rank(state.level)) {
        state.dropped++;
        return;
      }
      state.written++;
      const line = {
        level: PINO_LEVELS[rank(record.level)],
        time: Date.parse(record.time),
        seq: state.written,
        service: record.service,
        version: record.version,
        ...(record.versionId ? { versionId: record.versionId } : {}),
        msg: record.message,
      };
      ctx.stdout.write(`${JSON.stringify(line)}\n`);
    },
    setLevel: (state, level: string) => {
      state.level = checkLevel(level);
      return state.level;
    },
    stats: (state) => ({ level: state.level, written: state.written, dropped: state.dropped }),
  },
});
