// Turns a service entry (TypeScript or JavaScript, with relative imports and
// pure-JS npm packages) into one self-contained script for an isolate, and
// names it by the content hash of that script: the version id.

import { createHash } from "node:crypto";
import { realpathSync } from "node:fs";
import { readFile, realpath } from "node:fs/promises";
import { isBuiltin } from "node:module";
import { dirname, extname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { ErrorCode, MoltError } from "./errors.ts";

export interface Bundle {
  /** Script text; evaluating it sets `globalThis.__molt_module`. */
  code: string;
  /** sha256 of `code`, hex: the version id. */
  hash: string;
  entry: string;
}

/** The guest SDK, importable from services and configs wherever they live. */
export const SDK_ALIASES = {
  "molt/service": fileURLToPath(new URL("../sdk/service.ts", import.meta.url)),
  molt: fileURLToPath(new URL("../sdk/index.ts", import.meta.url)),
};
/** molt's own guest SDK folder: every service may read it, wherever the allowed roots are. */
const SDK_DIR = dirname(SDK_ALIASES["molt/service"]);
const RUNTIME_ENTRY = fileURLToPath(new URL("../guest/runtime.ts", import.meta.url));

const COMMON: esbuild.BuildOptions = {
  bundle: true,
  write: false,
  format: "iife",
  // Isolates have no Node APIs: resolve packages as a browser or worker would.
  platform: "neutral",
  mainFields: ["browser", "module", "main"],
  conditions: ["worker", "browser", "import", "default"],
  target: "es2022",
  charset: "utf8",
  legalComments: "none",
  logLevel: "silent",
  alias: SDK_ALIASES,
};

export { shortId } from "../protocol/admin.ts";

export interface BundleOptions {
  /**
   * Folders every file the bundle reads must be inside, compared by real
   * path (symlinks resolved), molt's own SDK folder always included. A file
   * outside them fails the build with ERR_PERMISSION. Absent: no check.
   */
  allowedRoots?: readonly string[];
}

/**
 * Bundles a service entry. Failures carry ERR_BUNDLE and esbuild's messages,
 * or ERR_PERMISSION when a file the bundle would read is outside
 * `options.allowedRoots`.
 */
export async function bundleService(entry: string, options: BundleOptions = {}): Promise<Bundle> {
  const confined = options.allowedRoots === undefined ? undefined : confine(options.allowedRoots);
  const code = restoreTypeofRequire(
    await build(
      { ...COMMON, entryPoints: [entry], globalName: "__molt_module", ...(confined === undefined ? {} : { plugins: [confined.plugin] }) },
      entry,
      () => confined?.refused(),
    ),
  );
  return { code, hash: createHash("sha256").update(code).digest("hex"), entry };
}

/**
 * Bundles a service entry as bundleService does (the same code and version
 * id) and also names every file the bundle read, as absolute paths: what a
 * watcher must watch for the version to change. molt's own SDK files are
 * among them.
 */
export async function bundleWithInputs(entry: string, options: BundleOptions = {}): Promise<{ bundle: Bundle; inputs: string[] }> {
  const confined = options.allowedRoots === undefined ? undefined : confine(options.allowedRoots);
  const result = await buildResult(
    { ...COMMON, entryPoints: [entry], globalName: "__molt_module", metafile: true, ...(confined === undefined ? {} : { plugins: [confined.plugin] }) },
    entry,
    () => confined?.refused(),
  );
  const code = restoreTypeofRequire(outputText(result, entry));
  // esbuild names inputs relative to its working folder, with a namespace prefix for virtual ones.
  const inputs = Object.keys(result.metafile?.inputs ?? {})
    .filter((input) => !/^[a-z-]+:/.test(input))
    .map((input) => resolve(input));
  return { bundle: { code, hash: createHash("sha256").update(code).digest("hex"), entry }, inputs };
}

/** True when `path` is strictly inside one of `roots` (all absolute, already real paths). */
export function isInside(path: string, roots: readonly string[]): boolean {
  return roots.some((root) => {
    const rel = relative(root, path);
    return rel !== "" && rel !== ".." && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
  });
}

/** The real path of a root; a root that does not exist is taken as written (nothing real is inside it). */
export function realRoot(root: string): string {
  try {
    return realpathSync(root);
  } catch {
    return resolve(root);
  }
}

/** esbuild's default loader for each extension it can load without configuration. */
const LOADERS: Record<string, esbuild.Loader> = {
  ".js": "js",
  ".mjs": "js",
  ".cjs": "js",
  ".jsx": "jsx",
  ".ts": "ts",
  ".mts": "ts",
  ".cts": "ts",
  ".tsx": "tsx",
  ".json": "json",
  ".txt": "text",
};

/**
 * An esbuild plugin that loads every file itself: it resolves the file's
 * real path, refuses one outside the roots, and reads the bytes from that
 * real path, so that what is compiled is the file that was checked, not
 * whatever a symlink at the name points to by the time esbuild reads it.
 * esbuild reports a plugin's throw only as text, so refusals are kept here
 * and turned into ERR_PERMISSION once the build ends.
 */
function confine(allowedRoots: readonly string[]): { plugin: esbuild.Plugin; refused: () => MoltError | undefined } {
  const given = allowedRoots.map(realRoot);
  // Packages the roots' code imports live in a node_modules folder of a root
  // or of one of its ancestors (a monorepo hoists them): the same folders
  // Node's own resolution would read, and no others.
  const packages = given.flatMap((root) => {
    const found: string[] = [];
    for (let dir = root; ; dir = dirname(dir)) {
      found.push(realRoot(join(dir, "node_modules")));
      if (dirname(dir) === dir) return found;
    }
  });
  const roots = [...given, ...packages, realRoot(SDK_DIR)];
  const outside: string[] = [];
  const plugin: esbuild.Plugin = {
    name: "molt-allowed-roots",
    setup(build) {
      // Only the file namespace reads the disk; a data: URL import, say, carries its own text.
      build.onLoad({ filter: /.*/, namespace: "file" }, async (args) => {
        const real = await realpath(args.path);
        if (!isInside(real, roots)) {
          outside.push(real === args.path ? real : `${args.path} (really ${real})`);
          throw new Error(`${real} is outside the allowed source roots`);
        }
        const extension = extname(real).toLowerCase();
        const loader = Object.hasOwn(LOADERS, extension) ? LOADERS[extension] : undefined;
        if (loader === undefined) throw new Error(`${real}: molt bundles only JavaScript, TypeScript, JSON and text files`);
        return { contents: await readFile(real), loader, resolveDir: dirname(args.path) };
      });
    },
  };
  const refused = (): MoltError | undefined =>
    outside.length === 0
      ? undefined
      : new MoltError(ErrorCode.PERMISSION, `the bundle reads files outside admin.allowedRoots (${allowedRoots.join(", ")}): ${outside.join(", ")}`);
  return { plugin, refused };
}

/**
 * esbuild turns every free `require` into its `__require` stub, so that
 * `typeof require` in a service would read "function" although an isolate
 * has no require at all. Feature checks in UMD packages then take the
 * CommonJS path and fail. Pointing `typeof` back at the real global keeps
 * the stub for calls and tells the truth to checks.
 */
function restoreTypeofRequire(code: string): string {
  return code.replace(/\btypeof __require\b/g, "typeof require");
}

/**
 * What to say when a bundle imports a Node built-in (`node:fs`, `crypto`):
 * esbuild only says it cannot resolve it, and suggests bundling for Node,
 * which would not help. A service runs in a V8 isolate, not in Node.
 */
function nodeApiHint(errors: readonly esbuild.Message[]): string {
  const builtins = errors.flatMap((e) => {
    const name = /^Could not resolve "([^"]+)"$/.exec(e.text)?.[1];
    return name !== undefined && isBuiltin(name) ? [name] : [];
  });
  if (builtins.length === 0) return "";
  return (
    `\nservices run in a V8 isolate and have no Node APIs (${[...new Set(builtins)].join(", ")}): ` +
    "reach another service with ctx.call or ctx.send, the network with fetch and permissions.net, environment variables with ctx.env and permissions.env; " +
    "the web globals (console, timers, crypto.getRandomValues and randomUUID, TextEncoder, URL, atob/btoa, structuredClone) are there. " +
    "molt's sdk/tsconfig.service.json type-checks service code against exactly these."
  );
}

let runtime: Promise<string> | undefined;

/** The guest runtime script, bundled once per process. */
export function bundleRuntime(): Promise<string> {
  runtime ??= build({ ...COMMON, entryPoints: [RUNTIME_ENTRY], minify: true }, RUNTIME_ENTRY);
  return runtime;
}

async function build(options: esbuild.BuildOptions, entry: string, refused: () => MoltError | undefined = () => undefined): Promise<string> {
  return outputText(await buildResult(options, entry, refused), entry);
}

function outputText(result: esbuild.BuildResult, entry: string): string {
  const file = result.outputFiles?.[0];
  if (file === undefined) throw new MoltError(ErrorCode.BUNDLE, `esbuild produced no output for ${entry}`);
  return file.text;
}

async function buildResult(options: esbuild.BuildOptions, entry: string, refused: () => MoltError | undefined): Promise<esbuild.BuildResult> {
  let result: esbuild.BuildResult;
  try {
    result = await esbuild.build(options);
  } catch (err) {
    const permission = refused();
    if (permission !== undefined) throw permission;
    const failure = err as esbuild.BuildFailure;
    const details = (failure.errors ?? [])
      // esbuild names files relative to the working folder; the user is told where the file is, wherever molt runs from.
      .map((e) => (e.location ? `${resolve(options.absWorkingDir ?? process.cwd(), e.location.file)}:${e.location.line}:${e.location.column}: ${e.text}` : e.text))
      .join("\n");
    throw new MoltError(ErrorCode.BUNDLE, `cannot bundle ${entry}${details ? `:\n${details}` : ""}${nodeApiHint(failure.errors ?? [])}`, { cause: err });
  }
  // A refusal always fails the build; this is for a plugin error esbuild did not report as one.
  const permission = refused();
  if (permission !== undefined) throw permission;
  return result;
}
