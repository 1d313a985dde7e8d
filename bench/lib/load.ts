// A closed-loop HTTP load generator: N clients, each with one keep-alive
// connection, sending the next request as soon as the last one is answered.
// Every request is recorded with its start and end time, so a benchmark can
// tell the ones that overlapped a swap from the others. Loopback only.

import { Agent, request } from "node:http";

export interface Sample {
  start: number;
  end: number;
  ok: boolean;
  status: number;
}

export interface Load {
  samples: Sample[];
  stop(): Promise<void>;
}

export function startLoad(url: string, clients: number, options: { method?: string; retryDelayMs?: number; maxRequests?: number } = {}): Load {
  const samples: Sample[] = [];
  let running = true;
  const target = new URL(url);
  const loops = Array.from({ length: clients }, async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    while (running && samples.length < (options.maxRequests ?? 5_000_000)) {
      const start = performance.now();
      const status = await once(target, agent, options.method ?? "POST");
      samples.push({ start, end: performance.now(), ok: status === 200, status });
      // A refused connection answers at once: wait a moment rather than spin.
      if (status === 0) await new Promise((r) => setTimeout(r, options.retryDelayMs ?? 1));
    }
    agent.destroy();
  });
  return {
    samples,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

function once(url: URL, agent: Agent, method: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request(url, { method, agent, headers: { "content-length": "0" } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
      res.on("error", () => resolve(0));
    });
    req.on("error", () => resolve(0));
    req.setTimeout(30_000, () => req.destroy());
    req.end();
  });
}
