// Behaviour: the CLI finds the config the user means. `npm run molt -- …`
// runs the script from the package root, so without care a user in a
// subfolder silently talks to the root's config; npm names the user's
// folder in INIT_CWD, and molt resolves the default config and relative
// paths from there. Errors about the admin API name the config they used.

import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, realpathSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FIXTURES, ROOT, startRuntime, type RunningRuntime } from "../support/runtime.ts";

const PROBE = join(FIXTURES, "behaviour", "probe.ts");

let runtimes: RunningRuntime[] = [];

afterEach(async () => {
  await Promise.all(runtimes.map((rt) => rt.stop()));
  runtimes = [];
});

/** `npm run molt -- <args>` in `cwd`, as a user types it; npm sets INIT_CWD afresh. */
function npmMolt(cwd: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = { ...process.env };
  delete env.INIT_CWD;
  return new Promise((resolvePromise) => {
    const child = spawn("npm", ["run", "--silent", "molt", "--", ...args], { cwd, env });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("exit", (code) => resolvePromise({ code, stdout, stderr }));
  });
}

function serviceConfig(service: string): string {
  return `export default {
  services: { ${service}: { entry: ${JSON.stringify(PROBE)} } },
  http: { port: 0, service: ${JSON.stringify(service)} },
  admin: { port: 0 },
  dataDir: ".molt",
};
`;
}

/** A package whose `molt` script runs this checkout's CLI, with a config at its root and another in app/. */
function project(): { root: string; app: string } {
  const root = realpathSync(mkdtempSync(join(tmpdir(), "molt-i20b-resolution-")));
  const app = join(root, "app");
  mkdirSync(app);
  writeFileSync(join(root, "package.json"), JSON.stringify({ name: "resolution", private: true, scripts: { molt: `node ${join(ROOT, "bin", "molt.js")}` } }));
  writeFileSync(join(root, "molt.config.ts"), serviceConfig("rootservice"));
  writeFileSync(join(app, "molt.config.ts"), serviceConfig("appservice"));
  return { root, app };
}

describe("the CLI run through npm from a subfolder", () => {
  it("uses the subfolder's config by default, and resolves a relative --config from the subfolder", async () => {
    const { app } = project();
    const rt = await startRuntime(join(app, "molt.config.ts"));
    runtimes.push(rt);

    const byDefault = await npmMolt(app, ["status"]);
    expect(byDefault.stderr).toBe("");
    expect(byDefault.code).toBe(0);
    expect(byDefault.stdout).toMatch(/^appservice\s+running/m);

    const relative = await npmMolt(app, ["status", "--json", "--config", "./molt.config.ts"]);
    expect(relative.code).toBe(0);
    expect((JSON.parse(relative.stdout) as { services: { name: string }[] }).services.map((s) => s.name)).toEqual(["appservice"]);
  });

  it("names the config it used when the admin API cannot be reached", async () => {
    const { root } = project();
    // No runtime runs the root's config.
    const result = await npmMolt(root, ["status"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("ERR_ADMIN");
    expect(result.stderr).toContain(join(root, "molt.config.ts"));
  });
});
