// Instances as plain objects, for tests of what sits around an instance (the
// router, the slot): every lifecycle step does nothing, and `deliver` is the
// test's.

import type { Instance } from "../../core/instance.ts";

export function stubInstance(service: string, deliver: Instance["deliver"]): Instance {
  const noop = async (): Promise<void> => undefined;
  return {
    service,
    versionId: "0".repeat(64),
    meta: { semver: "1.0.0", stateVersion: 1, restoresFrom: null, hasRestore: false, handlers: [] },
    disposed: false,
    init: noop,
    restore: noop,
    start: noop,
    stop: noop,
    dump: async () => new Uint8Array(),
    dispose: () => undefined,
    deliver,
  };
}
