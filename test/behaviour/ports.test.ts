// Behaviour: a port the config names that another process holds. The runtime
// refuses to start with ERR_PORT_IN_USE, naming the setting and the port,
// before it boots a single service.

import { once } from "node:events";
import { createServer, type AddressInfo, type Server } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FIXTURES, killLeftovers, runUntilExit, writeConfig } from "../support/runtime.ts";

const PROBE = join(FIXTURES, "behaviour", "probe.ts");

let holders: Server[] = [];

afterEach(async () => {
  killLeftovers();
  await Promise.all(holders.map((server) => new Promise((resolve) => server.close(resolve))));
  holders = [];
});

/** A port another process (here: this one) listens on. */
async function takenPort(): Promise<number> {
  const server = createServer();
  holders.push(server);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return (server.address() as AddressInfo).port;
}

function config(http: number, admin: number | undefined): string {
  return writeConfig(`export default {
  services: { probe: { entry: ${JSON.stringify(PROBE)} } },
  http: { port: ${http}, service: "probe" },
  ${admin === undefined ? "" : `admin: { port: ${admin} },`}
};
`);
}

describe("a busy port", () => {
  it("http.port taken: exits 1 with ERR_PORT_IN_USE naming http.port and the port, before any service boots", async () => {
    const port = await takenPort();
    const result = await runUntilExit(["run", config(port, undefined)]);
    expect(result.killed, `still running; stdout:\n${result.stdout}`).toBe(false);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("ERR_PORT_IN_USE");
    expect(result.stderr).toContain(`http.port ${port}`);
    expect(result.stdout).not.toMatch(/service started/);
  });

  it("admin.port taken: exits 1 with ERR_PORT_IN_USE naming admin.port and the port, before any service boots", async () => {
    const port = await takenPort();
    const result = await runUntilExit(["run", config(0, port)]);
    expect(result.killed, `still running; stdout:\n${result.stdout}`).toBe(false);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("ERR_PORT_IN_USE");
    expect(result.stderr).toContain(`admin.port ${port}`);
    expect(result.stdout).not.toMatch(/service started/);
  });
});
