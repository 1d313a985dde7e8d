// Behaviour: `molt init` scaffolds a project a new user can run, call and
// hot-swap at once, and never writes over files that exist.

import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { runCli, startRuntime, type RunningRuntime } from "../support/runtime.ts";

let runtimes: RunningRuntime[] = [];

afterEach(async () => {
  await Promise.all(runtimes.map((rt) => rt.stop()));
  runtimes = [];
});

async function text(url: string): Promise<string> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  return res.text();
}

describe("molt init", () => {
  it("scaffolds a project that runs, answers over HTTP and swaps to its v2 with the state kept", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "molt-i20b-init-")), "myproject");
    const init = await runCli(["init", dir]);
    expect(init.stderr).toBe("");
    expect(init.code).toBe(0);
    for (const file of ["molt.config.ts", "services/hello/index.ts", "services/hello/v2.ts", "tsconfig.json", "README.md"]) {
      expect(existsSync(join(dir, file)), file).toBe(true);
    }

    // The scaffold listens on fixed ports; a test takes whatever is free.
    const config = join(dir, "molt.config.ts");
    writeFileSync(config, readFileSync(config, "utf8").replace(/port: \d+/g, "port: 0"));
    const rt = await startRuntime(config);
    runtimes.push(rt);
    expect(await text(`${rt.url}/?name=ada`)).toBe("hello, ada (#1)\n");

    // As the scaffold's README says, from the project's folder: the default config, a relative entry.
    const swap = await runCli(["swap", "hello", "./services/hello/v2.ts"], { cwd: dir });
    expect(swap.stderr).toBe("");
    expect(swap.code).toBe(0);
    expect(swap.stdout).toMatch(/^committed: hello 1\.0\.0 .* 2\.0\.0 .*stateVersion 1 → 2/m);
    expect(await text(`${rt.url}/?name=bob`)).toBe("hello again, bob (#2; last: nobody)\n");

    const back = await runCli(["rollback", "hello"], { cwd: dir });
    expect(back.code).toBe(0);
    expect(await text(`${rt.url}/count`)).toBe("2\n");
  }, 90_000);

  it("refuses with ERR_EXISTS, writing nothing, when a file it would write exists", async () => {
    const dir = mkdtempSync(join(tmpdir(), "molt-i20b-init-"));
    writeFileSync(join(dir, "README.md"), "mine\n");
    const init = await runCli(["init"], { cwd: dir });
    expect(init.code).toBe(1);
    expect(init.stderr).toContain("ERR_EXISTS");
    expect(readFileSync(join(dir, "README.md"), "utf8")).toBe("mine\n");
    expect(existsSync(join(dir, "molt.config.ts"))).toBe(false);
  });
});
