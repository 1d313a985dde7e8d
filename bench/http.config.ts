// The example daemon (molt.config.ts) as `bench:http` runs it. It imports the
// daemon's own config rather than copying it, so the benchmark measures the
// same services, limits, bindings and routes a user gets from `npm start`.
// Only what a benchmark must own differs: the port (the OS picks one), no
// admin API, a throwaway data folder, and which service answers HTTP
// (BENCH_HTTP_SERVICE: "gateway" for HTTP → gateway → counter, "counter" for
// HTTP → counter directly).

import { dirname, isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig, type ServiceConfig } from "molt";
import daemon from "../molt.config.ts";

// The daemon's entries are relative to the repository's root, not to bench/.
const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const dataDir = process.env.BENCH_HTTP_DATA_DIR;
if (dataDir === undefined || dataDir === "") throw new Error("BENCH_HTTP_DATA_DIR must name a throwaway folder");

// The admin API is left out: the benchmark needs no token written and no second listener.
const { admin: _admin, ...rest } = daemon;
const services: Record<string, ServiceConfig> = {};
for (const [name, svc] of Object.entries(rest.services)) {
  services[name] = { ...svc, entry: isAbsolute(svc.entry) ? svc.entry : resolve(root, svc.entry) };
}

export default defineConfig({
  ...rest,
  services,
  http: { port: 0, service: process.env.BENCH_HTTP_SERVICE ?? "gateway" },
  dataDir,
});
