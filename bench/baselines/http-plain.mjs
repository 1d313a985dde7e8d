// bench:http's baseline: a plain Node HTTP server doing what molt's example
// counter does over HTTP (POST /counter/incr adds one and answers the new
// count as text, GET /counter answers the count), with nothing between the
// socket and the number. It listens on a port the OS picks and tells its
// parent which one over IPC; when the parent goes away, so does it.
import { createServer } from "node:http";

let count = 0;
const server = createServer((req, res) => {
  req.resume();
  const path = (req.url ?? "").split("?")[0];
  if (req.method === "POST" && path === "/counter/incr") {
    count++;
    res.writeHead(200, { "content-type": "text/plain; charset=utf-8" }).end(`${count}\n`);
  } else if (req.method === "GET" && path === "/counter") {
    res.writeHead(200, { "content-type": "text/plain; charset=utf-8" }).end(`${count}\n`);
  } else {
    res.writeHead(404).end();
  }
});
server.listen(0, "127.0.0.1", () => process.send?.({ port: server.address().port }));
process.on("disconnect", () => process.exit(0));
