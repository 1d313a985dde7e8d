// The kernel's own log: one JSON object per line on stderr, so that it never
// mixes with the services' output on stdout. What services print goes to the
// log service instead (see kernel.ts); this is only for the kernel itself.

export type Level = "debug" | "info" | "warn" | "error";

export interface KernelLog {
  log(level: Level, msg: string, fields?: Record<string, unknown>): void;
}

export function jsonLog(write: (line: string) => void = (line) => process.stderr.write(line)): KernelLog {
  return {
    log(level, msg, fields = {}) {
      write(`${JSON.stringify({ time: new Date().toISOString(), level, component: "kernel", msg, ...fields })}\n`);
    },
  };
}
