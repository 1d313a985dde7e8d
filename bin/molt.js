#!/usr/bin/env node
// The installed `molt` command: the CLI, started by the launcher (launch.js)
// in a child Node with the flags molt needs.

import { fileURLToPath } from "node:url";
import { launch } from "./launch.js";

launch(fileURLToPath(new URL("../cli/main.ts", import.meta.url)), process.argv.slice(2));
