// Finds and loads a runtime config file; config-schema.ts checks it and fills
// in defaults, so the rest of the kernel works on one fully resolved shape
// with absolute paths.

import { existsSync, rmSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import * as esbuild from "esbuild";
import { SDK_ALIASES } from "./bundle.ts";
import { resolveConfig, type ResolvedConfig } from "./config-schema.ts";
import { ErrorCode, MoltError } from "./errors.ts";

// The shapes, checks and defaults are one zod schema in config-schema.ts;
// these re-exports keep the names the kernel and the CLI import from here.
export { DEFAULTS, resolveConfig } from "./config-schema.ts";
export type { ResolvedConfig, ResolvedFleet, ResolvedLimits, ResolvedPermissions, ResolvedService } from "./config-schema.ts";

export const CONFIG_FILES = ["molt.config.ts", "molt.config.mjs", "molt.config.js"] as const;

/** Finds the config file: the given path, or the first default name in `cwd`. */
export function findConfig(given: string | undefined, cwd: string = process.cwd()): string {
  if (given !== undefined) {
    const path = resolve(cwd, given);
    if (!existsSync(path)) throw new MoltError(ErrorCode.CONFIG, `config file not found: ${path}`);
    return path;
  }
  for (const name of CONFIG_FILES) {
    const path = resolve(cwd, name);
    if (existsSync(path)) return path;
  }
  throw new MoltError(ErrorCode.CONFIG, `no ${CONFIG_FILES.join(", ")} in ${cwd}; pass a config path`);
}

/**
 * Imports a config module (TypeScript or JavaScript) and resolves it.
 *
 * The file is compiled with esbuild first, as vite does with its config:
 * that way `import { defineConfig } from "molt"` works from any folder, also
 * one where molt is not installed as a package, and TypeScript needs no
 * loader. The compiled module is written beside the config, so its own
 * relative and package imports resolve as they would from the original.
 */
export async function loadConfig(path: string): Promise<ResolvedConfig> {
  const absolute = resolve(path);
  const compiled = `${absolute}.${process.pid}.${Date.now()}.mjs`;
  let mod: { default?: unknown };
  try {
    const result = await esbuild.build({
      entryPoints: [absolute],
      bundle: true,
      write: false,
      format: "esm",
      platform: "node",
      packages: "external",
      alias: SDK_ALIASES,
      logLevel: "silent",
    });
    writeFileSync(compiled, result.outputFiles[0]?.text ?? "");
    mod = (await import(pathToFileURL(compiled).href)) as { default?: unknown };
  } catch (cause) {
    throw new MoltError(ErrorCode.CONFIG, `cannot load config ${absolute}: ${describe(cause)}`, { cause });
  } finally {
    rmSync(compiled, { force: true });
  }
  if (mod.default === undefined) {
    throw new MoltError(ErrorCode.CONFIG, `config ${absolute} has no default export`);
  }
  return resolveConfig(mod.default, dirname(absolute), absolute);
}

function describe(err: unknown): string {
  const failure = err as Partial<esbuild.BuildFailure>;
  if (Array.isArray(failure.errors) && failure.errors.length > 0) {
    return failure.errors
      .map((e) => (e.location ? `${e.location.file}:${e.location.line}:${e.location.column}: ${e.text}` : e.text))
      .join("; ");
  }
  return err instanceof Error ? err.message : String(err);
}
