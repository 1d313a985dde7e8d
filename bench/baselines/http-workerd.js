// bench:http's workerd target: one worker doing the same as molt's example
// counter over HTTP. The count lives in a module-level variable, which one
// workerd process keeps for as long as it runs.
let count = 0;

export default {
  async fetch(request) {
    const path = new URL(request.url).pathname;
    if (request.method === "POST" && path === "/counter/incr") {
      count++;
      return new Response(`${count}\n`, { headers: { "content-type": "text/plain; charset=utf-8" } });
    }
    if (request.method === "GET" && path === "/counter") {
      return new Response(`${count}\n`, { headers: { "content-type": "text/plain; charset=utf-8" } });
    }
    return new Response(null, { status: 404 });
  },
};
