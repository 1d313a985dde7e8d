// The admin API as this page reads it: the few calls the page makes. The
// shapes it answers with are the contract's (protocol/admin.ts), the same
// types the runtime's admin server and the CLI are checked against. All
// same-origin: the page is served by that API.

import {
  AdminPath,
  type ErrorBody,
  type HistoryBody,
  type RollbackBody,
  type StatusBody,
  type SwapBody,
  type SwapProgress,
  type VersionRecord,
} from "../protocol/admin.ts";
import type { WireError } from "../protocol/wire.ts";

export type { ServiceTick, SwapReport, Tick, VersionRecord } from "../protocol/admin.ts";

/** One line of a swap's or a rollback's NDJSON answer. */
export type Progress = SwapProgress;

/** A refused call: its code and message, or, when the answer was not the API's, "HTTP <status>". */
export type ApiError = Pick<WireError, "code" | "message">;

async function getJson<T>(path: string): Promise<T> {
  const res = await fetch(path);
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

export async function serviceNames(): Promise<string[]> {
  const status = await getJson<StatusBody>(AdminPath.status);
  return status.services.map((s) => s.name);
}

/** A service's inventory, oldest first. */
export async function history(service: string): Promise<VersionRecord[]> {
  const { records } = await getJson<HistoryBody>(AdminPath.history(service));
  return records.sort((a, b) => a.seq - b.seq);
}

/**
 * POST /v1/services/:name/swap or /rollback with the bearer token. Yields
 * each progress line as it arrives; a call refused before it began (bad
 * token, busy, bad entry) throws its { code, message } with the HTTP status.
 */
export async function* swapOrRollback(
  kind: "swap" | "rollback",
  service: string,
  body: SwapBody | RollbackBody,
  token: string,
): AsyncGenerator<Progress> {
  const res = await fetch(kind === "swap" ? AdminPath.swap(service) : AdminPath.rollback(service), {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw Object.assign(await errorOf(res), { status: res.status });
  if (res.body === null) return;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (value !== undefined) buffer += value;
    let end: number;
    while ((end = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, end).trim();
      buffer = buffer.slice(end + 1);
      if (line !== "") yield JSON.parse(line) as Progress;
    }
    if (done) return;
  }
}

async function errorOf(res: Response): Promise<ApiError> {
  try {
    const body = (await res.json()) as Partial<ErrorBody>;
    if (body.error !== undefined) return { code: body.error.code, message: body.error.message };
  } catch {
    // not JSON
  }
  return { code: `HTTP ${res.status}`, message: res.statusText };
}
