// Which build of molt this process runs: the kernel's version, named the way
// a service's version is (core/bundle.ts), by the sha256 of its code, beside
// the package's semver. A semver says what its author meant to ship; the
// hash says what is on disk, so an edited file under core/ or a `git pull`
// that left package.json alone is a new kernel all the same.
//
// The code hashed is every file the runtime loads from the molt package: the
// folders below and package.json (its semver and the dependency ranges it
// asks npm for). Services' code is not in it: each service is versioned on
// its own. Files are taken in the order of their paths, and each one's path
// and length go into the hash before its bytes, so moving a byte from one
// file to the next, or renaming a file, changes the hash too.

import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { KernelIdentity } from "../protocol/kernel.ts";
import { ErrorCode, MoltError } from "./errors.ts";

/** The folders of the molt package whose files a runtime (or its keeper, or a cell) may load. */
export const KERNEL_FOLDERS = ["bin", "cli", "core", "dashboard", "fleet", "guest", "keeper", "protocol", "sdk"] as const;

/** The molt package's own folder: the parent of core/. */
export const MOLT_ROOT = fileURLToPath(new URL("..", import.meta.url));

let cached: KernelIdentity | undefined;

/**
 * This process's kernel identity, computed once, on first use. Call it early
 * (the runtime does, when it starts): the hash is of the files as they are at
 * that moment, and the point is to name the code this process loaded.
 */
export function kernelIdentity(): KernelIdentity {
  cached ??= computeKernelIdentity(MOLT_ROOT);
  return cached;
}

/** The identity of the molt code under `root`, computed now (a test points it at a copy). */
export function computeKernelIdentity(root: string): KernelIdentity {
  const manifest = join(root, "package.json");
  if (!existsSync(manifest)) throw new MoltError(ErrorCode.INTERNAL, `${root} is not the molt package: it has no package.json`);
  const packageJson = readFileSync(manifest);
  const semver = (JSON.parse(packageJson.toString("utf8")) as { version?: unknown }).version;
  if (typeof semver !== "string") throw new MoltError(ErrorCode.INTERNAL, `${manifest} has no version`);
  const files = ["package.json"];
  for (const folder of KERNEL_FOLDERS) files.push(...filesUnder(root, folder));
  // Code-unit order, not the locale's: the same tree gives the same hash on every machine.
  files.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const hash = createHash("sha256");
  for (const path of files) {
    const bytes = path === "package.json" ? packageJson : readFileSync(join(root, path));
    hash.update(`${path}\0${bytes.byteLength}\0`);
    hash.update(bytes);
  }
  return { version: hash.digest("hex"), semver };
}

/**
 * Every regular file under `root/folder`, as a path relative to root with
 * "/" between its parts. Dot files (editor swap files, .DS_Store) are not
 * code and are left out, as are symlinks, which npm never installs here.
 */
function filesUnder(root: string, folder: string): string[] {
  const found: string[] = [];
  const walk = (relative: string): void => {
    let entries;
    try {
      entries = readdirSync(join(root, relative), { withFileTypes: true });
    } catch {
      // keeper/ exists only once the keeper does; a missing folder holds no code.
      return;
    }
    for (const entry of entries) {
      if (entry.name.startsWith(".")) continue;
      const path = `${relative}/${entry.name}`;
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) found.push(path);
    }
  };
  walk(folder);
  return found;
}
