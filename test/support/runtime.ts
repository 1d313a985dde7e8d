// Starts a real molt runtime as a user would (`molt run <config>`, in its own
// process) and stops it. Tests talk to it over HTTP.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const FIXTURES = join(ROOT, "test", "fixtures");

export interface RunningRuntime {
  process: ChildProcess;
  /** Base URL of the HTTP listener, e.g. http://127.0.0.1:40123 */
  url: string;
  /** Base URL of the admin API, when the config has one. */
  adminUrl: string | undefined;
  stdout: () => string;
  stderr: () => string;
  /** Sends SIGTERM and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Writes a config file into a fresh temporary folder and returns its path. */
export function writeConfig(config: string, name = "molt.config.ts"): string {
  const dir = mkdtempSync(join(tmpdir(), "molt-test-"));
  const path = join(dir, name);
  writeFileSync(path, config);
  return path;
}

/** Runs the CLI to completion (for commands that exit). */
export function runCli(args: string[], options: { cwd?: string } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, [join(ROOT, "bin", "molt.js"), ...args], { cwd: options.cwd ?? ROOT });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("exit", (code) => resolvePromise({ code, stdout, stderr }));
  });
}

const untilExit: ChildProcess[] = [];

/**
 * The CLI for commands that must fail (a runtime that must refuse to start):
 * like runCli, but the process is killed if it still runs after `ms`, so a
 * runtime that wrongly starts cannot outlive the test. killLeftovers() kills
 * whatever is left.
 */
export function runUntilExit(args: string[], ms = 20_000): Promise<{ code: number | null; stdout: string; stderr: string; killed: boolean }> {
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, [join(ROOT, "bin", "molt.js"), ...args], { cwd: ROOT });
    untilExit.push(child);
    let stdout = "";
    let stderr = "";
    let killed = false;
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      killed = true;
      child.kill("SIGKILL");
    }, ms);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr, killed });
    });
  });
}

/** Kills every process runUntilExit started that still runs. */
export function killLeftovers(): void {
  for (const child of untilExit.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
}

/** `molt run <configPath>` through the installed launcher; resolves once the HTTP listener is ready. */
export async function startRuntime(configPath: string, options: { readyTimeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunningRuntime> {
  const child = spawn(process.execPath, [join(ROOT, "bin", "molt.js"), "run", configPath], {
    cwd: ROOT,
    env: { ...process.env, ...options.env },
  });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`runtime not ready in time\nstdout:\n${stdout}\nstderr:\n${stderr}`)), options.readyTimeoutMs ?? 30_000);
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      const match = /http listening on (http:\/\/\S+)/.exec(stdout);
      if (match?.[1] !== undefined && /molt: ready/.test(stdout)) {
        clearTimeout(timer);
        resolveUrl(match[1]);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`runtime exited with ${code} before ready\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    });
  });
  return {
    process: child,
    url,
    adminUrl: /admin listening on (http:\/\/\S+)/.exec(stdout)?.[1],
    stdout: () => stdout,
    stderr: () => stderr,
    async stop(signal = "SIGTERM") {
      if (child.exitCode !== null) return child.exitCode;
      child.kill(signal);
      return exited;
    },
  };
}
