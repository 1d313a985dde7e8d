// A `molt run` process tree for the benchmarks that kill or replace parts of
// it: launcher (bin/molt.js) → keeper → runtime, plus a standby runtime when
// the config asks for one. It keeps what the tree says about itself (the
// ready lines on stdout, the keeper's log lines on stderr) and reads the
// process table from /proc, so a benchmark can find the runtime's pid, kill
// one process or the whole tree.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** One line of the keeper's log (keeper/keeper.ts writes them as JSON on stderr). */
export interface KeeperLine {
  msg: string;
  /** The keeper's own pid. */
  pid?: number;
  /** The runtime a line is about (a death, an upgrade's new runtime). */
  runtime?: number;
  standby?: boolean;
  [field: string]: unknown;
}

export interface MoltProcess {
  url: string;
  adminUrl: string;
  token: string;
  launcher: ChildProcess;
  keeperLog: KeeperLine[];
  /** Lines of stdout that say the runtime serves ("molt: ready…"), each with when it was read (performance.now()). */
  readyLines: { at: number; line: string }[];
  /** `GET /v1/status` on the admin API: `kernel.pid` is the serving runtime's. */
  status(): Promise<{ kernel: { pid: number; version: string } }>;
  /** A GET on the admin API, its JSON answer. */
  admin<T>(path: string): Promise<T>;
  /** A graceful stop (SIGTERM to the launcher: every service snapshots), the tree killed if it takes longer than 30 s. */
  stop(): Promise<void>;
  /** SIGKILL to every process of the tree at once, as a crash of the machine's view of molt would. */
  killTree(): Promise<void>;
}

/** Starts `<moltDir>/bin/molt.js run <configPath>` in `cwd` and resolves once it serves. */
export function startMolt(moltDir: string, configPath: string, dataDir: string, cwd: string): Promise<MoltProcess> {
  const launcher = spawn(process.execPath, [join(moltDir, "bin/molt.js"), "run", configPath], { cwd, stdio: ["ignore", "pipe", "pipe"] });
  const keeperLog: KeeperLine[] = [];
  const readyLines: { at: number; line: string }[] = [];
  let out = "";
  let tail = "";
  lines(launcher.stderr, (line) => {
    tail = `${tail}${line}\n`.slice(-4000);
    if (!line.includes('"component":"keeper"')) return;
    try {
      keeperLog.push(JSON.parse(line) as KeeperLine);
    } catch {
      // A line cut by a crash is not the keeper's business to the benchmark.
    }
  });
  const exited = new Promise<void>((resolve) => launcher.once("exit", () => resolve()));
  return new Promise((resolve, reject) => {
    const early = (code: number | null): void => reject(new Error(`molt exited with ${code} before it served:\n${out}\n${tail}`));
    launcher.once("exit", early);
    lines(launcher.stdout, (line) => {
      out += `${line}\n`;
      if (line.startsWith("molt: ready")) readyLines.push({ at: performance.now(), line });
      const url = /http listening on (\S+)/.exec(out)?.[1];
      const adminUrl = /admin listening on (\S+)/.exec(out)?.[1];
      if (url === undefined || adminUrl === undefined || readyLines.length !== 1 || !line.startsWith("molt: ready")) return;
      const token = readFileSync(join(dataDir, "admin.token"), "utf8").trim();
      const killTree = async (): Promise<void> => {
        const pids = [launcher.pid ?? 0, ...descendants(launcher.pid ?? 0)].filter((p) => p > 0);
        for (const pid of pids) signal(pid, "SIGKILL");
        await exited;
        await waitFor(() => pids.every((pid) => !running(pid)), 10_000, "the killed tree to be gone");
      };
      const admin = async <T>(path: string): Promise<T> => {
        // A new connection each time: a pooled one may belong to a runtime that was replaced since.
        const res = await fetch(`${adminUrl}${path}`, { headers: { connection: "close", authorization: `Bearer ${token}` } });
        if (!res.ok) throw new Error(`GET ${path} answered ${res.status}`);
        return (await res.json()) as T;
      };
      resolve({
        url,
        adminUrl,
        token,
        launcher,
        keeperLog,
        readyLines,
        status: () => admin("/v1/status"),
        admin,
        async stop() {
          launcher.off("exit", early);
          signal(launcher.pid ?? 0, "SIGTERM");
          const timer = setTimeout(() => void killTree(), 30_000);
          await exited;
          clearTimeout(timer);
        },
        killTree,
      });
    });
  });
}

/** Every process below `pid`, nearest first, read from /proc. */
export function descendants(pid: number): number[] {
  const parents = processTable();
  const found: number[] = [];
  const queue = [pid];
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    for (const child of parents.get(next) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

/** Clock ticks per second of /proc's CPU times. */
const CLOCK_TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

/** CPU time, in ms, that `pid` and every process below it have used so far (user and system, all threads). */
export function treeCpuMs(pid: number): number {
  let ticks = 0;
  for (const each of [pid, ...descendants(pid)]) ticks += readStat(each)?.ticks ?? 0;
  return (ticks * 1000) / CLOCK_TICKS;
}

/** True while the process exists and is not a zombie. */
export function running(pid: number): boolean {
  const stat = readStat(pid);
  return stat !== undefined && stat.state !== "Z";
}

/** Polls `check` every 20 ms until it holds; throws after `timeoutMs`, naming what was awaited. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Parent pid → its children's pids, for every process alive now. */
function processTable(): Map<number, number[]> {
  const parents = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat === undefined || stat.state === "Z") continue;
    const siblings = parents.get(stat.ppid) ?? [];
    siblings.push(Number(entry));
    parents.set(stat.ppid, siblings);
  }
  return parents;
}

function readStat(pid: number): { ppid: number; state: string; ticks: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: the fields after it start past the last ')'.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { state: fields[0] ?? "", ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Already gone: what the caller wanted.
  }
}

function lines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let buffered = "";
  stream.on("data", (chunk: Buffer) => {
    buffered += chunk.toString();
    let nl = buffered.indexOf("\n");
    while (nl >= 0) {
      onLine(buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
      nl = buffered.indexOf("\n");
    }
  });
}
