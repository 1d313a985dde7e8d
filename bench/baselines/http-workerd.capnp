# bench:http's workerd target: one worker (http-workerd.js) behind one HTTP
# socket. The bench overrides the socket's address with
# `--socket-addr http=127.0.0.1:<port>`.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [ (name = "counter", worker = .counter) ],
  sockets = [ (name = "http", address = "127.0.0.1:8080", http = (), service = "counter") ],
);

const counter :Workerd.Worker = (
  modules = [ (name = "worker", esModule = embed "http-workerd.js") ],
  compatibilityDate = "2025-01-01",
);
