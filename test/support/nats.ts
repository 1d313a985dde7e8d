// A real nats-server with JetStream on a loopback port, in a temporary
// folder, for the fleet's tests and benchmark; it can be killed and started
// again on the same port and store, as a server restart would.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Debian installs nats-server in /usr/sbin, which a non-root PATH may lack. */
export function natsServerPath(): string {
  const found = spawnSync("sh", ["-c", "command -v nats-server"], { encoding: "utf8" }).stdout.trim();
  if (found !== "") return found;
  for (const path of ["/usr/sbin/nats-server", "/usr/local/bin/nats-server", "/usr/bin/nats-server"]) if (existsSync(path)) return path;
  throw new Error("nats-server not found: install it (apt-get install nats-server); .ci/run does");
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export class NatsServer {
  readonly port: number;
  readonly dir: string;
  #child: ChildProcess | undefined;
  #log = "";

  private constructor(port: number, dir: string) {
    this.port = port;
    this.dir = dir;
  }

  static async start(): Promise<NatsServer> {
    const server = new NatsServer(await freePort(), mkdtempSync(join(tmpdir(), "molt-nats-")));
    await server.restart();
    return server;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get log(): string {
    return this.#log;
  }

  /** Starts the server (again); resolves once it accepts clients with JetStream ready. */
  async restart(): Promise<void> {
    if (this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null) throw new Error("nats-server is already running");
    const child = spawn(natsServerPath(), ["-a", "127.0.0.1", "-p", String(this.port), "-js", "-sd", join(this.dir, "js")], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.#child = child;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nats-server did not start:\n${this.#log}`)), 15_000);
      const onData = (d: Buffer): void => {
        this.#log += d.toString();
        if (/Server is ready/.test(this.#log.slice(-4000))) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout?.on("data", onData);
      child.stderr?.on("data", onData);
      child.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`nats-server exited with ${code}:\n${this.#log}`));
      });
    });
  }

  /** Kills the server (SIGKILL: no goodbye to its clients). */
  async kill(): Promise<void> {
    const child = this.#child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
