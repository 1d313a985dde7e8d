// The one real nats-server of bench:fleet-scale: JetStream on, in a temporary
// store folder, on loopback ports, with its monitoring endpoint open so the
// bench can read the server's own counters (/varz, /jsz) and its memory.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, natsServerPath } from "../../test/support/nats.ts";

/** What the server has counted since it started, read at one instant. */
export interface ServerCounters {
  at: number;
  inMsgs: number;
  outMsgs: number;
  inBytes: number;
  outBytes: number;
  /** JetStream API requests (direct gets are not among them). */
  jsApi: number;
  /** Messages stored in each stream so far (its last sequence). */
  streams: Record<string, number>;
  connections: number;
  subscriptions: number;
  /** The server's resident memory as it reports it, in bytes. */
  mem: number;
  /** Its CPU use, percent of one core, as it reports it. */
  cpu: number;
}

export class SimNats {
  readonly port: number;
  readonly monitorPort: number;
  readonly #dir: string;
  readonly #child: ChildProcess;
  /** Warnings and errors the server logged, by their text with numbers taken out, counted. */
  readonly warnings = new Map<string, number>();

  private constructor(port: number, monitorPort: number, dir: string, child: ChildProcess) {
    this.port = port;
    this.monitorPort = monitorPort;
    this.#dir = dir;
    this.#child = child;
    const count = (d: Buffer): void => {
      for (const line of d.toString().split("\n")) {
        const m = /\[(WRN|ERR)\] (.*)/.exec(line);
        if (m === null) continue;
        // Client ids, consumer names and times vary from line to line: the first words say what happened.
        const key = `${m[1]} ${(m[2] ?? "").replace(/[\d.:]+/g, "#").slice(0, 64)}`;
        this.warnings.set(key, (this.warnings.get(key) ?? 0) + 1);
      }
    };
    child.stdout?.on("data", count);
    child.stderr?.on("data", count);
  }

  static async start(): Promise<SimNats> {
    const [port, monitorPort] = [await freePort(), await freePort()];
    const dir = mkdtempSync(join(tmpdir(), "molt-fleet-scale-"));
    const child = spawn(natsServerPath(), ["-a", "127.0.0.1", "-p", String(port), "-m", String(monitorPort), "-js", "-sd", join(dir, "js")], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let log = "";
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nats-server did not start:\n${log}`)), 15_000);
      const onData = (d: Buffer): void => {
        log = (log + d.toString()).slice(-8000);
        if (/Server is ready/.test(log)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout?.on("data", onData);
      child.stderr?.on("data", onData);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`nats-server exited with ${code}:\n${log}`));
      });
    });
    return new SimNats(port, monitorPort, dir, child);
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async counters(): Promise<ServerCounters> {
    const [varz, jsz] = await Promise.all([this.#monitor("varz"), this.#monitor("jsz?accounts=true&streams=true")]);
    const streams: Record<string, number> = {};
    for (const account of (jsz.account_details ?? []) as { stream_detail?: { name: string; state: { last_seq: number } }[] }[]) {
      for (const s of account.stream_detail ?? []) streams[s.name] = s.state.last_seq;
    }
    return {
      at: performance.now(),
      inMsgs: Number(varz.in_msgs),
      outMsgs: Number(varz.out_msgs),
      inBytes: Number(varz.in_bytes),
      outBytes: Number(varz.out_bytes),
      jsApi: Number((jsz.api as { total?: number } | undefined)?.total ?? 0),
      streams,
      connections: Number(varz.connections),
      subscriptions: Number(varz.subscriptions),
      mem: Number(varz.mem),
      cpu: Number(varz.cpu),
    };
  }

  /** The server's peak resident memory so far (VmHWM), in bytes, read from /proc. */
  peakRss(): number {
    const status = readFileSync(`/proc/${this.#child.pid}/status`, "utf8");
    const kb = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
    return kb === undefined ? Number.NaN : Number(kb) * 1024;
  }

  async stop(): Promise<void> {
    const child = this.#child;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await exited;
    }
    rmSync(this.#dir, { recursive: true, force: true });
  }

  async #monitor(path: string): Promise<Record<string, unknown>> {
    const res = await fetch(`http://127.0.0.1:${this.monitorPort}/${path}`);
    if (!res.ok) throw new Error(`nats-server monitor /${path}: ${res.status}`);
    return (await res.json()) as Record<string, unknown>;
  }
}

/** Per-second rates between two readings of the server's counters. */
export function rates(a: ServerCounters, b: ServerCounters): Record<string, number> {
  const s = (b.at - a.at) / 1000;
  const per = (x: number, y: number): number => Math.round((y - x) / s);
  const out: Record<string, number> = {
    window_s: Math.round(s * 10) / 10,
    in_msgs_per_s: per(a.inMsgs, b.inMsgs),
    out_msgs_per_s: per(a.outMsgs, b.outMsgs),
    in_bytes_per_s: per(a.inBytes, b.inBytes),
    out_bytes_per_s: per(a.outBytes, b.outBytes),
    js_api_per_s: per(a.jsApi, b.jsApi),
  };
  for (const [name, seq] of Object.entries(b.streams)) out[`stored_per_s.${name}`] = per(a.streams[name] ?? 0, seq);
  return out;
}
