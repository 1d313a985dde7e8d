// A real keeper for issue 16's behaviour tests: `node <molt>/bin/molt.js run`
// in a temporary project folder of its own (its config, its dataDir, ports
// 0), as a user starts it, with the keeper's admin API (status, the kernel
// chain, an upgrade) spoken to over HTTP. `<molt>` is this checkout, or a
// copy of the package made by copyMolt, whose files a test edits to give the
// next runtime a new kernel version (or one that cannot boot) without
// touching the code every other test runs.

import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, cpSync, existsSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KernelRecord, KernelUpgradeProgress, KernelUpgradeReport, StatusBody } from "../../protocol/admin.ts";
import type { WireError } from "../../protocol/wire.ts";
import { readRecord } from "../../core/disk.ts";
import type { Snapshot } from "../../core/snapshots.ts";
import { decodeDump } from "../../guest/dump-codec.ts";
import { ROOT } from "./runtime.ts";

/** What a runtime loads from the molt package (core/kernel-version.ts's KERNEL_FOLDERS, and what the example services and `molt init` read). */
const PACKAGE_PARTS = ["bin", "cli", "core", "dashboard", "fleet", "guest", "keeper", "protocol", "sdk", "services", "templates", "types", "package.json", "tsconfig.json"];

/** Copies the molt package into a temporary folder (node_modules linked, not copied) and returns its root. */
export function copyMolt(): string {
  const root = join(mkdtempSync(join(tmpdir(), "molt-copy-")), "molt");
  for (const part of PACKAGE_PARTS) {
    if (existsSync(join(ROOT, part))) cpSync(join(ROOT, part), join(root, part), { recursive: true });
  }
  symlinkSync(join(ROOT, "node_modules"), join(root, "node_modules"));
  return root;
}

/** Appends a comment to a file of the copy: the same code, a new kernel version. */
export function touchKernelFile(root: string, path: string): void {
  appendFileSync(join(root, path), `\n// edited by a test at ${new Date().toISOString()}\n`);
}

export interface RunningKeeper {
  /** The launcher (`molt run`'s own process): Ctrl-C and SIGTERM go here. */
  launcher: ChildProcess;
  exited: Promise<number | null>;
  url: string;
  adminUrl: string;
  dir: string;
  configPath: string;
  dataDir: string;
  stdout: () => string;
  stderr: () => string;
  /** `GET /v1/status`. */
  status: () => Promise<StatusBody>;
  /** `GET /v1/kernel/history`'s records. */
  kernelHistory: () => Promise<KernelRecord[]>;
  /** `POST /v1/kernel/upgrade`, read to its last line. */
  upgrade: () => Promise<UpgradeAnswer>;
  /** Sends `signal` to the launcher and resolves with its exit code. */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

export interface UpgradeAnswer {
  phases: string[];
  report?: KernelUpgradeReport;
  error?: WireError;
}

const started: RunningKeeper[] = [];

/**
 * Writes `config` (dataDir, ports 0 and an admin listener added unless given)
 * into a fresh folder and starts `molt run` from `molt` on it; resolves once
 * the runtime printed its ready line.
 */
export async function startKeeper(config: Record<string, unknown>, molt: string = ROOT): Promise<RunningKeeper> {
  const dir = mkdtempSync(join(tmpdir(), "molt-keeper-"));
  const dataDir = join(dir, "data");
  const configPath = join(dir, "molt.config.ts");
  writeFileSync(configPath, `export default ${JSON.stringify({ dataDir, admin: { port: 0 }, ...config }, null, 2)};\n`);
  const launcher = spawn(process.execPath, [join(molt, "bin", "molt.js"), "run", configPath], { cwd: dir });
  let stdout = "";
  let stderr = "";
  launcher.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => launcher.on("exit", (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`molt run not ready in time\n${stdout}\n${stderr}`)), 60_000);
    launcher.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      if (/molt: ready/.test(stdout)) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`molt run exited with ${code} before ready\n${stdout}\n${stderr}`));
    });
  });
  const url = /http listening on (http:\/\/\S+)/.exec(stdout)?.[1];
  if (url === undefined) throw new Error(`no http listener in\n${stdout}`);
  const adminUrl = (JSON.parse(readFileSync(join(dataDir, "admin.json"), "utf8")) as { url: string }).url;
  const token = (): string => readFileSync(join(dataDir, "admin.token"), "utf8").trim();
  const getJson = async <T>(path: string): Promise<T> => {
    const res = await request(`${adminUrl}${path}`);
    if (res.status !== 200) throw new Error(`GET ${path} answered ${res.status}: ${res.body}`);
    return JSON.parse(res.body) as T;
  };
  const keeper: RunningKeeper = {
    launcher,
    exited,
    url,
    adminUrl,
    dir,
    configPath,
    dataDir,
    stdout: () => stdout,
    stderr: () => stderr,
    status: () => getJson<StatusBody>("/v1/status"),
    kernelHistory: async () => (await getJson<{ kernel: KernelRecord[] }>("/v1/kernel/history")).kernel,
    async upgrade() {
      const res = await request(`${adminUrl}/v1/kernel/upgrade`, "POST", 120_000, { authorization: `Bearer ${token()}`, "content-type": "application/json" }, "{}");
      const text = res.body;
      // An upgrade refused before its progress began answers one error body instead of NDJSON lines.
      if (!res.contentType.includes("ndjson")) {
        const body = JSON.parse(text) as { error?: WireError };
        if (body.error === undefined) throw new Error(`the upgrade answered ${res.status}: ${text}`);
        return { phases: [], error: body.error };
      }
      const lines = text.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as KernelUpgradeProgress);
      const answer: UpgradeAnswer = { phases: [] };
      for (const line of lines) {
        if (line.event === "phase") answer.phases.push(line.phase);
        else if (line.event === "report") answer.report = line.report;
        else answer.error = line.error;
      }
      return answer;
    },
    async stop(signal = "SIGINT") {
      if (launcher.exitCode === null && launcher.signalCode === null) launcher.kill(signal);
      return exited;
    },
  };
  started.push(keeper);
  return keeper;
}

/** Kills every keeper a test left running (SIGKILL to the launcher; the keeper and runtime go with it through their IPC channels). */
export async function killKeepers(): Promise<void> {
  for (const k of started.splice(0)) await k.stop("SIGKILL");
}

/** Whether a process with this pid exists (signal 0 checks without sending anything). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** A counter's answer (test/fixtures/keeper/counter.ts): "<count> <boot>". */
export function counted(body: string): { count: number; boot: string } {
  const [count, boot] = body.split(" ");
  if (count === undefined || boot === undefined || !/^\d+$/.test(count)) throw new Error(`not a counter's answer: ${body}`);
  return { count: Number(count), boot };
}

/** The count in a counter's last snapshot on disk (what a crash resumes from), or -1 before its first. */
export function snapshotCount(dataDir: string, service: string): number {
  const record = readRecord<Snapshot>(join(dataDir, "snapshots", `${service}.msgpack`), "snapshot");
  if (record === undefined) return -1;
  return (decodeDump(record.value.dump).value as { count: number }).count;
}

/**
 * One request on a connection of its own, as the CLI makes each of its
 * calls, so that no test depends on reusing an idle keep-alive connection
 * across a runtime's exit (the load generator is where keep-alive is tested).
 * Gives up after `ms` rather than wait on a connection forever; a transport
 * failure rejects with its code (ECONNREFUSED…).
 */
export function request(
  url: string,
  method = "GET",
  ms = 20_000,
  headers: Record<string, string> = {},
  body?: string,
): Promise<{ status: number; body: string; contentType: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, agent: false, timeout: ms, headers: { ...headers, "content-length": Buffer.byteLength(body ?? "") } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8"), contentType: res.headers["content-type"] ?? "" }));
    });
    req.on("timeout", () => req.destroy(Object.assign(new Error(`no answer in ${ms} ms`), { code: "ETIMEDOUT" })));
    req.on("error", reject);
    req.end(body);
  });
}

/** The runtime processes a keeper started (its children running cli/runtime.ts), read from /proc. */
export function runtimesOf(launcherPid: number): number[] {
  const children = (pid: number): number[] => {
    try {
      return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter((s) => s !== "").map(Number);
    } catch {
      return [];
    }
  };
  const cmdline = (pid: number): string => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch {
      return "";
    }
  };
  return children(launcherPid).flatMap(children).filter((pid) => cmdline(pid).includes("runtime.ts"));
}

/** CPU time a process has used so far, in clock ticks (utime + stime from /proc/<pid>/stat), or -1 once it is gone. */
export function cpuTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return -1;
  }
}
