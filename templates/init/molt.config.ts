// A molt project, scaffolded by `molt init`. `molt dev` runs it and swaps a
// service live whenever you save one of its files; `molt run` just runs it.
import { defineConfig } from "molt";

export default defineConfig({
  services: {
    hello: { entry: "./services/hello/index.ts" },
  },
  // Every HTTP request goes to the hello service's `fetch` handler.
  http: { port: 8090, service: "hello" },
  // The admin API that `molt swap`, `molt status` and `molt history` talk to (127.0.0.1 only).
  admin: { port: 8091 },
  // Snapshots, the version history and the admin token.
  dataDir: ".molt",
});
