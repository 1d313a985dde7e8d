// `molt init [folder]`: scaffolds a project from templates/init — a config,
// a service with its next version beside it, a tsconfig for service code
// and a README — so a new user has a runtime and a swap to try at once.

import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { ErrorCode, MoltError } from "../core/errors.ts";
import { displayPath } from "./stale-entries.ts";

const MOLT_ROOT = fileURLToPath(new URL("..", import.meta.url));
const TEMPLATE = join(MOLT_ROOT, "templates", "init");

/** Every file under `dir`, relative to it. */
function filesUnder(dir: string, prefix = ""): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true }).flatMap((item) =>
    item.isDirectory() ? filesUnder(dir, join(prefix, item.name)) : [join(prefix, item.name)],
  );
}

/** A path from `from` to `to` as a tsconfig wants it: forward slashes, starting with ./ or ../. */
function linkTo(from: string, to: string): string {
  const rel = relative(from, to).split(sep).join("/");
  return rel.startsWith("../") ? rel : `./${rel}`;
}

/**
 * Writes the scaffold into `folder` (relative to the current folder; created
 * if missing). Nothing is written if any file it would write exists: that
 * is ERR_EXISTS, naming them.
 */
export function initProject(folder: string): string[] {
  const target = resolve(folder);
  const files = filesUnder(TEMPLATE);
  const taken = files.filter((file) => existsSync(join(target, file)));
  if (taken.length > 0) {
    throw new MoltError(ErrorCode.EXISTS, `molt init writes nothing over existing files; already in ${target}: ${taken.join(", ")}`);
  }
  // The tsconfig points at molt's own service types wherever molt is installed.
  const fill = (text: string): string =>
    text
      .replaceAll("{{SERVICE_TSCONFIG}}", linkTo(target, join(MOLT_ROOT, "sdk", "tsconfig.service.json")))
      .replaceAll("{{MOLT_SDK}}", linkTo(target, join(MOLT_ROOT, "sdk")));
  for (const file of files) {
    const path = join(target, file);
    mkdirSync(dirname(path), { recursive: true });
    // "wx": a file that appeared since the check above is still not overwritten.
    writeFileSync(path, fill(readFileSync(join(TEMPLATE, file), "utf8")), { flag: "wx" });
  }
  return files.map((file) => join(target, file));
}

/** `molt init [folder]` */
export function initCommand(folder: string | undefined): number {
  const written = initProject(folder ?? ".");
  for (const path of written) process.stdout.write(`created ${displayPath(path)}\n`);
  const cd = folder === undefined || resolve(folder) === process.cwd() ? "" : `cd ${folder} && `;
  process.stdout.write(
    `\nNext: ${cd}molt dev      (or, with molt not installed: ${cd}npm --prefix ${displayPath(MOLT_ROOT)} run molt -- dev)\n` +
      `then curl 'localhost:8090/?name=ada', edit services/hello/index.ts and save: it is swapped live.\n` +
      `Or, beside \`molt run\`: molt swap hello ./services/hello/v2.ts\n`,
  );
  return 0;
}
