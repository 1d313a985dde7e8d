// A runtime resumes every service at the version it last committed, by
// design: a restart must not deploy code nobody swapped in. So a user who
// edits an entry and restarts keeps the old code. This finds where that
// happened, so `molt run` can say so and `molt dev` can deploy the edit.

import { relative } from "node:path";
import { bundleService, shortId } from "../core/bundle.ts";
import type { ResolvedConfig } from "../core/config.ts";
import { toMoltError } from "../core/errors.ts";
import type { Kernel } from "../core/kernel.ts";

export interface StaleEntry {
  service: string;
  /** The file the running version was bundled from (absolute). */
  entry: string;
  running: string;
  /** What the file bundles to now, or why it does not bundle. */
  onDisk: { version: string } | { error: { code: string; message: string } };
}

/** Every service whose running version's entry bundles to something else today. */
export async function staleEntries(kernel: Kernel, config: ResolvedConfig): Promise<StaleEntry[]> {
  const found = await Promise.all(
    Object.keys(config.services).map(async (service): Promise<StaleEntry | undefined> => {
      const running = kernel.running(service);
      if (running === null) return undefined;
      const entry = kernel.recorded(service, running)?.entry ?? config.services[service]?.entry;
      if (entry === undefined) return undefined;
      try {
        const { hash } = await bundleService(entry);
        return hash === running ? undefined : { service, entry, running, onDisk: { version: hash } };
      } catch (err) {
        const { code, message } = toMoltError(err);
        return { service, entry, running, onDisk: { error: { code, message } } };
      }
    }),
  );
  return found.filter((s) => s !== undefined);
}

/** A path as the user would type it from the folder they run molt in. */
export function displayPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel.startsWith("..") || rel === "" ? path : `./${rel}`;
}

/** `molt run`'s warning: one line per service whose entry changed since the version it resumed at. */
export async function warnStaleEntries(kernel: Kernel, config: ResolvedConfig): Promise<void> {
  for (const stale of await staleEntries(kernel, config)) {
    const entry = displayPath(stale.entry);
    const now = "version" in stale.onDisk ? `now bundles to ${shortId(stale.onDisk.version)}` : `no longer bundles (${stale.onDisk.error.code})`;
    process.stderr.write(
      `molt: warning: ${stale.service} resumed at ${shortId(stale.running)}, but its entry ${entry} ${now}; ` +
        `deploy it with \`molt swap ${stale.service} ${entry}\`, or run \`molt dev\` to swap on every save\n`,
    );
  }
}
