// A runtime alone loads no NATS code: the fleet is reached from the CLI only
// through dynamic imports, and the kernel never imports it. Checked on the
// real import graph, as esbuild resolves it.

import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

async function staticClosure(entry: string): Promise<{ files: Set<string>; packages: Set<string> }> {
  const result = await esbuild.build({
    entryPoints: [entry],
    absWorkingDir: ROOT,
    bundle: true,
    write: false,
    metafile: true,
    format: "esm",
    platform: "node",
    splitting: true,
    outdir: "/tmp/molt-import-graph",
    packages: "external",
    logLevel: "silent",
  });
  const inputs = result.metafile.inputs;
  const files = new Set<string>();
  const packages = new Set<string>();
  const walk = (file: string): void => {
    if (files.has(file)) return;
    files.add(file);
    for (const imported of inputs[file]?.imports ?? []) {
      if (imported.kind !== "import-statement") continue;
      if (imported.external === true) packages.add(imported.path);
      else walk(imported.path);
    }
  };
  walk(entry);
  return { files, packages };
}

describe("loading", () => {
  it("the CLI and the kernel reach no NATS package and no fleet file through static imports", async () => {
    const { files, packages } = await staticClosure("cli/main.ts");
    expect(files.has("cli/run.ts")).toBe(true);
    expect(files.has("core/kernel.ts")).toBe(true);
    expect([...files].filter((f) => f.startsWith("fleet/"))).toEqual([]);
    expect([...packages].filter((p) => p.startsWith("@nats-io/"))).toEqual([]);
  });

  it("the fleet's member does reach NATS (the check above can see it)", async () => {
    const { packages } = await staticClosure("fleet/member.ts");
    expect(packages.has("@nats-io/transport-node")).toBe(true);
  });
});
