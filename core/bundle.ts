// Turns a service entry (TypeScript or JavaScript, with relative imports and
// pure-JS npm packages) into one self-contained script for an isolate, and
// names it by the content hash of that script: the version id.

import { createHash } from "node:crypto";
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

export function shortId(hash: string): string {
  return hash.slice(0, 12);
}

/** Bundles a service entry. Failures carry ERR_BUNDLE and esbuild's messages. */
export async function bundleService(entry: string): Promise<Bundle> {
  const code = restoreTypeofRequire(
    await build({ ...COMMON, entryPoints: [entry], globalName: "__molt_module" }, entry),
  );
  return { code, hash: createHash("sha256").update(code).digest("hex"), entry };
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

let runtime: Promise<string> | undefined;

/** The guest runtime script, bundled once per process. */
export function bundleRuntime(): Promise<string> {
  runtime ??= build({ ...COMMON, entryPoints: [RUNTIME_ENTRY], minify: true }, RUNTIME_ENTRY);
  return runtime;
}

async function build(options: esbuild.BuildOptions, entry: string): Promise<string> {
  let result: esbuild.BuildResult;
  try {
    result = await esbuild.build(options);
  } catch (err) {
    const failure = err as esbuild.BuildFailure;
    const details = (failure.errors ?? [])
      .map((e) => (e.location ? `${e.location.file}:${e.location.line}:${e.location.column}: ${e.text}` : e.text))
      .join("\n");
    throw new MoltError(ErrorCode.BUNDLE, `cannot bundle ${entry}${details ? `:\n${details}` : ""}`, { cause: err });
  }
  const file = result.outputFiles?.[0];
  if (file === undefined) throw new MoltError(ErrorCode.BUNDLE, `esbuild produced no output for ${entry}`);
  return file.text;
}
