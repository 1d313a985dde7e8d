// Waves: a rollout given as the share of the fleet that should run the new
// version after each step (`--waves 1,5,25,100`), rather than as a number
// of runtimes per batch. The shares are cumulative percentages of the
// runtimes that run the service; the last is 100, so a rollout that
// completes leaves none behind.

import { ErrorCode, MoltError } from "../core/errors.ts";

/** Parses `--waves`: increasing percentages, each above 0 and at most 100, the last 100; ERR_USAGE otherwise. */
export function parseWaves(text: string): number[] {
  const parts = text.split(",").map((p) => p.trim());
  const waves = parts.map(Number);
  const usage = (why: string): never => {
    throw new MoltError(ErrorCode.USAGE, `--waves ${why} (e.g. --waves 1,5,25,100), not "${text}"`);
  };
  if (parts.some((p) => p === "") || waves.some((p) => !Number.isFinite(p))) usage("takes percentages separated by commas");
  if (waves.some((p) => p <= 0 || p > 100)) usage("takes percentages above 0 and at most 100");
  for (let i = 1; i < waves.length; i++) if ((waves[i] as number) <= (waves[i - 1] as number)) usage("must increase from one wave to the next");
  if (waves[waves.length - 1] !== 100) usage("must end at 100, so that the rollout leaves no runtime behind");
  return waves;
}

/**
 * How many of `total` runtimes should run the new version once a wave of
 * `percent` is done: rounded up, so a small wave of a small fleet still
 * moves at least one runtime, and 100% is every one of them.
 */
export function waveTarget(percent: number, total: number): number {
  return Math.min(total, Math.max(0, Math.ceil((percent * total) / 100 - 1e-9)));
}
