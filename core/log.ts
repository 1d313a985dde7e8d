// The kernel's own log: pino, one JSON object per line on stderr, so that it
// never mixes with the services' output on stdout. What services print goes
// to the log service instead (see router.ts), in the same pino shape, so
// pino-pretty reads both streams.

import pino from "pino";

export type Level = "debug" | "info" | "warn" | "error";

export interface KernelLog {
  log(level: Level, msg: string, fields?: Record<string, unknown>): void;
}

export function jsonLog(
  level: Level = (process.env.MOLT_LOG_LEVEL as Level | undefined) ?? "info",
  destination: { write(line: string): void } = pino.destination({ fd: 2, sync: true }),
): KernelLog {
  const logger = pino({ level, base: { component: "kernel" } }, destination);
  return {
    log(lvl, msg, fields = {}) {
      logger[lvl](fields, msg);
    },
  };
}
