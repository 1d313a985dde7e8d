// The process-restart baseline: a plain Node HTTP server holding the same
// state in memory (a counter and `items`). What a restart-based reload does:
// kill it, start it again, and its state is gone.
import { createServer } from "node:http";

const port = Number(process.argv[2]);
const bytes = Number(process.argv[3] ?? 100);
const state = { count: 0, items: Array.from({ length: Math.max(1, Math.floor(bytes / 32)) }, (_, i) => ({ id: i, name: "item", value: i * 3 })) };
createServer((req, res) => {
  if (req.method === "POST") state.count++;
  req.resume();
  res.writeHead(200).end(String(state.count));
}).listen(port, "127.0.0.1");
