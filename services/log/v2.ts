// The log sink, version 1.1: the same pino-shaped JSON lines as index.ts
// (numeric `level`, `time` in epoch ms, `msg`, the service and its version),
// each now numbered with `seq`, the sink's running line count. The count is
// part of the state (stateVersion 1, as in 1.0), so it carries on across a
// swap: a gap in `seq` is a line lost, a repeat is a line written twice.
// Config: { level: "debug" | "info" | "warn" | "error" }.

import { defineService } from "molt/service";
import v1, { accept, type Record_, type State } from "./index.ts";

export default defineService<State, { level?: "debug" | "info" | "warn" | "error" }>({
  ...v1,
  version: "1.1.0",
  handlers: {
    ...v1.handlers,
    write: (state, record: Record_, ctx) => {
      const line = accept(state, record);
      if (line !== undefined) ctx.stdout.write(`${JSON.stringify({ ...line, seq: state.written })}\n`);
    },
  },
});
