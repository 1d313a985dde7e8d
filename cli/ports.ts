// The ports a config names, checked before any service boots: a taken port
// is a clear coded error at once, not a raw EADDRINUSE after every service
// has started (and been stopped again).

import { createServer, type Server } from "node:net";
import { ErrorCode, MoltError } from "../core/errors.ts";

export interface PortSetting {
  /** The config's name for it, as the user would look it up: "http.port", "admin.port". */
  setting: string;
  port: number;
  host: string;
}

/**
 * Binds every fixed port (port 0 is picked at listen time and cannot be
 * taken) and lets go of them again. All are held at once, so two settings
 * naming the same port are caught too. Rejects with ERR_PORT_IN_USE naming
 * the setting and the port, or ERR_CONFIG for a port this user may not bind.
 */
export async function checkPorts(settings: readonly PortSetting[]): Promise<void> {
  const held: Server[] = [];
  try {
    for (const s of settings.filter((s) => s.port !== 0)) held.push(await bind(s));
  } finally {
    await Promise.all(held.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
}

function bind(s: PortSetting): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", (err) => reject(portError(s, err)));
    server.listen({ port: s.port, host: s.host, exclusive: true }, () => resolve(server));
  });
}

/** A listen failure as the coded error the user can act on; other errors pass as they are. */
export function portError(s: PortSetting, err: unknown): unknown {
  const code = (err as { code?: unknown }).code;
  if (code === "EADDRINUSE") {
    return new MoltError(ErrorCode.PORT_IN_USE, `${s.setting} ${s.port} on ${s.host} is in use by another process: stop it, or set another ${s.setting} in the config`, { cause: err });
  }
  if (code === "EACCES" || code === "EADDRNOTAVAIL") {
    return new MoltError(ErrorCode.CONFIG, `${s.setting} ${s.port} on ${s.host} cannot be bound (${code})`, { cause: err });
  }
  return err;
}
