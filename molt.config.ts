// The example daemon: `npm start` runs it on http://127.0.0.1:8080.
//   curl -X POST localhost:8080/counter/incr
//   curl -X PUT -d bar localhost:8080/kv/foo
//   curl localhost:8080/kv/foo
// and, while it serves: npm run molt -- swap counter ./services/counter/v2.ts
import { defineConfig } from "molt";

export default defineConfig({
  services: {
    gateway: {
      entry: "./services/gateway/index.ts",
      bindings: { counter: "counter", kv: "kv" },
      config: { routes: { "/counter": "counter", "/kv": "kv" } },
    },
    counter: { entry: "./services/counter/index.ts", limits: { memoryMb: 64, timeoutMs: 1000 } },
    kv: { entry: "./services/kv/index.ts" },
    log: { entry: "./services/log/index.ts", permissions: { stdout: true }, config: { level: "info" } },
  },
  http: { port: 8080, service: "gateway" },
  admin: { port: 8081 },
  log: { service: "log" },
  dataDir: ".molt",
});
