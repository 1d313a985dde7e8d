// The runtime's config: what `molt.config.ts` default-exports. The types are
// inferred from the one schema that core/config-schema.ts checks a loaded
// config against, so they say exactly what the runtime accepts. Only types
// come from there: a config or a service that imports "molt" bundles no
// validation code and needs no package beside it.

import type { ConfigInput } from "../core/config-schema.ts";

export type MoltConfig = ConfigInput;
export type ServiceConfig = MoltConfig["services"][string];
export type ServiceLimits = NonNullable<ServiceConfig["limits"]>;
export type ServicePermissions = NonNullable<ServiceConfig["permissions"]>;

/** Gives a config its types; the object is returned unchanged. */
export function defineConfig(config: MoltConfig): MoltConfig {
  return config;
}
