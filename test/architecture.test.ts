// The import invariants of ARCHITECTURE.md ("Invariants"), checked on the
// real import graph as esbuild resolves it: every source file of molt is an
// entry point, `molt/service` and `molt` resolve to sdk/ as they do when a
// service is bundled, and packages stay external so that each import of one
// is an edge of its own. Type-only imports are erased by then, so what is
// checked is what runs.

import { readdirSync } from "node:fs";
import { builtinModules } from "node:module";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { beforeAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** The folders whose files molt runs: host, guest, and what both share. */
const SOURCE_DIRS = ["cli", "core", "dashboard", "fleet", "guest", "keeper", "protocol", "sdk", "services"];

/** The entry points ARCHITECTURE.md names; every other source file is an entry too, so that no file escapes the check. */
const ENTRY_POINTS = ["cli/main.ts", "core/kernel.ts", "guest/runtime.ts", "sdk/service.ts", "fleet/member.ts", "dashboard/app.ts"];

/** Host code: what a guest or a service must never reach. */
const HOST_DIRS = ["core", "fleet", "cli"];

interface Edge {
  from: string;
  /** A source file relative to the root, or a package or builtin as written. */
  to: string;
  kind: esbuild.ImportKind;
  external: boolean;
  /** The specifier as written in `from`. */
  written: string;
}

interface Graph {
  edges: Edge[];
  files: Set<string>;
}

function sources(): string[] {
  return SOURCE_DIRS.flatMap((dir) =>
    readdirSync(`${ROOT}/${dir}`, { recursive: true, encoding: "utf8" })
      .filter((name) => name.endsWith(".ts") && !name.endsWith(".d.ts"))
      .map((name) => `${dir}/${name}`),
  );
}

async function importGraph(): Promise<Graph> {
  const result = await esbuild.build({
    entryPoints: [...new Set([...ENTRY_POINTS, ...sources()])],
    absWorkingDir: ROOT,
    bundle: true,
    write: false,
    metafile: true,
    format: "esm",
    platform: "node",
    // Splitting keeps a dynamic import a separate edge instead of inlining it.
    splitting: true,
    outdir: "/tmp/molt-import-graph",
    packages: "external",
    alias: { "molt/service": "./sdk/service.ts", molt: "./sdk/index.ts" },
    logLevel: "silent",
  });
  const edges: Edge[] = [];
  for (const [from, input] of Object.entries(result.metafile.inputs)) {
    for (const imported of input.imports) {
      edges.push({ from, to: imported.path, kind: imported.kind, external: imported.external === true, written: imported.original ?? imported.path });
    }
  }
  return { edges, files: new Set(Object.keys(result.metafile.inputs)) };
}

const dirOf = (path: string): string => path.split("/")[0] ?? "";
const isStatic = (edge: Edge): boolean => edge.kind === "import-statement" || edge.kind === "require-call";
const isBuiltin = (edge: Edge): boolean => edge.external && (edge.to.startsWith("node:") || builtinModules.includes(edge.to.split("/")[0] ?? ""));
const isPackage = (edge: Edge, name: string): boolean => edge.external && (edge.to === name || edge.to.startsWith(`${name}/`));
const isNats = (edge: Edge): boolean => edge.external && (edge.to.startsWith("@nats-io/") || isPackage(edge, "nats"));
const show = (edge: Edge): string => `${edge.from} → ${edge.to} (${edge.kind})`;

/** Every file and package reachable from `entry` through static imports alone: what loading it loads. */
function staticClosure(graph: Graph, entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const pending = [entry];
  for (let file = pending.pop(); file !== undefined; file = pending.pop()) {
    if (files.has(file)) continue;
    files.add(file);
    for (const edge of graph.edges) {
      if (edge.from !== file || !isStatic(edge)) continue;
      if (edge.external) packages.add(edge.to);
      else pending.push(edge.to);
    }
  }
  return { files, packages };
}

describe("import invariants (ARCHITECTURE.md)", () => {
  let graph: Graph;
  beforeAll(async () => {
    graph = await importGraph();
  });
  const violations = (broken: (edge: Edge) => boolean): string[] => graph.edges.filter(broken).map(show);

  it("sees the edges the invariants are about, so that an empty or wrong graph cannot pass", () => {
    const edges = graph.edges.map(show);
    expect(edges).toContain("core/isolate-host.ts → isolated-vm (import-statement)");
    expect(edges).toContain("cli/run.ts → fleet/member.ts (dynamic-import)");
    expect(edges).toContain("core/lmdb-store.ts → lmdb (import-statement)");
    expect(edges).toContain("services/counter/index.ts → sdk/service.ts (import-statement)");
    expect(graph.edges.some((edge) => edge.from.startsWith("fleet/") && isNats(edge))).toBe(true);
    for (const entry of ENTRY_POINTS) expect(graph.files).toContain(entry);
    for (const file of sources()) expect(graph.files).toContain(file);
  });

  it("lets only core/isolate-host.ts import isolated-vm", () => {
    expect(violations((edge) => isPackage(edge, "isolated-vm") && edge.from !== "core/isolate-host.ts")).toEqual([]);
  });

  it("lets only core/lmdb-store.ts import lmdb, and the kernel proper reach storage only through core/storage.ts's interface", () => {
    expect(violations((edge) => isPackage(edge, "lmdb") && edge.from !== "core/lmdb-store.ts")).toEqual([]);
    const kernelProper = ["core/kernel.ts", "core/slot.ts", "core/router.ts", "core/supervisor.ts", "core/transfer.ts", "core/swap.ts"];
    expect(violations((edge) => kernelProper.includes(edge.from) && edge.to === "core/lmdb-store.ts")).toEqual([]);
  });

  it("keeps the keeper small enough to trust: keeper/ imports Node and itself only, and `molt run` loads nothing else before it", () => {
    expect(violations((edge) => dirOf(edge.from) === "keeper" && !isBuiltin(edge) && !(dirOf(edge.to) === "keeper" && !edge.external))).toEqual([]);
    expect(graph.files).toContain("keeper/keeper.ts");
    // The CLI process becomes the keeper: whatever it loads statically, the keeper carries.
    const { packages } = staticClosure(graph, "cli/main.ts");
    const runtimeOnly = (name: string): boolean => ["isolated-vm", "lmdb", "pino", "prom-client"].includes(name) || name.startsWith("@nats-io/");
    expect([...packages].filter(runtimeOnly)).toEqual([]);
    // The check must see what it checks: the runtime's own closure has them.
    expect([...staticClosure(graph, "cli/runtime.ts").packages].filter(runtimeOnly).length).toBeGreaterThan(2);
    const toKeeper = graph.edges.filter((edge) => edge.from === "cli/main.ts" && edge.to === "keeper/keeper.ts").map((edge) => edge.kind);
    expect(toKeeper).toEqual(["dynamic-import"]);
  });

  it("lets only fleet/ import NATS", () => {
    expect(violations((edge) => isNats(edge) && dirOf(edge.from) !== "fleet")).toEqual([]);
  });

  it("never lets core/ import fleet/: the kernel sees other runtimes only through RemoteServices", () => {
    expect(violations((edge) => dirOf(edge.from) === "core" && !edge.external && dirOf(edge.to) === "fleet")).toEqual([]);
  });

  it("loads no NATS code and no fleet/ file in a runtime alone: cli/run.ts reaches fleet/member.ts by a dynamic import only", () => {
    for (const entry of ["cli/main.ts", "cli/run.ts", "core/kernel.ts"]) {
      const { files, packages } = staticClosure(graph, entry);
      expect([...files].filter((file) => dirOf(file) === "fleet"), entry).toEqual([]);
      expect([...packages].filter((name) => name.startsWith("@nats-io/") || name === "nats"), entry).toEqual([]);
    }
    const toMember = graph.edges.filter((edge) => edge.from === "cli/run.ts" && edge.to === "fleet/member.ts").map((edge) => edge.kind);
    expect(toMember).toEqual(["dynamic-import"]);
  });

  it("never lets core/ import services/", () => {
    expect(violations((edge) => dirOf(edge.from) === "core" && !edge.external && dirOf(edge.to) === "services")).toEqual([]);
  });

  it("lets a service import only the guest SDK, as molt/service (or molt), and files of its own folder", () => {
    const ownFolder = (edge: Edge): boolean => !edge.external && edge.to.split("/").slice(0, 2).join("/") === edge.from.split("/").slice(0, 2).join("/");
    const sdk = (edge: Edge): boolean => !edge.external && dirOf(edge.to) === "sdk" && (edge.written === "molt/service" || edge.written === "molt");
    expect(violations((edge) => dirOf(edge.from) === "services" && !ownFolder(edge) && !sdk(edge))).toEqual([]);
  });

  it("never lets a service reach host code, even through the SDK", () => {
    const reached = [...graph.files]
      .filter((file) => dirOf(file) === "services")
      .flatMap((service) => [...staticClosure(graph, service).files].filter((file) => HOST_DIRS.includes(dirOf(file))).map((file) => `${service} → ${file}`));
    expect(reached).toEqual([]);
  });

  it("never lets guest/ import host code (core/, fleet/, cli/)", () => {
    expect(violations((edge) => dirOf(edge.from) === "guest" && !edge.external && HOST_DIRS.includes(dirOf(edge.to)))).toEqual([]);
  });

  it("lets protocol/ import neither core/ nor guest/ nor a Node builtin: both sides load it", () => {
    expect(
      violations((edge) => dirOf(edge.from) === "protocol" && (isBuiltin(edge) || (!edge.external && ["core", "guest"].includes(dirOf(edge.to))))),
    ).toEqual([]);
  });
});
