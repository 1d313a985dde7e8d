// Behaviour: `molt dev` swaps a service live when its entry or a file it
// imports is saved, keeping its state; a file that does not compile is
// reported and the running version goes on serving. And `molt run` warns
// when an entry changed since the version a service resumes at.

import { spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FIXTURES, ROOT, startRuntime, type RunningRuntime } from "../support/runtime.ts";

interface Dev {
  process: ChildProcess;
  url: string;
  stdout: () => string;
  stderr: () => string;
}

let children: ChildProcess[] = [];
let runtimes: RunningRuntime[] = [];

afterEach(async () => {
  await Promise.all(runtimes.map((rt) => rt.stop()));
  runtimes = [];
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      await new Promise((resolve) => child.once("exit", resolve));
    }
  }
});

/** A project in a fresh folder: the counter fixture, its label module, and a config. */
function project(): { dir: string; entry: string; label: string; config: string } {
  const dir = mkdtempSync(join(tmpdir(), "molt-i20b-dev-"));
  const entry = join(dir, "i20b-counter.ts");
  const label = join(dir, "i20b-label.ts");
  const config = join(dir, "molt.config.ts");
  copyFileSync(join(FIXTURES, "i20b-counter.ts"), entry);
  writeFileSync(label, `export const LABEL = "one";\n`);
  writeFileSync(config, `export default {\n  services: { counter: { entry: "./i20b-counter.ts" } },\n  http: { port: 0, service: "counter" },\n  dataDir: ".molt",\n};\n`);
  return { dir, entry, label, config };
}

/** `molt dev <config>`; resolves once it serves and watches. */
async function startDev(config: string): Promise<Dev> {
  const child = spawn(process.execPath, [join(ROOT, "bin", "molt.js"), "dev", config], { cwd: ROOT });
  children.push(child);
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  await vi.waitFor(
    () => {
      if (child.exitCode !== null) throw new Error(`molt dev exited ${child.exitCode}\n${stdout}\n${stderr}`);
      expect(stdout).toMatch(/molt dev: watching/);
    },
    { timeout: 30_000, interval: 50 },
  );
  const url = /http listening on (http:\/\/\S+)/.exec(stdout)?.[1];
  if (url === undefined) throw new Error(`no listener in:\n${stdout}`);
  return { process: child, url, stdout: () => stdout, stderr: () => stderr };
}

async function read(url: string, method = "GET"): Promise<{ label: string; count: number }> {
  const res = await fetch(url, { method });
  expect(res.status).toBe(200);
  return (await res.json()) as { label: string; count: number };
}

/** Waits until the service answers `expected` (each save is swapped after a short debounce). */
async function until(url: string, expected: { label: string; count: number }, dev: Dev): Promise<void> {
  await vi.waitFor(async () => expect(await read(url), `stdout:\n${dev.stdout()}\nstderr:\n${dev.stderr()}`).toEqual(expected), {
    timeout: 15_000,
    interval: 100,
  });
}

describe("molt dev", () => {
  it("swaps a service when a file it imports is saved, keeping its state; survives a syntax error; swaps again once fixed", async () => {
    const { entry, label, config } = project();
    const dev = await startDev(config);
    for (let i = 0; i < 3; i++) await read(dev.url, "POST");
    expect(await read(dev.url)).toEqual({ label: "one", count: 3 });

    // An import of the entry changes: the service is swapped, the count survives.
    writeFileSync(label, `export const LABEL = "two";\n`);
    await until(dev.url, { label: "two", count: 3 }, dev);
    // The new version answers from its cutover; the line is printed once the swap has committed, a moment later.
    await vi.waitFor(() => expect(dev.stdout()).toMatch(/molt dev: counter committed .* blackout \d/), { timeout: 15_000, interval: 100 });

    // The entry stops compiling: reported, and the running version keeps answering.
    const good = readFileSync(entry, "utf8");
    writeFileSync(entry, `${good}\nexport const broken = (;\n`);
    await vi.waitFor(() => expect(dev.stderr()).toMatch(/molt dev: counter does not compile \(ERR_BUNDLE\)/), { timeout: 15_000, interval: 100 });
    expect(await read(dev.url, "POST")).toEqual({ label: "two", count: 4 });
    expect(dev.process.exitCode).toBeNull();

    // Fixed (with a change of its own): swapped again, the count still there.
    writeFileSync(entry, good.replace("label: LABEL", 'label: `${LABEL}, fixed`'));
    await until(dev.url, { label: "two, fixed", count: 4 }, dev);
  });
});

describe("molt run and an entry changed on disk", () => {
  it("warns, naming `molt swap` and `molt dev`, when the entry no longer bundles to the version it resumes; not when it does", async () => {
    const { label, config } = project();
    const first = await startRuntime(config);
    await read(first.url, "POST");
    expect(await first.stop()).toBe(0);

    // Unchanged: it resumes at the same version without a word.
    const same = await startRuntime(config);
    runtimes.push(same);
    expect(await read(same.url)).toEqual({ label: "one", count: 1 });
    await same.stop();
    expect(same.stderr()).not.toMatch(/warning/);

    writeFileSync(label, `export const LABEL = "edited";\n`);
    const edited = await startRuntime(config);
    runtimes.push(edited);
    await vi.waitFor(() => expect(edited.stderr()).toMatch(/warning: counter .*molt swap counter .*i20b-counter\.ts.*molt dev/), { timeout: 15_000, interval: 50 });
    // By design it still runs what it ran: the edit is deployed only by a swap.
    expect(await read(edited.url)).toEqual({ label: "one", count: 1 });
  }, 90_000);
});
