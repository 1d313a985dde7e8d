// The admin API as this page reads it: the shapes it answers with (mirrors of
// core/live.ts, core/swap.ts and core/inventory.ts), and the few calls the
// page makes. All same-origin: the page is served by that API.

export interface ServiceTick {
  name: string;
  version: string | null;
  semver: string | null;
  stateVersion: number | null;
  uptimeMs: number;
  queueDepth: number;
  inFlight: number;
  rps: number;
  errors: number;
  p99Ms: number | null;
}

export interface Tick {
  time: number;
  services: ServiceTick[];
}

export interface VersionInfo {
  version: string;
  semver: string;
  stateVersion: number;
}

export interface SwapReport {
  service: string;
  outcome: "committed" | "rolled-back" | "unchanged" | "unhealthy";
  via: string;
  from: VersionInfo;
  to: VersionInfo | null;
  blackoutMs: number | null;
  phases: Record<string, number>;
  error?: { code: string; message: string; phase: string };
}

export interface VersionRecord {
  seq: number;
  version: string;
  semver: string;
  stateVersion: number;
  entry: string;
  via: string;
  requestedAt: string;
  startedAt: string | null;
  replacedAt: string | null;
  outcome: string;
  code?: string;
  message?: string;
  blackoutMs?: number;
}

/** One line of a swap's or a rollback's NDJSON answer. */
export type Progress =
  | { event: "phase"; phase: string; ms: number }
  | { event: "report"; report: SwapReport }
  | { event: "error"; error: { code: string; message: string } };

export interface ApiError {
  code: string;
  message: string;
}

async function getJson<T>(path: string): Promise<T> {
  const res = await fetch(path);
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

export async function serviceNames(): Promise<string[]> {
  const status = await getJson<{ services: { name: string }[] }>("/v1/status");
  return status.services.map((s) => s.name);
}

/** A service's inventory, oldest first. */
export async function history(service: string): Promise<VersionRecord[]> {
  const { records } = await getJson<{ records: VersionRecord[] }>(`/v1/services/${encodeURIComponent(service)}/history`);
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
  body: Record<string, string>,
  token: string,
): AsyncGenerator<Progress> {
  const res = await fetch(`/v1/services/${encodeURIComponent(service)}/${kind}`, {
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
    const body = (await res.json()) as { error?: ApiError };
    if (body.error !== undefined) return { code: body.error.code, message: body.error.message };
  } catch {
    // not JSON
  }
  return { code: `HTTP ${res.status}`, message: res.statusText };
}
