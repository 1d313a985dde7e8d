// The CLI's side of the admin API: finds the running runtime's admin port and
// token from the config (the same file `molt run` was given) and calls it.

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { tokenPath } from "../core/admin.ts";
import { findConfig, loadConfig, type ResolvedConfig } from "../core/config.ts";
import { ErrorCode, MoltError } from "../core/errors.ts";

export interface AdminClient {
  config: ResolvedConfig;
  get(path: string): Promise<unknown>;
  post(path: string, body: unknown): Promise<unknown>;
  /** A POST answered as NDJSON; `onLine` gets each parsed line. */
  stream(path: string, body: unknown, onLine: (line: Record<string, unknown>) => void): Promise<void>;
}

export async function connect(configArg: string | undefined): Promise<AdminClient> {
  const config = await loadConfig(findConfig(configArg));
  if (config.admin === null) {
    throw new MoltError(ErrorCode.CONFIG, `${config.path ?? "the config"} has no admin port: add admin: { port } to talk to the runtime`);
  }
  const host = config.admin.host.includes(":") ? `[${config.admin.host}]` : config.admin.host;
  let base = `http://${host}:${config.admin.port}`;
  if (config.admin.port === 0) {
    // A runtime on a port picked at start writes where it listens into dataDir.
    const address = join(config.dataDir, "admin.json");
    if (!existsSync(address)) throw new MoltError(ErrorCode.ADMIN, `admin.port is 0 and ${address} does not exist: is the runtime running?`);
    base = (JSON.parse(readFileSync(address, "utf8")) as { url: string }).url;
  }
  const token = (): string => {
    const path = tokenPath(config.dataDir);
    if (!existsSync(path)) throw new MoltError(ErrorCode.UNAUTHORIZED, `no admin token at ${path}: is the runtime running with this config?`);
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
      throw new MoltError(ErrorCode.ADMIN, `cannot reach the runtime's admin API at ${base}: is it running?`, { cause });
    }
  };
  const json = async (res: Response): Promise<unknown> => {
    const value = (await res.json()) as { error?: { code: string; message: string } };
    if (!res.ok || value.error !== undefined) {
      throw new MoltError(value.error?.code ?? ErrorCode.ADMIN, value.error?.message ?? `admin API answered ${res.status}`);
    }
    return value;
  };
  return {
    config,
    get: async (path) => json(await request("GET", path)),
    post: async (path, body) => json(await request("POST", path, body ?? {})),
    stream: async (path, body, onLine) => {
      const res = await request("POST", path, body ?? {});
      if (!(res.headers.get("content-type") ?? "").includes("ndjson")) {
        await json(res);
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
          if (line !== "") onLine(JSON.parse(line) as Record<string, unknown>);
        }
      }
    },
  };
}
