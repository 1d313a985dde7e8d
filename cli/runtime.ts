// The runtime process a keeper starts (keeper/keeper.ts): the kernel, the
// isolates, the HTTP and admin servers on the sockets the keeper holds.
// `molt run` starts the keeper; nobody starts this by hand.

import { MoltError } from "../core/errors.ts";
import { run } from "./run.ts";

run(process.argv[2]).catch((err: unknown) => {
  if (err instanceof MoltError) console.error(`molt: ${err.code}: ${err.message}`);
  else console.error("molt:", err);
  process.exit(1);
});
