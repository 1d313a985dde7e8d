// How instances are hosted on this machine: an isolate in this process, or,
// for a service with `isolation: "process"`, an isolate in a cell of its
// own. The composition root (cli/run.ts, a test, a benchmark) hands this to
// the kernel; the kernel itself never chooses.

import { bundleRuntime } from "./bundle.ts";
import { bootCell } from "./cell-host.ts";
import type { Boot } from "./instance.ts";
import { bootIsolate } from "./isolate-host.ts";

/** The guest runtime is bundled once per process, on the first boot. */
export const localBoot: Boot = async (spec, bridge) => {
  const runtime = await bundleRuntime();
  return spec.service.isolation === "process" ? bootCell(spec, bridge, runtime) : bootIsolate(spec, bridge, runtime);
};
