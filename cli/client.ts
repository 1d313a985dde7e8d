// The CLI's side of the admin API: finds the running runtime's admin port and
// token from the config (the same file `molt run` was given) and calls it.
// Each call names its path and answer once, from the contract (protocol/admin.ts).

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { tokenPath } from "../core/admin.ts";
import { findConfig, loadConfig, type ResolvedConfig } from "../core/config.ts";
import { ErrorCode, MoltError } from "../core/errors.ts";
import {
  AdminPath,
  NDJSON,
  type ErrorBody,
  type HistoryBody,
  type KernelHistoryBody,
  type KernelUpgradeBody,
  type KernelUpgradeProgress,
  type RestartAnswer,
  type RollbackBody,
  type SnapshotAnswer,
  type SnapshotBody,
  type StatusBody,
  type SwapBody,
  type SwapProgress,
} from "../protocol/admin.ts";

export interface AdminClient {
  config: ResolvedConfig;
  status(): Promise<StatusBody>;
  history(service: string): Promise<HistoryBody>;
  snapshot(body: SnapshotBody): Promise<SnapshotAnswer>;
  restart(service: string): Promise<RestartAnswer>;
  /** A swap or a rollback, answered as NDJSON: `onLine` gets each line as it arrives. */
  swap(service: string, body: SwapBody, onLine: (line: SwapProgress) => void): Promise<void>;
  rollback(service: string, body: RollbackBody, onLine: (line: SwapProgress) => void): Promise<void>;
  kernelHistory(): Promise<KernelHistoryBody>;
  /** `molt upgrade`, answered as NDJSON as a swap is. */
  upgrade(onLine: (line: KernelUpgradeProgress) => void): Promise<void>;
}

export async function connect(configArg: string | undefined): Promise<AdminClient> {
  const config = await loadConfig(findConfig(configArg));
  // Every error about the admin API names the config it came from: a user in the wrong folder sees which one was used.
  const used = `config ${config.path ?? "(given in code)"}`;
  if (config.admin === null) {
    throw new MoltError(ErrorCode.CONFIG, `${config.path ?? "the config"} has no admin port: add admin: { port } to talk to the runtime`);
  }
  const host = config.admin.host.includes(":") ? `[${config.admin.host}]` : config.admin.host;
  let base = `http://${host}:${config.admin.port}`;
  if (config.admin.port === 0) {
    // A runtime on a port picked at start writes where it listens into dataDir.
    const address = join(config.dataDir, "admin.json");
    if (!existsSync(address)) throw new MoltError(ErrorCode.ADMIN, `admin.port is 0 and ${address} does not exist: is the runtime running? (${used})`);
    base = (JSON.parse(readFileSync(address, "utf8")) as { url: string }).url;
  }
  const token = (): string => {
    const path = tokenPath(config.dataDir);
    if (!existsSync(path)) throw new MoltError(ErrorCode.UNAUTHORIZED, `no admin token at ${path}: is the runtime running with this config? (${used})`);
    return readFileSync(path, "utf8").trim();
  };
  const request = async (method: string, path: string, body?: unknown): Promise<Response> => {
    try {
      return await fetch(`${base}${path}`, {
        method,
        headers: body === undefined ? {} : { "content-type": "application/json", authorization: `Bearer ${token()}` },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch (cause) {
      if (cause instanceof MoltError) throw cause;
      throw new MoltError(ErrorCode.ADMIN, `cannot reach the runtime's admin API at ${base}: is it running? (${used})`, { cause });
    }
  };
  /** An answer's body: T when it succeeded, its coded error thrown otherwise. */
  const json = async <T>(res: Response): Promise<T> => {
    const value = (await res.json()) as T | Partial<ErrorBody>;
    const error = (value as Partial<ErrorBody>).error;
    if (!res.ok || error !== undefined) {
      throw new MoltError(error?.code ?? ErrorCode.ADMIN, error?.message ?? `admin API at ${base} answered ${res.status} (${used})`);
    }
    return value as T;
  };
  const stream = async <L>(path: string, body: SwapBody | RollbackBody | KernelUpgradeBody, onLine: (line: L) => void): Promise<void> => {
    const res = await request("POST", path, body);
    if (!(res.headers.get("content-type") ?? "").startsWith(NDJSON)) {
      await json<never>(res);
      return;
    }
    const decoder = new TextDecoder();
    let buffer = "";
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (line !== "") onLine(JSON.parse(line) as L);
      }
    }
  };
  return {
    config,
    status: async () => json<StatusBody>(await request("GET", AdminPath.status)),
    history: async (service) => json<HistoryBody>(await request("GET", AdminPath.history(service))),
    snapshot: async (body) => json<SnapshotAnswer>(await request("POST", AdminPath.snapshot, body)),
    restart: async (service) => json<RestartAnswer>(await request("POST", AdminPath.restart(service), {})),
    swap: (service, body, onLine) => stream(AdminPath.swap(service), body, onLine),
    rollback: (service, body, onLine) => stream(AdminPath.rollback(service), body, onLine),
    kernelHistory: async () => json<KernelHistoryBody>(await request("GET", AdminPath.kernelHistory)),
    upgrade: (onLine) => stream(AdminPath.kernelUpgrade, {}, onLine),
  };
}
