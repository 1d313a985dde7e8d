// The bench's handle on one worker process of simulated runtimes
// (fleet-sim-worker.ts): forks it, asks it things over IPC and waits for the
// answer, and kills it.

import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { FromWorker, ToWorker } from "./fleet-sim-worker.ts";

const WORKER = fileURLToPath(new URL("./fleet-sim-worker.ts", import.meta.url));

export class SimProcess {
  readonly child: ChildProcess;
  readonly #waiters = new Map<FromWorker["type"], (m: FromWorker) => void>();

  /** Resolves once the process has loaded and listens. */
  readonly ready: Promise<void>;

  constructor() {
    this.child = fork(WORKER, [], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
    this.ready = new Promise((resolve) => this.#waiters.set("ready", () => resolve()));
    this.child.on("message", (m: FromWorker) => {
      const waiter = this.#waiters.get(m.type);
      this.#waiters.delete(m.type);
      waiter?.(m);
    });
  }

  ask<T extends FromWorker["type"]>(message: ToWorker, answer: T, timeoutMs: number): Promise<Extract<FromWorker, { type: T }>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker ${this.child.pid}: no "${answer}" within ${timeoutMs} ms`)), timeoutMs);
      this.#waiters.set(answer, (m) => {
        clearTimeout(timer);
        resolve(m as Extract<FromWorker, { type: T }>);
      });
      this.child.send(message);
    });
  }

  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGKILL");
    await exited;
  }
}
